"""The agent protocol, server side: enrollment, check-in, inventory reports.

Protocol version 1 (docs/agent-protocol.md):

* ``POST /api/agent/v1/enroll`` exchanges an enrollment token for a per-host credential
  (``pwa_<id>_<secret>``; the server keeps only its sha256). An ordinary token never
  attaches to an asset whose agent credential is live; a re-enroll token (bound to one
  asset by an administrator) is the one way to replace a host's agent.
* ``POST /api/agent/v1/checkin`` reports liveness and the inventory's content hash; the
  answer says whether to upload the inventory and when to check in next.
* ``PUT /api/agent/v1/inventory`` uploads the full inventory (gzip JSON, format
  ``patchwarden-inventory/1``). It is validated completely, stored raw, acknowledged
  (202) and processed afterwards in one transaction; a bad report is refused with the
  exact problem and nothing of it is applied.
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    Connection,
    Integer,
    String,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from patchwarden.collect.jsonfmt import check_envelope, inventory_from_json
from patchwarden.core.errors import (
    AuthenticationRequired,
    Conflict,
    InventoryError,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from patchwarden.core.model import Inventory
from patchwarden.server.context import ServerConfig
from patchwarden.server.security import (
    AGENT_PREFIX,
    ENROLL_PREFIX,
    format_token,
    hash_secret,
    new_secret,
    parse_token,
    same_hash,
)
from patchwarden.store import audit
from patchwarden.store.audit import Actor
from patchwarden.store.db import Database
from patchwarden.store.findings import refresh_findings
from patchwarden.store.groups import recompute_for_assets
from patchwarden.store.inventory import store_inventory
from patchwarden.store.models import (
    AgentCredentialRow,
    AgentReportRow,
    AssetRow,
    EnrollmentTokenRow,
    JobRow,
    UtcDateTime,
)

PROTOCOL_VERSION = 1
#: The upload header carrying the inventory's content hash (``Inventory.content_hash``).
INVENTORY_HASH_HEADER = "X-Patchwarden-Inventory-Hash"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_DEFAULT_KEYS = (
    "criticality",
    "exposure",
    "data_class",
    "environment",
    "owner",
    "location",
    "timezone",
    "tags",
)


# ---------------------------------------------------------------- enrollment tokens


def enrollment_json(row: EnrollmentTokenRow) -> dict[str, Any]:
    """The API/CLI form of an enrollment token (never the secret)."""
    return {
        "id": row.id,
        "note": row.note,
        "created_by": row.created_by,
        "created_at": row.created_at.isoformat(),
        "expires_at": row.expires_at.isoformat(),
        "max_uses": row.max_uses,
        "uses": row.uses,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "defaults": row.defaults,
        "asset_id": row.asset_id,
    }


def validate_defaults(defaults: dict[str, Any]) -> dict[str, Any]:
    """Asset defaults an enrollment token may carry."""
    unknown = set(defaults) - set(_DEFAULT_KEYS)
    if unknown:
        raise ValidationFailed(
            f"unknown enrollment defaults: {', '.join(sorted(unknown))}",
            hint=f"allowed: {', '.join(_DEFAULT_KEYS)}",
        )
    if "criticality" in defaults and defaults["criticality"] not in (1, 2, 3, 4, 5):
        raise ValidationFailed("criticality must be 1-5")
    if "exposure" in defaults and defaults["exposure"] not in ("internet", "internal"):
        raise ValidationFailed("exposure must be internet or internal")
    if "tags" in defaults and not (
        isinstance(defaults["tags"], list) and all(isinstance(t, str) for t in defaults["tags"])
    ):
        raise ValidationFailed("tags must be a list of strings")
    return dict(defaults)


def create_enrollment_token(
    session: Session,
    actor: Actor,
    *,
    now: datetime,
    hours: int = 24,
    max_uses: int = 1,
    note: str = "",
    defaults: dict[str, Any] | None = None,
    asset_id: int | None = None,
) -> tuple[EnrollmentTokenRow, str]:
    """Create an enrollment token; returns the row and the secret (shown once).

    With ``asset_id`` it is a re-enroll token: single use, valid for that asset only,
    and the agent enrolling with it replaces the asset's agent (its live credentials
    are revoked then). It carries no defaults: the asset keeps its context.
    """
    if not 1 <= hours <= 24 * 90:
        raise ValidationFailed("enrollment tokens live 1 hour to 90 days")
    if not 1 <= max_uses <= 100_000:
        raise ValidationFailed("max uses must be 1-100000")
    if asset_id is not None:
        if session.get(AssetRow, asset_id) is None:
            raise NotFound(f"no asset with id {asset_id}", hint="see `patchwarden assets list`")
        if max_uses != 1:
            raise ValidationFailed(
                f"a re-enroll token (bound to asset {asset_id}) is single use, not {max_uses}",
                hint="leave out the number of uses",
            )
        if defaults:
            raise ValidationFailed(
                "a re-enroll token carries no asset defaults: the asset keeps its own context",
                hint="change the asset itself (`patchwarden assets set`)",
            )
    secret = new_secret()
    row = EnrollmentTokenRow(
        secret_hash=hash_secret(secret),
        note=note,
        created_by=actor.name,
        created_at=now,
        expires_at=now + timedelta(hours=hours),
        max_uses=max_uses,
        uses=0,
        defaults=validate_defaults(defaults or {}),
        asset_id=asset_id,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "enrollment_token.create",
        now=now,
        target_type="enrollment_token",
        target_id=row.id,
        after=enrollment_json(row),
    )
    return row, format_token(ENROLL_PREFIX, row.id, secret)


def list_enrollment_tokens(session: Session) -> list[EnrollmentTokenRow]:
    """Every enrollment token, oldest first."""
    return list(session.scalars(select(EnrollmentTokenRow).order_by(EnrollmentTokenRow.id)))


def revoke_enrollment_token(
    session: Session, actor: Actor, token_id: int, *, now: datetime
) -> EnrollmentTokenRow:
    """Revoke an enrollment token (credentials already issued stay valid)."""
    row = session.get(EnrollmentTokenRow, token_id)
    if row is None:
        raise NotFound(f"no enrollment token {token_id}")
    before = enrollment_json(row)
    row.revoked_at = row.revoked_at or now
    audit.record(
        session,
        actor,
        "enrollment_token.revoke",
        now=now,
        target_type="enrollment_token",
        target_id=row.id,
        before=before,
        after=enrollment_json(row),
    )
    return row


# ------------------------------------------------------------------------ enrollment


@dataclass(frozen=True, slots=True)
class Enrolled:
    """The answer to a successful enrollment."""

    asset_id: int
    credential_id: int
    credential: str


MACHINE_ID_SERIAL = "machine-id:"


def enroll(
    session: Session,
    *,
    token: str,
    hostname: str,
    fqdn: str,
    machine_id: str,
    agent_version: str,
    ip: str,
    now: datetime,
) -> Enrolled:
    """Exchange an enrollment token for a host credential.

    The token must exist, be unrevoked, unexpired and have uses left; its use count is
    incremented atomically so concurrent enrollments cannot exceed ``max_uses``.

    Which asset the credential is for (docs/agent-protocol.md, "Enroll"):

    * a re-enroll token (bound to an asset) attaches to that asset and replaces its
      agent: the asset's live credentials are revoked, and the event ``agent.replace``
      names them and the administrator who created the token;
    * an ordinary token attaches to the asset recorded with the same machine id when
      that asset has no live agent credential (an agent enrolling again after its
      credential was revoked, or after the asset was known without an agent); when the
      asset's agent is live the enrollment is refused (``Conflict``) and nothing
      changes — a second agent for one system is a duplicate or a takeover, never
      something to do silently. Names are not identities: a hostname or fqdn alone
      never attaches, so any other enrollment creates a new asset.

    An ordinary enrollment never revokes a credential.
    """
    parsed = parse_token(token, ENROLL_PREFIX)
    if parsed is None:
        raise AuthenticationRequired("malformed enrollment token")
    claimed = session.execute(
        update(EnrollmentTokenRow)
        .where(
            EnrollmentTokenRow.id == parsed.row_id,
            EnrollmentTokenRow.revoked_at.is_(None),
            EnrollmentTokenRow.expires_at > now,
            EnrollmentTokenRow.uses < EnrollmentTokenRow.max_uses,
        )
        .values(uses=EnrollmentTokenRow.uses + 1)
        .returning(
            EnrollmentTokenRow.secret_hash,
            EnrollmentTokenRow.defaults,
            EnrollmentTokenRow.asset_id,
            EnrollmentTokenRow.created_by,
        )
    ).first()
    if claimed is None or not same_hash(claimed[0], hash_secret(parsed.secret)):
        raise AuthenticationRequired(
            "enrollment token invalid, expired, revoked or used up",
            hint="ask an administrator for a new enrollment token",
        )
    if not hostname or len(hostname) > 255:
        raise ValidationFailed("enrollment needs the host's name (1-255 characters)")
    defaults: dict[str, Any] = claimed[1] or {}
    bound: int | None = claimed[2]
    actor = Actor(f"agent-enroll:{hostname}", "agent", ip)
    replaced: list[int] = []
    asset: AssetRow | None
    if bound is not None:
        asset = _bound_asset(session, bound, machine_id)
        replaced = _live_credentials(session, asset.id)
    else:
        asset = _machine_asset(session, machine_id)
        if asset is not None and _live_credentials(session, asset.id):
            raise Conflict(
                f"this system (machine id {machine_id}) is already enrolled as asset "
                f"{asset.id}, whose agent credential is live; nothing was changed and the "
                "enrollment token was not used",
                hint=f"to replace that agent, an administrator creates a token for it: "
                f"`patchwarden enroll create --asset {asset.id}`; a different machine "
                "cloned from the same image needs a machine id of its own "
                "(systemd-machine-id-setup)",
            )
    created = asset is None
    if asset is None:
        asset = AssetRow(hostname=hostname, created_at=now, source="agent")
        session.add(asset)
    asset.fqdn = fqdn or asset.fqdn
    if machine_id and (not asset.serial or asset.serial.startswith(MACHINE_ID_SERIAL)):
        asset.serial = MACHINE_ID_SERIAL + machine_id
    asset.source = "agent"
    asset.status = "managed"
    for key, value in defaults.items():
        setattr(asset, key, value)
    asset.last_seen = now
    session.flush()
    if replaced:
        session.execute(
            update(AgentCredentialRow)
            .where(AgentCredentialRow.id.in_(replaced))
            .values(revoked_at=now)
        )
    secret = new_secret()
    credential = AgentCredentialRow(
        asset_id=asset.id,
        secret_hash=hash_secret(secret),
        enrollment_token_id=parsed.row_id,
        created_at=now,
        last_seen=now,
        agent_version=agent_version[:40],
    )
    session.add(credential)
    session.flush()
    event: dict[str, Any] = {
        "hostname": hostname,
        "machine_id": machine_id,
        "enrollment_token": parsed.row_id,
        "credential": credential.id,
    }
    if bound is not None:
        event |= {"authorized_by": claimed[3], "revoked_credentials": replaced}
    else:
        event["asset"] = "created" if created else "matched by machine id"
    audit.record(
        session,
        actor,
        "agent.replace" if bound is not None else "agent.enroll",
        now=now,
        target_type="asset",
        target_id=asset.id,
        after=event,
    )
    recompute_for_assets(session, [asset.id])
    return Enrolled(asset.id, credential.id, format_token(AGENT_PREFIX, credential.id, secret))


def _machine_asset(session: Session, machine_id: str) -> AssetRow | None:
    """The asset recorded with this machine id (locked: concurrent enrollments of one
    system wait for each other), or None."""
    if not machine_id:
        return None
    return session.scalars(
        select(AssetRow)
        .where(AssetRow.serial == MACHINE_ID_SERIAL + machine_id)
        .order_by(AssetRow.id)
        .limit(1)
        .with_for_update()
    ).first()


def _bound_asset(session: Session, asset_id: int, machine_id: str) -> AssetRow:
    """The asset a re-enroll token is bound to, locked.

    Refused (``Conflict``) when the enrolling system is the live agent of *another*
    asset: the token replaces one asset's agent, it does not make a second asset for a
    system that already has one.
    """
    asset = session.scalars(
        select(AssetRow).where(AssetRow.id == asset_id).with_for_update()
    ).first()
    if asset is None:  # the token goes with its asset; kept for a clear answer anyway
        raise NotFound(f"asset {asset_id} of this re-enroll token no longer exists")
    other = _machine_asset(session, machine_id)
    if other is not None and other.id != asset.id and _live_credentials(session, other.id):
        raise Conflict(
            f"this system (machine id {machine_id}) is enrolled as asset {other.id} with a "
            f"live agent; the token is for asset {asset.id}; nothing was changed",
            hint=f"revoke asset {other.id}'s agent first (`patchwarden assets revoke-agent "
            f"{other.id}`), or use a token bound to asset {other.id}",
        )
    return asset


def _live_credentials(session: Session, asset_id: int) -> list[int]:
    """Ids of the asset's unrevoked agent credentials."""
    return list(
        session.scalars(
            select(AgentCredentialRow.id)
            .where(AgentCredentialRow.asset_id == asset_id, AgentCredentialRow.revoked_at.is_(None))
            .order_by(AgentCredentialRow.id)
        )
    )


