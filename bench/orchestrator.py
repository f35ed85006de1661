"""Benchmark B: orchestrator decision time and job dispatch through the agent API.

Run from the repository root::

    .venv/bin/python -m bench.orchestrator             # the full run, about 25 minutes
    .venv/bin/python -m bench.orchestrator --quick     # smoke run, about 3 minutes

Three measures (bench/README.md has every figure's meaning, docs/performance.md the
results):

* **B1, pure decisions**: ``core.rollout.decide(view, now)`` on a ``RolloutView`` of
  ``--hosts`` jobs (100,000) in four rings, at four points of a simulated rollout, with
  group dependencies and maintenance windows (``core.windows.parse_window``) on a share
  of the hosts; the median of ``--ticks`` calls, ``now`` advancing one second per call.
  The same decisions with the window caches cleared before every window evaluation
  show what the caches buy (the "naive" per-job evaluation).
* **B1, the server's tick in the database**: the same rollout written to PostgreSQL and
  SQLite with bulk inserts, then ``services.orchestrator.tick`` timed as a whole and by
  phase (``build_view`` with its ``host_windows``, ``decide``, ``apply_actions``, the
  rest: locking, rollback jobs, commit); between ticks, untimed, some running jobs
  finish and some released jobs are claimed, so every tick has work to release.
* **B2, dispatch**: a real server (uvicorn on ``bench.serve:app_factory``, which times
  every tick) on PostgreSQL with ``PATCHWARDEN_ORCHESTRATOR_INTERVAL`` = 1 s, ``--agents``
  agents enrolled through the API and one rollout with a job for each; simulated agents
  (asyncio) run the real cycle — check in, ``GET /jobs``, then per job a heartbeat and
  ``POST /jobs/{id}/result`` — every ``--poll-interval`` seconds. Measured: jobs
  completed per second, latency of each request kind, job times from the database, the
  ticks' durations meanwhile, and where the CPU went.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Table, func, insert, select, text, update

from bench.common import (
    add_output_arguments,
    audit_key,
    finish_report,
    median,
    new_report,
    parse_sized,
    print_targets,
)
from bench.database import throwaway_database
from bench.load import Window, percentile
from bench.procs import CpuSnapshot, ServerProcess, cpu_between
from bench.rawhttp import HttpError, make_client
from bench.serve import read_timings
from patchwarden.agent import AGENT_VERSION
from patchwarden.core import rollout as rules
from patchwarden.core import windows as window_rules
from patchwarden.core.windows import Blackout, MaintenanceWindow, parse_window
from patchwarden.server.services import orchestrator
from patchwarden.server.services.agents import create_enrollment_token
from patchwarden.server.services.deploy import DEFAULT_POLICY
from patchwarden.store.audit import Actor
from patchwarden.store.db import Database, open_database
from patchwarden.store.models import (
    AssetGroupMember,
    AssetGroupRow,
    AssetRow,
    GroupWindow,
    JobRow,
    MaintenanceWindowRow,
    RolloutRingRow,
    RolloutRow,
    table_of,
)

API = "/api/agent/v1"
TARGET_TICK_S = 1.0

#: Monday 2026-09-07: at 12:00 UTC two of the windows below are open, at 20:00 none.
DAY = datetime(2026, 9, 7, 12, 0, tzinfo=UTC)
EVENING = datetime(2026, 9, 7, 20, 0, tzinfo=UTC)

#: (name, RRULE, zone, minutes, blackouts): the maintenance windows of the fleet.
WINDOWS: tuple[tuple[str, str, str, int, tuple[tuple[date, date], ...]], ...] = (
    ("berlin-nightly", "FREQ=DAILY;BYHOUR=2;BYMINUTE=0", "Europe/Berlin", 240, ()),
    ("newyork-weekend", "FREQ=WEEKLY;BYDAY=SA,SU;BYHOUR=22", "America/New_York", 360, ()),
    ("tokyo-sunday", "FREQ=WEEKLY;BYDAY=SU;BYHOUR=1", "Asia/Tokyo", 180, ()),
    ("utc-workday", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=8", "UTC", 600, ()),
    ("sydney-first-saturday", "FREQ=MONTHLY;BYDAY=1SA;BYHOUR=23", "Australia/Sydney", 300, ()),
    (
        "london-three-daily",
        "FREQ=DAILY;BYHOUR=9,12,15;BYMINUTE=30",
        "Europe/London",
        90,
        ((date(2026, 12, 24), date(2027, 1, 2)),),
    ),
)

#: Rings: (name, share of the hosts, concurrency as a share of the ring, windowed share).
RINGS: tuple[tuple[str, float, float, float], ...] = (
    ("lab", 0.01, 0.10, 0.0),
    ("pilot", 0.09, 0.10, 0.10),
    ("wave-1", 0.40, 0.10, 0.50),
    ("wave-2", 0.50, 0.10, 0.80),
)
ENV_GROUPS = 20
DEPENDENCIES = ((1001, 1002), (1002, 1003))  # db -> app -> web
DEPENDENCY_SHARES = {1001: 0.02, 1002: 0.05, 1003: 0.08}
WINDOW_GROUP_BASE = 2001

_FULL: dict[str, Any] = {
    "hosts": 100_000,
    "ticks": 15,
    "db_ticks": 5,
    "progress": 500,
    "backends": "postgres,sqlite",
    "agents": 3000,
    "poll_interval": 30.0,
    "concurrency": 1000,
    "exec_seconds": 1.0,
    "duration": 150.0,
    "workers": "1,2",
    "naive": True,
}
_QUICK: dict[str, Any] = {
    "hosts": 10_000,
    "ticks": 5,
    "db_ticks": 2,
    "progress": 100,
    "backends": "postgres,sqlite",
    "agents": 200,
    "poll_interval": 5.0,
    "concurrency": 100,
    "exec_seconds": 0.5,
    "duration": 40.0,
    "workers": "1",
    "naive": True,
}


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------- the fleet


@dataclass
class Layout:
    """Who is in which ring, group and window (asset ids 1..hosts)."""

    hosts: int
    ring_of: dict[int, int]
    groups: dict[int, frozenset[int]]
    window_of: dict[int, tuple[int, ...]]  # asset -> indexes into WINDOWS
    windows: list[MaintenanceWindow]
    ring_sizes: list[int] = field(default_factory=list)


def build_layout(hosts: int, seed: int = 1) -> Layout:
    """Deterministic rings, groups (environment + dependency) and windows per host."""
    rng = random.Random(f"layout:{seed}")
    ids = list(range(1, hosts + 1))
    rng.shuffle(ids)
    ring_of: dict[int, int] = {}
    start = 0
    sizes = []
    for index, (_name, share, _conc, _windowed) in enumerate(RINGS):
        size = round(hosts * share) if index < len(RINGS) - 1 else hosts - start
        for asset in ids[start : start + size]:
            ring_of[asset] = index
        sizes.append(size)
        start += size
    groups: dict[int, frozenset[int]] = {}
    window_of: dict[int, tuple[int, ...]] = {}
    for asset in range(1, hosts + 1):
        member = {1 + asset % ENV_GROUPS}
        for group, share in DEPENDENCY_SHARES.items():
            if rng.random() < share:
                member.add(group)
        windowed = RINGS[ring_of[asset]][3]
        if rng.random() < windowed:
            first = rng.randrange(len(WINDOWS))
            chosen = (first,) if rng.random() > 0.05 else (first, (first + 3) % len(WINDOWS))
            window_of[asset] = chosen
            member.update(WINDOW_GROUP_BASE + w for w in chosen)
        groups[asset] = frozenset(member)
    windows = [
        parse_window(rrule, zone, minutes, blackouts=[Blackout(a, b) for a, b in bl], name=name)
        for name, rrule, zone, minutes, bl in WINDOWS
    ]
    return Layout(hosts, ring_of, groups, window_of, windows, sizes)


def ring_plans(layout: Layout) -> list[rules.RingPlan]:
    """Concurrency 10 % of the ring, error budget 2 %, threshold 95 %, the last ring
    behind an approval gate with a one-hour soak before it."""
    plans = []
    for index, (name, _share, concurrency, _windowed) in enumerate(RINGS):
        size = layout.ring_sizes[index]
        plans.append(
            rules.RingPlan(
                name,
                max(1, round(size * concurrency)),
                max(1, round(size * 0.02)),
                0.95,
                timedelta(minutes=60 if index == len(RINGS) - 2 else 0),
                requires_approval=index == len(RINGS) - 1,
            )
        )
    return plans


@dataclass(frozen=True)
class Point:
    """A moment of the simulated rollout."""

    name: str
    now: datetime
    running_ring: int
    done_share: float  # of the running ring: finished (mostly succeeded)
    in_flight_share: float  # of the running ring's concurrency


POINTS = (
    Point("1 lab ring starting", DAY, 0, 0.0, 0.5),
    Point("2 wave-1 running, 25 % done", DAY, 2, 0.25, 1.0),
    Point("3 wave-2 running, 90 % done, daytime", DAY, 3, 0.90, 1.0),
    Point("4 wave-2 running, 10 % done, windows closed", EVENING, 3, 0.10, 0.6),
)


def job_states(layout: Layout, point: Point, seed: int = 1) -> dict[int, dict[str, Any]]:
    """Per asset (= job id): status and the timestamps ``decide`` looks at."""
    rng = random.Random(f"states:{seed}:{point.name}")
    now = point.now
    plans = ring_plans(layout)
    states: dict[int, dict[str, Any]] = {}
    by_ring: dict[int, list[int]] = {}
    for asset, ring in layout.ring_of.items():
        by_ring.setdefault(ring, []).append(asset)
    for ring, members in by_ring.items():
        members.sort()
        if ring < point.running_ring:
            for asset in members:
                roll = rng.random()
                status = "succeeded" if roll < 0.975 else "failed" if roll < 0.985 else "offline"
                states[asset] = {"status": status, "attempt": 1, "finished": True}
            continue
        if ring > point.running_ring:
            for asset in members:
                states[asset] = {"status": "pending", "attempt": 0}
            continue
        done = round(len(members) * point.done_share)
        flight = min(len(members) - done, round(plans[ring].concurrency * point.in_flight_share))
        for n, asset in enumerate(members):
            if n < done:
                roll = rng.random()
                status = "succeeded" if roll < 0.99 else "failed" if roll < 0.995 else "offline"
                states[asset] = {"status": status, "attempt": 1, "finished": True}
            elif n < done + flight:
                roll = rng.random()
                released = now - timedelta(minutes=rng.uniform(0, 40))
                if roll < 0.2:
                    states[asset] = {"status": "ready", "attempt": 0, "released_at": released}
                elif roll < 0.95:
                    claimed = released + timedelta(minutes=rng.uniform(0, 5))
                    # About 1 % of the leases have lapsed (the agent went quiet).
                    lease = claimed + timedelta(minutes=15 if rng.random() > 0.01 else -1)
                    states[asset] = {
                        "status": "running",
                        "attempt": 1,
                        "released_at": released,
                        "claimed_at": claimed,
                        "lease_until": lease,
                    }
                else:
                    states[asset] = {
                        "status": "retry_wait",
                        "attempt": 1,
                        "released_at": released,
                        "not_before": now + timedelta(minutes=rng.uniform(-2, 8)),
                    }
            else:
                states[asset] = {"status": "pending", "attempt": 0}
    return states


def ring_states(point: Point) -> list[rules.RingState]:
    """Ring statuses at a point (rings before the running one completed)."""
    result = []
    for index in range(len(RINGS)):
        if index < point.running_ring:
            result.append(rules.RingState("completed", approved=True))
        elif index == point.running_ring:
            result.append(rules.RingState("running", approved=True))
        else:
            result.append(rules.RingState("pending"))
    return result


def build_view(layout: Layout, point: Point) -> rules.RolloutView:
    """The ``RolloutView`` the orchestrator would build for this point."""
    states = job_states(layout, point)
    jobs = tuple(
        rules.JobView(
            job_id=asset,
            asset_id=asset,
            ring=layout.ring_of[asset],
            status=states[asset]["status"],
            groups=layout.groups[asset],
            released_at=states[asset].get("released_at"),
            claimed_at=states[asset].get("claimed_at"),
            lease_until=states[asset].get("lease_until"),
            not_before=states[asset].get("not_before"),
        )
        for asset in range(1, layout.hosts + 1)
    )
    windows = {
        asset: tuple(layout.windows[w] for w in chosen)
        for asset, chosen in layout.window_of.items()
    }
    return rules.RolloutView(
        status="running",
        rings=tuple(ring_plans(layout)),
        ring_states=tuple(ring_states(point)),
        jobs=jobs,
        windows=windows,
        dependencies=DEPENDENCIES,
    )


# ---------------------------------------------------------------- B1: decide


@contextmanager
def uncached_windows() -> Iterator[None]:
    """Evaluate every window from scratch: clear ``core.windows``' caches before each
    ``can_start`` that ``core.rollout`` makes (the naive per-job evaluation)."""
    original = rules.can_start

    def cold(*args: Any, **kwargs: Any) -> bool:
        window_rules._compile.cache_clear()
        window_rules._month.cache_clear()
        return original(*args, **kwargs)

    rules.can_start = cold  # type: ignore[assignment]
    try:
        yield
    finally:
        rules.can_start = original  # type: ignore[assignment]


def measure_decide(layout: Layout, ticks: int, naive: bool) -> list[dict[str, Any]]:
    """``decide`` at every point: median of ``ticks`` calls (and one naive call)."""
    results = []
    for point in POINTS:
        view = build_view(layout, point)
        window_rules._compile.cache_clear()
        window_rules._month.cache_clear()
        seconds, cpu = [], []
        actions: list[rules.Action] = []
        for n in range(ticks):
            now = point.now + timedelta(seconds=n)
            start, start_cpu = time.perf_counter(), time.process_time()
            actions = rules.decide(view, now)
            seconds.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        counts: dict[str, int] = {}
        for action in actions:
            counts[type(action).__name__] = counts.get(type(action).__name__, 0) + 1
        statuses: dict[str, int] = {}
        for job in view.jobs:
            statuses[job.status] = statuses.get(job.status, 0) + 1
        entry: dict[str, Any] = {
            "point": point.name,
            "now": point.now.isoformat(),
            "jobs": len(view.jobs),
            "statuses": statuses,
            "first_call_s": seconds[0],
            "median_s": median(seconds),
            "max_s": max(seconds),
            "median_cpu_s": median(cpu),
            "actions_last_call": counts,
        }
        if naive:
            start = time.perf_counter()
            with uncached_windows():
                naive_actions = rules.decide(view, point.now)
            entry["naive_uncached_windows_s"] = time.perf_counter() - start
            entry["naive_same_actions"] = naive_actions == rules.decide(view, point.now)
            entry["naive_ratio"] = entry["naive_uncached_windows_s"] / entry["median_s"]
        results.append(entry)
        _log(
            f"  decide at {point.name}: median {entry['median_s'] * 1000:.1f} ms "
            f"(first {entry['first_call_s'] * 1000:.1f} ms), actions {counts}"
            + (
                f"; uncached windows {entry['naive_uncached_windows_s']:.2f} s "
                f"(x{entry['naive_ratio']:.0f})"
                if naive
                else ""
            )
        )
    return results


# ----------------------------------------------------------- B1: tick in the DB


def _insert(database: Database, model: Any, rows: list[dict[str, Any]], batch: int = 5000) -> None:
    """Core ``INSERT`` in batches (Python-side column defaults applied)."""
    table: Table = table_of(model)
    with database.engine.begin() as connection:
        for first in range(0, len(rows), batch):
            connection.execute(insert(table), rows[first : first + batch])


def _payload(asset: int) -> dict[str, Any]:
    return {
        "kind": "install",
        "backend": "apt",
        "packages": [
            {"name": "openssl", "version": "3.0.17-1~deb12u2"},
            {"name": "libssl3", "version": "3.0.17-1~deb12u2"},
        ],
        "bandwidth_kbps": 0,
        "pre_hooks": [],
        "checks": [],
        "check_timeout": 60,
        "reboot": "if_required",
        "rollback_on_failure": True,
    }


def write_rollout(
    database: Database,
    layout: Layout,
    point: Point,
    *,
    asset_ids: list[int] | None = None,
    create_assets: bool = True,
    name: str = "bench rollout",
) -> int:
    """Write the layout's groups, windows, a rollout, its rings and jobs; the rollout id.

    ``asset_ids`` maps layout host ``n`` (1-based) to a real asset id (default: n), and
    ``create_assets`` inserts minimal asset rows for them first.
    """
    ids = asset_ids or list(range(1, layout.hosts + 1))
    real = {n: ids[n - 1] for n in range(1, layout.hosts + 1)}
    created = point.now - timedelta(days=2)
    if create_assets:
        _insert(
            database,
            AssetRow,
            [
                {
                    "id": real[n],
                    "hostname": f"host-{n:06d}.bench.example",
                    "created_at": created,
                    "os_family": "debian",
                    "os_ecosystem": "Debian:12",
                    "environment": "production" if layout.ring_of[n] == 3 else "staging",
                }
                for n in range(1, layout.hosts + 1)
            ],
        )
    group_ids = sorted(
        {g for groups in layout.groups.values() for g in groups}
        | {g for pair in DEPENDENCIES for g in pair}
    )
    with database.engine.begin() as connection:
        existing = set(connection.scalars(select(AssetGroupRow.id)))
    fresh = [g for g in group_ids if g not in existing]
    _insert(
        database,
        AssetGroupRow,
        [
            {"id": g, "name": f"bench-group-{g}", "created_at": created, "updated_at": created}
            for g in fresh
        ],
    )
    _insert(
        database,
        AssetGroupMember,
        [
            {"group_id": g, "asset_id": real[n]}
            for n, groups in layout.groups.items()
            for g in sorted(groups)
        ],
    )
    with database.engine.begin() as connection:
        have_windows = connection.scalar(select(func.count()).select_from(MaintenanceWindowRow))
    if not have_windows:
        _insert(
            database,
            MaintenanceWindowRow,
            [
                {
                    "id": i + 1,
                    "name": name_,
                    "rrule": rrule,
                    "timezone": zone,
                    "duration_minutes": minutes,
                    "blackouts": [[a.isoformat(), b.isoformat()] for a, b in blackouts],
                    "created_at": created,
                }
                for i, (name_, rrule, zone, minutes, blackouts) in enumerate(WINDOWS)
            ],
        )
        _insert(
            database,
            GroupWindow,
            [{"group_id": WINDOW_GROUP_BASE + i, "window_id": i + 1} for i in range(len(WINDOWS))],
        )
    plans = ring_plans(layout)
    ring_rows = ring_states(point)
    rollout_id = _insert_rollout(
        database,
        created,
        name=name,
        status="running",
        target_groups=list(range(1, ENV_GROUPS + 1)),
        dependencies=[list(pair) for pair in DEPENDENCIES],
    )
    _insert(
        database,
        RolloutRingRow,
        [
            {
                "rollout_id": rollout_id,
                "idx": index,
                "name": plan.name,
                "members": {"percent": RINGS[index][1] * 100},
                "concurrency": plan.concurrency,
                "error_budget": plan.error_budget,
                "success_threshold": plan.success_threshold,
                "soak_minutes": int(plan.soak.total_seconds() // 60),
                "requires_approval": plan.requires_approval,
                "status": state.status,
                "approved": state.approved,
                "started_at": created if state.status != "pending" else None,
            }
            for index, (plan, state) in enumerate(zip(plans, ring_rows, strict=True))
        ],
    )
    states = job_states(layout, point)
    rows = []
    for n in range(1, layout.hosts + 1):
        state = states[n]
        rows.append(
            {
                "rollout_id": rollout_id,
                "ring_idx": layout.ring_of[n],
                "asset_id": real[n],
                "kind": "install",
                "status": state["status"],
                "attempt": state["attempt"],
                "payload": _payload(n),
                "plan": {"advisories": ["DSA-5999-1"], "risk_removed": 7.5},
                "released_at": state.get("released_at")
                or (created if state.get("finished") else None),
                "claimed_at": state.get("claimed_at"),
                "lease_until": state.get("lease_until"),
                "not_before": state.get("not_before"),
                "finished_at": created if state.get("finished") else None,
            }
        )
    _insert(database, JobRow, rows)
    _analyze(database)
    return int(rollout_id)


def _analyze(database: Database) -> None:
    if database.engine.dialect.name == "postgresql":
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE"))
    else:
        with database.engine.begin() as connection:
            connection.execute(text("ANALYZE"))


@contextmanager
def tick_phases(totals: dict[str, float]) -> Iterator[None]:
    """Time the tick's phases (module globals the orchestrator looks up at call time)."""
    targets: list[tuple[Any, str, str]] = [
        (orchestrator, "build_view", "build_view"),
        (orchestrator, "host_windows", "build_view: host_windows"),
        (orchestrator, "apply_actions", "apply_actions"),
        (rules, "decide", "decide"),
    ]
    originals = [(owner, attr, getattr(owner, attr)) for owner, attr, _label in targets]

    def wrap(label: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - start

        return timed

    for (owner, attr, label), (_o, _a, original) in zip(targets, originals, strict=True):
        setattr(owner, attr, wrap(label, original))
    try:
        yield
    finally:
        for owner, attr, original in originals:
            setattr(owner, attr, original)


def _progress(database: Database, rollout_id: int, count: int, now: datetime) -> None:
    """Untimed, between ticks: ``count`` running jobs succeed, ``count`` released jobs
    are claimed (what agents would have done since the last tick)."""
    with database.engine.begin() as connection:
        running = list(
            connection.scalars(
                select(JobRow.id)
                .where(JobRow.rollout_id == rollout_id, JobRow.status == "running")
                .order_by(JobRow.id)
                .limit(count)
            )
        )
        for first in range(0, len(running), 900):
            connection.execute(
                update(JobRow)
                .where(JobRow.id.in_(running[first : first + 900]))
                .values(status="succeeded", finished_at=now, lease_until=None)
            )
        ready = list(
            connection.scalars(
                select(JobRow.id)
                .where(JobRow.rollout_id == rollout_id, JobRow.status == "ready")
                .order_by(JobRow.id)
                .limit(count)
            )
        )
        for first in range(0, len(ready), 900):
            connection.execute(
                update(JobRow)
                .where(JobRow.id.in_(ready[first : first + 900]))
                .values(
                    status="running",
                    attempt=1,
                    claimed_at=now,
                    lease_until=now + timedelta(minutes=15),
                )
            )


def measure_db_ticks(
    backend: str, layout: Layout, point: Point, args: argparse.Namespace
) -> dict[str, Any]:
    """Write the rollout, then time ``orchestrator.tick`` ``--db-ticks`` times."""
    result: dict[str, Any] = {"backend": backend, "point": point.name, "ticks": []}
    workdir = Path(tempfile.mkdtemp(prefix="pw_bench_orch_"))
    with throwaway_database(backend, args.postgres_url, workdir) as url:
        database = open_database(url, migrate=True, audit_key=audit_key())
        try:
            start = time.perf_counter()
            rollout_id = write_rollout(database, layout, point)
            result["setup_s"] = time.perf_counter() - start
            _log(f"  {backend}: {layout.hosts} jobs written in {result['setup_s']:.0f} s")
            for n in range(args.db_ticks):
                now = point.now + timedelta(seconds=n)
                if n:
                    _progress(database, rollout_id, args.progress, now)
                phases: dict[str, float] = {}
                try:
                    with tick_phases(phases):
                        start, start_cpu = time.perf_counter(), time.process_time()
                        report = orchestrator.tick(database, now=now)
                        seconds = time.perf_counter() - start
                        cpu = time.process_time() - start_cpu
                except Exception as exc:  # a failing tick is a result too
                    result["error"] = f"{type(exc).__name__}: {str(exc)[:600]}"
                    _log(f"  {backend}: tick FAILED: {result['error'][:300]}")
                    break
                wrapped = sum(phases.get(k, 0.0) for k in ("build_view", "decide", "apply_actions"))
                phases["rest (locks, rollback jobs, commit, exceptions, emergency)"] = (
                    seconds - wrapped
                )
                result["ticks"].append(
                    {
                        "seconds": seconds,
                        "cpu_s": cpu,
                        "phases": phases,
                        "actions": report.actions,
                    }
                )
                _log(
                    f"  {backend}: tick {n + 1}: {seconds:.2f} s (CPU {cpu:.2f} s), "
                    + ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
                    + f"; actions {report.actions}"
                )
            if args.profile_tick and "error" not in result:
                result["profile"] = _profiled_tick(database, rollout_id, point, args)
        finally:
            database.dispose()
    steady = result["ticks"][1:] or result["ticks"]
    if steady:
        result["first_tick_s"] = result["ticks"][0]["seconds"]
        result["median_tick_s"] = median([t["seconds"] for t in steady])
        result["median_phases_s"] = {
            key: median([t["phases"].get(key, 0.0) for t in steady]) for key in steady[0]["phases"]
        }
    return result


def _profiled_tick(
    database: Database, rollout_id: int, point: Point, args: argparse.Namespace
) -> dict[str, Any]:
    """One more tick under cProfile (slower): the functions that take the time."""
    now = point.now + timedelta(seconds=args.db_ticks)
    _progress(database, rollout_id, args.progress, now)
    profiler = cProfile.Profile()
    profiler.enable()
    orchestrator.tick(database, now=now)
    profiler.disable()
    stats = pstats.Stats(profiler)
    entries: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]
    rows = []
    for (filename, line, function), (_cc, calls, own, cumulative, _callers) in entries.items():
        short = filename.split("site-packages/")[-1].split("/src/")[-1]
        rows.append((cumulative, own, calls, f"{function} ({short}:{line})"))
    interesting = [r for r in rows if "patchwarden" in r[3] or "sqlalchemy/orm" in r[3]]
    return {
        "total_s": total,
        "top_cumulative": [
            (name, round(cum, 3), calls)
            for cum, _own, calls, name in sorted(interesting, reverse=True)[:25]
        ],
        "top_own": [
            (name, round(own, 3), calls)
            for _cum, own, calls, name in sorted(rows, key=lambda r: r[1], reverse=True)[:20]
        ],
    }


