"""Agent protocol v1 routes (see docs/agent-protocol.md)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, BackgroundTasks, Depends, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from patchwarden.core.errors import PayloadTooLarge, ValidationFailed
from patchwarden.server.auth import (
    AgentAccess,
    AgentAuth,
    DbSession,
    Principal,
    Public,
    TransactionalRoute,
    bearer,
    client_ip,
    context,
    finish_session,
)
from patchwarden.server.openapi import errors
from patchwarden.server.services import agents, deploy
from patchwarden.server.types import Count, Id, JsonObject, Text

router = APIRouter(route_class=TransactionalRoute, prefix="/api/agent/v1", tags=["agent"])

Agent = Annotated[Principal, Depends(AgentAuth())]


class EnrollRequest(BaseModel):
    """What an agent sends to enroll."""

    protocol: int = Field(agents.PROTOCOL_VERSION, description="Agent protocol version.")
    enrollment_token: Text = Field(..., max_length=200)
    hostname: Text = Field(..., min_length=1, max_length=255)
    fqdn: Text = Field("", max_length=255)
    machine_id: Text = Field("", max_length=128)
    agent_version: Text = Field("", max_length=40)


class EnrollResponse(BaseModel):
    """The credential an enrolled agent keeps."""

    protocol: int
    asset_id: int
    credential: str
    checkin_interval: int


class CheckinRequest(BaseModel):
    """A periodic check-in."""

    protocol: int = agents.PROTOCOL_VERSION
    inventory_hash: Text = Field("", max_length=64)
    reboot_required: bool | None = None
    uptime_seconds: Count | None = None
    agent_version: Text = Field("", max_length=40)
    spooled: Count = Field(0, description="Reports waiting in the agent's spool.")


class CheckinResponse(BaseModel):
    """The server's answer to a check-in."""

    protocol: int
    upload_inventory: bool
    next_checkin_seconds: int
    jobs_waiting: int = Field(0, description="Released jobs this host should claim now.")
    inventory_error: str | None = Field(
        None, description="Why the server could not process this inventory (do not re-send)."
    )


def _check_protocol(version: int) -> None:
    if version != agents.PROTOCOL_VERSION:
        raise ValidationFailed(
            f"unsupported agent protocol {version}; this server speaks {agents.PROTOCOL_VERSION}",
            hint="upgrade the agent or the server so they match",
        )


@router.post(
    "/enroll",
    dependencies=[Depends(Public("authenticated by the enrollment token in the body"))],
    responses=errors(401),
)
def enroll(body: EnrollRequest, request: Request, session: DbSession) -> EnrollResponse:
    """Exchange an enrollment token for this host's credential."""
    _check_protocol(body.protocol)
    ctx = context(request)
    enrolled = agents.enroll(
        session,
        token=body.enrollment_token,
        hostname=body.hostname,
        fqdn=body.fqdn,
        machine_id=body.machine_id,
        agent_version=body.agent_version,
        ip=client_ip(request),
        now=ctx.now(),
    )
    return EnrollResponse(
        protocol=agents.PROTOCOL_VERSION,
        asset_id=enrolled.asset_id,
        credential=enrolled.credential,
        checkin_interval=ctx.config.checkin_interval,
    )


class AgentCheckin(AgentAccess):
    """Dependency of the check-in route: authenticates *and* checks the agent in.

    The check-in is the call every agent makes every few minutes, so it runs as one
    transaction in one thread-pool hop (one statement on PostgreSQL) instead of the
    generic ``AgentAuth`` + session + commit chain. FastAPI validates the body before
    calling it, so a malformed check-in records nothing.
    """

    async def __call__(self, request: Request, body: CheckinRequest) -> CheckinResponse:
        _check_protocol(body.protocol)
        ctx = context(request)
        _, answer = await run_in_threadpool(
            agents.checkin_with_credential,
            ctx.db,
            bearer(request),
            inventory_hash=body.inventory_hash,
            reboot_required=body.reboot_required,
            uptime_seconds=body.uptime_seconds,
            agent_version=body.agent_version,
            now=ctx.now(),
            config=ctx.config,
        )
        return CheckinResponse(
            protocol=agents.PROTOCOL_VERSION,
            upload_inventory=answer.upload_inventory,
            next_checkin_seconds=answer.next_checkin_seconds,
            jobs_waiting=answer.jobs_waiting,
            inventory_error=answer.inventory_error,
        )


@router.post("/checkin", responses=errors(404))
async def checkin(
    body: CheckinRequest, answer: Annotated[CheckinResponse, Depends(AgentCheckin())]
) -> CheckinResponse:
    """Report liveness; learn whether to upload the inventory and when to come back."""
    return answer