def revoke_credentials(session: Session, actor: Actor, asset_id: int, *, now: datetime) -> int:
    """Revoke every live credential of an asset: its agent is locked out at once."""
    if session.get(AssetRow, asset_id) is None:
        raise NotFound(f"no asset with id {asset_id}")
    live = _live_credentials(session, asset_id)
    session.execute(
        update(AgentCredentialRow).where(AgentCredentialRow.id.in_(live)).values(revoked_at=now)
    )
    count = len(live)
    audit.record(
        session,
        actor,
        "agent.revoke",
        now=now,
        target_type="asset",
        target_id=asset_id,
        after={"revoked_credentials": count},
    )
    return count


def request_checkin(
    session: Session, actor: Actor, asset_id: int, seconds: int, *, now: datetime
) -> None:
    """Make the asset's agent use a short interval once (5-3600 s)."""
    if session.get(AssetRow, asset_id) is None:
        raise NotFound(f"no asset with id {asset_id}")
    seconds = max(5, min(seconds, 3600))
    session.execute(
        update(AgentCredentialRow)
        .where(AgentCredentialRow.asset_id == asset_id, AgentCredentialRow.revoked_at.is_(None))
        .values(checkin_hint=seconds)
    )
    audit.record(
        session,
        actor,
        "agent.checkin_requested",
        now=now,
        target_type="asset",
        target_id=asset_id,
        after={"seconds": seconds},
    )


