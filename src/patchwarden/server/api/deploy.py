"""Deployment API: windows, baselines, exceptions, script packages, rollouts."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from patchwarden.core.errors import ValidationFailed
from patchwarden.reports.change_record import change_record, to_markdown
from patchwarden.server.auth import DbSession, Permission, Principal, TransactionalRoute, context
from patchwarden.server.openapi import errors
from patchwarden.server.services import deploy
from patchwarden.server.services.deploy_specs import (
    EmergencyProfileSpec,
    RolloutSpec,
    ScriptPackageUpload,
    rollout_spec,
    validated,
)
from patchwarden.server.types import Count, Id, JsonObject, Text
from patchwarden.store.models import (
    MaintenanceWindowRow,
    PatchBaselineRow,
    RiskExceptionRow,
    RolloutRow,
    ScriptPackageRow,
)

router = APIRouter(route_class=TransactionalRoute, prefix="/api/v1", tags=["deployment"])

Reader = Annotated[Principal, Depends(Permission("read"))]
Deployer = Annotated[Principal, Depends(Permission("deploy:write"))]
Approver = Annotated[Principal, Depends(Permission("approve"))]
ScriptAdmin = Annotated[Principal, Depends(Permission("scripts:write"))]
Word = Annotated[Text, Field(max_length=40)]
# Documents the CLI also accepts arrive as plain JSON and go through the same validation
# (services/deploy_specs.py), so both give the same message for the same mistake.
JsonBody = Annotated[Any, Body()]


def request_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that validates ``model`` itself."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    content = {"application/json": {"schema": inline(schema)}}
    return {"requestBody": {"content": content, "required": True}}


# ------------------------------------------------------------------------ windows


class NewWindow(BaseModel):
    """A maintenance window."""

    name: Text = Field(..., max_length=120)
    rrule: Text = Field(..., max_length=500)
    timezone: Text = Field(..., max_length=60)
    duration_minutes: int = Field(..., ge=1, le=7 * 24 * 60)
    blackouts: list[list[Word] | Word] = Field(default_factory=list, max_length=1000)


@router.get("/windows")
def list_windows(_who: Reader, session: DbSession) -> dict[str, Any]:
    """Every maintenance window."""
    rows = session.scalars(select(MaintenanceWindowRow).order_by(MaintenanceWindowRow.name))
    items = [deploy.window_json(r) for r in rows]
    return {"items": items, "total": len(items)}


@router.post("/windows", status_code=201, responses=errors(409))
def create_window(
    body: NewWindow, request: Request, who: Deployer, session: DbSession
) -> dict[str, Any]:
    """Create a maintenance window (RFC 5545 RRULE, IANA time zone, duration)."""
    row = deploy.create_window(
        session,
        who.actor(),
        name=body.name,
        rrule=body.rrule,
        timezone=body.timezone,
        duration_minutes=body.duration_minutes,
        blackouts=body.blackouts,
        now=context(request).now(),
    )
    return deploy.window_json(row)


@router.post("/groups/{group_id}/windows/{window_id}", responses=errors(409))
def attach_window(
    group_id: Id,
    window_id: Id,
    request: Request,
    who: Deployer,
    session: DbSession,
    detach: bool = False,
) -> dict[str, str]:
    """Attach (``?detach=true``: detach) a window to a group."""
    deploy.attach_window(
        session, who.actor(), group_id, window_id, now=context(request).now(), detach=detach
    )
    return {"status": "detached" if detach else "attached"}


# ---------------------------------------------------------------------- baselines


class BaselineBody(BaseModel):
    """A patch baseline (created or replaced by name)."""

    name: Text = Field(..., max_length=120)
    description: Text = Field("", max_length=2000)
    rules: JsonObject = Field(default_factory=dict)
    groups: list[Id] = Field(default_factory=list, max_length=10_000)


@router.get("/baselines")
def list_baselines(_who: Reader, session: DbSession) -> dict[str, Any]:
    """Every baseline."""
    rows = session.scalars(select(PatchBaselineRow).order_by(PatchBaselineRow.name))
    items = [deploy.baseline_json(r) for r in rows]
    return {"items": items, "total": len(items)}


@router.post("/baselines", status_code=201, responses=errors(404, 409))
def save_baseline(
    body: BaselineBody, request: Request, who: Deployer, session: DbSession
) -> dict[str, Any]:
    """Create or replace a baseline."""
    row = deploy.save_baseline(
        session,
        who.actor(),
        name=body.name,
        rules_json=body.rules,
        groups=body.groups,
        description=body.description,
        now=context(request).now(),
    )
    return deploy.baseline_json(row)


# --------------------------------------------------------------------- exceptions


class NewException(BaseModel):
    """A risk-acceptance request."""

    advisory: Text = Field("", max_length=200)
    package: Text = Field("", max_length=300)
    asset_id: Id | None = None
    group_id: Id | None = None
    justification: Text = Field(..., max_length=4000)
    expires_at: datetime


class Decision(BaseModel):
    """An approver's comment."""

    comment: Text = Field("", max_length=2000)


