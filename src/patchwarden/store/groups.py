"""Asset groups: static members or saved filters, with materialized membership."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from patchwarden.core.errors import Conflict, NotFound, ValidationFailed
from patchwarden.core.groups import AssetFacts, matches, validate_filter
from patchwarden.store import audit
from patchwarden.store.audit import Actor
from patchwarden.store.bulk import chunks, insert_rows, one_of
from patchwarden.store.lookup import by_id_or_name
from patchwarden.store.models import AssetGroupMember, AssetGroupRow, AssetRow


def facts(asset: AssetRow) -> AssetFacts:
    """The facts a group filter can see about an asset row."""
    return AssetFacts(
        hostname=asset.hostname,
        os_id=asset.os_id,
        ecosystem=asset.os_ecosystem,
        environment=asset.environment,
        location=asset.location,
        kind=asset.kind,
        exposure=asset.exposure,
        criticality=asset.criticality,
        tags=tuple(asset.tags),
        source=asset.source,
    )


def get_group(session: Session, ident: int | str) -> AssetGroupRow:
    """A group by id or name, or NotFound."""
    return by_id_or_name(
        session, AssetGroupRow, ident, name_column=AssetGroupRow.name, what="asset group"
    )


def group_json(group: AssetGroupRow, members: int | None = None) -> dict[str, Any]:
    """The API/CLI form of a group."""
    out: dict[str, Any] = {
        "id": group.id,
        "name": group.name,
        "description": group.description,
        "kind": group.kind,
        "filter": group.filter,
        "created_at": group.created_at.isoformat(),
        "updated_at": group.updated_at.isoformat(),
    }
    if members is not None:
        out["members"] = members
    return out


def member_count(session: Session, group_id: int) -> int:
    """How many assets a group has."""
    return (
        session.scalar(
            select(func.count())
            .select_from(AssetGroupMember)
            .where(AssetGroupMember.group_id == group_id)
        )
        or 0
    )


def groups_with_counts(session: Session) -> list[tuple[AssetGroupRow, int]]:
    """Every group, by name, with its member count (one query)."""
    rows = session.execute(
        select(AssetGroupRow, func.count(AssetGroupMember.asset_id))
        .outerjoin(AssetGroupMember, AssetGroupMember.group_id == AssetGroupRow.id)
        .group_by(AssetGroupRow.id)
        .order_by(AssetGroupRow.name)
    )
    return [(group, count) for group, count in rows]


def create_group(
    session: Session,
    actor: Actor,
    *,
    name: str,
    now: datetime,
    description: str = "",
    group_filter: dict[str, Any] | None = None,
    members: Sequence[int] = (),
) -> AssetGroupRow:
    """Create a static group (``members``) or a dynamic one (``group_filter``)."""
    name = name.strip()
    if not name or len(name) > 120:
        raise ValidationFailed("a group name must have 1-120 characters")
    if session.scalars(select(AssetGroupRow.id).where(AssetGroupRow.name == name)).first():
        raise Conflict(f"an asset group named {name!r} already exists")
    if group_filter is not None and members:
        raise ValidationFailed("a group is either static (members) or dynamic (filter), not both")
    kind = "dynamic" if group_filter is not None else "static"
    clean = validate_filter(group_filter) if group_filter is not None else {}
    group = AssetGroupRow(
        name=name, description=description, kind=kind, filter=clean, created_at=now, updated_at=now
    )
    session.add(group)
    session.flush()
    if kind == "dynamic":
        recompute_group(session, group)
    else:
        _change_static(session, group, add=members, remove=())
    audit.record(
        session,
        actor,
        "group.create",
        now=now,
        target_type="group",
        target_id=group.id,
        after=group_json(group, member_count(session, group.id)),
    )
    return group


def update_group(
    session: Session,
    actor: Actor,
    group: AssetGroupRow,
    *,
    now: datetime,
    description: str | None = None,
    group_filter: dict[str, Any] | None = None,
) -> AssetGroupRow:
    """Change a group's description or (dynamic groups) its filter."""
    before = group_json(group, member_count(session, group.id))
    if description is not None:
        group.description = description
    if group_filter is not None:
        if group.kind != "dynamic":
            raise ValidationFailed(f"group {group.name!r} is static: change its members instead")
        group.filter = validate_filter(group_filter)
        recompute_group(session, group)
    group.updated_at = now
    audit.record(
        session,
        actor,
        "group.update",
        now=now,
        target_type="group",
        target_id=group.id,
        before=before,
        after=group_json(group, member_count(session, group.id)),
    )
    return group


