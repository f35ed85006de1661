"""SQLAlchemy 2.0 ORM models. Schema changes go through Alembic (store/migrations).

The models mirror DESIGN.md's data model. Notes on shape:

* ``package`` rows are shared by every asset that has the package; ``asset_package``
  links them. Absent optional strings are ``""`` so the uniqueness constraint behaves
  the same on SQLite and PostgreSQL.
* ``affected_range`` holds OSV ranges already *flattened* into intervals
  (introduced → fixed / last_affected, with a limit), indexed by (ecosystem, name);
  explicit OSV ``versions`` lists live in ``affected_version``.
* ``package_vuln`` caches the match of one distinct package row against one advisory
  (fixed version and the reason). A package is matched once, however many assets have
  it; ``finding`` then links assets to those matches with their own lifecycle.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; pass an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base for all patchwarden tables."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


def table_of(model: type[Base]) -> Table:
    """The Core ``Table`` of a mapped class (typed, for bulk statements)."""
    return cast(Table, model.__table__)


# ----------------------------------------------------------------------------- feeds


class FeedState(Base):
    """One imported feed: where it came from, when, and how much it holds."""

    __tablename__ = "feed_state"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(Text, default="")
    records: Mapped[int] = mapped_column(Integer, default=0)
    last_import: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_sync: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    etag: Mapped[str] = mapped_column(String(300), default="")
    last_modified_header: Mapped[str] = mapped_column(String(100), default="")
    content_sha256: Mapped[str] = mapped_column(String(64), default="")
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)


# ------------------------------------------------------------------------ advisories


class AdvisoryRow(Base):
    """An OSV-shaped advisory. ``ext_id`` is its public id (DSA-5532-1, GHSA-…)."""

    __tablename__ = "advisory"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ext_id: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(String(40), index=True)
    # The feed-state name of the import that last carried it (``feeds status`` counts).
    feed: Mapped[str] = mapped_column(String(200), default="", index=True)
    aliases: Mapped[list[Any]] = mapped_column(default=list)
    related: Mapped[list[Any]] = mapped_column(default=list)
    summary: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[str] = mapped_column(Text, default="")
    published: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    modified: Mapped[datetime] = mapped_column(UtcDateTime)
    withdrawn: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    severity: Mapped[list[Any]] = mapped_column(default=list)
    database_severity: Mapped[str] = mapped_column(String(40), default="")
    references: Mapped[list[Any]] = mapped_column(default=list)
    affected: Mapped[list[Any]] = mapped_column(default=list)
    # sha256 of the content without ``modified``: skips rewriting unchanged records.
    content_hash: Mapped[str] = mapped_column(String(64), default="")


class AdvisoryAlias(Base):
    """Every id an advisory is known by (its own, aliases, related CVEs), for lookup."""

    __tablename__ = "advisory_alias"

    advisory_id: Mapped[int] = mapped_column(
        ForeignKey("advisory.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)


class AffectedRangeRow(Base):
    """One affected interval of one package in one ecosystem, already flattened.

    ``introduced`` is ``"0"`` for "since forever"; ``fixed`` and ``last_affected`` are
    ``""`` when absent (both absent: no fix yet); ``limit`` is ``""`` for no limit.
    ``range_type`` is ECOSYSTEM or SEMVER (it picks the version ordering).
    """

    __tablename__ = "affected_range"
    __table_args__ = (
        Index("ix_affected_range_eco_name", "ecosystem", "name"),
        Index("ix_affected_range_name", "name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    advisory_id: Mapped[int] = mapped_column(
        ForeignKey("advisory.id", ondelete="CASCADE"), index=True
    )
    ecosystem: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300))
    range_type: Mapped[str] = mapped_column(String(20), default="ECOSYSTEM")
    introduced: Mapped[str] = mapped_column(String(200), default="0")
    fixed: Mapped[str] = mapped_column(String(200), default="")
    last_affected: Mapped[str] = mapped_column(String(200), default="")
    limit: Mapped[str] = mapped_column(String(200), default="")
    note: Mapped[str] = mapped_column(String(200), default="")


class AffectedVersionRow(Base):
    """An explicitly listed affected version (OSV ``versions``)."""

    __tablename__ = "affected_version"
    __table_args__ = (
        Index("ix_affected_version_eco_name", "ecosystem", "name"),
        Index("ix_affected_version_name", "name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    advisory_id: Mapped[int] = mapped_column(
        ForeignKey("advisory.id", ondelete="CASCADE"), index=True
    )
    ecosystem: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300))
    version: Mapped[str] = mapped_column(String(200))


class VulnIntelRow(Base):
    """Per-CVE intelligence: CVSS, EPSS, KEV. Each feed updates only its own columns."""

    __tablename__ = "vuln_intel"

    cve_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    cvss: Mapped[list[Any]] = mapped_column(default=list)
    # Highest base score among the vectors, for sorting and counting without JSON ops.
    cvss_max: Mapped[float | None] = mapped_column(Float, nullable=True)
    epss_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    epss_percentile: Mapped[float | None] = mapped_column(Float, nullable=True)
    epss_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    epss_model: Mapped[str] = mapped_column(String(60), default="")
    kev_date_added: Mapped[date | None] = mapped_column(Date, nullable=True)
    kev_due_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    kev_ransomware: Mapped[bool] = mapped_column(Boolean, default=False)
    kev_vendor: Mapped[str] = mapped_column(String(200), default="")
    kev_product: Mapped[str] = mapped_column(String(200), default="")
    kev_name: Mapped[str] = mapped_column(Text, default="")
    kev_required_action: Mapped[str] = mapped_column(Text, default="")


# ---------------------------------------------------------------------------- assets


class AssetRow(Base):
    """One host or device."""

    __tablename__ = "asset"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255), index=True)
    fqdn: Mapped[str] = mapped_column(String(255), default="", index=True)
    ip_addresses: Mapped[list[Any]] = mapped_column(default=list)
    serial: Mapped[str] = mapped_column(String(120), default="")
    kind: Mapped[str] = mapped_column(String(40), default="server")
    os_id: Mapped[str] = mapped_column(String(60), default="")
    os_version: Mapped[str] = mapped_column(String(60), default="")
    os_name: Mapped[str] = mapped_column(String(200), default="")
    os_ecosystem: Mapped[str] = mapped_column(String(100), default="")
    os_family: Mapped[str] = mapped_column(String(20), default="")
    arch: Mapped[str] = mapped_column(String(40), default="")
    kernel: Mapped[str] = mapped_column(String(200), default="")
    criticality: Mapped[int] = mapped_column(Integer, default=3)
    exposure: Mapped[str] = mapped_column(String(20), default="internal")
    data_class: Mapped[str] = mapped_column(String(20), default="internal")
    owner: Mapped[str] = mapped_column(String(200), default="")
    environment: Mapped[str] = mapped_column(String(60), default="")
    location: Mapped[str] = mapped_column(String(200), default="")
    timezone: Mapped[str] = mapped_column(String(60), default="")
    tags: Mapped[list[Any]] = mapped_column(default=list)
    source: Mapped[str] = mapped_column(String(40), default="scan")
    status: Mapped[str] = mapped_column(String(30), default="managed")
    reboot_required: Mapped[bool] = mapped_column(Boolean, default=False)
    uptime_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    inventory_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_inventory: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class PackageRow(Base):
    """A distinct installed package, shared by every asset that has it."""

    __tablename__ = "package"
    __table_args__ = (
        UniqueConstraint(
            "ecosystem",
            "name",
            "version",
            "arch",
            "source_name",
            "source_version",
            name="uq_package_identity",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ecosystem: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300))
    version: Mapped[str] = mapped_column(String(200))
    arch: Mapped[str] = mapped_column(String(40), default="")
    source_name: Mapped[str] = mapped_column(String(300), default="")
    source_version: Mapped[str] = mapped_column(String(200), default="")
    # When this package row was last matched against the advisories; NULL = never.
    matched_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class AssetPackage(Base):
    """Which packages an asset has."""

    __tablename__ = "asset_package"

    asset_id: Mapped[int] = mapped_column(
        ForeignKey("asset.id", ondelete="CASCADE"), primary_key=True
    )
    package_id: Mapped[int] = mapped_column(
        ForeignKey("package.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class PackageVuln(Base):
    """The match of one package row against one advisory (computed once, shared)."""

    __tablename__ = "package_vuln"

    package_id: Mapped[int] = mapped_column(
        ForeignKey("package.id", ondelete="CASCADE"), primary_key=True
    )
    advisory_id: Mapped[int] = mapped_column(
        ForeignKey("advisory.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    fixed_version: Mapped[str | None] = mapped_column(String(200), nullable=True)
    matched_name: Mapped[str] = mapped_column(String(300))
    matched_version: Mapped[str] = mapped_column(String(200))
    why: Mapped[str] = mapped_column(Text)


class FindingRow(Base):
    """One advisory affecting one package on one asset, with its lifecycle."""

    __tablename__ = "finding"
    __table_args__ = (
        UniqueConstraint("asset_id", "package_id", "advisory_id", name="uq_finding"),
        Index("ix_finding_asset_state", "asset_id", "state"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # No foreign keys on purpose (migration 0006): findings are derived rows written in
    # bulk; the store deletes them with their asset, packages and advisories stay.
    asset_id: Mapped[int] = mapped_column(Integer)
    package_id: Mapped[int] = mapped_column(Integer)
    advisory_id: Mapped[int] = mapped_column(Integer, index=True)
    state: Mapped[str] = mapped_column(String(20), default="open")
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    risk_score: Mapped[float] = mapped_column(Float, default=0.0)
    priority: Mapped[str] = mapped_column(String(2), default="P4")
    due_date: Mapped[date | None] = mapped_column(Date, nullable=True)


# ------------------------------------------------------------------ identity and access


class UserRow(Base):
    """A person who signs in. ``role`` is admin, operator, approver or auditor."""

    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_login: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class ApiTokenRow(Base):
    """A scoped, expiring API token; only the sha256 of its secret is kept."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_used: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class SessionRow(Base):
    """A browser session; the cookie carries the secret, the table its sha256."""

    __tablename__ = "web_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ip: Mapped[str] = mapped_column(String(64), default="")