@router.get("/exceptions")
def list_exceptions(
    _who: Reader, session: DbSession, status: Annotated[Text, Query(max_length=40)] = ""
) -> dict[str, Any]:
    """Risk exceptions (filter by ``status``: pending, approved, rejected, expired, revoked)."""
    query = select(RiskExceptionRow).order_by(RiskExceptionRow.id.desc())
    if status:
        query = query.where(RiskExceptionRow.status == status)
    items = [deploy.exception_json(r) for r in session.scalars(query)]
    return {"items": items, "total": len(items)}


@router.post("/exceptions", status_code=201, responses=errors(404))
def request_exception(
    body: NewException, request: Request, who: Deployer, session: DbSession
) -> dict[str, Any]:
    """Request a risk exception; an approver other than the requester must approve it."""
    if body.expires_at.tzinfo is None:
        raise ValidationFailed("expires_at needs a time zone (e.g. 2027-01-31T00:00:00Z)")
    row = deploy.request_exception(
        session,
        who.actor(),
        advisory=body.advisory,
        package=body.package,
        asset_id=body.asset_id,
        group=body.group_id,
        justification=body.justification,
        expires_at=body.expires_at,
        now=context(request).now(),
    )
    return deploy.exception_json(row)


@router.post("/exceptions/{exception_id}/approve", responses=errors(409))
def approve_exception(
    exception_id: Id, request: Request, who: Approver, session: DbSession
) -> dict[str, Any]:
    """Approve a pending exception (not one's own); its findings become accepted."""
    row = deploy.decide_exception(
        session, who.actor(), exception_id, approve_it=True, now=context(request).now()
    )
    return deploy.exception_json(row)


@router.post("/exceptions/{exception_id}/reject", responses=errors(409))
def reject_exception(
    exception_id: Id, request: Request, who: Approver, session: DbSession
) -> dict[str, Any]:
    """Reject a pending exception."""
    row = deploy.decide_exception(
        session, who.actor(), exception_id, approve_it=False, now=context(request).now()
    )
    return deploy.exception_json(row)


@router.post("/exceptions/{exception_id}/revoke", responses=errors(409))
def revoke_exception(
    exception_id: Id, request: Request, who: Approver, session: DbSession
) -> dict[str, Any]:
    """End an exception early; its findings reopen."""
    row = deploy.revoke_exception(session, who.actor(), exception_id, now=context(request).now())
    return deploy.exception_json(row)


# ---------------------------------------------------------------- script packages


@router.get("/script-packages")
def list_script_packages(_who: Reader, session: DbSession) -> dict[str, Any]:
    """Registered script packages (without artifacts)."""
    rows = session.scalars(select(ScriptPackageRow).order_by(ScriptPackageRow.name))
    items = [
        {
            "id": r.id,
            "name": r.name,
            "version": r.version,
            "sha256": r.sha256,
            "commands": r.commands,
            "created_by": r.created_by,
            "created_at": r.created_at.isoformat(),
        }
        for r in rows
    ]
    return {"items": items, "total": len(items)}


@router.post(
    "/script-packages",
    status_code=201,
    responses=errors(409),
    openapi_extra=request_schema(ScriptPackageUpload),
)
def register_script_package(
    body: JsonBody, request: Request, who: ScriptAdmin, session: DbSession
) -> dict[str, Any]:
    """Register third-party software agents may install (admins only); the name and
    version rules are in docs/agent-jobs.md."""
    upload = validated(ScriptPackageUpload, body, source="script package")
    try:
        artifact = base64.b64decode(upload.artifact_base64, validate=True)
    except ValueError as exc:
        raise ValidationFailed(f"artifact_base64 is not valid base64: {exc}") from exc
    row = deploy.register_script_package(
        session,
        who.actor(),
        name=upload.name,
        version=upload.version,
        artifact=artifact,
        commands=upload.commands.model_dump(),
        now=context(request).now(),
    )
    return {"id": row.id, "name": row.name, "version": row.version, "sha256": row.sha256}


# ----------------------------------------------------------------------- rollouts


@router.get("/rollouts")
def list_rollouts(
    _who: Reader, session: DbSession, status: Annotated[Text, Query(max_length=40)] = ""
) -> dict[str, Any]:
    """Rollouts, newest first."""
    query = select(RolloutRow).order_by(RolloutRow.id.desc())
    if status:
        query = query.where(RolloutRow.status == status)
    items = [deploy.rollout_json(session, r) for r in session.scalars(query)]
    return {"items": items, "total": len(items)}


