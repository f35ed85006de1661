"""Measure 3: the whole fleet into the database, on SQLite and PostgreSQL.

Setup (timed, but reported apart from the measure): a fresh database at the newest
schema, every advisory imported with ``store.advisories.import_advisories`` and every
inventory recorded with ``store.inventory.record_inventory`` sharing one ``PackageIds``
cache, then the planner statistics refreshed (``ANALYZE``; autovacuum would do the same
on PostgreSQL shortly after a bulk load).

Measured, each in a fresh child process so that its peak RSS is its own:

* ``full``: ``store.findings.refresh_findings(session, now=...)`` for the whole fleet
  and the commit — distinct triples matched, matches fanned out, findings written;
  repeated after resetting the derived tables (findings, package matches);
* ``unchanged``: the same call again with nothing changed;
* ``incremental``: one host's inventory changes (recorded untimed), then
  ``refresh_findings(session, now=..., asset_ids=[that host])``.

Inside the child, a few functions of ``store.findings`` are wrapped to time the phases
of the refresh; the wrappers live in the child only and change no behaviour.
"""

from __future__ import annotations

import cProfile
import multiprocessing
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, table, text
from sqlalchemy.engine import make_url

from bench.common import (
    DEFAULT_POSTGRES_ADMIN_URL,
    audit_key,
    median,
    peak_rss_mib,
    reset_peak_rss,
    rss_mib,
)
from bench.synth import Fleet, redrift
from patchwarden.core.model import Advisory
from patchwarden.store.advisories import import_advisories
from patchwarden.store.db import Database, open_database
from patchwarden.store.inventory import PackageIds, record_inventory

#: Hosts recorded per transaction during setup.
_HOSTS_PER_COMMIT = 250


@dataclass
class RefreshRun:
    """One timed refresh, as reported by its child process."""

    mode: str
    seconds: float = 0.0
    cpu_s: float = 0.0  # this process's CPU time (the database server's is not in it)
    refresh_s: float = 0.0
    commit_s: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    rss_before_mib: float = 0.0
    peak_rss_mib: float = 0.0