# ------------------------------------------------------------------------- check-in


@dataclass(frozen=True, slots=True)
class CheckinAnswer:
    """What the server tells an agent after a check-in."""

    upload_inventory: bool
    next_checkin_seconds: int
    jobs_waiting: int = 0
    inventory_error: str | None = None


def checkin(
    session: Session,
    asset_id: int,
    *,
    inventory_hash: str,
    reboot_required: bool | None,
    uptime_seconds: int | None,
    agent_version: str,
    now: datetime,
    config: ServerConfig,
    checkin_hint: int | None,
) -> CheckinAnswer:
    """Record liveness; ask for the inventory when its hash differs from the stored one."""
    values: dict[str, Any] = {"last_seen": now}
    if reboot_required is not None:
        values["reboot_required"] = reboot_required
    if uptime_seconds is not None:
        values["uptime_seconds"] = uptime_seconds
    row = session.execute(
        update(AssetRow)
        .where(AssetRow.id == asset_id)
        .values(**values)
        .returning(AssetRow.inventory_hash)
    ).first()
    if row is None:
        raise NotFound("this agent's asset was deleted; re-enroll the agent")
    if checkin_hint:
        session.execute(
            update(AgentCredentialRow)
            .where(AgentCredentialRow.asset_id == asset_id)
            .values(checkin_hint=None)
        )
    if agent_version:
        session.execute(
            update(AgentCredentialRow)
            .where(AgentCredentialRow.asset_id == asset_id, AgentCredentialRow.revoked_at.is_(None))
            .values(agent_version=agent_version[:40])
        )
    waiting = (
        session.scalar(
            select(func.count())
            .select_from(JobRow)
            .where(JobRow.asset_id == asset_id, JobRow.status == "ready")
        )
        or 0
    )
    return _answer(
        session,
        asset_id,
        inventory_hash,
        stored_hash=row[0],
        waiting=waiting,
        interval=checkin_hint or config.checkin_interval,
    )


