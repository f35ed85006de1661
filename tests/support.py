"""Helpers tests import directly (fixtures live in conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from patchwarden.store.audit import AuditKey

REPO_ROOT = Path(__file__).resolve().parent.parent

#: ``python -c MEMORY_PROBE ARCHIVE ARGS...`` runs a zipapp like ``python ARCHIVE ARGS...``
#: and then writes ``MEMORY <VmRSS kB> <VmHWM kB>`` of this process to stderr (used by the
#: agent's RSS test and by bench/agentcycle.py).
MEMORY_PROBE = """
import runpy, sys
sys.argv = sys.argv[1:]
code = 0
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    code = exc.code
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
sys.stderr.write("MEMORY %s %s\\n" % (status["VmRSS"].split()[0], status["VmHWM"].split()[0]))
sys.exit(code)
"""


#: The audit key of every test: test-side databases write with it, and conftest exports
#: it as PATCHWARDEN_AUDIT_KEY, so CLI runs and server processes started by tests too.
TEST_AUDIT_KEY = AuditKey(bytes(range(32)))


def shared_data_dir() -> Path:
    """Where the shared real-data folder is (it may not exist).

    ``PATCHWARDEN_TEST_DATA`` wins; the default is ``../shared/data`` next to the checkout.
    """
    configured = os.environ.get("PATCHWARDEN_TEST_DATA")
    if configured:
        return Path(configured)
    return REPO_ROOT.parent / "shared" / "data"


#: Every skip for absent real data starts with this (conftest counts them at the end).
MISSING_DATA = "real test data"


def data_file(relative: str) -> Path:
    """A file or folder inside the shared data; skips the test with a reason when absent."""
    root = shared_data_dir()
    path = root / relative
    if not path.exists():
        pytest.skip(
            f"{MISSING_DATA} {relative} not found under {root}; set PATCHWARDEN_TEST_DATA "
            "to the shared data folder (see README, 'Tests')"
        )
    return path
