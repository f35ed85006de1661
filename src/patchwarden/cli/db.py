"""``patchwarden db``: schema migrations."""

from __future__ import annotations

import typer

from patchwarden.cli.common import settings, stdout
from patchwarden.store.db import current_revision, make_engine, upgrade

app = typer.Typer(help="Database schema management.", no_args_is_help=True)


@app.command("upgrade")
def upgrade_command(
    revision: str = typer.Argument("head", help="Target revision (default: newest)."),
) -> int:
    """Apply schema migrations: the one explicit place besides `up` and `server`, which
    migrate before their workers start. Other commands refuse an out-of-date schema."""
    cfg = settings()
    cfg.load_audit_key(create=True)  # the setup step creates the audit key too
    engine = make_engine(cfg.effective_database_url)
    try:
        upgrade(engine, revision)
        stdout().print(f"database at revision {current_revision(engine)}")
    finally:
        engine.dispose()
    return 0


@app.command("current")
def current_command() -> int:
    """Print the schema revision of the configured database."""
    engine = make_engine(settings().effective_database_url)
    try:
        stdout().print(current_revision(engine) or "empty (never migrated)")
    finally:
        engine.dispose()
    return 0