def _answer(
    session: Session | Connection,
    asset_id: int,
    inventory_hash: str,
    *,
    stored_hash: str,
    waiting: int,
    interval: int,
) -> CheckinAnswer:
    upload = False
    inventory_error = None
    if inventory_hash and inventory_hash != stored_hash:
        # Already on its way (stored, being processed) or already refused: no new upload.
        latest = session.execute(
            select(AgentReportRow.status, AgentReportRow.error)
            .where(
                AgentReportRow.asset_id == asset_id,
                AgentReportRow.content_hash == inventory_hash,
            )
            .order_by(AgentReportRow.id.desc())
            .limit(1)
        ).first()
        if latest is None or latest[0] in ("processed", "superseded"):
            # New, or an inventory the host had before (e.g. after a rollback): the
            # stored one is out of date either way.
            upload = True
        elif latest[0] == "failed":
            inventory_error = latest[1] or "the server could not process this inventory"
        # pending / processing: already on its way, no second upload
    if waiting:
        interval = min(interval, 30)  # come back soon while work is being handed out
    return CheckinAnswer(
        upload_inventory=upload,
        next_checkin_seconds=interval,
        jobs_waiting=waiting,
        inventory_error=inventory_error,
    )


# The whole check-in on PostgreSQL in one round trip: authenticate the credential (and
# take its pending check-in hint), record liveness on the credential and the asset, read
# the stored inventory hash and count the released jobs.
_CHECKIN_STATEMENT = text(
    """
WITH old AS (
    SELECT id, checkin_hint FROM agent_credential
    WHERE id = :credential_id AND secret_hash = :secret_hash AND revoked_at IS NULL
    FOR UPDATE
), cred AS (
    UPDATE agent_credential AS c SET
        last_seen = :now,
        agent_version = CASE WHEN :agent_version = '' THEN c.agent_version
                             ELSE :agent_version END,
        checkin_hint = NULL
    FROM old WHERE c.id = old.id
    RETURNING c.asset_id, old.checkin_hint
), host AS (
    UPDATE asset SET
        last_seen = :now,
        reboot_required = COALESCE(:reboot_required, asset.reboot_required),
        uptime_seconds = COALESCE(:uptime_seconds, asset.uptime_seconds)
    WHERE asset.id = (SELECT asset_id FROM cred)
    RETURNING asset.id, asset.inventory_hash
)
SELECT cred.asset_id, cred.checkin_hint, host.id, host.inventory_hash,
    (SELECT count(*) FROM job WHERE job.asset_id = cred.asset_id AND job.status = 'ready')
FROM cred LEFT JOIN host ON host.id = cred.asset_id
"""
).bindparams(
    bindparam("now", type_=UtcDateTime()),
    bindparam("reboot_required", type_=Boolean()),
    bindparam("uptime_seconds", type_=Integer()),
    bindparam("agent_version", type_=String()),
)