class LoginAttemptRow(Base):
    """A failed sign-in, for rate limiting across server processes."""

    __tablename__ = "login_attempt"
    __table_args__ = (Index("ix_login_attempt_user_time", "username", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100))
    ip: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class EnrollmentTokenRow(Base):
    """An admin-issued token agents exchange for a host credential."""

    __tablename__ = "enrollment_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    note: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    max_uses: Mapped[int] = mapped_column(Integer, default=1)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Assets enrolled with this token get these (tags, environment, criticality…).
    defaults: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # A re-enroll token: single use, attaches to this asset only and replaces its agent.
    asset_id: Mapped[int | None] = mapped_column(
        ForeignKey("asset.id", ondelete="CASCADE"), nullable=True
    )


class AgentCredentialRow(Base):
    """A per-host agent credential; only the sha256 of its secret is kept."""

    __tablename__ = "agent_credential"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("asset.id", ondelete="CASCADE"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    enrollment_token_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_seen: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    agent_version: Mapped[str] = mapped_column(String(40), default="")
    # The server may ask for the next check-in sooner than the agent's interval.
    checkin_hint: Mapped[int | None] = mapped_column(Integer, nullable=True)


class AgentReportRow(Base):
    """A raw agent report (gzip JSON), kept as received and processed afterwards."""

    __tablename__ = "agent_report"
    __table_args__ = (Index("ix_agent_report_status", "status", "received_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("asset.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20), default="inventory")
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    error: Mapped[str] = mapped_column(Text, default="")
    # When a processor claimed it: a report still 'processing' long after was claimed
    # by a process that died, and goes back to 'pending' (services.agents.requeue_stale).
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class AuditEventRow(Base):
    """One audited mutation. Append-only (database triggers refuse UPDATE, DELETE and
    TRUNCATE) and chained: ``hash = HMAC-SHA256(audit key, prev_hash || canonical JSON
    of the event)``, the key named by ``key_id``. Events written before the chain was
    keyed have an empty ``key_id`` and ``hash = sha256(prev_hash || JSON)``."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), unique=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(120))
    actor_type: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(80), index=True)
    target_type: Mapped[str] = mapped_column(String(40), default="")
    target_id: Mapped[str] = mapped_column(String(120), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(16), default="", server_default="")


class AuditHeadRow(Base):
    """The single row that serializes audit appends and remembers the chain's head (and
    the id of the key it is written with). Triggers refuse DELETE and TRUNCATE."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    last_hash: Mapped[str] = mapped_column(String(64), default="0" * 64)
    key_id: Mapped[str] = mapped_column(String(16), default="", server_default="")