# ------------------------------------------------------------- B2: dispatch


@dataclass
class Agent:
    """A simulated enrolled agent."""

    asset_id: int
    headers: dict[str, str]


@dataclass
class Dispatch:
    """Client-side records of a dispatch run."""

    window: Window
    completions: list[float] = field(default_factory=list)  # perf_counter times
    claimed: int = 0
    errors: dict[str, int] = field(default_factory=dict)


JSON = {"Content-Type": "application/json"}


async def enroll(client: Any, token: str, count: int, concurrency: int = 8) -> list[Agent]:
    """Enroll ``count`` agents through the API."""
    agents: list[Agent | None] = [None] * count
    todo = iter(range(count))

    async def worker() -> None:
        for n in todo:
            body = orjson.dumps(
                {
                    "protocol": 1,
                    "enrollment_token": token,
                    "hostname": f"dispatch-{n:05d}.bench.example",
                    "machine_id": f"{n + 7:032x}",
                    "agent_version": AGENT_VERSION,
                }
            )
            status, answer = await client.request("POST", f"{API}/enroll", body, JSON)
            if status != 200:
                raise RuntimeError(f"enrollment failed ({status}): {answer[:300]!r}")
            data = orjson.loads(answer)
            agents[n] = Agent(
                int(data["asset_id"]), {"Authorization": f"Bearer {data['credential']}"}
            )

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [a for a in agents if a is not None]


