"""A database-free app with the agent check-in's shape: the HTTP and framework floor.

Run by ``bench.procs.ServerProcess(mode="floor")`` as
``python -m uvicorn bench.floor:floor_factory --factory`` (benchmark A's ``floor``
phase). Both routes take and answer the real check-in models
(``server.api.agent.CheckinRequest`` / ``CheckinResponse``):

* ``POST /floor/async``: an ``async def`` route, no thread-pool hop;
* ``POST /floor/sync``: the shape of the agent routes — a sync generator dependency
  (like ``db_session``), a sync callable dependency (like ``AgentAuth``), a sync
  endpoint, and one more thread-pool hop after it (like ``TransactionalRoute``'s
  commit) — with no database behind them.

(No ``from __future__ import annotations`` here: FastAPI reads these annotations at
runtime.)
"""

from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from patchwarden.server.api.agent import CheckinRequest, CheckinResponse


def _answer() -> CheckinResponse:
    return CheckinResponse(protocol=1, upload_inventory=False, next_checkin_seconds=300)


def session_like() -> Iterator[None]:
    """Like ``auth.db_session``: a sync generator dependency (two thread-pool hops)."""
    yield None


class AuthLike:
    """Like ``auth.AgentAuth``: a sync callable dependency using the session."""

    def __call__(self, request: Request, _session: Annotated[None, Depends(session_like)]) -> int:
        return len(request.headers.get("Authorization", ""))


class CommitLikeRoute(APIRoute):
    """Like ``auth.TransactionalRoute``: one more thread-pool hop after the handler."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def then_commit(request: Request) -> Response:
            response = await handler(request)
            await run_in_threadpool(lambda: None)
            return response

        return then_commit


def floor_factory() -> FastAPI:
    """uvicorn factory for the floor app."""
    app = FastAPI()
    router = APIRouter(route_class=CommitLikeRoute)

    @app.post("/floor/async")
    async def floor_async(body: CheckinRequest) -> CheckinResponse:
        return _answer()

    @router.post("/floor/sync")
    def floor_sync(
        body: CheckinRequest,
        _agent: Annotated[int, Depends(AuthLike())],
        _session: Annotated[None, Depends(session_like)],
    ) -> CheckinResponse:
        return _answer()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(router)
    return app