# -------------------------------------------------------------------------- groups


class AssetGroupRow(Base):
    """A named set of assets: static members, or a saved filter (dynamic)."""

    __tablename__ = "asset_group"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(10), default="static")
    filter: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AssetGroupMember(Base):
    """Materialized membership (recomputed for dynamic groups as assets change)."""

    __tablename__ = "asset_group_member"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("asset_group.id", ondelete="CASCADE"), primary_key=True
    )
    asset_id: Mapped[int] = mapped_column(
        ForeignKey("asset.id", ondelete="CASCADE"), primary_key=True, index=True
    )


# ----------------------------------------------------------------------- deployment


class MaintenanceWindowRow(Base):
    """An RFC 5545 RRULE in an IANA zone with a duration, and blackout dates."""

    __tablename__ = "maintenance_window"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    rrule: Mapped[str] = mapped_column(String(500))
    timezone: Mapped[str] = mapped_column(String(60))
    duration_minutes: Mapped[int] = mapped_column(Integer)
    blackouts: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class GroupWindow(Base):
    """Windows attached to a group: its hosts are patched only inside them."""

    __tablename__ = "group_window"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("asset_group.id", ondelete="CASCADE"), primary_key=True
    )
    window_id: Mapped[int] = mapped_column(
        ForeignKey("maintenance_window.id", ondelete="CASCADE"), primary_key=True
    )


