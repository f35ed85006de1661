"""Settings, read from the environment (prefix ``PATCHWARDEN_``) and an optional .env file.

Every setting is documented in README.md ("Settings"); keep the two in step.
"""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from patchwarden.core.errors import ConfigError
from patchwarden.store.audit import AuditKey, read_key_file


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "patchwarden"


def _default_credentials() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "patchwarden" / "credentials.json"


class Settings(BaseSettings):
    """patchwarden's configuration."""

    # A .env file in the working directory supplies PATCHWARDEN_* values; variables set
    # in the environment win over it. Other keys in the file are ignored.
    model_config = SettingsConfigDict(
        env_prefix="PATCHWARDEN_", extra="ignore", env_file=".env", env_file_encoding="utf-8"
    )

    home: Path = Field(
        default_factory=_default_home,
        description="State directory: SQLite database, feed cache, server secrets.",
    )
    database_url: str = Field(
        default="",
        description=(
            "SQLAlchemy URL. Empty means the SQLite file <home>/patchwarden.db (WAL mode); "
            "PostgreSQL: postgresql+psycopg://user:pass@host/db."
        ),
    )
    database_pool_size: int = Field(
        default=20,
        ge=1,
        le=500,
        description=(
            "Database connections each server process keeps open (up to 5 more under "
            "bursts); requests in progress are limited to this minus 3. PostgreSQL: keep "
            "workers x (pool + 5) below its max_connections."
        ),
    )

    admin_password: str = Field(
        default="",
        description="Password for the bootstrap 'admin' user created by `patchwarden up` "
        "(generated and printed once when empty).",
    )
    checkin_interval: int = Field(
        default=300, ge=10, le=86400, description="Seconds between agent check-ins."
    )
    session_hours: int = Field(default=12, ge=1, le=24 * 30, description="Browser session life.")
    secure_cookies: bool = Field(
        default=False, description="Mark session cookies Secure (set when serving HTTPS)."
    )
    max_json_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description=(
            "Largest request body of every API route and form (413 beyond it), checked "
            "before parsing; agent inventory uploads and script packages have their own."
        ),
    )
    trusted_proxies: str = Field(
        default="",
        description=(
            "Comma-separated addresses or networks of reverse proxies whose "
            "X-Forwarded-For / X-Forwarded-Proto `patchwarden server` believes. Empty: "
            "none; the peer address is the client's."
        ),
    )
    orchestrator_interval: float = Field(
        default=5.0, gt=0, le=3600, description="Seconds between orchestrator passes."
    )
    report_processes: int | None = Field(
        default=None,
        ge=0,
        le=16,
        description=(
            "Processes `patchwarden server` starts to apply acknowledged agent reports. "
            "Empty: as many as --workers on PostgreSQL, 0 on SQLite. 0: each server "
            "process applies them in a thread of its own."
        ),
    )
    report_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Niceness of the report processes: uploads and check-ins go first.",
    )
    report_processor: Literal["thread", "external"] = Field(
        default="thread",
        description=(
            "Where a server process applies agent reports: 'thread' (its own) or "
            "'external' (`patchwarden report-worker` processes). `patchwarden server` "
            "sets it for its workers; set it only when running report workers yourself."
        ),
    )
    token: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "API token (pwt_...) the CLI acts with when a command changes something. "
            "Empty: the token `patchwarden login` stored for this database."
        ),
    )
    credentials_file: Path = Field(
        default_factory=_default_credentials,
        description="Where `patchwarden login` keeps its token per database (mode 0600).",
    )
    feeds_mirror: str = Field(
        default="",
        description="Mirror base URL or directory `patchwarden up` syncs feeds from.",
    )
    # Decompression bounds of feed data (feeds/inflate.py). The largest real feed file
    # measured is 5 MB and no real file over 1 MiB compresses more than 32 times.
    feed_max_member_bytes: int = Field(
        default=256 << 20,
        ge=1,
        description="Bytes one feed file, zip member or download may decompress to.",
    )
    feed_max_total_bytes: int = Field(
        default=4 << 30,
        ge=1,
        description="Bytes all the feed data of one import or sync may decompress to.",
    )
    feed_max_ratio: int = Field(
        default=100,
        ge=1,
        description="How many times its compressed size a feed file or member may "
        "decompress to (judged past its first MiB).",
    )
    audit_key: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "The audit log's key (64 hex digits), instead of the key file: for several "
            "machines sharing one database."
        ),
    )
    audit_key_file: Path | None = Field(
        default=None,
        description="File holding the audit key (default <home>/audit.key, mode 600).",
    )
    audit_checkpoint_file: Path | None = Field(
        default=None,
        description="File the server appends audit checkpoints to "
        "(default <home>/audit-checkpoints.jsonl).",
    )
    audit_checkpoint_interval: float = Field(
        default=3600,
        ge=0,
        le=7 * 86400,
        description="Seconds between the server's audit checkpoints (0: none).",
    )

    @field_validator("report_processes", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None  # PATCHWARDEN_REPORT_PROCESSES= (empty): the default
        return value

    @field_validator("audit_key_file", "audit_checkpoint_file", mode="before")
    @classmethod
    def _optional_path(cls, value: object) -> object:
        if isinstance(value, str):
            return Path(value).expanduser() if value.strip() else None  # empty: the default
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        for item in (part.strip() for part in value.split(",")):
            if item:
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError as exc:
                    raise ValueError(f"{item!r} is not an IP address or network") from exc
        return ",".join(part.strip() for part in value.split(",") if part.strip())

    @field_validator("home", "credentials_file", mode="before")
    @classmethod
    def _expand_home(cls, value: object) -> object:
        if isinstance(value, str):
            return Path(value).expanduser()
        return value

    @cached_property
    def effective_database_url(self) -> str:
        """The database URL actually used (the SQLite default filled in)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'patchwarden.db'}"

    @property
    def feed_cache_dir(self) -> Path:
        """Where downloaded feed files are kept between syncs."""
        return self.home / "feeds"

    @property
    def audit_key_path(self) -> Path:
        """Where the audit key file is."""
        return self.audit_key_file or self.home / "audit.key"

    @property
    def audit_checkpoint_path(self) -> Path:
        """Where audit checkpoints are appended by default."""
        return self.audit_checkpoint_file or self.home / "audit-checkpoints.jsonl"

    def load_audit_key(self, *, create: bool = False) -> AuditKey:
        """The audit key: PATCHWARDEN_AUDIT_KEY, else the key file (created with a new
        random key when ``create`` and missing: the commands that set up or run the
        server do that). ConfigError when there is none."""
        configured = self.audit_key.get_secret_value()
        if configured.strip():
            return AuditKey.from_text(configured, source="PATCHWARDEN_AUDIT_KEY")
        return read_key_file(self.audit_key_path, create=create)

    def ensure_home(self) -> Path:
        """Create the state directory (mode 0700) and return it."""
        try:
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the patchwarden home directory {self.home}: {exc.strerror}",
                hint="set PATCHWARDEN_HOME to a writable directory",
            ) from exc
        return self.home


def load_settings() -> Settings:
    """Read settings from the environment, turning validation errors into ConfigError."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "PATCHWARDEN_" + "_".join(str(p) for p in first["loc"]).upper()
        raise ConfigError(f"invalid setting {name}: {first['msg']}") from exc
