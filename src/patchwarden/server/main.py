"""Build the production app from settings (used by uvicorn workers as a factory)."""

from __future__ import annotations

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
    )


def app_factory() -> FastAPI:
    """uvicorn factory: one app per worker process, each with its own connection pool."""
    settings = load_settings()
    settings.ensure_home()
    database = open_database(settings.effective_database_url)
    return create_app(AppContext(db=database, config=config_from(settings)))
