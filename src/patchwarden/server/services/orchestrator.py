"""The orchestrator loop: leader election, then ``core.rollout.decide`` per rollout.

Exactly one loop is active across server processes: on PostgreSQL the leader holds a
session-level advisory lock on a dedicated connection; on SQLite (one machine) an
exclusive ``flock`` on ``<database>.orchestrator.lock``. A process that loses the
connection loses the lock and another takes over at its next attempt. Every decision is
applied in one transaction per rollout, with the rollout row locked (``FOR UPDATE`` on
PostgreSQL) so API changes (pause, approve) and the loop never interleave. Because the
state lives in the database, a restarted server simply resumes where it was.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

from sqlalchemy import Connection, DateTime, select, text, type_coerce, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from patchwarden.core import rollout as rules
from patchwarden.core.errors import PatchwardenError
from patchwarden.core.windows import MaintenanceWindow
from patchwarden.server.services.deploy import (
    ORCHESTRATOR,
    expire_exceptions,
    get_window,
    host_windows,
    open_emergency_rollouts,
    rollout_policy,
    to_window,
)
from patchwarden.store import audit
from patchwarden.store.bulk import chunks
from patchwarden.store.db import Database, is_sqlite
from patchwarden.store.models import (
    AssetGroupMember,
    JobResultRow,
    JobRow,
    RolloutRingRow,
    RolloutRow,
)

log = logging.getLogger("patchwarden.orchestrator")

ACTIVE = ("running", "paused", "halted")
_LOCK_KEY = 0x7061_7463  # "patc": the advisory lock id shared by all server processes


class Leadership:
    """Try to become (and stay) the single active orchestrator."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._connection: Connection | None = None
        self._file: IO[bytes] | None = None

    def acquire(self) -> bool:
        """True when this process is the leader (idempotent)."""
        if is_sqlite(self.database.engine):
            return self._acquire_file()
        return self._acquire_postgres()

    def _acquire_postgres(self) -> bool:
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT 1"))
                return True
            except Exception:  # the connection died: so did the lock
                self._connection = None
        connection = self.database.engine.connect()
        got = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _LOCK_KEY}).scalar()
        connection.commit()
        if got:
            self._connection = connection
            return True
        connection.close()
        return False

    def _acquire_file(self) -> bool:
        if self._file is not None:
            return True
        database = self.database.engine.url.database or "patchwarden.db"
        path = Path(f"{database}.orchestrator.lock")
        handle = path.open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.write(f"{os.getpid()}\n".encode())
        handle.flush()
        self._file = handle
        return True

    def release(self) -> None:
        """Give up leadership."""
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                self._connection.commit()
            finally:
                self._connection.close()
                self._connection = None
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


@dataclass
class TickReport:
    """What one tick did."""

    rollouts: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    expired_exceptions: int = 0
    emergency_rollout: int | None = None
    #: What failed in this pass ("rollout 7", "emergency scan", …) and why.
    failures: dict[str, str] = field(default_factory=dict)


_NO_GROUPS: frozenset[int] = frozenset()