def delete_group(session: Session, actor: Actor, group: AssetGroupRow, *, now: datetime) -> None:
    """Delete a group; its assets stay."""
    before = group_json(group, member_count(session, group.id))
    session.execute(delete(AssetGroupMember).where(AssetGroupMember.group_id == group.id))
    session.delete(group)
    audit.record(
        session,
        actor,
        "group.delete",
        now=now,
        target_type="group",
        target_id=before["id"],
        before=before,
    )


def _existing_assets(session: Session, asset_ids: Iterable[int]) -> set[int]:
    found: set[int] = set()
    for batch in chunks(sorted(set(asset_ids))):
        found.update(
            session.scalars(select(AssetRow.id).where(one_of(session, AssetRow.id, batch)))
        )
    return found


def set_static_members(
    session: Session,
    actor: Actor,
    group: AssetGroupRow,
    *,
    now: datetime,
    add: Sequence[int] = (),
    remove: Sequence[int] = (),
) -> None:
    """Add and remove members of a static group."""
    _change_static(session, group, add=add, remove=remove)
    audit.record(
        session,
        actor,
        "group.members",
        now=now,
        target_type="group",
        target_id=group.id,
        after={"add": sorted(set(add)), "remove": sorted(set(remove))},
    )


def _change_static(
    session: Session, group: AssetGroupRow, *, add: Sequence[int], remove: Sequence[int]
) -> None:
    if group.kind != "static":
        raise ValidationFailed(f"group {group.name!r} is dynamic: its filter decides members")
    missing = set(add) - _existing_assets(session, add)
    if missing:
        raise NotFound(f"no asset with id {', '.join(str(m) for m in sorted(missing))}")
    current = set(member_ids(session, group.id))
    for batch in chunks(sorted(set(remove) & current)):
        session.execute(
            delete(AssetGroupMember).where(
                AssetGroupMember.group_id == group.id,
                one_of(session, AssetGroupMember.asset_id, batch),
            )
        )
    insert_rows(
        session,
        AssetGroupMember,
        ("group_id", "asset_id"),
        ((group.id, a) for a in sorted(set(add) - current)),
    )


def member_ids(session: Session, group_id: int) -> list[int]:
    """Ids of a group's members."""
    return list(
        session.scalars(
            select(AssetGroupMember.asset_id)
            .where(AssetGroupMember.group_id == group_id)
            .order_by(AssetGroupMember.asset_id)
        )
    )


def recompute_group(session: Session, group: AssetGroupRow) -> tuple[int, int]:
    """Recompute a dynamic group over every asset; returns (added, removed)."""
    wanted = {a.id for a in session.scalars(select(AssetRow)) if matches(group.filter, facts(a))}
    current = set(member_ids(session, group.id))
    _apply(session, group.id, wanted - current, current - wanted)
    return len(wanted - current), len(current - wanted)


def recompute_for_assets(session: Session, asset_ids: Iterable[int]) -> None:
    """Re-evaluate every dynamic group for assets that changed (or were created)."""
    ids = sorted(set(asset_ids))
    if not ids:
        return
    groups = list(session.scalars(select(AssetGroupRow).where(AssetGroupRow.kind == "dynamic")))
    if not groups:
        return
    assets: list[AssetRow] = []
    for batch in chunks(ids):
        assets.extend(session.scalars(select(AssetRow).where(one_of(session, AssetRow.id, batch))))
    for group in groups:
        current: set[int] = set()
        for batch in chunks(ids):
            current.update(
                session.scalars(
                    select(AssetGroupMember.asset_id).where(
                        AssetGroupMember.group_id == group.id,
                        one_of(session, AssetGroupMember.asset_id, batch),
                    )
                )
            )
        wanted = {a.id for a in assets if matches(group.filter, facts(a))}
        _apply(session, group.id, wanted - current, current - wanted)


def _apply(session: Session, group_id: int, add: set[int], remove: set[int]) -> None:
    for batch in chunks(sorted(remove)):
        session.execute(
            delete(AssetGroupMember).where(
                AssetGroupMember.group_id == group_id,
                one_of(session, AssetGroupMember.asset_id, batch),
            )
        )
    insert_rows(
        session, AssetGroupMember, ("group_id", "asset_id"), ((group_id, a) for a in sorted(add))
    )


def groups_of_asset(session: Session, asset_id: int) -> list[AssetGroupRow]:
    """The groups an asset belongs to."""
    return list(
        session.scalars(
            select(AssetGroupRow)
            .join(AssetGroupMember, AssetGroupMember.group_id == AssetGroupRow.id)
            .where(AssetGroupMember.asset_id == asset_id)
            .order_by(AssetGroupRow.name)
        )
    )
