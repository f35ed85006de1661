"""The audit log: append-only, hash-chained, verifiable.

Every mutation appends one event in the *same* transaction as the change it records,
so an event exists exactly when its change committed. Appends are serialized by
updating the single ``audit_head`` row first (a row lock on PostgreSQL, the write lock
on SQLite); the event's hash covers the previous hash and the canonical JSON of its
fields, so editing, deleting or reordering any event breaks every later hash.
Database triggers refuse UPDATE and DELETE on ``audit_event`` as well.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from patchwarden.store.models import AuditEventRow, AuditHeadRow

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something: a user, an API token, an agent, the CLI or the system.

    ``user_id`` is the patchwarden user behind a user, token or CLI actor (None for
    agents and the system); four-eyes rules compare it, never the name.
    """

    name: str
    kind: str  # user, token, agent, cli, system
    ip: str = ""
    user_id: int | None = None


SYSTEM = Actor("patchwarden", "system")


def _canonical(fields: dict[str, Any]) -> bytes:
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS, default=str)


def event_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """sha256 over the previous hash and the canonical JSON of an event's fields."""
    return hashlib.sha256(prev_hash.encode() + _canonical(fields)).hexdigest()


def _fields(row: AuditEventRow) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "at": row.at.isoformat(),
        "actor": row.actor,
        "actor_type": row.actor_type,
        "action": row.action,
        "target_type": row.target_type,
        "target_id": row.target_id,
        "ip": row.ip,
        "before": row.before,
        "after": row.after,
    }


def record(
    session: Session,
    actor: Actor,
    action: str,
    *,
    now: datetime,
    target_type: str = "",
    target_id: str | int = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEventRow:
    """Append one event to the chain (in the caller's transaction)."""
    head = session.execute(
        update(AuditHeadRow)
        .where(AuditHeadRow.id == 1)
        .values(seq=AuditHeadRow.seq + 1)
        .returning(AuditHeadRow.seq, AuditHeadRow.last_hash)
    ).one()
    seq, prev_hash = head
    row = AuditEventRow(
        seq=seq,
        at=now,
        actor=actor.name,
        actor_type=actor.kind,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        ip=actor.ip,
        before=before,
        after=after,
        prev_hash=prev_hash,
        hash="",
    )
    # Round-trip JSON now so the hash covers exactly what the database will return.
    row.before = orjson.loads(_canonical(before)) if before is not None else None
    row.after = orjson.loads(_canonical(after)) if after is not None else None
    row.hash = event_hash(prev_hash, _fields(row))
    session.add(row)
    session.execute(update(AuditHeadRow).where(AuditHeadRow.id == 1).values(last_hash=row.hash))
    session.flush()
    return row


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of checking the chain."""

    ok: bool
    events: int
    problem: str = ""
    bad_seq: int | None = None


def verify(session: Session) -> VerifyResult:
    """Recompute the chain from the first event; report the first break."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    for row in session.scalars(select(AuditEventRow).order_by(AuditEventRow.seq)):
        count += 1
        if row.seq != expected_seq:
            return VerifyResult(
                False, count, f"event seq {expected_seq} is missing (found {row.seq})", row.seq
            )
        if row.prev_hash != prev:
            return VerifyResult(
                False, count, f"event {row.seq} does not follow its predecessor", row.seq
            )
        if event_hash(prev, _fields(row)) != row.hash:
            return VerifyResult(
                False, count, f"event {row.seq} was altered after it was written", row.seq
            )
        prev = row.hash
        expected_seq += 1
    head = session.get(AuditHeadRow, 1)
    if head is not None and (head.seq != count or head.last_hash != prev):
        return VerifyResult(
            False,
            count,
            f"the chain head records {head.seq} events but {count} remain: "
            "events were removed from the end",
            head.seq,
        )
    return VerifyResult(True, count)


def event_json(row: AuditEventRow) -> dict[str, Any]:
    """One event as exported (JSON lines) and served by the API."""
    return {**_fields(row), "prev_hash": row.prev_hash, "hash": row.hash}


def iter_events(
    session: Session, *, after_seq: int = 0, batch: int = 1000
) -> Iterator[AuditEventRow]:
    """Every event in order, fetched in batches (for export)."""
    last = after_seq
    while True:
        rows = list(
            session.scalars(
                select(AuditEventRow)
                .where(AuditEventRow.seq > last)
                .order_by(AuditEventRow.seq)
                .limit(batch)
            )
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