async def run_agents(
    client: Any, agents: list[Agent], args: argparse.Namespace, record: Dispatch, stop: float
) -> None:
    """Every agent's cycle until ``stop`` (perf_counter time) or no job is left."""
    window = record.window
    checkin_body = orjson.dumps(
        {"protocol": 1, "inventory_hash": "", "agent_version": AGENT_VERSION, "spooled": 0}
    )

    async def call(name: str, method: str, path: str, body: bytes | None, agent: Agent) -> Any:
        started = time.perf_counter()
        try:
            status, answer = await client.request(
                method, path, body, {**agent.headers, **(JSON if body is not None else {})}
            )
        except HttpError as exc:
            label = "error:" + str(exc).split(":", 1)[0]
            window.record(name, started, time.perf_counter() - started, label)
            return None
        label = "ok" if status == 200 else f"http_{status}"
        window.record(name, started, time.perf_counter() - started, label)
        return orjson.loads(answer) if status == 200 else None

    async def cycle(agent: Agent, rng: random.Random) -> None:
        await asyncio.sleep(rng.uniform(0, args.poll_interval))
        while time.perf_counter() < stop:
            await call("checkin", "POST", f"{API}/checkin", checkin_body, agent)
            claimed = await call("claim", "GET", f"{API}/jobs", None, agent)
            for job in (claimed or {}).get("jobs", []):
                record.claimed += 1
                attempt = orjson.dumps({"protocol": 1, "attempt": job["attempt"]})
                path = f"{API}/jobs/{job['job_id']}"
                await call("heartbeat", "POST", f"{path}/heartbeat", attempt, agent)
                await asyncio.sleep(args.exec_seconds)
                result = orjson.dumps(
                    {
                        "protocol": 1,
                        "attempt": job["attempt"],
                        "status": "succeeded",
                        "result": {
                            "job_id": job["job_id"],
                            "attempt": job["attempt"],
                            "status": "succeeded",
                            "packages": job.get("packages", []),
                            "checks": [],
                            "rebooted": False,
                            "duration_seconds": args.exec_seconds,
                        },
                    }
                )
                answer = await call("result", "POST", f"{path}/result", result, agent)
                if answer is not None:
                    record.completions.append(time.perf_counter())
            jitter = 1 + rng.uniform(-0.1, 0.1)
            await asyncio.sleep(args.poll_interval * jitter)

    await asyncio.gather(
        *(cycle(agent, random.Random(agent.asset_id)) for agent in agents),
        return_exceptions=False,
    )