def checkin_with_credential(
    database: Database,
    credential: str,
    *,
    inventory_hash: str,
    reboot_required: bool | None,
    uptime_seconds: int | None,
    agent_version: str,
    now: datetime,
    config: ServerConfig,
) -> tuple[int, CheckinAnswer]:
    """Authenticate an agent's credential and check it in, in one transaction.

    Returns the asset id and the answer; ``AuthenticationRequired`` for a missing,
    invalid or revoked credential. On PostgreSQL the common case is one statement (a
    second only when the inventory hash changed); elsewhere the same work runs as
    separate statements. Used by the check-in route, the agents' most frequent call.
    """
    token = parse_token(credential, AGENT_PREFIX) if credential else None
    if token is None:
        raise AuthenticationRequired("agent credential missing (Authorization: Bearer pwa_…)")
    secret_hash = hash_secret(token.secret)
    if database.engine.dialect.name != "postgresql":
        with database.session() as session:
            asset_id, hint = authenticate_agent_row(session, token.row_id, secret_hash, now)
            return asset_id, checkin(
                session,
                asset_id,
                inventory_hash=inventory_hash,
                reboot_required=reboot_required,
                uptime_seconds=uptime_seconds,
                agent_version=agent_version,
                now=now,
                config=config,
                checkin_hint=hint,
            )
    with database.engine.begin() as connection:
        row = connection.execute(
            _CHECKIN_STATEMENT,
            {
                "credential_id": token.row_id,
                "secret_hash": secret_hash,
                "now": now,
                "agent_version": agent_version[:40],
                "reboot_required": reboot_required,
                "uptime_seconds": uptime_seconds,
            },
        ).first()
        if row is None:
            raise _invalid_credential()
        asset_id, hint, host_id, stored_hash, waiting = row
        if host_id is None:
            raise NotFound("this agent's asset was deleted; re-enroll the agent")
        answer = _answer(
            connection,
            asset_id,
            inventory_hash,
            stored_hash=stored_hash,
            waiting=waiting or 0,
            interval=hint or config.checkin_interval,
        )
        return asset_id, answer


