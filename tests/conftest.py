"""Fixtures shared by the whole suite.

Real public data lives outside the project (see ../shared/data/README.txt). Tests find
it through ``PATCHWARDEN_TEST_DATA`` (default: ``../shared/data`` next to the checkout)
and skip with a clear reason when it is absent; it is never copied into the project.

Database tests run twice, on SQLite and on PostgreSQL (``db`` fixture). PostgreSQL comes
from ``PATCHWARDEN_TEST_POSTGRES_URL`` (scripts/test finds or starts a server and sets
it); each test session creates one throwaway database there and drops it at the end.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from argon2 import PasswordHasher
from sqlalchemy import text

from patchwarden.server import security
from patchwarden.server.services.identity import create_token, create_user
from patchwarden.store.audit import SYSTEM
from patchwarden.store.db import Database, open_database
from patchwarden.store.models import Base
from tests.support import MISSING_DATA, TEST_AUDIT_KEY, data_file, shared_data_dir

# One audit key for the test process and every process it starts (tests of the key
# handling itself remove it with monkeypatch).
os.environ["PATCHWARDEN_AUDIT_KEY"] = TEST_AUDIT_KEY.text()
os.environ.pop("PATCHWARDEN_AUDIT_KEY_FILE", None)

#: A fixed creation time for fixture users' tokens (valid for 30 days from now).
_NOW = datetime.now(UTC)

DEFAULT_ADMIN_URLS = (
    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    "postgresql+psycopg://root@127.0.0.1:5432/postgres",
)


def pytest_unconfigure(config: pytest.Config) -> None:
    """One line at the very end when tests were skipped because the real data is absent."""
    terminalreporter = config.pluginmanager.get_plugin("terminalreporter")
    if terminalreporter is None:
        return
    missing = sum(
        1
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple) and MISSING_DATA in str(report.longrepr[2])
    )
    if missing:
        terminalreporter.write_line(
            f"{missing} tests skipped: the real test data was not found under "
            f"{shared_data_dir()}; set PATCHWARDEN_TEST_DATA=/path/to/shared/data "
            "to run them (README, 'Tests')",
            yellow=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder; skips the test when it is absent."""
    return data_file(".")


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _admin_url() -> str | None:
    configured = os.environ.get("PATCHWARDEN_TEST_POSTGRES_URL")
    for url in ([configured] if configured else []) + list(DEFAULT_ADMIN_URLS):
        try:
            with psycopg.connect(_dsn(url), connect_timeout=3):
                return url
        except psycopg.Error:
            continue
    return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a throwaway, migrated PostgreSQL database for this test session."""
    admin = _admin_url()
    if admin is None:
        pytest.skip(
            "no PostgreSQL reachable: run the suite through scripts/test (it installs and "
            "starts one) or set PATCHWARDEN_TEST_POSTGRES_URL"
        )
    name = f"pw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_dsn(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = admin.rpartition("/")
    query = query.split("?", 1)
    url = f"{base}/{name}" + (f"?{query[1]}" if len(query) > 1 else "")
    open_database(url, migrate=True).dispose()
    yield url
    with psycopg.connect(_dsn(admin), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is faster)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    open_database(f"sqlite:///{path}", migrate=True).dispose()
    return path


#: Per PostgreSQL URL: whether the test role is a superuser, and its sequences.
_RESET_PLANS: dict[str, tuple[bool, list[str]]] = {}


def _truncate_all(database: Database) -> None:
    """Empty every table and restart its ids, leaving the rows migrations seed (the
    audit chain head, reset to the genesis).

    A superuser (scripts/test's connection is one) deletes with triggers off
    (``session_replication_role = replica``): on tables this small that takes 10 ms
    where TRUNCATE, which gives every table and index a new file, took 300 ms — per
    PostgreSQL test. Other roles TRUNCATE, with the trigger refusing TRUNCATE of
    ``audit_event`` (migration 0012) switched off for the transaction: ``ALTER TABLE …
    DISABLE TRIGGER`` needs the table's owner, which the test role is. Either way the
    triggers guard against the application and other roles, never against the owner
    (docs/architecture.md, "Audit"), so tests lose nothing."""
    tables = [t.name for t in Base.metadata.sorted_tables if t.name != "audit_head"]
    url = database.url
    with database.engine.begin() as conn:
        if url not in _RESET_PLANS:
            superuser = bool(
                conn.execute(
                    text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                ).scalar()
            )
            sequences = list(
                conn.execute(
                    text(
                        "SELECT sequence_name FROM information_schema.sequences "
                        "WHERE sequence_schema = current_schema()"
                    )
                ).scalars()
            )
            _RESET_PLANS[url] = (superuser, sequences)
        superuser, sequences = _RESET_PLANS[url]
        if superuser:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            for name in reversed(tables):
                conn.execute(text(f'DELETE FROM "{name}"'))  # noqa: S608 - names from the models
            for sequence in sequences:
                conn.execute(text(f'ALTER SEQUENCE "{sequence}" RESTART'))
        else:
            names = ", ".join(f'"{name}"' for name in tables)
            conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_no_truncate"))
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            conn.execute(text("ALTER TABLE audit_event ENABLE TRIGGER audit_event_no_truncate"))
        conn.execute(
            text("UPDATE audit_head SET seq = 0, last_hash = :h, key_id = ''"), {"h": "0" * 64}
        )


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A clean, migrated database URL — once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "patchwarden.db"
        shutil.copyfile(template, target)
        yield f"sqlite:///{target}"
        return
    url: str = request.getfixturevalue("postgres_url")
    database = open_database(url, audit_key=TEST_AUDIT_KEY)
    try:
        _truncate_all(database)
    finally:
        database.dispose()
    yield url


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its lowest cost in this process: the production parameters take
    0.2 s per hash here, and fixtures create and sign in users in hundreds of tests.
    Stored hashes carry their parameters, so verification is unaffected; servers the
    tests start as processes keep the production parameters."""
    monkeypatch.setattr(
        security, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


def make_user_token(url: str, username: str, role: str) -> tuple[int, str]:
    """Create a user with an API token of their whole role; returns (user id, token)."""
    database = open_database(url, audit_key=TEST_AUDIT_KEY)
    try:
        with database.session() as session:
            user = create_user(
                session, SYSTEM, username=username, password="x" * 16, role=role, now=_NOW
            )
            _row, token = create_token(
                session, SYSTEM, user, name="tests", scopes=None, days=30, now=_NOW
            )
            return user.id, token
    finally:
        database.dispose()


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The CLI on the test database (SQLite and PostgreSQL) with a home in tmp, signed
    in (PATCHWARDEN_TOKEN) as the admin ``cli-admin``; returns the database URL."""
    monkeypatch.setenv("PATCHWARDEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATCHWARDEN_DATABASE_URL", db_url)
    monkeypatch.setenv("PATCHWARDEN_CREDENTIALS_FILE", str(tmp_path / "credentials.json"))
    _user_id, token = make_user_token(db_url, "cli-admin", "admin")
    monkeypatch.setenv("PATCHWARDEN_TOKEN", token)
    return db_url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """An open ``Database`` on a clean schema (SQLite and PostgreSQL)."""
    database = open_database(db_url, audit_key=TEST_AUDIT_KEY)
    try:
        yield database
    finally:
        database.dispose()
