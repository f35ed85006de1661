"""Every setting is documented in the README's settings table (settings.py promises it)."""

from __future__ import annotations

from pathlib import Path

from patchwarden.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [
        f"PATCHWARDEN_{name.upper()}"
        for name in Settings.model_fields
        if f"`PATCHWARDEN_{name.upper()}`" not in text
    ]
    assert missing == []