def authenticate_agent_row(
    session: Session, credential_id: int, secret_hash: str, now: datetime
) -> tuple[int, int | None]:
    """Check an agent credential and record its use: (asset id, pending check-in hint)."""
    row = session.execute(
        update(AgentCredentialRow)
        .where(
            AgentCredentialRow.id == credential_id,
            AgentCredentialRow.secret_hash == secret_hash,
            AgentCredentialRow.revoked_at.is_(None),
        )
        .values(last_seen=now)
        .returning(AgentCredentialRow.asset_id, AgentCredentialRow.checkin_hint)
    ).first()
    if row is None:
        raise _invalid_credential()
    return row[0], row[1]


def _invalid_credential() -> AuthenticationRequired:
    return AuthenticationRequired("agent credential invalid or revoked", hint="re-enroll the agent")


def _inflate(body: bytes, *, encoding: str, config: ServerConfig) -> bytes:
    """The upload's JSON bytes: gunzipped when gzip, within the size limits."""
    if len(body) > config.max_inventory_bytes:
        raise PayloadTooLarge(
            f"inventory upload of {len(body)} bytes exceeds the {config.max_inventory_bytes} limit"
        )
    if not (encoding == "gzip" or body[:2] == b"\x1f\x8b"):
        return body
    try:
        decompressor = zlib.decompressobj(wbits=31)
        raw = decompressor.decompress(body, config.max_inventory_uncompressed + 1)
    except zlib.error as exc:
        raise InventoryError(f"inventory is not valid gzip: {exc}") from exc
    if len(raw) > config.max_inventory_uncompressed or decompressor.unconsumed_tail:
        raise PayloadTooLarge("inventory is too large once decompressed")
    if not decompressor.eof:
        raise InventoryError("inventory gzip stream is truncated")
    return raw


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InventoryError(f"inventory is not valid JSON: {exc}") from exc


