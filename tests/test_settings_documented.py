"""Settings: every one is documented in the README's settings table, and .env is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchwarden.core.errors import ConfigError
from patchwarden.settings import Settings, load_settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [
        f"PATCHWARDEN_{name.upper()}"
        for name in Settings.model_fields
        if f"`PATCHWARDEN_{name.upper()}`" not in text
    ]
    assert missing == []


def test_a_dotenv_file_in_the_working_directory_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "# comment\nPATCHWARDEN_CHECKIN_INTERVAL=77\nPATCHWARDEN_SESSION_HOURS=3\nOTHER=x\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PATCHWARDEN_CHECKIN_INTERVAL", raising=False)
    monkeypatch.setenv("PATCHWARDEN_SESSION_HOURS", "5")
    loaded = load_settings()
    assert loaded.checkin_interval == 77
    assert loaded.session_hours == 5  # the environment wins over the file


def test_a_bad_value_in_dotenv_names_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("PATCHWARDEN_CHECKIN_INTERVAL=soon\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PATCHWARDEN_CHECKIN_INTERVAL", raising=False)
    with pytest.raises(ConfigError, match="PATCHWARDEN_CHECKIN_INTERVAL"):
        load_settings()
