"""The orchestrator's decision function, driven by a simulated fleet (hypothesis).

Every tick the simulation asks ``decide`` what to do, checks the rules on the actions
*before* applying them, applies them, lets simulated agents claim and finish jobs, and
checks the invariants again:

* failed hosts of a ring ≤ error budget + concurrency - 1;
* jobs in flight ≤ concurrency;
* nothing is released outside its host's window, after a halt, before the previous
  ring completed, or before a dependency group finished.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchwarden.core.rollout import (
    FINAL,
    IN_FLIGHT,
    AwaitApproval,
    CompleteRing,
    CompleteRollout,
    ExpireLease,
    HaltRing,
    JobView,
    MarkOffline,
    Release,
    RetryPolicy,
    RingMembers,
    RingPlan,
    RingState,
    RolloutView,
    StartRing,
    StartSoak,
    TimeOut,
    after_failure,
    assign_rings,
    decide,
    dependency_levels,
    effective_groups,
    resolve_count,
)
from patchwarden.core.windows import can_start, parse_window

T0 = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)  # spans the Berlin DST change
TICK = timedelta(minutes=1)
HOURLY = parse_window("FREQ=HOURLY;BYMINUTE=0", "Europe/Berlin", 20)


@dataclass
class Host:
    online: bool
    fail_rate: float
    duration: int  # ticks a job takes
    hangs: bool  # claims, then never answers (agent died)


@dataclass
class Sim:
    view: RolloutView
    hosts: dict[int, Host]
    policy: RetryPolicy
    rng: random.Random
    attempts: dict[int, int] = field(default_factory=dict)
    finish_at: dict[int, datetime] = field(default_factory=dict)
    approve_after: int = 5
    released_ever: set[int] = field(default_factory=set)


def set_job(view: RolloutView, job_id: int, **changes: object) -> RolloutView:
    jobs = tuple(replace(j, **changes) if j.job_id == job_id else j for j in view.jobs)  # type: ignore[arg-type]
    return replace(view, jobs=jobs)


def set_ring(view: RolloutView, ring: int, **changes: object) -> RolloutView:
    states = tuple(
        replace(s, **changes) if i == ring else s
        for i, s in enumerate(view.ring_states)  # type: ignore[arg-type]
    )
    return replace(view, ring_states=states)


def check_release(sim: Sim, job: JobView, now: datetime) -> None:
    view = sim.view
    assert view.status == "running", "released while the rollout is not running"
    state = view.ring_states[job.ring]
    assert state.status == "running", f"released in a {state.status} ring"
    assert all(s.status == "completed" for s in view.ring_states[: job.ring]), (
        "released before the previous ring completed"
    )
    windows = view.windows.get(job.asset_id, ())
    assert not windows or can_start(windows, now, view.expected_duration), "window closed"
    levels = dependency_levels(view.dependencies)
    mine = effective_groups(job.groups, levels)
    for first, then in view.dependencies:
        if then in mine:
            assert all(
                j.status in FINAL
                for j in view.jobs
                if first in effective_groups(j.groups, levels) and j.ring <= job.ring
            ), "released before its dependency group finished"


def apply(sim: Sim, actions: list[object], now: datetime) -> None:
    for action in actions:
        view = sim.view
        if isinstance(action, Release):
            job = next(j for j in view.jobs if j.job_id == action.job_id)
            check_release(sim, job, now)
            sim.released_ever.add(job.job_id)
            sim.view = set_job(view, job.job_id, status="ready", released_at=now, not_before=None)
        elif isinstance(action, ExpireLease):
            sim.view = set_job(view, action.job_id, status="ready", lease_until=None)
            sim.finish_at.pop(action.job_id, None)
        elif isinstance(action, MarkOffline):
            sim.view = set_job(view, action.job_id, status="offline")
        elif isinstance(action, TimeOut):
            status, when = after_failure(sim.attempts[action.job_id], sim.policy, now)
            sim.view = set_job(
                view,
                action.job_id,
                status=status,
                not_before=when,
                claimed_at=None,
                lease_until=None,
            )
            sim.finish_at.pop(action.job_id, None)
        elif isinstance(action, StartRing):
            sim.view = set_ring(view, action.ring, status="running")
        elif isinstance(action, AwaitApproval):
            sim.view = set_ring(view, action.ring, status="awaiting_approval")
        elif isinstance(action, StartSoak):
            sim.view = set_ring(view, action.ring, status="soaking", soak_until=action.until)
        elif isinstance(action, CompleteRing):
            sim.view = set_ring(view, action.ring, status="completed")
        elif isinstance(action, HaltRing):
            sim.view = replace(set_ring(view, action.ring, status="halted"), status="halted")
        elif isinstance(action, CompleteRollout):
            sim.view = replace(view, status="completed")


def agents_work(sim: Sim, now: datetime) -> None:
    for job in sim.view.jobs:
        host = sim.hosts[job.asset_id]
        if job.status == "ready" and host.online:
            first_claim = job.claimed_at is None
            if first_claim:  # a re-claim after a lapsed lease is the same attempt
                sim.attempts[job.job_id] = sim.attempts.get(job.job_id, 0) + 1
            sim.view = set_job(
                sim.view,
                job.job_id,
                status="running",
                claimed_at=now if first_claim else job.claimed_at,
                lease_until=now + timedelta(minutes=15),
            )
            if not host.hangs:
                sim.finish_at[job.job_id] = now + TICK * host.duration
        elif job.status == "running" and sim.finish_at.get(job.job_id, now + TICK) <= now:
            del sim.finish_at[job.job_id]
            if sim.rng.random() < host.fail_rate:
                status, when = after_failure(sim.attempts[job.job_id], sim.policy, now)
                sim.view = set_job(
                    sim.view,
                    job.job_id,
                    status=status,
                    not_before=when,
                    claimed_at=None,
                    lease_until=None,
                )
            else:
                sim.view = set_job(sim.view, job.job_id, status="succeeded")


def check_invariants(sim: Sim) -> None:
    for index, plan in enumerate(sim.view.rings):
        jobs = [j for j in sim.view.jobs if j.ring == index]
        failed = sum(1 for j in jobs if j.status == "failed")
        assert failed <= plan.error_budget + plan.concurrency - 1, (index, failed, plan)
        in_flight = sum(1 for j in jobs if j.status in IN_FLIGHT)
        assert in_flight <= plan.concurrency, (index, in_flight, plan)


rings_st = st.lists(
    st.tuples(
        st.integers(1, 4),  # concurrency
        st.integers(1, 3),  # error budget
        st.sampled_from([0.0, 0.5, 1.0]),  # success threshold
        st.sampled_from([0, 10]),  # soak minutes
        st.booleans(),  # requires approval
    ),
    min_size=1,
    max_size=3,
)
hosts_st = st.lists(
    st.tuples(
        st.booleans(),  # online (mostly)
        st.sampled_from([0.0, 0.0, 0.3, 1.0]),  # fail rate
        st.integers(1, 8),  # duration
        st.booleans(),  # has a window
        st.frozensets(st.integers(1, 3), max_size=2),  # groups
        st.integers(0, 20),  # hangs if == 0
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=80, deadline=None)
@given(
    rings=rings_st,
    hosts=hosts_st,
    deps=st.sets(
        st.tuples(st.integers(1, 2), st.integers(2, 3)).filter(lambda d: d[0] < d[1]), max_size=2
    ),
    seed=st.integers(0, 2**16),
)
def test_decisions_respect_budget_concurrency_windows_and_dependencies(
    rings: list[tuple[int, int, float, int, bool]],
    hosts: list[tuple[bool, float, int, bool, frozenset[int], int]],
    deps: set[tuple[int, int]],
    seed: int,
) -> None:
    rng = random.Random(seed)
    plans = tuple(
        RingPlan(f"r{i}", c, b, t, timedelta(minutes=soak), approval)
        for i, (c, b, t, soak, approval) in enumerate(rings)
    )
    jobs = tuple(
        JobView(
            job_id=n + 1,
            asset_id=n + 1,
            ring=rng.randrange(len(plans)),
            status="pending",
            groups=groups,
        )
        for n, (*_rest, groups, _h) in enumerate(hosts)
    )
    view = RolloutView(
        status="running",
        rings=plans,
        ring_states=tuple(RingState() for _ in plans),
        jobs=jobs,
        windows={n + 1: (HOURLY,) for n, h in enumerate(hosts) if h[3]},
        dependencies=tuple(sorted(deps)),
        expected_duration=timedelta(minutes=10),
        claim_deadline=timedelta(minutes=90),
        progress_deadline=timedelta(minutes=60),
    )
    sim = Sim(
        view=view,
        hosts={
            n + 1: Host(online=online or n % 5 != 0, fail_rate=rate, duration=dur, hangs=hang == 0)
            for n, (online, rate, dur, _w, _g, hang) in enumerate(hosts)
        },
        policy=RetryPolicy(max_attempts=2, base=timedelta(minutes=3)),
        rng=rng,
    )
    now = T0
    for tick in range(1500):
        actions = decide(sim.view, now)
        apply(sim, actions, now)
        check_invariants(sim)
        if sim.view.status in ("completed", "halted"):
            break
        # An approver approves pending gates a few ticks after they open.
        for index, state in enumerate(sim.view.ring_states):
            if state.status == "awaiting_approval" and tick % sim.approve_after == 0:
                sim.view = set_ring(sim.view, index, approved=True)
        agents_work(sim, now)
        check_invariants(sim)
        now += TICK
    # The loop ends with a verdict, not mid-way: every rollout completes or halts.
    assert sim.view.status in ("completed", "halted"), sim.view.status
    if sim.view.status == "completed":
        assert all(s.status == "completed" for s in sim.view.ring_states)
        assert all(j.status in FINAL for j in sim.view.jobs)


def test_halted_ring_releases_nothing_until_resumed() -> None:
    plan = RingPlan("prod", concurrency=2, error_budget=1)
    jobs = (
        JobView(1, 1, 0, "failed"),
        JobView(2, 2, 0, "pending"),
    )
    view = RolloutView("running", (plan,), (RingState("running"),), jobs)
    assert decide(view, T0) == [HaltRing(0, "1 failed hosts reached the error budget of 1")]
    halted = replace(view, status="halted", ring_states=(RingState("halted"),))
    assert decide(halted, T0) == []
    resumed = replace(view, ring_states=(RingState("running", failures_forgiven=1),))
    assert decide(resumed, T0) == [Release(2)]


def test_offline_hosts_are_not_failures_and_lapsed_leases_return() -> None:
    plan = RingPlan("lab", concurrency=5, error_budget=1)
    jobs = (
        JobView(1, 1, 0, "ready", released_at=T0 - timedelta(hours=5)),
        JobView(
            2,
            2,
            0,
            "running",
            claimed_at=T0 - timedelta(minutes=20),
            lease_until=T0 - timedelta(minutes=1),
        ),
        JobView(
            3,
            3,
            0,
            "running",
            claimed_at=T0 - timedelta(hours=3),
            lease_until=T0 + timedelta(minutes=5),
        ),
    )
    view = RolloutView("running", (plan,), (RingState("running"),), jobs)
    actions = decide(view, T0)
    assert MarkOffline(1) in actions
    assert ExpireLease(2) in actions
    assert TimeOut(3) in actions


def test_success_threshold_and_soak() -> None:
    plan = RingPlan("pilot", 3, 5, success_threshold=0.75, soak=timedelta(hours=1))
    done = (
        JobView(1, 1, 0, "succeeded"),
        JobView(2, 2, 0, "succeeded"),
        JobView(3, 3, 0, "succeeded"),
        JobView(4, 4, 0, "failed"),
        JobView(5, 5, 0, "offline"),
    )
    view = RolloutView("running", (plan,), (RingState("running"),), done)
    assert decide(view, T0) == [StartSoak(0, T0 + timedelta(hours=1))]
    soaking = replace(view, ring_states=(RingState("soaking", soak_until=T0 + timedelta(hours=1)),))
    assert decide(soaking, T0) == []
    assert decide(soaking, T0 + timedelta(hours=1)) == [CompleteRing(0)]
    worse = replace(view, jobs=(*done[:2], JobView(3, 3, 0, "failed"), *done[3:]))
    (halt,) = decide(worse, T0)
    assert isinstance(halt, HaltRing)
    assert "below the 75% needed" in halt.reason


def test_approval_gate() -> None:
    plan = RingPlan("prod", 1, 1, requires_approval=True)
    view = RolloutView("running", (plan,), (RingState(),), (JobView(1, 1, 0, "pending"),))
    assert decide(view, T0) == [AwaitApproval(0)]
    waiting = replace(view, ring_states=(RingState("awaiting_approval"),))
    assert decide(waiting, T0) == []
    approved = replace(view, ring_states=(RingState("awaiting_approval", approved=True),))
    assert decide(approved, T0) == [StartRing(0)]


def test_resolve_count_and_ring_assignment() -> None:
    assert resolve_count("10%", 25, what="concurrency") == 3
    assert resolve_count(4, 25, what="concurrency") == 4
    assert resolve_count("1%", 5, what="budget") == 1
    with pytest.raises(Exception, match="percentage"):
        resolve_count("many", 5, what="budget")
    members = {1: range(1, 11), 2: range(11, 21)}
    placed = assign_rings(
        [RingMembers((1,), percent=20), RingMembers((1,)), RingMembers((2,))],
        members,
        seed="rollout-7",
    )
    assert sorted(a for a, r in placed.items() if r == 0) == sorted(
        a
        for a, r in assign_rings([RingMembers((1,), percent=20)], members, seed="rollout-7").items()
    )
    assert sum(1 for r in placed.values() if r == 0) == 2
    assert sum(1 for r in placed.values() if r == 1) == 8
    assert {a for a, r in placed.items() if r == 2} == set(range(11, 21))


def test_dependency_cycles_are_refused() -> None:
    from patchwarden.core.rollout import validate_dependencies

    validate_dependencies([(1, 2), (2, 3), (1, 3)])
    with pytest.raises(Exception, match="cycle: 1 → 2 → 3 → 1"):
        validate_dependencies([(1, 2), (2, 3), (3, 1)])
    with pytest.raises(Exception, match="itself"):
        validate_dependencies([(4, 4)])


def test_effective_groups_break_membership_cycles() -> None:
    levels = dependency_levels([(1, 2), (2, 3)])
    assert levels == {1: 0, 2: 1, 3: 2}
    assert effective_groups(frozenset({1, 3}), levels) == {1}
    assert effective_groups(frozenset({3, 9}), levels) == {3}
    assert effective_groups(frozenset({9}), levels) == frozenset()