def build_view(session: Session, rollout: RolloutRow) -> rules.RolloutView:
    """The decision function's input for one rollout, from its rows."""
    rings = list(
        session.scalars(
            select(RolloutRingRow)
            .where(RolloutRingRow.rollout_id == rollout.id)
            .order_by(RolloutRingRow.idx)
        )
    )
    # Columns, not ORM objects: a rollout may hold 100,000 jobs and this runs every tick.
    # The timestamps are read as plain DateTime (no per-value UtcDateTime hook; the
    # zone is attached below, only to values that are set).
    jobs = session.execute(
        select(
            JobRow.id,
            JobRow.asset_id,
            JobRow.ring_idx,
            JobRow.status,
            *(
                type_coerce(column, DateTime())
                for column in (
                    JobRow.released_at,
                    JobRow.claimed_at,
                    JobRow.lease_until,
                    JobRow.not_before,
                )
            ),
        ).where(JobRow.rollout_id == rollout.id, JobRow.kind == "install")
    ).all()
    rollout_assets = (
        select(JobRow.asset_id)
        .where(JobRow.rollout_id == rollout.id, JobRow.kind == "install")
        .scalar_subquery()
    )
    # Only dependency groups matter to the decision (core.rollout.effective_groups).
    dependency_groups = sorted({int(g) for pair in rollout.dependencies for g in pair})
    groups: dict[int, set[int]] = {}
    if dependency_groups:
        for asset_id, group_id in session.execute(
            select(AssetGroupMember.asset_id, AssetGroupMember.group_id).where(
                AssetGroupMember.group_id.in_(dependency_groups),
                AssetGroupMember.asset_id.in_(rollout_assets),
            )
        ):
            groups.setdefault(asset_id, set()).add(group_id)
    windows: dict[int, tuple[MaintenanceWindow, ...]] = {}
    if rollout.emergency and rollout.windows:
        own = tuple(to_window(get_window(session, w)) for w in rollout.windows)
        windows = dict.fromkeys((j.asset_id for j in jobs), own)
    else:
        windows = host_windows(session, rollout_assets)
    ring_windows = {
        r.idx: tuple(to_window(get_window(session, w)) for w in r.windows)
        for r in rings
        if r.windows
    }
    for job in jobs:
        if job.ring_idx in ring_windows:
            windows[job.asset_id] = ring_windows[job.ring_idx]
    policy = rollout_policy(session, rollout.id)
    return rules.RolloutView(
        status=rollout.status,  # type: ignore[arg-type]
        rings=tuple(
            rules.RingPlan(
                r.name,
                r.concurrency,
                r.error_budget,
                r.success_threshold,
                timedelta(minutes=r.soak_minutes),
                r.requires_approval,
            )
            for r in rings
        ),
        ring_states=tuple(
            rules.RingState(r.status, r.approved, r.soak_until, r.failures_forgiven)  # type: ignore[arg-type]
            for r in rings
        ),
        jobs=tuple(
            rules.JobView(
                job_id,
                asset_id,
                ring,
                status,
                frozenset(groups[asset_id]) if asset_id in groups else _NO_GROUPS,
                released and released.replace(tzinfo=UTC),
                claimed and claimed.replace(tzinfo=UTC),
                lease and lease.replace(tzinfo=UTC),
                not_before and not_before.replace(tzinfo=UTC),
            )
            for job_id, asset_id, ring, status, released, claimed, lease, not_before in jobs
        ),
        windows=windows,
        dependencies=tuple((int(a), int(b)) for a, b in rollout.dependencies),
        expected_duration=policy.expected_duration,
        claim_deadline=policy.claim_deadline,
        progress_deadline=policy.progress_deadline,
    )


