"""Asset groups: static or dynamic (filters), with members."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from patchwarden.server.auth import DbSession, Permission, Principal, TransactionalRoute, context
from patchwarden.server.openapi import errors
from patchwarden.server.services.assets import AssetFilter, list_assets
from patchwarden.server.types import Id, JsonObject, Limit, Offset, Text
from patchwarden.store.groups import (
    create_group,
    delete_group,
    get_group,
    group_json,
    member_count,
    set_static_members,
    update_group,
)
from patchwarden.store.models import AssetGroupRow

router = APIRouter(route_class=TransactionalRoute, prefix="/api/v1/groups", tags=["groups"])

Reader = Annotated[Principal, Depends(Permission("read"))]
Writer = Annotated[Principal, Depends(Permission("groups:write"))]


class NewGroup(BaseModel):
    """A group to create: ``members`` (static) or ``filter`` (dynamic)."""

    name: Text = Field(..., max_length=120)
    description: Text = Field("", max_length=2000)
    filter: JsonObject | None = None
    members: list[Id] = Field(default_factory=list, max_length=100_000)


class GroupChange(BaseModel):
    """Changes to a group."""

    description: Text | None = Field(None, max_length=2000)
    filter: JsonObject | None = None


class MemberChange(BaseModel):
    """Static membership changes."""

    add: list[Id] = Field(default_factory=list, max_length=100_000)
    remove: list[Id] = Field(default_factory=list, max_length=100_000)


@router.get("")
def list_groups(_who: Reader, session: DbSession) -> dict[str, Any]:
    """Every group with its member count."""
    groups = list(session.scalars(select(AssetGroupRow).order_by(AssetGroupRow.name)))
    items = [group_json(g, member_count(session, g.id)) for g in groups]
    return {"items": items, "total": len(items)}


@router.post("", status_code=201, responses=errors(404, 409))
def new_group(body: NewGroup, request: Request, who: Writer, session: DbSession) -> dict[str, Any]:
    """Create a group."""
    group = create_group(
        session,
        who.actor(),
        name=body.name,
        now=context(request).now(),
        description=body.description,
        group_filter=body.filter,
        members=body.members,
    )
    return group_json(group, member_count(session, group.id))


@router.get("/{group_id}")
def one_group(group_id: Id, _who: Reader, session: DbSession) -> dict[str, Any]:
    """One group."""
    group = get_group(session, group_id)
    return group_json(group, member_count(session, group.id))


@router.patch("/{group_id}", responses=errors(409))
def change_group(
    group_id: Id, body: GroupChange, request: Request, who: Writer, session: DbSession
) -> dict[str, Any]:
    """Change a group's description or (dynamic) filter; membership is recomputed."""
    group = get_group(session, group_id)
    update_group(
        session,
        who.actor(),
        group,
        now=context(request).now(),
        description=body.description,
        group_filter=body.filter,
    )
    return group_json(group, member_count(session, group.id))


@router.delete("/{group_id}")
def remove_group(group_id: Id, request: Request, who: Writer, session: DbSession) -> dict[str, str]:
    """Delete a group (its assets stay)."""
    delete_group(session, who.actor(), get_group(session, group_id), now=context(request).now())
    return {"status": "deleted"}


@router.get("/{group_id}/members")
def members(
    group_id: Id,
    request: Request,
    _who: Reader,
    session: DbSession,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The group's member assets."""
    get_group(session, group_id)
    f = AssetFilter(group=group_id)
    return list_assets(
        session, f, limit=limit, offset=offset, today=context(request).now().date()
    ).to_json()


@router.post("/{group_id}/members", responses=errors(409))
def change_members(
    group_id: Id, body: MemberChange, request: Request, who: Writer, session: DbSession
) -> dict[str, Any]:
    """Add or remove members of a static group."""
    group = get_group(session, group_id)
    set_static_members(
        session, who.actor(), group, now=context(request).now(), add=body.add, remove=body.remove
    )
    return group_json(group, member_count(session, group.id))