def decode_inventory(body: bytes, *, encoding: str, config: ServerConfig) -> Inventory:
    """Decompress and validate an uploaded inventory; ``InventoryError`` on any problem."""
    return inventory_from_json(
        _json(_inflate(body, encoding=encoding, config=config)), source="agent upload"
    )


def accept_inventory(
    session: Session,
    asset_id: int,
    body: bytes,
    *,
    encoding: str,
    now: datetime,
    config: ServerConfig,
    declared_hash: str | None = None,
) -> AgentReportRow:
    """Check an upload and store it raw for processing; returns the report row.

    With ``declared_hash`` (the inventory's content hash as the agent computed it, sent
    in ``X-Patchwarden-Inventory-Hash``) only the gzip stream and the document's top
    level are checked here; every package field is validated, and the hash verified,
    when the report is applied — a report failing then is refused at the agent's next
    check-in. Without it the whole document is validated before the report is stored.
    """
    if declared_hash is None:
        content_hash = decode_inventory(body, encoding=encoding, config=config).content_hash()
    else:
        if not _SHA256_HEX.fullmatch(declared_hash):
            raise InventoryError(
                f"{INVENTORY_HASH_HEADER} must be the inventory's content hash "
                f"(64 lowercase hex digits), got {declared_hash[:80]!r}"
            )
        check_envelope(
            _json(_inflate(body, encoding=encoding, config=config)), source="agent upload"
        )
        content_hash = declared_hash
    duplicate = session.scalars(
        select(AgentReportRow).where(
            AgentReportRow.asset_id == asset_id,
            AgentReportRow.content_hash == content_hash,
            AgentReportRow.status.in_(["pending", "processing"]),
        )
    ).first()
    if duplicate is not None:
        return duplicate  # a re-sent upload (agent died before removing its spool file)
    stored = body if encoding == "gzip" or body[:2] == b"\x1f\x8b" else gzip.compress(body)
    report = AgentReportRow(
        asset_id=asset_id,
        kind="inventory",
        payload=stored,
        content_hash=content_hash,
        received_at=now,
        status="pending",
    )
    session.add(report)
    session.flush()
    return report


def process_report(database: Database, report_id: int, *, now: datetime) -> str:
    """Apply one pending report in one transaction; returns its final status.

    A report that fails is marked ``failed`` with the reason (in a second transaction);
    nothing of it is applied. A report with a newer report of the same host applied,
    being applied or waiting is ``superseded`` and not applied: an inventory is a
    whole snapshot, and under a backlog (or with server processes applying reports of
    one host in another order) the older one would overwrite the newer.
    """
    with database.session() as session:
        claimed = session.execute(
            update(AgentReportRow)
            .where(AgentReportRow.id == report_id, AgentReportRow.status == "pending")
            .values(status="processing", claimed_at=now)
            .returning(AgentReportRow.asset_id, AgentReportRow.payload, AgentReportRow.content_hash)
        ).first()
    if claimed is None:
        return "skipped"
    asset_id, payload, declared_hash = claimed
    try:
        with database.session() as session:
            newer = _newer_report(session, asset_id, report_id)
            if newer is not None:
                _finish_report(
                    session, report_id, "superseded", now, error=f"report {newer} is newer"
                )
                return "superseded"
            inventory = decode_inventory(
                payload,
                encoding="gzip",
                config=ServerConfig(
                    max_inventory_bytes=len(payload) + 1,
                    max_inventory_uncompressed=1 << 31,
                ),
            )
            content_hash = inventory.content_hash()
            if content_hash != declared_hash:
                raise InventoryError(
                    f"the inventory's content hash is {content_hash}, its upload declared "
                    f"{declared_hash} ({INVENTORY_HASH_HEADER}); nothing was applied",
                    hint="the agent and the server must compute the hash the same way: "
                    "upgrade the agent",
                )
            stored = store_inventory(
                session,
                inventory,
                now=now,
                asset_id=asset_id,
                source="agent",
                content_hash=content_hash,
            )
            refresh_findings(
                session, now=now, asset_ids=[asset_id], packages=stored.added + stored.removed
            )
            recompute_for_assets(session, [asset_id])
            _finish_report(session, report_id, "processed", now)
            audit.record(
                session,
                Actor(f"agent:{asset_id}", "agent"),
                "agent.inventory",
                now=now,
                target_type="asset",
                target_id=asset_id,
                after={"packages": len(inventory.packages), "hash": content_hash},
            )
        return "processed"
    except Exception as exc:
        with database.session() as session:
            _finish_report(session, report_id, "failed", now, error=f"{type(exc).__name__}: {exc}")
        if isinstance(exc, (InventoryError, ValidationFailed)):
            return "failed"
        raise


