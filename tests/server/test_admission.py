"""Admission control keeps requests in progress within the database pool's capacity."""

from __future__ import annotations

import asyncio
from typing import Any

from patchwarden.server.admission import RESERVED_CONNECTIONS, DatabaseAdmission, admission_limit
from patchwarden.server.app import create_app
from patchwarden.server.context import AppContext


def test_requests_beyond_the_limit_wait_and_all_complete() -> None:
    running = 0
    peak = 0
    done: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        done.append(scope["n"])

    gate = DatabaseAdmission(app, limit=3)

    async def main() -> None:
        await asyncio.gather(*(gate({"type": "http", "n": n}, None, None) for n in range(20)))
        # Lifespan and other non-HTTP scopes are not counted.
        await gate({"type": "lifespan", "n": 99}, None, None)

    asyncio.run(main())
    assert peak == 3
    assert sorted(done) == [*range(20), 99]


def test_the_limit_leaves_connections_for_background_work() -> None:
    assert admission_limit(25) == 25 - RESERVED_CONNECTIONS
    assert admission_limit(2) == 1


def test_the_app_is_gated_by_its_pool(ctx: AppContext) -> None:
    app = create_app(ctx, background=False)
    gates = [m for m in app.user_middleware if m.cls is DatabaseAdmission]
    assert len(gates) == 1
    assert gates[0].kwargs["limit"] == admission_limit(ctx.db.connection_capacity)
    assert ctx.db.connection_capacity > RESERVED_CONNECTIONS
