"""Admission control: no more requests in progress than the database pool keeps open.

Handlers run on a thread pool and hold one pooled connection from their first query to
their commit, across several thread hops (dependencies, the endpoint, the commit).
When more requests are in progress than there are connections, every thread can end
up waiting for a connection held by a request that waits for a thread — a deadlock
that lasts until the pool's 30-second timeout (seen under load by bench.orchestrator:
heartbeats and results taking 30 to 90 s). Requests beyond the limit therefore wait here,
on the event loop, holding neither a thread nor a connection; they are never refused.
The limit counts the connections the pool keeps, not its burst ones: those are closed
after each use, and opening one costs PostgreSQL a new backend.
"""

from __future__ import annotations

import asyncio
from typing import Any

#: Connections kept for the process's own background work: the orchestrator loop, the
#: report processor and the report sweeper.
RESERVED_CONNECTIONS = 3


class DatabaseAdmission:
    """Pure ASGI middleware letting at most ``limit`` HTTP requests run at once."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = max(1, limit)
        self._gate: asyncio.Semaphore | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._gate is None:  # created on the serving loop
            self._gate = asyncio.Semaphore(self.limit)
        async with self._gate:
            await self.app(scope, receive, send)


def admission_limit(connection_capacity: int) -> int:
    """Requests allowed in progress for a pool handing out ``connection_capacity``."""
    return max(1, connection_capacity - RESERVED_CONNECTIONS)