@router.put("/inventory", status_code=202, responses=errors(404))
async def upload_inventory(
    request: Request, agent: Agent, session: DbSession, background: BackgroundTasks
) -> dict[str, Any]:
    """Upload this host's full inventory (gzip JSON); processed after the 202.

    With an ``X-Patchwarden-Inventory-Hash`` header (the inventory's content hash) only
    the gzip stream and the document's top level are checked before the 202; the rest
    is validated when the report is applied, and a refusal then is reported by the next
    check-in (``inventory_error``). Without it the whole document is validated first.
    """
    ctx = context(request)
    limit = ctx.config.max_inventory_bytes
    protocol = request.headers.get("X-Patchwarden-Protocol")
    if protocol is not None:
        _check_protocol(int(protocol) if protocol.isdigit() else -1)
    declared = request.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"inventory upload exceeds the {limit}-byte limit")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise PayloadTooLarge(f"inventory upload exceeds the {limit}-byte limit")
    report = await run_in_threadpool(
        agents.accept_inventory,
        session,
        agent.agent_asset(),
        bytes(body),
        encoding=request.headers.get("Content-Encoding", ""),
        now=ctx.now(),
        config=ctx.config,
        declared_hash=request.headers.get(agents.INVENTORY_HASH_HEADER),
    )
    report_id = report.id
    # Committed before the 202 goes out (and before the processor can see it), so an
    # acknowledged report is durable; the sweeper retries reports a crashed process
    # never finished.
    await finish_session(session, commit=True)
    processor = getattr(request.app.state, "reports", None)
    if processor is not None:
        processor.submit(report_id)
    elif ctx.config.apply_reports:  # an app without background threads (tests)
        background.add_task(agents.process_report, ctx.db, report_id, now=ctx.now())
    # else: report worker processes poll for it (server/report_worker.py)
    return {"protocol": agents.PROTOCOL_VERSION, "report_id": report_id, "status": "accepted"}


# --------------------------------------------------------------------------- jobs


class JobResultBody(BaseModel):
    """An agent's result for one attempt of a job."""

    attempt: Id
    status: str = Field(..., pattern="^(succeeded|failed|rolled_back)$")
    result: JsonObject = Field(default_factory=dict)


class HeartbeatBody(BaseModel):
    """Keep a running job's lease alive."""

    attempt: Id


_MAX_RESULT_BYTES = 256 * 1024


@router.get("/jobs")
def claim_jobs(request: Request, agent: Agent, session: DbSession) -> dict[str, Any]:
    """Claim this host's released jobs under a lease; returns their payloads."""
    jobs = deploy.claim_jobs(session, agent.agent_asset(), now=context(request).now())
    return {"protocol": agents.PROTOCOL_VERSION, "jobs": [deploy.job_payload(j) for j in jobs]}


@router.post("/jobs/{job_id}/heartbeat", responses=errors(409))
def job_heartbeat(
    job_id: Id, body: HeartbeatBody, request: Request, agent: Agent, session: DbSession
) -> dict[str, Any]:
    """Extend the lease of a job this host is running."""
    until = deploy.heartbeat(
        session, agent.agent_asset(), job_id, body.attempt, now=context(request).now()
    )
    return {"protocol": agents.PROTOCOL_VERSION, "lease_until": until.isoformat()}


@router.post("/jobs/{job_id}/result", responses=errors(409))
def job_result(
    job_id: Id, body: JobResultBody, request: Request, agent: Agent, session: DbSession
) -> dict[str, Any]:
    """Report one attempt's outcome; idempotent on (job, attempt)."""
    if len(orjson.dumps(body.result)) > _MAX_RESULT_BYTES:
        raise ValidationFailed(f"job result larger than {_MAX_RESULT_BYTES} bytes")
    job, duplicate = deploy.record_result(
        session,
        agent.agent_asset(),
        job_id,
        attempt=body.attempt,
        status=body.status,
        detail=body.result,
        now=context(request).now(),
    )
    return {
        "protocol": agents.PROTOCOL_VERSION,
        "job_id": job.id,
        "status": job.status,
        "duplicate": duplicate,
    }


@router.get(
    "/script-packages/{package_id}/artifact",
    response_class=Response,
    responses={
        200: {
            "description": "The artifact's bytes (its sha256 in X-Content-SHA256).",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    },
)
def script_artifact(package_id: Id, agent: Agent, session: DbSession) -> Response:
    """Download a script package's artifact (only for a host with a job using it)."""
    row = deploy.script_package_for_job(session, agent.agent_asset(), package_id)
    return Response(
        row.artifact,
        media_type="application/octet-stream",
        headers={"X-Content-SHA256": row.sha256},
    )
