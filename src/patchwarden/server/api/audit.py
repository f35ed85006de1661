"""The audit log: listing and verification."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select

from patchwarden.server.auth import (
    DbSession,
    Permission,
    Principal,
    TransactionalRoute,
    context,
)
from patchwarden.server.context import AppContext
from patchwarden.server.types import Limit, Offset, Text
from patchwarden.store.audit import event_json, read_checkpoint_lines, verify
from patchwarden.store.models import AuditEventRow

router = APIRouter(route_class=TransactionalRoute, prefix="/api/v1/audit", tags=["audit"])

Auditor = Annotated[Principal, Depends(Permission("audit:read"))]


@router.get("")
def events(
    _who: Auditor,
    session: DbSession,
    action: Annotated[Text, Query(max_length=200)] = "",
    actor: Annotated[Text, Query(max_length=300)] = "",
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Audit events, newest first."""
    query = select(AuditEventRow)
    if action:
        query = query.where(AuditEventRow.action == action)
    if actor:
        query = query.where(AuditEventRow.actor == actor)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(AuditEventRow.seq.desc()).limit(limit).offset(offset))
    items = [event_json(r) for r in rows]
    next_offset = offset + limit if offset + limit < total else None
    return {
        "items": items,
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_offset": next_offset,
    }


@router.get("/verify")
def verify_chain(
    _who: Auditor, session: DbSession, ctx: Annotated[AppContext, Depends(context)]
) -> dict[str, Any]:
    """Recompute the keyed chain and check it against the server's checkpoint file (when
    it has written one); ``ok`` is false with the first problem otherwise."""
    path = ctx.config.audit_checkpoint_file
    lines = read_checkpoint_lines(path) if path is not None and path.exists() else None
    return verify(session, checkpoints=lines).as_json()
