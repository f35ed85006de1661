"""Helpers tests import directly (fixtures live in conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """Where the shared real-data folder is (it may not exist).

    ``PATCHWARDEN_TEST_DATA`` wins; the default is ``../shared/data`` next to the checkout.
    """
    configured = os.environ.get("PATCHWARDEN_TEST_DATA")
    if configured:
        return Path(configured)
    return REPO_ROOT.parent / "shared" / "data"


def data_file(relative: str) -> Path:
    """A file or folder inside the shared data; skips the test with a reason when absent."""
    root = shared_data_dir()
    path = root / relative
    if not path.exists():
        pytest.skip(
            f"real test data {relative} not found under {root}; set PATCHWARDEN_TEST_DATA "
            "to the shared data folder (see README, 'Tests')"
        )
    return path