@dataclass
class BackendResult:
    """Figures of measure 3 for one backend."""

    backend: str
    setup_advisories_s: float = 0.0
    setup_inventories_s: float = 0.0
    setup_analyze_s: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    database_size_mib: float = 0.0
    full: list[RefreshRun] = field(default_factory=list)
    unchanged: list[RefreshRun] = field(default_factory=list)
    incremental: list[RefreshRun] = field(default_factory=list)
    record_changed_host_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Medians of the repeated runs."""

        def med(runs: list[RefreshRun], attr: str) -> float:
            return median([getattr(r, attr) for r in runs]) if runs else 0.0

        return {
            "full_s": med(self.full, "seconds"),
            "full_cpu_s": med(self.full, "cpu_s"),
            "full_peak_rss_mib": max((r.peak_rss_mib for r in self.full), default=0.0),
            "unchanged_s": med(self.unchanged, "seconds"),
            "unchanged_cpu_s": med(self.unchanged, "cpu_s"),
            "unchanged_peak_rss_mib": max((r.peak_rss_mib for r in self.unchanged), default=0.0),
            "incremental_s": med(self.incremental, "seconds"),
            "findings": self.full[0].counts.get("new", 0) if self.full else 0,
        }


# ------------------------------------------------------------------ databases


@contextmanager
def throwaway_database(
    backend: str, postgres_admin_url: str, workdir: Path | None
) -> Iterator[str]:
    """A new empty database for ``backend``; yields its URL and drops it afterwards."""
    if backend == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="pw_bench_", dir=workdir))
        try:
            yield f"sqlite:///{folder / 'bench.db'}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    if backend != "postgres":
        raise SystemExit(f"unknown backend {backend!r} (sqlite or postgres)")
    name = f"pw_bench_{secrets.token_hex(4)}"
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            # The name is generated above from hex digits only: nothing to inject.
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(postgres_admin_url).set(database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _analyze(database: Database) -> None:
    if database.engine.dialect.name == "postgresql":
        with database.engine.connect().execution_options(
            isolation_level="AUTOCOMMIT"
        ) as connection:
            connection.execute(text("VACUUM ANALYZE"))
    else:
        with database.engine.begin() as connection:
            connection.execute(text("ANALYZE"))


_TABLES = (
    "advisory",
    "affected_range",
    "package",
    "asset",
    "asset_package",
    "package_vuln",
    "finding",
)


def _row_counts(database: Database) -> dict[str, int]:
    with database.engine.connect() as connection:
        return {
            name: int(
                connection.execute(select(func.count()).select_from(table(name))).scalar_one()
            )
            for name in _TABLES
        }


def _size_mib(database: Database, url: str) -> float:
    if database.engine.dialect.name == "postgresql":
        with database.engine.connect() as connection:
            size = connection.execute(text("SELECT pg_database_size(current_database())"))
            return int(size.scalar_one()) / 2**20
    path = Path(url.split("///", 1)[1])
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20


def _reset_derived(database: Database) -> None:
    """Forget findings and cached package matches, so the next refresh is a full one."""
    with database.engine.begin() as connection:
        connection.execute(text("DELETE FROM finding"))
        connection.execute(text("DELETE FROM package_vuln"))
        connection.execute(text("UPDATE package SET matched_at = NULL"))


# ---------------------------------------------------------------------- setup


def _setup(
    database: Database,
    *,
    fleet: Fleet,
    advisories: Sequence[Advisory],
    now: datetime,
    result: BackendResult,
    log: Callable[[str], None],
) -> list[int]:
    """Load advisories and inventories; returns the asset id of every host."""
    start = time.perf_counter()
    with database.session() as session:
        imported = import_advisories(session, advisories)
    result.setup_advisories_s = time.perf_counter() - start
    log(f"  advisories imported: {imported.added} in {result.setup_advisories_s:.1f} s")

    start = time.perf_counter()
    cache = PackageIds()
    asset_ids: list[int] = []
    hosts = fleet.hosts
    for first in range(0, len(hosts), _HOSTS_PER_COMMIT):
        with database.session() as session:
            for host in hosts[first : first + _HOSTS_PER_COMMIT]:
                asset_id, _changed = record_inventory(
                    session,
                    host.inventory,
                    now=now,
                    criticality=host.criticality,
                    exposure=host.exposure,
                    source="bench",
                    package_ids=cache,
                )
                asset_ids.append(asset_id)
        done = min(first + _HOSTS_PER_COMMIT, len(hosts))
        if done % 2000 == 0 or done == len(hosts):
            log(
                f"  inventories recorded: {done}/{len(hosts)} ({time.perf_counter() - start:.0f} s)"
            )
    result.setup_inventories_s = time.perf_counter() - start

    start = time.perf_counter()
    _analyze(database)
    result.setup_analyze_s = time.perf_counter() - start
    return asset_ids


# ---------------------------------------------------------------- child runs


def _child(
    url: str,
    mode: str,
    asset_ids: list[int] | None,
    now_iso: str,
    pipe: Connection,
    *,
    profile_path: str | None,
) -> None:
    """Run one refresh in this (fresh) process and send a ``RefreshRun`` back.

    With ``profile_path`` the refresh runs under cProfile (slower) and the stats are
    written there.
    """
    from sqlalchemy.orm import Session

    from patchwarden.store import findings

    run = RefreshRun(mode=mode)
    phases: dict[str, float] = {}

    def wrap(
        name: str, func: Callable[..., Any], label: Callable[..., str] | None = None
    ) -> Callable[..., Any]:
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                key = label(*args, **kwargs) if label else name
                phases[key] = phases.get(key, 0.0) + time.perf_counter() - start

        return timed_call

    # Module globals of store.findings, looked up at call time by refresh_findings.
    labels: dict[str, Callable[..., str]] = {
        "insert_rows": lambda _session, target, *_a, **_k: f"insert {_table_name(target)}",
    }
    for name in ("match_pending", "load_index", "threats_for", "insert_rows"):
        setattr(findings, name, wrap(name, getattr(findings, name), labels.get(name)))

    database = open_database(url)
    # Connect and warm the pool outside the measure: a server keeps its pool open.
    with database.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    reset_peak_rss()
    run.rss_before_mib = rss_mib()
    now = datetime.fromisoformat(now_iso)
    session = Session(database.engine, expire_on_commit=False)
    profiler = cProfile.Profile() if profile_path else None
    if profiler:
        profiler.enable()
    start, cpu = time.perf_counter(), time.process_time()
    result = findings.refresh_findings(session, now=now, asset_ids=asset_ids)
    middle = time.perf_counter()
    session.commit()
    end = time.perf_counter()
    run.cpu_s = time.process_time() - cpu
    if profiler and profile_path:
        profiler.disable()
        profiler.dump_stats(profile_path)
    session.close()
    run.peak_rss_mib = peak_rss_mib()
    run.seconds = end - start
    run.refresh_s = middle - start
    run.commit_s = end - middle
    run.phases = phases
    run.counts = {
        "packages_matched": result.packages_matched,
        "triples_matched": result.triples_matched,
        "assets": result.assets,
        "new": result.new,
        "resolved": result.resolved,
        "reopened": result.reopened,
        "rescored": result.rescored,
        "problems": len(result.problems),
    }
    database.dispose()
    pipe.send(asdict(run))
    pipe.close()


def _table_name(target: Any) -> str:
    """The table name of an ORM class or a Core ``Table`` (``insert_rows`` took both)."""
    return str(getattr(target, "__tablename__", None) or getattr(target, "name", "?"))


def _in_child(
    url: str,
    mode: str,
    asset_ids: list[int] | None,
    now: datetime,
    profile_path: Path | None = None,
) -> RefreshRun:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(
        target=_child,
        args=(url, mode, asset_ids, now.isoformat(), child),
        kwargs={"profile_path": str(profile_path) if profile_path else None},
    )
    process.start()
    child.close()
    try:
        data = parent.recv()
    except EOFError:
        process.join()
        raise SystemExit(
            f"the {mode} refresh child failed (exit code {process.exitcode})"
        ) from None
    process.join()
    return RefreshRun(**data)


# ------------------------------------------------------------------ measure 3


def measure_backend(
    backend: str,
    fleet: Fleet,
    advisories: Sequence[Advisory],
    now: datetime,
    *,
    repeat: int,
    postgres_admin_url: str = DEFAULT_POSTGRES_ADMIN_URL,
    workdir: Path | None = None,
    profile_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> BackendResult:
    """Measure 3 on one backend (``sqlite`` or ``postgres``) in a throwaway database.

    With ``profile_dir`` every refresh also runs under cProfile (its times are then
    inflated) and leaves ``<backend>-<mode>-<n>.prof`` there.
    """
    result = BackendResult(backend=backend)

    def profile(mode: str, n: int) -> Path | None:
        return profile_dir / f"{backend}-{mode}-{n + 1}.prof" if profile_dir else None

    with throwaway_database(backend, postgres_admin_url, workdir) as url:
        database = open_database(url, migrate=True, audit_key=audit_key())
        try:
            log(f"{backend}: setup")
            asset_ids = _setup(
                database, fleet=fleet, advisories=advisories, now=now, result=result, log=log
            )
            for n in range(max(1, repeat)):
                if n:
                    _reset_derived(database)
                    _analyze(database)
                run = _in_child(url, "full", None, now, profile("full", n))
                result.full.append(run)
                log(
                    f"{backend}: full refresh {n + 1}: {run.seconds:.1f} s, "
                    f"{run.counts['new']} findings, peak {run.peak_rss_mib:.0f} MiB"
                )
            result.rows = _row_counts(database)
            result.database_size_mib = _size_mib(database, url)
            later = now + timedelta(hours=1)
            for n in range(max(1, repeat)):
                run = _in_child(url, "unchanged", None, later, profile("unchanged", n))
                result.unchanged.append(run)
                log(f"{backend}: unchanged refresh {n + 1}: {run.seconds:.1f} s")
            for n in range(max(1, repeat)):
                host = fleet.hosts[(n * 7919) % len(fleet.hosts)]
                changed = redrift(fleet, host, salt=n + 1)
                start = time.perf_counter()
                with database.session() as session:
                    record_inventory(session, changed, now=later, package_ids=None)
                result.record_changed_host_s.append(time.perf_counter() - start)
                run = _in_child(
                    url, "incremental", [asset_ids[host.index]], later, profile("incremental", n)
                )
                result.incremental.append(run)
                log(
                    f"{backend}: incremental refresh {n + 1}: {run.seconds * 1000:.0f} ms "
                    f"({run.counts['packages_matched']} packages matched, +{run.counts['new']} "
                    f"-{run.counts['resolved']} findings)"
                )
        finally:
            database.dispose()
    return result
