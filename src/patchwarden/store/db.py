"""Engines, sessions and schema migrations.

SQLite is the embedded default (WAL journal, foreign keys on, a busy timeout so several
processes can share the file); PostgreSQL is reached through the same URL setting.

Migrations run in one explicit place: ``open_database(url, migrate=True)``, used only by
``patchwarden db upgrade`` and by the commands that start the server (``up``,
``server``) before any worker exists. Everything else opens with ``migrate=False`` and
refuses a database whose schema is not the one this code was written for, with a hint
to run ``patchwarden db upgrade``: several server workers or a read-only command must
never race to change the schema under each other.
A ``Database`` carries the process's audit key (``store.audit.AuditKey``) to every
session it makes (``Session.info``), where ``audit.record`` and ``audit.verify`` find it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from patchwarden.core.errors import ConfigError, PatchwardenError
from patchwarden.store.audit import SESSION_KEY, AuditKey

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def is_sqlite(engine: Engine) -> bool:
    """True for the embedded SQLite backend."""
    return engine.dialect.name == "sqlite"


#: PostgreSQL connections each process keeps open (see ``make_engine``).
DEFAULT_POOL_SIZE = 20


def make_engine(url: str, *, echo: bool = False, pool_size: int = DEFAULT_POOL_SIZE) -> Engine:
    """Create an engine for ``url`` with patchwarden's per-backend settings.

    ``pool_size`` connections stay open, and up to 5 more are opened under bursts
    (those are closed when returned). The pool should cover the server's
    concurrent database work: connections opened and closed per request cost a
    PostgreSQL backend start each, which under load cost more CPU than the requests.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # A file gets a queue pool like PostgreSQL's; ":memory:" keeps SQLAlchemy's
        # one-connection-per-thread pool (it takes no queue settings).
        pooling: dict[str, int] = (
            {"pool_size": pool_size, "max_overflow": 5} if path and path != ":memory:" else {}
        )
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30}, **pooling)
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    if url.startswith(("postgresql", "postgres")):
        if url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgres://")
        elif url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return create_engine(
            url, echo=echo, pool_pre_ping=True, pool_size=pool_size, max_overflow=5
        )
    raise ConfigError(
        f"unsupported database URL {url.split(':', 1)[0]!r}",
        hint="use sqlite:///path/to/file.db or postgresql+psycopg://user@host/db",
    )


def alembic_config(engine: Engine) -> Any:
    """An Alembic Config pointing at patchwarden's migrations and this engine."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (idempotent)."""
    try:
        with engine.begin() as connection:
            if is_sqlite(engine):
                # Serialize concurrent first starts on the same file.
                connection.execute(text("SELECT 1"))
            config = alembic_config(engine)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except OperationalError as exc:
        raise ConfigError(
            f"cannot reach or migrate the database: {exc.orig}",
            hint="check PATCHWARDEN_DATABASE_URL and that the database server is running",
        ) from exc


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at, or None when it was never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@cache
def _revisions() -> tuple[str, frozenset[str]]:
    """The newest revision this code knows, and every revision it knows."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    if head is None:  # pragma: no cover - the package ships its migrations
        raise ConfigError("patchwarden's migrations are missing from the installation")
    return head, frozenset(r.revision for r in script.walk_revisions())


def require_current_schema(engine: Engine) -> None:
    """Refuse a database whose schema is missing, older or newer than this code's."""
    head, known = _revisions()
    try:
        revision = current_revision(engine)
    except OperationalError as exc:
        raise ConfigError(
            f"cannot reach the database: {exc.orig}",
            hint="check PATCHWARDEN_DATABASE_URL and that the database server is running",
        ) from exc
    where = engine.url.render_as_string(hide_password=True)
    if revision == head:
        return
    if revision is None:
        raise ConfigError(
            f"the database {where} has no patchwarden schema yet",
            hint="create it with `patchwarden db upgrade` (`patchwarden up` and "
            "`patchwarden server` do that when they start)",
        )
    if revision in known:
        raise ConfigError(
            f"the database {where} has schema revision {revision}; this patchwarden needs {head}",
            hint="run `patchwarden db upgrade` (or restart `patchwarden server`, which "
            "migrates before its workers start)",
        )
    raise ConfigError(
        f"the database {where} has schema revision {revision}, newer than this "
        f"patchwarden knows (newest: {head})",
        hint="run the patchwarden version that migrated it, or upgrade this one",
    )


class Database:
    """An engine plus its session factory; the unit the rest of the code passes around.

    Sessions carry ``audit_key``; without one they can read but not write the audit log
    (``audit.record`` raises ConfigError)."""

    def __init__(self, engine: Engine, *, audit_key: AuditKey | None = None) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False, info={SESSION_KEY: audit_key})

    @property
    def connection_capacity(self) -> int:
        """How many connections the pool keeps open (its burst connections not counted:
        those are closed after each use, so steady work should not rely on them)."""
        size = getattr(self.engine.pool, "size", None)
        if callable(size):
            return int(size())
        return 1  # a pool without a queue (e.g. one shared connection)

    @property
    def url(self) -> str:
        """The URL with any password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        session = self._sessions()
        try:
            with session.begin():
                yield session
        finally:
            session.close()

    def new_session(self) -> Session:
        """A bare session; the caller commits, rolls back and closes it."""
        return self._sessions()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def open_database(
    url: str,
    *,
    migrate: bool = False,
    pool_size: int = DEFAULT_POOL_SIZE,
    audit_key: AuditKey | None = None,
) -> Database:
    """Open the database at ``url``; its sessions write the audit log with ``audit_key``.

    With ``migrate`` the schema is brought up to date first (only the explicit places
    named in this module's docstring pass it); without, a schema that is not exactly
    this code's is refused with a ConfigError saying what to run.
    """
    engine = make_engine(url, pool_size=pool_size)
    try:
        if migrate:
            upgrade(engine)
        else:
            require_current_schema(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise ConfigError(f"database error at {engine.url!r}: {exc}") from exc
    except PatchwardenError:
        engine.dispose()
        raise
    return Database(engine, audit_key=audit_key)
