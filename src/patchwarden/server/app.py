"""The FastAPI application: routers, the one error handler, background work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from patchwarden import __version__
from patchwarden.core.errors import (
    AuthenticationRequired,
    BackendError,
    ConfigError,
    Conflict,
    FeedError,
    InventoryError,
    NotFound,
    PatchwardenError,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ValidationFailed,
)
from patchwarden.server.admission import DatabaseAdmission, admission_limit
from patchwarden.server.api import agent, assets, audit, deploy, groups, identity
from patchwarden.server.auth import Permission, Principal, Public
from patchwarden.server.context import AppContext
from patchwarden.server.guards import RequestLimits, SecurityHeaders
from patchwarden.server.openapi import document
from patchwarden.server.reports import ReportProcessor
from patchwarden.server.services.agents import pending_reports, requeue_stale
from patchwarden.server.services.orchestrator import run_loop
from patchwarden.server.web import enrollment, pages
from patchwarden.store.audit import PeriodicCheckpoints

log = logging.getLogger("patchwarden.server")

_STATUS: tuple[tuple[type[PatchwardenError], int], ...] = (
    (AuthenticationRequired, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (Conflict, 409),
    (RateLimited, 429),
    (PayloadTooLarge, 413),
    (ValidationFailed, 422),
    (InventoryError, 422),
    (FeedError, 422),
    (BackendError, 502),
    (ConfigError, 500),
)


# A minimal, self-contained API reference page: it lists the operations from the schema
# without loading anything from other sites (the machine may have no internet access).
_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>patchwarden API</title>
<link rel="stylesheet" href="/static/style.css"></head>
<body><main><h1>patchwarden API</h1>
<p>The machine-readable schema: <a href="/api/openapi.json">/api/openapi.json</a>
(OpenAPI 3). Authenticate with <code>Authorization: Bearer pwt_…</code>
(<code>patchwarden tokens create</code>) or a browser session.</p>
<table id="ops"><thead><tr><th>Method</th><th>Path</th><th>Summary</th></tr></thead>
<tbody></tbody></table></main>
<script src="/static/api-docs.js"></script></body></html>
"""


def status_for(exc: PatchwardenError) -> int:
    """The HTTP status of an error (most specific class first)."""
    for cls, code in _STATUS:
        if isinstance(exc, cls):
            return code
    return 400


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )


async def _sweep_reports(
    ctx: AppContext, processor: ReportProcessor, stop: asyncio.Event, every: float
) -> None:
    """Hand this process's report processor the reports another process acknowledged but
    never finished (pending for 30 s), and those a dead process left 'processing'
    (``requeue_stale``), whenever it has nothing queued. Under a backlog
    those are the ones queued in the processors already; applying them here, in a
    second thread, would only take turns from the requests (a report is claimed once,
    so one taken by two processors is applied once)."""
    while not stop.is_set():
        try:
            if processor.backlog() == 0:
                await run_in_threadpool(requeue_stale, ctx.db, now=ctx.now())
                found = await run_in_threadpool(
                    pending_reports, ctx.db, now=ctx.now(), older_than=timedelta(seconds=30)
                )
                for report_id in found:
                    processor.submit(report_id)
        except Exception:  # the loop must survive a database blip
            log.exception("looking for pending agent reports failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)


def create_app(ctx: AppContext, *, background: bool = True) -> FastAPI:
    """Build the application around ``ctx`` (database, clock, config)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        halt_loop = threading.Event()
        tasks = []
        loop_thread = None
        processor = None
        if background and ctx.config.apply_reports:
            processor = ReportProcessor(ctx)
            processor.start()
            _app.state.reports = processor
            tasks.append(asyncio.create_task(_sweep_reports(ctx, processor, stop, 10.0)))
        if background:
            checkpoints = None
            if ctx.config.audit_checkpoint_file and ctx.config.audit_checkpoint_interval > 0:
                checkpoints = PeriodicCheckpoints(
                    ctx.db,
                    ctx.config.audit_checkpoint_file,
                    timedelta(seconds=ctx.config.audit_checkpoint_interval),
                )
            loop_thread = threading.Thread(
                target=run_loop,
                kwargs={
                    "database": ctx.db,
                    "clock": ctx.now,
                    "should_stop": halt_loop.wait,
                    "every": ctx.config.orchestrator_interval,
                    "after_tick": checkpoints,
                },
                name="orchestrator",
                daemon=True,
            )
            loop_thread.start()
        try:
            yield
        finally:
            stop.set()
            halt_loop.set()
            for task in tasks:
                await task
            if loop_thread is not None:
                await run_in_threadpool(loop_thread.join, 30)
            if processor is not None:
                await run_in_threadpool(processor.stop, 30)

    app = FastAPI(
        title="patchwarden",
        version=__version__,
        description="Patch management API: fleet, findings, groups, identity, audit, agents.",
        lifespan=lifespan,
        # The schema and its viewer are served below behind authentication like every
        # other route, not by FastAPI's open defaults.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    # Added innermost first: security headers wrap everything, body limits come
    # before admission so a refused body never waits for (or holds) a slot.
    app.add_middleware(DatabaseAdmission, limit=admission_limit(ctx.db.connection_capacity))
    app.add_middleware(
        RequestLimits,
        default=ctx.config.max_json_bytes,
        limits={
            ("PUT", "/api/agent/v1/inventory"): ctx.config.max_inventory_bytes,
            ("POST", "/api/v1/script-packages"): ctx.config.max_script_package_bytes,
        },
    )
    app.add_middleware(SecurityHeaders, tls=ctx.config.secure_cookies)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app, FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi_schema(_who: Annotated[Principal, Depends(Permission("read"))]) -> dict[str, Any]:
        """The OpenAPI document of this API."""
        return app.openapi()

    @app.get("/api/docs", include_in_schema=False)
    def openapi_viewer(_who: Annotated[Principal, Depends(Permission("read"))]) -> Response:
        """A page listing the operations of the schema (nothing loaded from other sites)."""
        return HTMLResponse(_DOCS_PAGE)

    @app.exception_handler(PatchwardenError)
    async def _handle(request: Request, exc: PatchwardenError) -> Response:
        status = status_for(exc)
        if _wants_html(request):
            if status == 401:
                target = request.url.path
                if request.url.query:
                    target += f"?{request.url.query}"
                return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
            return pages.error_page(request, status, exc.message, exc.hint)
        headers = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after)
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        body = {"error": exc.message, "hint": exc.hint, "type": type(exc).__name__}
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _framework_error(_request: Request, exc: StarletteHTTPException) -> Response:
        # The framework's own refusals (unknown path, wrong method, a body that is not
        # UTF-8 JSON) in the app's error body; an unreadable body is a validation error.
        if exc.status_code == 400:
            status, kind = 422, "ValidationFailed"
            message = "the request body is not valid JSON (it must be UTF-8)"
        else:
            status, kind, message = exc.status_code, "HTTPError", str(exc.detail)
        return JSONResponse(
            {"error": message, "hint": None, "type": kind},
            status_code=status,
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        problems = [
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:10]
        ]
        return JSONResponse(
            {
                "error": "invalid request: " + "; ".join(problems),
                "hint": None,
                "type": "ValidationFailed",
            },
            status_code=422,
        )

    @app.get("/healthz", dependencies=[Depends(Public("load balancers probe it"))])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers and reaches its database."""
        with ctx.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok", "version": __version__}

    for router in (
        agent.router,
        identity.router,
        assets.router,
        groups.router,
        audit.router,
        deploy.router,
        pages.router,
        enrollment.router,
    ):
        app.include_router(router)
    pages.mount_static(app)
    return app
