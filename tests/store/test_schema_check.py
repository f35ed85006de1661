"""Migrations happen in one explicit place; every other open refuses a stale schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from patchwarden.cli.main import run
from patchwarden.core.errors import ConfigError
from patchwarden.store.db import make_engine, open_database, upgrade


def _tables(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_opening_an_empty_database_does_not_create_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    with pytest.raises(ConfigError, match="no patchwarden schema yet") as caught:
        open_database(url)
    assert "patchwarden db upgrade" in (caught.value.hint or "")
    assert _tables(url) == []


def test_an_older_schema_is_refused_until_db_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    upgrade(engine, "0007")
    engine.dispose()
    with pytest.raises(ConfigError, match="schema revision 0007"):
        open_database(url)

    monkeypatch.setenv("PATCHWARDEN_DATABASE_URL", url)
    monkeypatch.setenv("PATCHWARDEN_HOME", str(tmp_path / "home"))
    assert run(["assets", "list"]) == 2
    err = capsys.readouterr().err
    assert "schema revision 0007" in err
    assert "patchwarden db upgrade" in err
    assert "agent_report" in _tables(url)  # untouched: still the 0007 schema
    engine = make_engine(url)
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("agent_report")}
    finally:
        engine.dispose()
    assert "claimed_at" not in columns  # 0008's column was not added behind our back

    assert run(["db", "upgrade"]) == 0
    assert run(["assets", "list", "--json"]) == 0
    open_database(url).dispose()


def test_a_schema_newer_than_this_code_is_refused(db_url: str) -> None:
    database = open_database(db_url)
    with database.engine.connect() as connection:
        head = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    try:
        with database.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(ConfigError, match="newer than this patchwarden knows"):
            open_database(db_url)
    finally:
        with database.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
        database.dispose()