@router.post(
    "/rollouts",
    status_code=201,
    responses=errors(404, 409),
    openapi_extra=request_schema(RolloutSpec),
)
def create_rollout(
    body: JsonBody, request: Request, who: Deployer, session: DbSession
) -> dict[str, Any]:
    """Plan a rollout (emergency rollouts wait for one approver); the spec is checked
    exactly as ``patchwarden rollouts create`` checks it."""
    spec = rollout_spec(body)
    row = deploy.create_rollout_from_spec(session, who.actor(), spec, now=context(request).now())
    return deploy.rollout_json(session, row)


@router.get("/rollouts/{rollout_id}")
def get_rollout(
    rollout_id: Id, _who: Reader, session: DbSession, jobs: bool = True
) -> dict[str, Any]:
    """A rollout with its rings, progress and (``jobs=true``) its jobs."""
    return deploy.rollout_json(session, deploy.get_rollout(session, rollout_id), with_jobs=jobs)


@router.post("/rollouts/{rollout_id}/approve", responses=errors(409))
def approve_rollout(
    rollout_id: Id,
    body: Decision,
    request: Request,
    who: Approver,
    session: DbSession,
    ring: Count | None = None,
) -> dict[str, Any]:
    """Approve an emergency rollout, or a ring's gate with ``?ring=N`` (four eyes)."""
    row = deploy.approve_rollout(
        session,
        who.actor(),
        rollout_id,
        ring=ring,
        comment=body.comment,
        now=context(request).now(),
    )
    return deploy.rollout_json(session, row)


@router.post("/rollouts/{rollout_id}/reject", responses=errors(409))
def reject_rollout(
    rollout_id: Id,
    body: Decision,
    request: Request,
    who: Approver,
    session: DbSession,
    ring: Count | None = None,
) -> dict[str, Any]:
    """Reject an emergency rollout or a ring's gate: the rollout is cancelled."""
    row = deploy.reject_rollout(
        session,
        who.actor(),
        rollout_id,
        ring=ring,
        comment=body.comment,
        now=context(request).now(),
    )
    return deploy.rollout_json(session, row)


@router.post("/rollouts/{rollout_id}/{action}", responses=errors(409))
def change_rollout(
    rollout_id: Id,
    action: Annotated[Text, Path(max_length=20)],
    request: Request,
    who: Deployer,
    session: DbSession,
    ring: Count | None = None,
) -> dict[str, Any]:
    """``pause``, ``resume``, ``cancel`` or ``rollback`` (``?ring=N`` for one ring)."""
    now = context(request).now()
    if action == "rollback":
        deploy.rollback_rollout(session, who.actor(), rollout_id, ring=ring, now=now)
    elif action in ("pause", "resume", "cancel"):
        deploy.set_rollout_state(session, who.actor(), rollout_id, action, now=now)
    else:
        raise ValidationFailed(
            f"unknown rollout action {action!r}", hint="pause, resume, cancel or rollback"
        )
    return deploy.rollout_json(session, deploy.get_rollout(session, rollout_id))


@router.get(
    "/rollouts/{rollout_id}/change-record",
    response_model=None,
    responses={
        200: {
            "description": "The change record: JSON, or Markdown with format=markdown.",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/plain": {"schema": {"type": "string"}},
            },
        }
    },
)
def get_change_record(
    rollout_id: Id,
    _who: Reader,
    session: DbSession,
    format: Annotated[Text, Query(max_length=20)] = "json",
) -> dict[str, Any] | Response:
    """The rollout's change record (``format=json`` or ``markdown``)."""
    record = change_record(session, deploy.get_rollout(session, rollout_id))
    if format == "markdown":
        # text/plain so browsers show it instead of downloading it; it is Markdown.
        return PlainTextResponse(to_markdown(record), media_type="text/plain; charset=utf-8")
    return record


# ----------------------------------------------------------------------- policies


@router.get("/policies/emergency")
def get_emergency_profile(_who: Reader, session: DbSession) -> dict[str, Any]:
    """The prepared emergency rollout profile."""
    return deploy.emergency_profile(session)


@router.put(
    "/policies/emergency", responses=errors(404), openapi_extra=request_schema(EmergencyProfileSpec)
)
def put_emergency_profile(
    body: JsonBody, request: Request, who: Deployer, session: DbSession
) -> dict[str, Any]:
    """Set the emergency profile (``enabled``, ``rings``, ``policy``, ``windows``)."""
    return deploy.set_emergency_profile(session, who.actor(), body, now=context(request).now())
