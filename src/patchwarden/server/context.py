"""Per-application state shared by routes: the database, the clock, the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from patchwarden.store.db import Database


def utc_now() -> datetime:
    """The real clock (tests inject their own)."""
    return datetime.now(UTC)


@dataclass
class ServerConfig:
    """Server behaviour that deployments tune (see README, "Settings")."""

    checkin_interval: int = 300
    session_hours: int = 12
    secure_cookies: bool = False
    max_inventory_bytes: int = 16 * 1024 * 1024
    max_inventory_uncompressed: int = 128 * 1024 * 1024
    #: Request bodies of every route but the two below (PATCHWARDEN_MAX_JSON_BYTES).
    max_json_bytes: int = 1024 * 1024
    #: Script package registrations carry the artifact in base64.
    max_script_package_bytes: int = 64 * 1024 * 1024
    login_max_failures_user: int = 5
    login_max_failures_ip: int = 30
    login_window_minutes: int = 15
    orchestrator_interval: float = 5.0
    #: Apply acknowledged agent reports in a thread of this process (False: report
    #: worker processes do, see server/report_worker.py).
    apply_reports: bool = True
    #: Where the elected orchestrator appends audit checkpoints, and how often
    #: (seconds; 0 or no file: never).
    audit_checkpoint_file: Path | None = None
    audit_checkpoint_interval: float = 0.0


@dataclass
class AppContext:
    """What the FastAPI app holds in ``app.state.ctx``."""

    db: Database
    config: ServerConfig = field(default_factory=ServerConfig)
    clock: Callable[[], datetime] = utc_now

    def now(self) -> datetime:
        """The current time from the configured clock."""
        return self.clock()