def _newer_report(session: Session, asset_id: int, report_id: int) -> int | None:
    """A report of ``asset_id`` newer than ``report_id`` that is waiting, being applied
    or applied. The asset's row is locked first, so that of two processes applying
    reports of one host the second waits for the first and then sees its report."""
    session.execute(select(AssetRow.id).where(AssetRow.id == asset_id).with_for_update())
    return session.scalar(
        select(AgentReportRow.id)
        .where(
            AgentReportRow.asset_id == asset_id,
            AgentReportRow.id > report_id,
            AgentReportRow.status.in_(["pending", "processing", "processed"]),
        )
        .limit(1)
    )


def _finish_report(
    session: Session, report_id: int, status: str, now: datetime, *, error: str | None = None
) -> None:
    """Record a report's final status; its payload is no longer needed unless it failed."""
    values: dict[str, Any] = {"status": status, "processed_at": now}
    if error is not None:
        values["error"] = error[:2000]
    if status != "failed":
        values["payload"] = b""
    session.execute(update(AgentReportRow).where(AgentReportRow.id == report_id).values(**values))


def pending_reports(
    database: Database,
    *,
    now: datetime,
    older_than: timedelta | None = None,
    limit: int = 100,
    share: tuple[int, int] | None = None,
) -> list[int]:
    """Ids of pending reports, oldest first (received ``older_than`` ago, when given).

    ``share`` = (index, count) keeps the ids whose remainder by ``count`` is ``index``:
    ``count`` report processes polling one database each take their own share instead
    of all racing for the same oldest report.
    """
    with database.session() as session:
        query = select(AgentReportRow.id).where(AgentReportRow.status == "pending")
        if older_than is not None:
            query = query.where(AgentReportRow.received_at <= now - older_than)
        if share is not None:
            index, count = share
            query = query.where(AgentReportRow.id % count == index)
        return list(session.scalars(query.order_by(AgentReportRow.id).limit(limit)))


#: A report claimed longer ago than this and still 'processing' was claimed by a
#: process that died (applying one takes well under a second, a 200,000-package one
#: some seconds): ``requeue_stale`` hands it back.
REPORT_LEASE = timedelta(minutes=10)


def requeue_stale(database: Database, *, now: datetime, lease: timedelta = REPORT_LEASE) -> int:
    """Return reports left 'processing' by a dead process to 'pending'; how many.

    Reports claimed before claim times were recorded (no ``claimed_at``) count as stale.
    Applying one twice is harmless: the second run finds the inventory already stored.
    """
    with database.session() as session:
        result = session.execute(
            update(AgentReportRow)
            .where(
                AgentReportRow.status == "processing",
                or_(
                    AgentReportRow.claimed_at.is_(None),
                    AgentReportRow.claimed_at < now - lease,
                ),
            )
            .values(status="pending", claimed_at=None)
        )
        return int(getattr(result, "rowcount", 0) or 0)