def apply_actions(
    session: Session, rollout: RolloutRow, actions: list[rules.Action], *, now: datetime
) -> None:
    """Write the decisions (in the caller's transaction)."""
    if not actions:
        return
    rings = {
        r.idx: r
        for r in session.scalars(
            select(RolloutRingRow).where(RolloutRingRow.rollout_id == rollout.id)
        )
    }
    retry = rollout_policy(session, rollout.id).retry

    def job(job_id: int) -> JobRow:
        row = session.get(JobRow, job_id)
        if row is None:
            raise LookupError(job_id)
        return row

    # The frequent job actions as one UPDATE per kind and batch, not one per job.
    released = [a.job_id for a in actions if isinstance(a, rules.Release)]
    expired = [a.job_id for a in actions if isinstance(a, rules.ExpireLease)]
    for batch in chunks(released, 5000):
        session.execute(
            update(JobRow)
            .where(JobRow.id.in_(batch))
            .values(status="ready", released_at=now, not_before=None)
        )
    for batch in chunks(expired, 5000):
        session.execute(
            update(JobRow).where(JobRow.id.in_(batch)).values(status="ready", lease_until=None)
        )

    for action in actions:
        if isinstance(action, (rules.Release, rules.ExpireLease)):
            continue
        if isinstance(action, rules.MarkOffline):
            row = job(action.job_id)
            row.status = "offline"
            row.finished_at = now
            row.last_error = "host offline: the job was not claimed in time"
        elif isinstance(action, rules.TimeOut):
            row = job(action.job_id)
            session.add(
                JobResultRow(
                    job_id=row.id,
                    attempt=row.attempt,
                    status="failed",
                    detail={"error": "progress deadline passed"},
                    reported_at=now,
                )
            )
            status, not_before = rules.after_failure(row.attempt, retry, now)
            row.status = status
            row.not_before = not_before
            row.claimed_at = None
            row.lease_until = None
            row.last_error = "progress deadline passed without a result"
            if status == "failed":
                row.finished_at = now
        elif isinstance(action, rules.StartRing):
            rings[action.ring].status = "running"
            rings[action.ring].started_at = now
            rollout.started_at = rollout.started_at or now
            _audit(session, rollout, "ring.start", now, ring=action.ring)
        elif isinstance(action, rules.AwaitApproval):
            rings[action.ring].status = "awaiting_approval"
            _audit(session, rollout, "ring.awaiting_approval", now, ring=action.ring)
        elif isinstance(action, rules.StartSoak):
            rings[action.ring].status = "soaking"
            rings[action.ring].soak_until = action.until
            _audit(
                session, rollout, "ring.soak", now, ring=action.ring, until=action.until.isoformat()
            )
        elif isinstance(action, rules.CompleteRing):
            rings[action.ring].status = "completed"
            rings[action.ring].finished_at = now
            _audit(session, rollout, "ring.complete", now, ring=action.ring)
        elif isinstance(action, rules.HaltRing):
            rings[action.ring].status = "halted"
            rollout.status = "halted"
            rollout.halt_reason = f"ring {rings[action.ring].name}: {action.reason}"
            # Released but unclaimed jobs are withdrawn; running ones finish.
            for row in session.scalars(
                select(JobRow).where(
                    JobRow.rollout_id == rollout.id,
                    JobRow.ring_idx == action.ring,
                    JobRow.status == "ready",
                    JobRow.claimed_at.is_(None),
                )
            ):
                row.status = "pending"
                row.released_at = None
            _audit(session, rollout, "ring.halt", now, ring=action.ring, reason=action.reason)
        elif isinstance(action, rules.CompleteRollout):
            rollout.status = "completed"
            rollout.finished_at = now
            _audit(session, rollout, "rollout.complete", now)


def _audit(session: Session, rollout: RolloutRow, action: str, now: datetime, **after: Any) -> None:
    audit.record(
        session,
        ORCHESTRATOR,
        action,
        now=now,
        target_type="rollout",
        target_id=rollout.id,
        after=after or None,
    )


def tick(database: Database, *, now: datetime) -> TickReport:
    """One pass over every active rollout (the leader calls this periodically).

    Every step has a transaction of its own, and a failure stays inside its step: the
    exception sweep, the emergency scan and each rollout. A rollout that cannot be
    processed (a stored policy that breaks the rules, a window deleted under it, …) is
    halted with the reason and audited once; the other rollouts go on in the same pass.
    ``TickReport.failures`` lists what failed.
    """
    report = TickReport()
    expired = _step(database, report, "exception expiry", lambda s: expire_exceptions(s, now=now))
    report.expired_exceptions = expired or 0
    report.emergency_rollout = _step(
        database, report, "emergency scan", lambda s: open_emergency_rollouts(s, now=now)
    )
    with database.session() as session:
        ids = list(session.scalars(select(RolloutRow.id).where(RolloutRow.status.in_(ACTIVE))))
        ids += [
            r
            for r in session.scalars(
                select(JobRow.rollout_id)
                .where(JobRow.kind == "rollback", JobRow.status.in_(list(rules.IN_FLIGHT)))
                .distinct()
            )
            if r not in ids
        ]
    for rollout_id in ids:
        try:
            with database.session() as session:
                actions = _process(session, rollout_id, now=now, sqlite=is_sqlite(database.engine))
        except _TRANSIENT as exc:  # the database, not the rollout: try again next pass
            log.warning("orchestrator: rollout %s skipped this pass: %s", rollout_id, exc)
            report.failures[f"rollout {rollout_id}"] = _describe(exc)
            continue
        except Exception as exc:  # one broken rollout must not stop the others
            problem = _describe(exc)
            report.failures[f"rollout {rollout_id}"] = problem
            if _halt_broken(database, rollout_id, problem, now=now):
                log.error("orchestrator: rollout %s halted: %s", rollout_id, problem, exc_info=exc)
            else:  # halted and logged on an earlier pass
                log.debug("orchestrator: rollout %s still cannot be processed", rollout_id)
            continue
        report.rollouts += 1
        for action in actions:
            name = type(action).__name__
            report.actions[name] = report.actions.get(name, 0) + 1
    return report