class PatchBaselineRow(Base):
    """Which updates are approved for which groups."""

    __tablename__ = "patch_baseline"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    rules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    groups: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RiskExceptionRow(Base):
    """A risk acceptance of (advisory and/or package) x (asset or group) until expiry."""

    __tablename__ = "risk_exception"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    advisory: Mapped[str] = mapped_column(String(200), default="")
    package: Mapped[str] = mapped_column(String(300), default="")
    asset_id: Mapped[int | None] = mapped_column(
        ForeignKey("asset.id", ondelete="CASCADE"), nullable=True
    )
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("asset_group.id", ondelete="CASCADE"), nullable=True
    )
    justification: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(120))
    #: The users behind ``requested_by`` / ``approved_by``: four eyes compares these
    #: (None for the system, and for rows older than migration 0009 that named no user).
    requested_by_user: Mapped[int | None] = mapped_column(Integer, nullable=True)
    approved_by: Mapped[str] = mapped_column(String(120), default="")
    approved_by_user: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ScriptPackageRow(Base):
    """Third-party software without a repository: an artifact and its commands."""

    __tablename__ = "script_package"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    version: Mapped[str] = mapped_column(String(60))
    sha256: Mapped[str] = mapped_column(String(64))
    artifact: Mapped[bytes] = mapped_column(LargeBinary)
    commands: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    __table_args__ = (UniqueConstraint("name", "version", name="uq_script_package"),)


class RolloutRow(Base):
    """A deployment of patches to target groups through rings."""

    __tablename__ = "rollout"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(30), index=True)
    emergency: Mapped[bool] = mapped_column(Boolean, default=False)
    baseline_id: Mapped[int | None] = mapped_column(
        ForeignKey("patch_baseline.id", ondelete="SET NULL"), nullable=True
    )
    selection: Mapped[dict[str, Any]] = mapped_column(default=dict)
    target_groups: Mapped[list[Any]] = mapped_column(default=list)
    dependencies: Mapped[list[Any]] = mapped_column(default=list)
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    windows: Mapped[list[Any]] = mapped_column(default=list)
    requested_by: Mapped[str] = mapped_column(String(120))
    requested_by_user: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    halt_reason: Mapped[str] = mapped_column(Text, default="")


class RolloutRingRow(Base):
    """One ring of a rollout with its limits and state."""

    __tablename__ = "rollout_ring"
    __table_args__ = (UniqueConstraint("rollout_id", "idx", name="uq_rollout_ring"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollout.id", ondelete="CASCADE"))
    idx: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(120))
    members: Mapped[dict[str, Any]] = mapped_column(default=dict)
    windows: Mapped[list[Any]] = mapped_column(default=list)
    concurrency: Mapped[int] = mapped_column(Integer)
    error_budget: Mapped[int] = mapped_column(Integer)
    success_threshold: Mapped[float] = mapped_column(Float, default=1.0)
    soak_minutes: Mapped[int] = mapped_column(Integer, default=0)
    requires_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(30), default="pending")
    approved: Mapped[bool] = mapped_column(Boolean, default=False)
    soak_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    failures_forgiven: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class ApprovalRow(Base):
    """An approval (or rejection) of a rollout or of one ring's promotion."""

    __tablename__ = "approval"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(
        ForeignKey("rollout.id", ondelete="CASCADE"), index=True
    )
    ring_idx: Mapped[int | None] = mapped_column(Integer, nullable=True)
    approver: Mapped[str] = mapped_column(String(120))
    approver_user: Mapped[int | None] = mapped_column(Integer, nullable=True)
    decision: Mapped[str] = mapped_column(String(20))
    comment: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class JobRow(Base):
    """One host's work in a rollout (install, or a rollback of an earlier job)."""

    __tablename__ = "job"
    __table_args__ = (
        UniqueConstraint("rollout_id", "asset_id", "kind", name="uq_job"),
        Index("ix_job_asset_status", "asset_id", "status"),
        Index("ix_job_rollout_status", "rollout_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollout.id", ondelete="CASCADE"))
    ring_idx: Mapped[int] = mapped_column(Integer)
    asset_id: Mapped[int] = mapped_column(ForeignKey("asset.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20), default="install")
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # What the agent receives (docs/agent-jobs.md) — nothing else goes in here.
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Why the job exists (advisories fixed, risk removed): for change records and pages.
    plan: Mapped[dict[str, Any]] = mapped_column(default=dict)
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    not_before: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")


class JobResultRow(Base):
    """An agent's report for one attempt of a job (idempotent on job + attempt)."""

    __tablename__ = "job_result"
    __table_args__ = (UniqueConstraint("job_id", "attempt", name="uq_job_result"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reported_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PolicyRow(Base):
    """Named policy documents (JSON), e.g. the prepared emergency rollout profile."""

    __tablename__ = "policy"

    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_by: Mapped[str] = mapped_column(String(120), default="")
