"""The production app factory with timing wrappers, for benchmarks that look inside.

Run by ``bench.procs.ServerProcess(mode="instrumented")`` as
``python -m uvicorn bench.serve:app_factory --factory --workers N``. It wraps, in the
server process only and without changing what they do:

* ``services.orchestrator.tick`` (called by the orchestrator loop each interval), with
  its phases ``build_view``, ``core.rollout.decide`` and ``apply_actions``;
* ``services.agents.process_report`` (the background processing of an uploaded
  inventory: record it, refresh the host's findings, audit).

Each call appends one JSON line to ``$PATCHWARDEN_BENCH_TIMING_DIR/<pid>.jsonl``:
``{"event": "tick", "start": <unix time>, "seconds": …, "phases": {…}, "actions": {…}}``
or ``{"event": "report", "start": …, "seconds": …, "status": …}``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from fastapi import FastAPI

_lock = threading.Lock()
_phases = threading.local()


def _writer() -> Callable[[dict[str, Any]], None]:
    folder = os.environ.get("PATCHWARDEN_BENCH_TIMING_DIR")
    if not folder:
        return lambda _record: None
    path = Path(folder) / f"{os.getpid()}.jsonl"

    def write(record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with _lock, path.open("a", encoding="utf-8") as handle:
            handle.write(line)

    return write


def _phase(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Time ``func`` into the current thread's phase totals (when a tick is open)."""

    @wraps(func)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            totals: dict[str, float] | None = getattr(_phases, "totals", None)
            if totals is not None:
                totals[name] = totals.get(name, 0.0) + time.perf_counter() - start

    return timed


def _timed(
    write: Callable[[dict[str, Any]], None],
    event: str,
    func: Callable[..., Any],
    describe: Callable[[Any], dict[str, Any]],
    *,
    phases: bool = False,
) -> Callable[..., Any]:
    """``func`` writing one timing record per call: the event, its start and duration,
    ``describe(result)`` (``None`` when it raised) and, with ``phases``, the phases
    timed inside it by ``_phase`` wrappers."""

    @wraps(func)
    def timed(*args: Any, **kwargs: Any) -> Any:
        if phases:
            _phases.totals = {}
        wall, start = time.time(), time.perf_counter()
        result = None
        try:
            result = func(*args, **kwargs)
            return result
        finally:
            record = {"event": event, "start": wall, "seconds": time.perf_counter() - start}
            record.update(describe(result))
            if phases:
                record["phases"] = _phases.totals
                _phases.totals = None
            write(record)

    return timed


def instrument() -> None:
    """Install the wrappers (idempotent per process)."""
    from patchwarden.core import rollout
    from patchwarden.server.services import agents, orchestrator

    if getattr(orchestrator.tick, "_bench_wrapped", False):
        return
    write = _writer()
    tick = orchestrator.tick
    process_report = agents.process_report

    timed_tick = _timed(
        write,
        "tick",
        tick,
        lambda report: {
            "rollouts": getattr(report, "rollouts", None),
            "actions": getattr(report, "actions", None),
        },
        phases=True,
    )
    timed_report = _timed(
        write,
        "report",
        process_report,
        lambda status: {"status": status if status is not None else "error"},
    )

    timed_tick._bench_wrapped = True  # type: ignore[attr-defined]
    orchestrator.tick = timed_tick  # looked up by run_loop at call time
    orchestrator.build_view = _phase("build_view", orchestrator.build_view)
    orchestrator.apply_actions = _phase("apply_actions", orchestrator.apply_actions)
    rollout.decide = _phase("decide", rollout.decide)  # orchestrator calls rules.decide
    # server.reports imports it when the app is built, after this
    agents.process_report = timed_report


def app_factory() -> FastAPI:
    """uvicorn factory: instrument, then build the production app."""
    instrument()
    from patchwarden.server.main import app_factory as production

    return production()


def read_timings(folder: Path) -> list[dict[str, Any]]:
    """Every record the instrumented server processes wrote, oldest first."""
    records: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                records.append({**json.loads(line), "pid": int(path.stem)})
    records.sort(key=lambda r: r["start"])
    return records
