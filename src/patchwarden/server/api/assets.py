"""Assets, findings and the fleet summary."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from patchwarden.reports.scan import host_report, report_to_json
from patchwarden.server.auth import DbSession, Permission, Principal, TransactionalRoute, context
from patchwarden.server.services import agents
from patchwarden.server.services.assets import (
    AssetFilter,
    FindingFilter,
    asset_detail,
    asset_packages_page,
    delete_asset,
    fleet_summary,
    list_assets,
    list_findings,
    update_asset,
)
from patchwarden.server.types import Count, Id, JsonObject, Limit, Offset, Text
from patchwarden.store.inventory import get_asset

router = APIRouter(route_class=TransactionalRoute, prefix="/api/v1", tags=["assets"])

Reader = Annotated[Principal, Depends(Permission("read"))]
Writer = Annotated[Principal, Depends(Permission("assets:write"))]
Filter = Annotated[Text, Query(max_length=200)]


@router.get("/summary")
def summary(request: Request, _who: Reader, session: DbSession) -> dict[str, Any]:
    """Fleet counts: assets, open findings by priority, overdue."""
    return fleet_summary(session, today=context(request).now().date())


@router.get("/assets")
def assets(
    request: Request,
    _who: Reader,
    session: DbSession,
    q: Filter = "",
    os: Filter = "",
    ecosystem: Filter = "",
    environment: Filter = "",
    tag: Filter = "",
    group: Id | None = None,
    criticality: Annotated[int | None, Query(ge=1, le=5)] = None,
    exposure: Filter = "",
    status: Filter = "",
    source: Filter = "",
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Assets with open-finding counts; filters are ANDed."""
    f = AssetFilter(
        q, os, ecosystem, environment, tag, group, criticality, exposure, status, source
    )
    today = context(request).now().date()
    return list_assets(session, f, limit=limit, offset=offset, today=today).to_json()


@router.get("/assets/{asset_id}")
def asset(asset_id: Id, request: Request, _who: Reader, session: DbSession) -> dict[str, Any]:
    """One asset with counts, groups and its agent's state."""
    return asset_detail(session, asset_id, today=context(request).now().date())


@router.patch("/assets/{asset_id}")
def patch_asset(
    asset_id: Id, changes: JsonObject, request: Request, who: Writer, session: DbSession
) -> dict[str, Any]:
    """Change business context (criticality, exposure, data_class, owner, environment,
    location, timezone, tags, kind, fqdn); findings are rescored."""
    now = context(request).now()
    update_asset(session, who.actor(), asset_id, changes, now=now)
    return asset_detail(session, asset_id, today=now.date())


@router.delete("/assets/{asset_id}")
def remove_asset(asset_id: Id, request: Request, who: Writer, session: DbSession) -> dict[str, str]:
    """Delete an asset, its findings and credentials."""
    delete_asset(session, who.actor(), asset_id, now=context(request).now())
    return {"status": "deleted"}


@router.get("/assets/{asset_id}/packages")
def packages(
    asset_id: Id, _who: Reader, session: DbSession, limit: Limit = 500, offset: Offset = 0
) -> dict[str, Any]:
    """The asset's installed packages."""
    return asset_packages_page(session, asset_id, limit=limit, offset=offset).to_json()


@router.get("/assets/{asset_id}/report")
def report(asset_id: Id, request: Request, _who: Reader, session: DbSession) -> dict[str, Any]:
    """Findings with why and due date, remediation plan and unfixed — as `scan` prints."""
    get_asset(session, asset_id)
    return report_to_json(host_report(session, asset_id, now=context(request).now()))


@router.post("/assets/{asset_id}/revoke-agent")
def revoke_agent(asset_id: Id, request: Request, who: Writer, session: DbSession) -> dict[str, Any]:
    """Revoke the asset's agent credentials: the agent is locked out at once."""
    count = agents.revoke_credentials(session, who.actor(), asset_id, now=context(request).now())
    return {"revoked": count}


@router.post("/assets/{asset_id}/checkin-soon")
def checkin_soon(
    asset_id: Id, request: Request, who: Writer, session: DbSession, seconds: Count = 15
) -> dict[str, Any]:
    """Ask the asset's agent to come back within ``seconds`` after its next check-in."""
    agents.request_checkin(session, who.actor(), asset_id, seconds, now=context(request).now())
    return {"status": "requested"}


@router.get("/findings")
def findings(
    request: Request,
    _who: Reader,
    session: DbSession,
    state: Filter = "open",
    priority: Filter = "",
    asset_id: Id | None = None,
    advisory: Filter = "",
    overdue: bool = False,
    group: Id | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Findings across the fleet, highest risk first."""
    f = FindingFilter(state, priority, asset_id, advisory, overdue, None, group)
    today = context(request).now().date()
    return list_findings(session, f, limit=limit, offset=offset, today=today).to_json()
