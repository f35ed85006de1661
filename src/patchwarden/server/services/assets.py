"""Assets and findings for the API, CLI and web pages: listing, filtering, editing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, delete, func, or_, select
from sqlalchemy.orm import Session

from patchwarden.core.errors import ValidationFailed
from patchwarden.core.model import PRIORITIES
from patchwarden.reports.scan import ecosystem_coverage
from patchwarden.store import audit
from patchwarden.store.audit import Actor
from patchwarden.store.findings import refresh_findings
from patchwarden.store.groups import groups_of_asset, recompute_for_assets
from patchwarden.store.inventory import get_asset
from patchwarden.store.models import (
    AdvisoryRow,
    AgentCredentialRow,
    AssetGroupMember,
    AssetPackage,
    AssetRow,
    FindingRow,
    PackageRow,
    PackageVuln,
)

EDITABLE = {
    "criticality": int,
    "exposure": str,
    "data_class": str,
    "owner": str,
    "environment": str,
    "location": str,
    "timezone": str,
    "tags": list,
    "kind": str,
    "fqdn": str,
}
_CHOICES = {
    "exposure": ("internet", "internal"),
    "data_class": ("public", "internal", "confidential", "restricted"),
    "kind": ("server", "workstation", "vm", "cloud-instance", "network-device", "container"),
}


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing."""

    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int

    def to_json(self) -> dict[str, Any]:
        """The envelope every list endpoint returns."""
        return {
            "items": self.items,
            "total": self.total,
            "limit": self.limit,
            "offset": self.offset,
            "next_offset": self.offset + self.limit
            if self.offset + self.limit < self.total
            else None,
        }


def check_paging(limit: int, offset: int) -> None:
    """Reject nonsense paging parameters."""
    if not 1 <= limit <= 1000:
        raise ValidationFailed("limit must be 1-1000")
    if offset < 0:
        raise ValidationFailed("offset must be 0 or more")


def _open_counts(
    session: Session, asset_ids: Sequence[int], today: date
) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {
        a: {"P1": 0, "P2": 0, "P3": 0, "P4": 0, "overdue": 0} for a in asset_ids
    }
    if not asset_ids:
        return counts
    for asset_id, priority, n in session.execute(
        select(FindingRow.asset_id, FindingRow.priority, func.count())
        .where(FindingRow.asset_id.in_(asset_ids), FindingRow.state == "open")
        .group_by(FindingRow.asset_id, FindingRow.priority)
    ):
        counts[asset_id][priority] = n
    for asset_id, n in session.execute(
        select(FindingRow.asset_id, func.count())
        .where(
            FindingRow.asset_id.in_(asset_ids),
            FindingRow.state == "open",
            FindingRow.due_date < today,
        )
        .group_by(FindingRow.asset_id)
    ):
        counts[asset_id]["overdue"] = n
    return counts