# Errors of the database connection rather than of a rollout's data.
_TRANSIENT = (OperationalError, InterfaceError)

T = TypeVar("T")


def _step(
    database: Database, report: TickReport, name: str, work: Callable[[Session], T]
) -> T | None:
    """``work`` in its own transaction; a failure is logged and reported, not raised."""
    try:
        with database.session() as session:
            return work(session)
    except Exception as exc:  # the rest of the pass must still run
        log.exception("orchestrator: %s failed", name)
        report.failures[name] = _describe(exc)
        return None


def _process(
    session: Session, rollout_id: int, *, now: datetime, sqlite: bool
) -> list[rules.Action]:
    """Decide and apply one rollout's actions (the caller's transaction)."""
    query = select(RolloutRow).where(RolloutRow.id == rollout_id)
    if not sqlite:
        query = query.with_for_update()
    rollout = session.scalars(query).one()
    actions: list[rules.Action] = []
    if rollout.status in ACTIVE:
        actions += rules.decide(build_view(session, rollout), now)
    actions += _rollback_actions(session, rollout, now)
    apply_actions(session, rollout, actions, now=now)
    return actions


def _describe(exc: Exception) -> str:
    """One line about a failure, for a halt reason and the tick report."""
    if isinstance(exc, PatchwardenError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"


def _halt_broken(database: Database, rollout_id: int, problem: str, *, now: datetime) -> bool:
    """Stop a rollout the orchestrator cannot process: halted (when it was running or
    paused), the reason recorded and audited — once, not on every pass — and its
    released but unclaimed jobs withdrawn, so no agent starts work the loop cannot
    follow. A resume puts it back in the loop (it halts again if nothing was fixed).
    True when this pass recorded it."""
    reason = f"the orchestrator cannot process this rollout: {problem}"
    try:
        with database.session() as session:
            rollout = session.get(RolloutRow, rollout_id)
            if rollout is None or rollout.halt_reason == reason:
                return False
            before = rollout.status
            if rollout.status in ("running", "paused"):
                rollout.status = "halted"
            rollout.halt_reason = reason
            session.execute(
                update(JobRow)
                .where(
                    JobRow.rollout_id == rollout_id,
                    JobRow.kind == "install",
                    JobRow.status == "ready",
                    JobRow.claimed_at.is_(None),
                )
                .values(status="pending", released_at=None)
            )
            _audit(session, rollout, "rollout.halt", now, reason=reason, status_before=before)
    except Exception:  # logged; the pass goes on with the next rollout
        log.exception("orchestrator: cannot mark rollout %s halted", rollout_id)
        return False
    return True


def _rollback_actions(session: Session, rollout: RolloutRow, now: datetime) -> list[rules.Action]:
    policy = rollout_policy(session, rollout.id)
    jobs = session.scalars(
        select(JobRow).where(
            JobRow.rollout_id == rollout.id,
            JobRow.kind == "rollback",
            JobRow.status.in_(list(rules.IN_FLIGHT)),
        )
    )
    return rules.decide_rollbacks(
        (
            rules.JobView(
                job_id=j.id,
                asset_id=j.asset_id,
                ring=j.ring_idx,
                status=j.status,  # type: ignore[arg-type]
                released_at=j.released_at,
                claimed_at=j.claimed_at,
                lease_until=j.lease_until,
                not_before=j.not_before,
            )
            for j in jobs
        ),
        claim_deadline=policy.claim_deadline,
        progress_deadline=policy.progress_deadline,
        now=now,
    )


def run_loop(
    database: Database,
    *,
    clock: Callable[[], datetime],
    should_stop: Callable[[float], bool],
    every: float = 5.0,
    after_tick: Callable[[datetime], None] | None = None,
) -> None:
    """Elect, then tick every ``every`` seconds until ``should_stop(wait)`` says so.
    The leader calls ``after_tick(now)`` after each tick (periodic audit checkpoints)."""
    leadership = Leadership(database)
    try:
        while True:
            try:
                if leadership.acquire():
                    tick(database, now=clock())
                    if after_tick is not None:
                        after_tick(clock())
            except Exception:  # keep the loop alive across database blips and bad rows
                log.exception("orchestrator tick failed")
                leadership.release()
            if should_stop(every):
                return
    finally:
        leadership.release()