def _job_times(database: Database, rollout_id: int) -> dict[str, Any]:
    """Server-side timings of the finished jobs: release to claim, claim to finish."""
    with database.engine.connect() as connection:
        rows = connection.execute(
            select(JobRow.released_at, JobRow.claimed_at, JobRow.finished_at, JobRow.status).where(
                JobRow.rollout_id == rollout_id
            )
        ).all()
    statuses: dict[str, int] = {}
    wait, run = [], []
    for released, claimed, finished, status in rows:
        statuses[status] = statuses.get(status, 0) + 1
        if released and claimed:
            wait.append((claimed - released).total_seconds())
        if claimed and finished:
            run.append((finished - claimed).total_seconds())

    def spread(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            "p50_s": percentile(ordered, 50),
            "p90_s": percentile(ordered, 90),
            "max_s": ordered[-1] if ordered else float("nan"),
        }

    return {
        "statuses": statuses,
        "release_to_claim": spread(wait),
        "claim_to_finish": spread(run),
    }


def _tick_stats(records: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    ticks = [r for r in records if r["event"] == "tick" and start <= r["start"] <= end]
    seconds = sorted(t["seconds"] for t in ticks)
    if not seconds:
        return {"ticks": 0}
    phases: dict[str, list[float]] = {}
    for tick in ticks:
        for key, value in tick["phases"].items():
            phases.setdefault(key, []).append(value)
    releases = [t["actions"].get("Release", 0) for t in ticks if t.get("actions")]
    return {
        "ticks": len(ticks),
        "median_s": percentile(seconds, 50),
        "p90_s": percentile(seconds, 90),
        "max_s": seconds[-1],
        "median_phases_s": {k: statistics.median(v) for k, v in phases.items()},
        "releases_per_tick_max": max(releases, default=0),
        "releases_total": sum(releases),
        "pids": sorted({t["pid"] for t in ticks}),
    }


def _reset(database: Database, rollout_id: int) -> None:
    """Put the dispatch rollout back at its start (jobs pending, rings pending)."""
    with database.engine.begin() as connection:
        connection.execute(
            text(
                "DELETE FROM job_result WHERE job_id IN (SELECT id FROM job WHERE rollout_id = :r)"
            ),
            {"r": rollout_id},
        )
        connection.execute(
            update(JobRow)
            .where(JobRow.rollout_id == rollout_id)
            .values(
                status="pending",
                attempt=0,
                released_at=None,
                claimed_at=None,
                lease_until=None,
                not_before=None,
                finished_at=None,
                last_error="",
            )
        )
        connection.execute(
            update(RolloutRingRow)
            .where(RolloutRingRow.rollout_id == rollout_id)
            .values(status="pending", started_at=None, finished_at=None, soak_until=None)
        )
        connection.execute(
            update(RolloutRow)
            .where(RolloutRow.id == rollout_id)
            .values(status="running", finished_at=None, halt_reason="")
        )
    _analyze(database)


def _insert_rollout(database: Database, created: datetime, **fields: Any) -> int:
    """A rollout row requested by the bench with the default policy, started at
    ``created``; its id."""
    with database.engine.begin() as connection:
        row_id: int = connection.execute(
            insert(table_of(RolloutRow)).returning(table_of(RolloutRow).c.id),
            {
                "policy": dict(DEFAULT_POLICY),
                "requested_by": "bench",
                "created_at": created,
                "started_at": created,
                **fields,
            },
        ).scalar_one()
    return row_id


def _dispatch_rollout(database: Database, agents: list[Agent], args: argparse.Namespace) -> int:
    """One rollout, one job per agent: a canary ring (2 %, all at once) and a main ring
    (concurrency ``--concurrency``), no windows, generous error budgets."""
    now = datetime.now(UTC)
    created = now - timedelta(minutes=5)
    canary = max(1, round(len(agents) * 0.02))
    # paused: started by _reset/_start when the agents run
    rollout_id = _insert_rollout(database, created, name="bench dispatch", status="paused")
    _insert(
        database,
        RolloutRingRow,
        [
            {
                "rollout_id": rollout_id,
                "idx": 0,
                "name": "canary",
                "concurrency": canary,
                "error_budget": max(1, canary // 10),
                "success_threshold": 0.9,
                "status": "pending",
            },
            {
                "rollout_id": rollout_id,
                "idx": 1,
                "name": "main",
                "concurrency": args.concurrency,
                "error_budget": max(1, len(agents) // 20),
                "success_threshold": 0.9,
                "status": "pending",
            },
        ],
    )
    _insert(
        database,
        JobRow,
        [
            {
                "rollout_id": rollout_id,
                "ring_idx": 0 if n < canary else 1,
                "asset_id": agent.asset_id,
                "kind": "install",
                "status": "pending",
                "payload": _payload(n),
                "plan": {"advisories": ["DSA-5999-1"], "risk_removed": 7.5},
            }
            for n, agent in enumerate(agents)
        ],
    )
    return int(rollout_id)


def _background_rollout(database: Database, hosts: int) -> int:
    """A second, large rollout no agent serves (its jobs wait for claims): the loop
    decides over it at every tick, as it would for a big rollout in progress."""
    layout = build_layout(hosts, seed=7)
    with database.engine.connect() as connection:
        top = int(connection.scalar(select(func.max(AssetRow.id))) or 0)
    ids = list(range(top + 1, top + hosts + 1))
    point = Point("background wave-1 running", datetime.now(UTC), 2, 0.25, 1.0)
    rollout_id = write_rollout(database, layout, point, asset_ids=ids, name="bench background")
    if database.engine.dialect.name == "postgresql":
        with database.engine.begin() as connection:
            connection.execute(text("SELECT setval('asset_id_seq', (SELECT max(id) FROM asset))"))
    return rollout_id


async def dispatch_run(
    database: Database,
    url: str,
    home: Path,
    agents: list[Agent],
    *,
    rollout_id: int,
    workers: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One dispatch measurement against a fresh server with ``workers`` processes."""
    _reset(database, rollout_id)
    with database.engine.begin() as connection:
        connection.execute(
            update(RolloutRow).where(RolloutRow.id == rollout_id).values(status="paused")
        )
    server = ServerProcess(
        url,
        home / f"dispatch-w{workers}",
        workers=workers,
        mode="instrumented",
        env={"PATCHWARDEN_ORCHESTRATOR_INTERVAL": str(args.tick_interval)},
    ).start()
    client = make_client("raw", server.url, args.connections, keepalive=False)
    record = Dispatch(Window(0.0, args.duration))
    try:
        record.window.open()
        begin_wall = time.time()
        before = CpuSnapshot.take(server.pid)
        with database.engine.begin() as connection:
            connection.execute(
                update(RolloutRow).where(RolloutRow.id == rollout_id).values(status="running")
            )
        stop = record.window.end
        runner = asyncio.create_task(run_agents(client, agents, args, record, stop))
        total = len(agents)
        while time.perf_counter() < stop and len(record.completions) < total:
            await asyncio.sleep(1.0)
        elapsed = time.perf_counter() - record.window.start
        after = CpuSnapshot.take(server.pid)
        end_wall = time.time()
        # Let the agents' current cycles end (they stop starting new ones).
        record.window.duration_s = elapsed
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    finally:
        await client.close()
        server.stop()
    completions = sorted(t - record.window.start for t in record.completions)
    done = len(completions)
    steady = {}
    if done >= 10:
        lo, hi = completions[done // 10], completions[(9 * done) // 10]
        steady = {
            "from_s": lo,
            "to_s": hi,
            "jobs_per_s": (0.8 * done) / (hi - lo) if hi > lo else float("nan"),
        }
    summary = record.window.summary()
    ticks = _tick_stats(read_timings(server.timing_dir), begin_wall, end_wall)
    result = {
        "workers": workers,
        "agents": len(agents),
        "poll_interval_s": args.poll_interval,
        "concurrency": args.concurrency,
        "exec_seconds": args.exec_seconds,
        "elapsed_s": elapsed,
        "jobs_completed": done,
        "all_done": done >= total,
        "jobs_per_s_overall": done / elapsed if elapsed else 0.0,
        "jobs_per_s_steady": steady,
        "requests": summary,
        "job_times": _job_times(database, rollout_id),
        "ticks": ticks,
        "cpu": cpu_between(before, after).as_dict(),
    }
    _log(
        f"  dispatch, {workers} worker(s): {done}/{total} jobs in {elapsed:.0f} s = "
        f"{result['jobs_per_s_overall']:.1f}/s overall, steady "
        f"{steady.get('jobs_per_s', float('nan')):.1f}/s; "
        + "; ".join(
            f"{k} p50 {v['p50_ms']:.0f} / p99 {v['p99_ms']:.0f} ms ({v['rate_per_s']:.0f}/s)"
            for k, v in summary.items()
        )
        + f"; ticks: {ticks.get('ticks')} median {ticks.get('median_s', 0):.3f} s, "
        f"max {ticks.get('max_s', 0):.3f} s; cores: server {result['cpu']['server_cores']}, "
        f"postgres {result['cpu']['postgres_cores']}, simulator {result['cpu']['simulator_cores']}"
    )
    return result


async def measure_dispatch(args: argparse.Namespace) -> dict[str, Any]:
    """B2 on a throwaway PostgreSQL database."""
    result: dict[str, Any] = {"runs": []}
    home = Path(tempfile.mkdtemp(prefix="pw_bench_dispatch_"))
    with throwaway_database("postgres", args.postgres_url, None) as url:
        database = open_database(url, migrate=True, audit_key=audit_key())
        try:
            with database.session() as session:
                _row, token = create_enrollment_token(
                    session,
                    Actor("bench", "system"),
                    now=datetime.now(UTC),
                    max_uses=args.agents + 10,
                )
            server = ServerProcess(url, home / "enroll", workers=1, mode="instrumented").start()
            client = make_client("raw", server.url, 8, keepalive=False)
            try:
                start = time.perf_counter()
                agents = await enroll(client, token, args.agents)
                result["enroll_s"] = time.perf_counter() - start
            finally:
                await client.close()
                server.stop()
            _log(f"  {len(agents)} agents enrolled in {result['enroll_s']:.0f} s")
            rollout_id = _dispatch_rollout(database, agents, args)
            if args.background_hosts:
                start = time.perf_counter()
                result["background_rollout"] = _background_rollout(database, args.background_hosts)
                _log(
                    f"  background rollout of {args.background_hosts} jobs written in "
                    f"{time.perf_counter() - start:.0f} s"
                )
            for workers in [int(w) for w in str(args.workers).split(",") if w.strip()]:
                result["runs"].append(
                    await dispatch_run(
                        database,
                        url,
                        home,
                        agents,
                        rollout_id=rollout_id,
                        workers=workers,
                        args=args,
                    )
                )
        finally:
            database.dispose()
    return result


# ---------------------------------------------------------------------- main


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.orchestrator",
        description="Orchestrator decision time and job dispatch (see bench/README.md).",
    )
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--parts", default="decide,db,dispatch", help="decide, db, dispatch")
    parser.add_argument("--hosts", type=int, help="jobs of the B1 rollout (100000)")
    parser.add_argument("--ticks", type=int, help="decide calls per point (15)")
    parser.add_argument("--db-ticks", type=int, help="database ticks per backend (5)")
    parser.add_argument(
        "--progress", type=int, help="jobs finishing and claimed between database ticks (500)"
    )
    parser.add_argument("--backends", help="for the database ticks (postgres,sqlite)")
    parser.add_argument(
        "--no-naive",
        dest="naive",
        action="store_false",
        default=None,
        help="skip the decisions with uncached windows",
    )
    parser.add_argument(
        "--no-profile-tick",
        dest="profile_tick",
        action="store_false",
        default=True,
        help="skip the extra database tick under cProfile",
    )
    parser.add_argument("--agents", type=int, help="B2: enrolled agents, one job each (3000)")
    parser.add_argument(
        "--poll-interval", type=float, help="B2: seconds between an agent's cycles (30)"
    )
    parser.add_argument("--concurrency", type=int, help="B2: main ring concurrency (1000)")
    parser.add_argument(
        "--exec-seconds", type=float, help="B2: simulated job run time between claim and result (1)"
    )
    parser.add_argument("--duration", type=float, help="B2: longest run, seconds (150)")
    parser.add_argument("--workers", help="B2: server worker counts (1,2)")
    parser.add_argument(
        "--tick-interval", type=float, default=1.0, help="B2: PATCHWARDEN_ORCHESTRATOR_INTERVAL (1)"
    )
    parser.add_argument(
        "--background-hosts",
        type=int,
        default=0,
        help="B2: also a large rollout no agent serves, decided at every tick (0)",
    )
    parser.add_argument(
        "--connections", type=int, default=64, help="B2: simulator connection limit (64)"
    )
    add_output_arguments(parser)
    return parse_sized(parser, _FULL, _QUICK)


def main() -> None:
    """Run benchmark B and print (and optionally save) every figure."""
    args = _arguments()
    parts = set(args.parts.split(","))
    report = new_report(args)
    try:
        layout = build_layout(args.hosts)
        report["layout"] = {
            "hosts": layout.hosts,
            "ring_sizes": layout.ring_sizes,
            "windowed_hosts": len(layout.window_of),
            "dependency_groups": {
                str(g): sum(1 for gs in layout.groups.values() if g in gs)
                for g in DEPENDENCY_SHARES
            },
        }
        if "decide" in parts:
            _log(f"B1: decide over {args.hosts} jobs")
            report["decide"] = measure_decide(layout, args.ticks, args.naive)
        if "db" in parts:
            report["db_ticks"] = []
            for backend in args.backends.split(","):
                _log(f"B1: orchestrator.tick in {backend}")
                report["db_ticks"].append(measure_db_ticks(backend, layout, POINTS[1], args))
        if "dispatch" in parts:
            _log(f"B2: dispatch to {args.agents} agents")
            report["dispatch"] = asyncio.run(measure_dispatch(args))
    finally:
        finish_report(report, args, _targets(report))
    print_targets(report)


def _targets(report: dict[str, Any]) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    decide = report.get("decide") or []
    if decide:
        worst = max(p["median_s"] for p in decide)
        targets["decide_per_tick"] = {
            "target_s": TARGET_TICK_S,
            "worst_point_median_s": worst,
            "met": worst <= TARGET_TICK_S,
        }
    for entry in report.get("db_ticks") or []:
        median_s = entry.get("median_tick_s")
        targets[f"db_tick_{entry['backend']}"] = {
            "target_s": TARGET_TICK_S,
            "median_s": median_s,
            "error": entry.get("error"),
            "met": median_s is not None and median_s <= TARGET_TICK_S and "error" not in entry,
        }
    return targets


if __name__ == "__main__":
    main()