def asset_json(asset: AssetRow, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """The API form of an asset."""
    out: dict[str, Any] = {
        "id": asset.id,
        "hostname": asset.hostname,
        "fqdn": asset.fqdn,
        "ip_addresses": list(asset.ip_addresses),
        "serial": asset.serial,
        "kind": asset.kind,
        "os": {
            "id": asset.os_id,
            "version": asset.os_version,
            "name": asset.os_name,
            "ecosystem": asset.os_ecosystem,
            "family": asset.os_family,
        },
        "arch": asset.arch,
        "kernel": asset.kernel,
        "criticality": asset.criticality,
        "exposure": asset.exposure,
        "data_class": asset.data_class,
        "owner": asset.owner,
        "environment": asset.environment,
        "location": asset.location,
        "timezone": asset.timezone,
        "tags": list(asset.tags),
        "source": asset.source,
        "status": asset.status,
        "reboot_required": asset.reboot_required,
        "uptime_seconds": asset.uptime_seconds,
        "created_at": asset.created_at.isoformat(),
        "last_seen": asset.last_seen.isoformat() if asset.last_seen else None,
        "last_inventory": asset.last_inventory.isoformat() if asset.last_inventory else None,
    }
    if counts is not None:
        out["open_findings"] = {p: counts[p] for p in PRIORITIES}
        out["overdue"] = counts["overdue"]
    return out


@dataclass(frozen=True, slots=True)
class AssetFilter:
    """Filters of the asset listing (all optional, ANDed)."""

    q: str = ""
    os: str = ""
    ecosystem: str = ""
    environment: str = ""
    tag: str = ""
    group: int | None = None
    criticality: int | None = None
    exposure: str = ""
    status: str = ""
    source: str = ""
    priority: str = ""  # assets with at least one open finding of this priority


def _filtered(query: Select[Any], f: AssetFilter) -> Select[Any]:
    if f.q:
        like = f"%{f.q}%"
        query = query.where(or_(AssetRow.hostname.ilike(like), AssetRow.fqdn.ilike(like)))
    if f.os:
        query = query.where(AssetRow.os_id == f.os)
    if f.ecosystem:
        query = query.where(
            or_(
                AssetRow.os_ecosystem == f.ecosystem, AssetRow.os_ecosystem.like(f"{f.ecosystem}:%")
            )
        )
    if f.environment:
        query = query.where(AssetRow.environment == f.environment)
    if f.criticality is not None:
        query = query.where(AssetRow.criticality == f.criticality)
    if f.exposure:
        query = query.where(AssetRow.exposure == f.exposure)
    if f.status:
        query = query.where(AssetRow.status == f.status)
    if f.source:
        query = query.where(AssetRow.source == f.source)
    if f.group is not None:
        query = query.where(
            AssetRow.id.in_(
                select(AssetGroupMember.asset_id).where(AssetGroupMember.group_id == f.group)
            )
        )
    if f.priority:
        if f.priority not in PRIORITIES:
            raise ValidationFailed("priority must be P1-P4")
        query = query.where(
            AssetRow.id.in_(
                select(FindingRow.asset_id).where(
                    FindingRow.state == "open", FindingRow.priority == f.priority
                )
            )
        )
    return query


def list_assets(session: Session, f: AssetFilter, *, limit: int, offset: int, today: date) -> Page:
    """A page of assets with their open-finding counts."""
    check_paging(limit, offset)
    rows = list(session.scalars(_filtered(select(AssetRow), f).order_by(AssetRow.hostname)))
    if f.tag:
        rows = [r for r in rows if f.tag in r.tags]  # tags are JSON: filter portably here
    total = len(rows)
    page = rows[offset : offset + limit]
    counts = _open_counts(session, [r.id for r in page], today)
    return Page([asset_json(r, counts[r.id]) for r in page], total, limit, offset)


def asset_detail(session: Session, asset_id: int, *, today: date) -> dict[str, Any]:
    """One asset with counts, groups, agent state and advisory coverage.

    ``coverage`` lists the ecosystems of its packages and whether any loaded advisory
    covers each (``reports.scan.Coverage``): no findings on an uncovered one means
    "not checked", not "clean".
    """
    asset = get_asset(session, asset_id)
    out = asset_json(asset, _open_counts(session, [asset.id], today)[asset.id])
    out["groups"] = [{"id": g.id, "name": g.name} for g in groups_of_asset(session, asset.id)]
    out["packages"] = session.scalar(
        select(func.count()).select_from(AssetPackage).where(AssetPackage.asset_id == asset.id)
    )
    credential = session.scalars(
        select(AgentCredentialRow)
        .where(AgentCredentialRow.asset_id == asset.id)
        .order_by(AgentCredentialRow.id.desc())
        .limit(1)
    ).first()
    out["agent"] = (
        None
        if credential is None
        else {
            "credential_id": credential.id,
            "revoked": credential.revoked_at is not None,
            "last_seen": credential.last_seen.isoformat() if credential.last_seen else None,
            "version": credential.agent_version,
        }
    )
    out["coverage"] = [c.to_json() for c in ecosystem_coverage(session, asset.id)]
    return out


def update_asset(
    session: Session, actor: Actor, asset_id: int, changes: dict[str, Any], *, now: datetime
) -> AssetRow:
    """Change an asset's business context; findings are rescored, groups recomputed."""
    asset = get_asset(session, asset_id)
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ValidationFailed(
            f"cannot change {', '.join(sorted(unknown))}",
            hint=f"editable fields: {', '.join(EDITABLE)}",
        )
    for key, value in changes.items():
        expected = EDITABLE[key]
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ValidationFailed(f"{key} must be a {expected.__name__}")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ValidationFailed(f"{key} must be one of {', '.join(_CHOICES[key])}")
        if isinstance(value, int) and not 1 <= value <= 5:
            raise ValidationFailed("criticality must be 1-5")
        if isinstance(value, list) and not all(isinstance(t, str) and t for t in value):
            raise ValidationFailed("tags must be non-empty strings")
    before = {k: getattr(asset, k) for k in changes}
    for key, value in changes.items():
        setattr(asset, key, sorted(set(value)) if key == "tags" else value)
    session.flush()
    audit.record(
        session,
        actor,
        "asset.update",
        now=now,
        target_type="asset",
        target_id=asset.id,
        before=before,
        after={k: getattr(asset, k) for k in changes},
    )
    if {"criticality", "exposure", "data_class"} & set(changes):
        refresh_findings(session, now=now, asset_ids=[asset.id])
    recompute_for_assets(session, [asset.id])
    return asset


def delete_asset(session: Session, actor: Actor, asset_id: int, *, now: datetime) -> None:
    """Delete an asset with its packages links, findings and credentials."""
    asset = get_asset(session, asset_id)
    before = {"hostname": asset.hostname, "source": asset.source}
    for model in (FindingRow, AssetPackage, AssetGroupMember, AgentCredentialRow):
        session.execute(delete(model).where(model.asset_id == asset_id))
    session.delete(asset)
    audit.record(
        session,
        actor,
        "asset.delete",
        now=now,
        target_type="asset",
        target_id=asset_id,
        before=before,
    )


def asset_packages_page(session: Session, asset_id: int, *, limit: int, offset: int) -> Page:
    """A page of an asset's installed packages."""
    check_paging(limit, offset)
    get_asset(session, asset_id)
    base = (
        select(PackageRow)
        .join(AssetPackage, AssetPackage.package_id == PackageRow.id)
        .where(AssetPackage.asset_id == asset_id)
    )
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = session.scalars(base.order_by(PackageRow.name).limit(limit).offset(offset))
    items = [
        {
            "name": p.name,
            "version": p.version,
            "ecosystem": p.ecosystem,
            "arch": p.arch,
            "source_name": p.source_name,
            "source_version": p.source_version,
        }
        for p in rows
    ]
    return Page(items, total, limit, offset)


@dataclass(frozen=True, slots=True)
class FindingFilter:
    """Filters of the fleet-wide findings listing."""

    state: str = "open"
    priority: str = ""
    asset_id: int | None = None
    advisory: str = ""
    overdue: bool = False
    kev: bool | None = None
    group: int | None = None


def list_findings(
    session: Session, f: FindingFilter, *, limit: int, offset: int, today: date
) -> Page:
    """A page of findings across the fleet, highest risk first."""
    check_paging(limit, offset)
    query = (
        select(
            FindingRow,
            AssetRow.hostname,
            PackageRow.name,
            PackageRow.version,
            AdvisoryRow.ext_id,
            PackageVuln.fixed_version,
            PackageVuln.why,
        )
        .join(AssetRow, AssetRow.id == FindingRow.asset_id)
        .join(PackageRow, PackageRow.id == FindingRow.package_id)
        .join(AdvisoryRow, AdvisoryRow.id == FindingRow.advisory_id)
        .join(
            PackageVuln,
            (PackageVuln.package_id == FindingRow.package_id)
            & (PackageVuln.advisory_id == FindingRow.advisory_id),
        )
    )
    if f.state:
        query = query.where(FindingRow.state == f.state)
    if f.priority:
        if f.priority not in PRIORITIES:
            raise ValidationFailed("priority must be P1-P4")
        query = query.where(FindingRow.priority == f.priority)
    if f.asset_id is not None:
        query = query.where(FindingRow.asset_id == f.asset_id)
    if f.advisory:
        query = query.where(AdvisoryRow.ext_id == f.advisory)
    if f.overdue:
        query = query.where(FindingRow.due_date < today)
    if f.group is not None:
        query = query.where(
            FindingRow.asset_id.in_(
                select(AssetGroupMember.asset_id).where(AssetGroupMember.group_id == f.group)
            )
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(
        query.order_by(FindingRow.risk_score.desc(), FindingRow.id).limit(limit).offset(offset)
    )
    items = [
        {
            "id": finding.id,
            "asset_id": finding.asset_id,
            "hostname": hostname,
            "package": name,
            "installed_version": version,
            "advisory_id": ext_id,
            "fixed_version": fixed,
            "state": finding.state,
            "risk_score": finding.risk_score,
            "priority": finding.priority,
            "due_date": finding.due_date.isoformat() if finding.due_date else None,
            "overdue": finding.state == "open"
            and finding.due_date is not None
            and finding.due_date < today,
            "first_seen": finding.first_seen.isoformat(),
            "resolved_at": finding.resolved_at.isoformat() if finding.resolved_at else None,
            "why": why,
        }
        for finding, hostname, name, version, ext_id, fixed, why in rows
    ]
    return Page(items, total, limit, offset)


def environments(session: Session) -> list[str]:
    """The distinct, non-empty environments assets are in (for filter choices)."""
    return list(
        session.scalars(
            select(AssetRow.environment)
            .where(AssetRow.environment != "")
            .distinct()
            .order_by(AssetRow.environment)
        )
    )


def fleet_summary(session: Session, *, today: date) -> dict[str, Any]:
    """Counts for the dashboard: assets, open findings by priority, overdue."""
    assets = session.scalar(select(func.count()).select_from(AssetRow)) or 0
    by_priority = dict.fromkeys(PRIORITIES, 0)
    for priority, n in session.execute(
        select(FindingRow.priority, func.count())
        .where(FindingRow.state == "open")
        .group_by(FindingRow.priority)
    ):
        by_priority[priority] = n
    overdue = (
        session.scalar(
            select(func.count())
            .select_from(FindingRow)
            .where(FindingRow.state == "open", FindingRow.due_date < today)
        )
        or 0
    )
    return {"assets": assets, "open_findings": by_priority, "overdue": overdue}
