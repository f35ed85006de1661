"""Where a check-in's and an upload's server time goes, measured without HTTP.

The same service calls the agent routes make, run in this process, one at a time, on
the benchmark's database (the server is stopped meanwhile):

* ``checkin_breakdown``: ``services.agents.checkin_with_credential``, what the
  check-in route's dependency runs in its one thread-pool hop (on PostgreSQL one
  statement: authenticate, record liveness, read the stored hash, count released jobs;
  then the commit) — what a check-in costs below FastAPI, Starlette and uvicorn.
  Subtracting it from the server's CPU per check-in under load leaves the cost of the
  HTTP and framework layers.
* ``upload_breakdown``: ``decode_inventory`` (gzip, JSON, validation of every field —
  timed alone, for reference), ``accept_inventory`` with the agent's declared hash and
  its commit (what happens before the 202: gzip, JSON, the document's top level), then
  ``process_report`` (what the report processor does: full validation, then
  ``store_inventory``, ``refresh_findings`` and ``recompute_for_assets``, each wrapped in
  ``services.agents`` to time it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from bench.common import median
from patchwarden.agent import AGENT_VERSION
from patchwarden.server.context import ServerConfig
from patchwarden.server.security import AGENT_PREFIX, parse_token
from patchwarden.server.services import agents as service
from patchwarden.store.db import Database


def _credential(header: str) -> tuple[int, str]:
    token = parse_token(header.removeprefix("Bearer "), AGENT_PREFIX)
    assert token is not None
    return token.row_id, token.secret


def checkin_breakdown(
    database: Database, agents: Sequence[tuple[str, str]], count: int
) -> dict[str, Any]:
    """``count`` check-ins of (Authorization header, inventory hash) pairs, in turn."""
    config = ServerConfig()
    wall: list[float] = []
    cpu: list[float] = []
    for n in range(count):
        header, digest = agents[n % len(agents)]
        start, start_cpu = time.perf_counter(), time.process_time()
        _, answer = service.checkin_with_credential(
            database,
            header.removeprefix("Bearer "),
            inventory_hash=digest,
            reboot_required=False,
            uptime_seconds=86_400,
            agent_version=AGENT_VERSION,
            now=datetime.now(UTC),
            config=config,
        )
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        assert not answer.upload_inventory
    # The first calls warm caches (statement compilation, prepared statements).
    steady = slice(min(200, count // 4), None)
    return {
        "checkins": count,
        "wall_ms_median": median(wall[steady]) * 1000,
        "cpu_ms_median": median(cpu[steady]) * 1000,
        "cpu_ms_mean": sum(cpu[steady]) / len(cpu[steady]) * 1000,
        "statements": "services.agents.checkin_with_credential (one statement + COMMIT "
        "on PostgreSQL)",
    }


@contextmanager
def _wrapped(names: Sequence[str], totals: dict[str, float]) -> Iterator[None]:
    """Time calls of ``services.agents`` globals ``names`` into ``totals``."""
    originals = {name: getattr(service, name) for name in names}

    def wrap(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                totals[name] = totals.get(name, 0.0) + time.perf_counter() - start

        return timed

    for name, func in originals.items():
        setattr(service, name, wrap(name, func))
    try:
        yield
    finally:
        for name, func in originals.items():
            setattr(service, name, func)


def upload_breakdown(
    database: Database, uploads: Sequence[tuple[int, str, bytes]], label: str
) -> dict[str, Any]:
    """Accept and process (asset id, content hash, gzip body) uploads one by one, as the
    agent sends them (the hash in ``X-Patchwarden-Inventory-Hash``); median phases."""
    config = ServerConfig()
    runs: list[dict[str, float]] = []
    for asset_id, digest, body in uploads:
        phases: dict[str, float] = {}
        start, start_cpu = time.perf_counter(), time.process_time()
        service.decode_inventory(body, encoding="gzip", config=config)
        phases["decode_inventory (full validation, now done when applying)"] = (
            time.perf_counter() - start
        )
        mark, mark_cpu = time.perf_counter(), time.process_time()
        with database.session() as session:
            report = service.accept_inventory(
                session,
                asset_id,
                body,
                encoding="gzip",
                now=datetime.now(UTC),
                config=config,
                declared_hash=digest,
            )
            report_id = report.id
        phases["accept_inventory + commit (before the 202)"] = time.perf_counter() - mark
        phases["accept cpu"] = time.process_time() - mark_cpu
        mark, mark_cpu = time.perf_counter(), time.process_time()
        with _wrapped(("store_inventory", "refresh_findings", "recompute_for_assets"), phases):
            status = service.process_report(database, report_id, now=datetime.now(UTC))
        phases["process_report"] = time.perf_counter() - mark
        phases["process_report cpu"] = time.process_time() - mark_cpu
        phases["cpu_total"] = time.process_time() - start_cpu
        phases["wall_total"] = time.perf_counter() - start
        phases["processed"] = float(status == "processed")
        runs.append(phases)
    keys = list(runs[0]) if runs else []
    return {
        "label": label,
        "uploads": len(runs),
        "median_ms": {k: median([r.get(k, 0.0) for r in runs]) * 1000 for k in keys},
    }
