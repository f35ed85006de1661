"""Build the production app from settings (used by uvicorn workers as a factory)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI

from patchwarden.server.app import create_app
from patchwarden.server.context import AppContext, ServerConfig
from patchwarden.settings import Settings, load_settings
from patchwarden.store.db import open_database


def config_from(settings: Settings, *, tls: bool = False) -> ServerConfig:
    """Server behaviour from settings."""
    return ServerConfig(
        checkin_interval=settings.checkin_interval,
        session_hours=settings.session_hours,
        secure_cookies=settings.secure_cookies or tls,
        max_json_bytes=settings.max_json_bytes,
        orchestrator_interval=settings.orchestrator_interval,
        apply_reports=settings.report_processor == "thread",
        audit_checkpoint_file=settings.audit_checkpoint_path,
        audit_checkpoint_interval=settings.audit_checkpoint_interval,
    )


def file_clock(path: Path) -> Callable[[], datetime]:
    """A clock that reads an ISO-8601 UTC time from ``path`` at every call.

    A testing aid only (``PATCHWARDEN_TEST_CLOCK_FILE``): end-to-end tests move a real
    server process through maintenance windows by rewriting the file.
    """

    def now() -> datetime:
        value = datetime.fromisoformat(path.read_text(encoding="utf-8").strip())
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    return now


def app_factory() -> FastAPI:
    """uvicorn factory: one app per worker process, each with its own connection pool."""
    settings = load_settings()
    settings.ensure_home()
    database = open_database(
        settings.effective_database_url,
        pool_size=settings.database_pool_size,
        audit_key=settings.load_audit_key(),
    )
    ctx = AppContext(db=database, config=config_from(settings))
    clock_file = os.environ.get("PATCHWARDEN_TEST_CLOCK_FILE")
    if clock_file:
        ctx.clock = file_clock(Path(clock_file))
    return create_app(ctx)
