"""Rollout planning and the orchestrator's decision function (pure).

A rollout deploys a set of patches to hosts in **rings** (lab → pilot → production
waves). Each ring has members, a concurrency limit, an error budget, a success
threshold to promote, a soak time and an optional approval gate. The server's loop
calls ``decide(view, now)`` and applies the returned actions; nothing here reads the
clock, the database or the network, so the rules are testable on their own (see
tests/core/test_rollout_properties.py).

Rules (documented for users in docs/deployment.md):

* Rings run strictly in order; a ring starts only when the previous one completed.
  A ring with ``requires_approval`` waits for an approval before it starts.
* **Concurrency**: at most ``concurrency`` jobs of the ring are in flight
  (released, running or waiting to retry) at any moment.
* **Error budget** ``b`` (≥ 1): the ring halts as soon as ``b`` of its hosts have
  failed (retries exhausted or progress deadline passed), and no job is released
  once it has. Together with the concurrency limit ``c`` this bounds the damage:
  at most ``b + c - 1`` hosts of a ring ever fail.
* **Windows**: a job is released only when one of its host's maintenance windows is
  open with at least the rollout's expected job duration left (hosts without
  windows are unrestricted; emergency rollouts may carry their own windows).
* **Dependencies** ``(first, then)`` between groups: a host in ``then`` is released
  only after every job of this rollout for hosts in ``first`` (in this ring or an
  earlier one) has finished. A host in several dependency groups counts only in its
  earliest (``effective_groups``), so hosts never wait for each other in a circle;
  cyclic dependencies are refused when the rollout is created.
* **Offline hosts** are not failures: a job nobody claims within ``claim_deadline``
  becomes ``offline``. A claimed job without a result within ``progress_deadline``
  is a failed attempt. A lapsed lease returns the job to ``ready`` (at-least-once).
* **Promotion**: when every job of the ring has finished, the ring soaks for
  ``soak`` if ``succeeded / (succeeded + failed) ≥ success_threshold``, then
  completes; otherwise it halts. Offline hosts count on neither side.
"""

from __future__ import annotations

import hashlib
import math
import re
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import urlsplit

from patchwarden.core.errors import ValidationFailed
from patchwarden.core.windows import MaintenanceWindow, can_start

JobStatus = Literal[
    "pending",  # planned, not released
    "ready",  # released: the host's agent may claim it
    "running",  # claimed under a lease
    "retry_wait",  # an attempt failed; released again after the backoff
    "succeeded",
    "failed",  # retries exhausted or deadline passed
    "offline",  # never claimed in time: not a failure
    "cancelled",  # never released (ring halted, rollout cancelled)
    "rolled_back",  # undone after success, by a ring rollback
]
RingStatus = Literal[
    "pending", "awaiting_approval", "running", "soaking", "completed", "halted", "rolled_back"
]
RolloutStatus = Literal[
    "pending_approval", "running", "paused", "halted", "completed", "cancelled", "rolled_back"
]

IN_FLIGHT: frozenset[str] = frozenset({"ready", "running", "retry_wait"})
FINAL: frozenset[str] = frozenset({"succeeded", "failed", "offline", "cancelled", "rolled_back"})


# ----------------------------------------------------------------------- planning


@dataclass(frozen=True, slots=True)
class CountSpec:
    """A count as written in a ring: ``amount`` hosts, or ``amount`` percent of them."""

    amount: float
    percent: bool = False

    def resolve(self, total: int, *, minimum: int = 1) -> int:
        """The count for a ring of ``total`` hosts (a share is rounded up)."""
        if self.percent:
            return max(math.ceil(total * self.amount / 100), minimum)
        return max(int(self.amount), minimum)


def parse_count(spec: object, *, what: str = "", minimum: int = 1) -> CountSpec:
    """``5``, ``"5"`` or a share ``"10%"`` (more than 0, at most 100), else
    ``ValidationFailed`` (its message starts with ``what``, when given)."""
    prefix = f"{what}: " if what else ""
    problem = f"{prefix}should be a whole number ≥ {minimum} or a percentage like '10%'"
    if isinstance(spec, bool) or not isinstance(spec, int | str):
        raise ValidationFailed(f"{problem}, got {shown(spec)}")
    text = str(spec).strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if not 0 < share <= 100:  # also refuses nan
                raise ValueError(text)
            return CountSpec(share, percent=True)
        count = int(text)
    except ValueError:
        raise ValidationFailed(f"{problem}, got {shown(spec)}") from None
    if count < minimum:
        raise ValidationFailed(f"{problem}, got {count}")
    return CountSpec(count)


def resolve_count(spec: str | int, total: int, *, what: str, minimum: int = 1) -> int:
    """A count given as ``5`` or ``"5"`` or a share ``"10%"`` of ``total`` (rounded up)."""
    return parse_count(spec, what=what, minimum=minimum).resolve(total, minimum=minimum)


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 3, 4, 4
_SHORT.maxstring = _SHORT.maxother = 50


def shown(value: object, limit: int = 60) -> str:
    """A value for an error message, cut short — without writing all of it out first:
    it may come from a hostile document (huge, or deeply nested)."""
    text = _SHORT.repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class RingMembers:
    """Who a ring targets: whole groups, or ``percent`` of the hosts of those groups."""

    groups: tuple[int, ...]
    percent: float = 100.0


def _spread(seed: str, asset_id: int) -> str:
    return hashlib.sha256(f"{seed}:{asset_id}".encode()).hexdigest()


def assign_rings(
    rings: Sequence[RingMembers], members: Mapping[int, Iterable[int]], *, seed: str
) -> dict[int, int]:
    """Place every targeted host in exactly one ring: the first ring that takes it.

    A percentage ring takes a stable, evenly spread sample (hashed with ``seed``) of
    the not-yet-placed hosts of its groups, rounded up.
    """
    placed: dict[int, int] = {}
    for index, ring in enumerate(rings):
        if not 0 < ring.percent <= 100:
            raise ValidationFailed(f"ring {index + 1}: percent must be in (0, 100]")
        candidates = sorted(
            {a for g in ring.groups for a in members.get(g, ()) if a not in placed},
            key=lambda a: _spread(seed, a),
        )
        take = math.ceil(len(candidates) * ring.percent / 100)
        for asset_id in candidates[:take]:
            placed[asset_id] = index
    return placed


# ------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class RingPlan:
    """A ring's limits, resolved to counts."""

    name: str
    concurrency: int
    error_budget: int
    success_threshold: float = 1.0
    soak: timedelta = timedelta(0)
    requires_approval: bool = False

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValidationFailed(f"ring {self.name}: concurrency must be at least 1")
        if self.error_budget < 1:
            raise ValidationFailed(f"ring {self.name}: error budget must be at least 1")
        if not 0.0 <= self.success_threshold <= 1.0:
            raise ValidationFailed(f"ring {self.name}: success threshold must be 0-100%")


@dataclass(frozen=True, slots=True)
class RingState:
    """Where a ring is."""

    status: RingStatus = "pending"
    approved: bool = False
    soak_until: datetime | None = None
    # Failures an operator accepted when resuming a halted ring (they no longer count
    # against the budget; new failures do).
    failures_forgiven: int = 0


@dataclass(frozen=True, slots=True)
class JobView:
    """One host's job as the orchestrator sees it."""

    job_id: int
    asset_id: int
    ring: int
    status: JobStatus
    groups: frozenset[int] = frozenset()
    released_at: datetime | None = None
    # First claim of the current attempt (kept across a lapsed lease, cleared on retry).
    claimed_at: datetime | None = None
    lease_until: datetime | None = None
    not_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed attempts are retried: up to ``max_attempts`` in all, with backoff
    ``base x 2^(attempt-1)`` capped at ``cap``."""

    max_attempts: int = 2
    base: timedelta = timedelta(minutes=5)
    cap: timedelta = timedelta(hours=1)

    def backoff(self, attempt: int) -> timedelta:
        """Wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        wait: timedelta = self.base * (2 ** max(0, attempt - 1))
        return min(self.cap, wait)


REBOOT_POLICIES = ("never", "if_required", "always")

#: Whole-number policy keys: (smallest, largest) allowed value. The job-facing limits
#: (bandwidth, check timeout) are those the agent accepts (docs/agent-jobs.md).
POLICY_RANGES: Mapping[str, tuple[int, int]] = {
    "max_attempts": (1, 10),
    "retry_backoff_minutes": (0, 60),
    "expected_minutes": (1, 7 * 24 * 60),
    "claim_deadline_minutes": (1, 30 * 24 * 60),
    "progress_deadline_minutes": (1, 7 * 24 * 60),
    "lease_minutes": (1, 24 * 60),
    "bandwidth_kbps": (0, 10_000_000),
    "check_timeout": (1, 3600),
}
MAX_PRE_HOOKS = 16
MAX_CHECKS = 32
MAX_URL_CHARS = 2048
# What the agent accepts in a job (docs/agent-jobs.md), so a policy it would refuse on
# every host is refused when the rollout is created instead.
_LOCAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_UNIT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9:_.@\\-]{0,254}")
_HOST = re.compile(r"[A-Za-z0-9_.:-]{1,253}")
_CHECK_FIELDS: Mapping[str, frozenset[str]] = {
    "systemd": frozenset({"type", "unit"}),
    "http": frozenset({"type", "url", "expect_status"}),
    "tcp": frozenset({"type", "host", "port"}),
    "command": frozenset({"type", "name"}),
}


@dataclass(frozen=True, slots=True)
class RolloutPolicy:
    """How a rollout's jobs run: retries, deadlines, leases and what the agent does.

    Every key, its type, range and default is documented in docs/deployment.md; build
    one from JSON with ``parse_policy`` (which checks all of it). ``pre_hooks`` and
    ``checks`` are passed to the agent, which validates their content by its own
    contract (docs/agent-jobs.md).
    """

    max_attempts: int = 2
    retry_backoff_minutes: int = 5
    expected_minutes: int = 30
    claim_deadline_minutes: int = 240
    progress_deadline_minutes: int = 120
    lease_minutes: int = 15
    bandwidth_kbps: int = 0
    reboot: str = "if_required"
    pre_hooks: tuple[str, ...] = ()
    checks: tuple[Mapping[str, object], ...] = ()
    check_timeout: int = 60
    rollback_on_failure: bool = True

    @property
    def retry(self) -> RetryPolicy:
        """The retry rule of failed attempts."""
        return RetryPolicy(
            max_attempts=self.max_attempts, base=timedelta(minutes=self.retry_backoff_minutes)
        )

    @property
    def lease(self) -> timedelta:
        """How long a claim lasts without a heartbeat."""
        return timedelta(minutes=self.lease_minutes)

    @property
    def expected_duration(self) -> timedelta:
        """The time a window must still be open to start a job."""
        return timedelta(minutes=self.expected_minutes)

    @property
    def claim_deadline(self) -> timedelta:
        """Unclaimed this long after release: the host is offline."""
        return timedelta(minutes=self.claim_deadline_minutes)

    @property
    def progress_deadline(self) -> timedelta:
        """Claimed this long without a result: a failed attempt."""
        return timedelta(minutes=self.progress_deadline_minutes)

    def job_fields(self) -> dict[str, object]:
        """The fields every job payload of the rollout carries (docs/agent-jobs.md)."""
        return {
            "bandwidth_kbps": self.bandwidth_kbps,
            "pre_hooks": list(self.pre_hooks),
            "checks": [dict(check) for check in self.checks],
            "check_timeout": self.check_timeout,
            "reboot": self.reboot,
            "rollback_on_failure": self.rollback_on_failure,
        }

    def to_json(self) -> dict[str, object]:
        """The stored and displayed form (every key, defaults included)."""
        return {
            "max_attempts": self.max_attempts,
            "retry_backoff_minutes": self.retry_backoff_minutes,
            "expected_minutes": self.expected_minutes,
            "claim_deadline_minutes": self.claim_deadline_minutes,
            "progress_deadline_minutes": self.progress_deadline_minutes,
            "lease_minutes": self.lease_minutes,
            "bandwidth_kbps": self.bandwidth_kbps,
            "reboot": self.reboot,
            "pre_hooks": list(self.pre_hooks),
            "checks": [dict(check) for check in self.checks],
            "check_timeout": self.check_timeout,
            "rollback_on_failure": self.rollback_on_failure,
        }


POLICY_KEYS: tuple[str, ...] = tuple(RolloutPolicy.__dataclass_fields__)


def parse_policy(raw: object, *, where: str = "policy") -> RolloutPolicy:
    """A ``RolloutPolicy`` from JSON: missing keys take their defaults; an unknown key or
    a value of the wrong type or out of range raises ``ValidationFailed`` naming the key
    (``where`` prefixes it: ``policy.claim_deadline_minutes: …``)."""
    if not isinstance(raw, Mapping):
        raise ValidationFailed(f"{where}: should be an object, got {shown(raw)}")
    unknown = sorted(str(key) for key in raw if key not in POLICY_KEYS)
    if unknown:
        raise ValidationFailed(
            f"{where}: unknown key(s) {', '.join(unknown)}",
            hint=f"policy keys: {', '.join(POLICY_KEYS)}",
        )
    defaults = RolloutPolicy()
    whole: dict[str, int] = {}
    for key, (low, high) in POLICY_RANGES.items():
        whole[key] = _whole(raw.get(key, getattr(defaults, key)), low, high, f"{where}.{key}")
    reboot = raw.get("reboot", defaults.reboot)
    if reboot not in REBOOT_POLICIES:
        raise ValidationFailed(
            f"{where}.reboot: should be one of {', '.join(REBOOT_POLICIES)}, got {shown(reboot)}"
        )
    rollback = raw.get("rollback_on_failure", defaults.rollback_on_failure)
    if type(rollback) is not bool:
        raise ValidationFailed(
            f"{where}.rollback_on_failure: should be true or false, got {shown(rollback)}"
        )
    hooks = _policy_list(raw, "pre_hooks", str, expected="a name", limit=MAX_PRE_HOOKS, where=where)
    for index, hook in enumerate(hooks):
        _pattern(hook, _LOCAL_NAME, f"{where}.pre_hooks[{index}]", "a hook name")
    checks = _policy_list(
        raw, "checks", Mapping, expected="an object", limit=MAX_CHECKS, where=where
    )
    return RolloutPolicy(
        **whole,
        reboot=str(reboot),
        pre_hooks=tuple(str(hook) for hook in hooks),
        checks=tuple(
            _policy_check(check, f"{where}.checks[{index}]")
            for index, check in enumerate(checks)
            if isinstance(check, Mapping)
        ),
        rollback_on_failure=rollback,
    )


def _policy_check(raw: Mapping[object, object], where: str) -> dict[str, object]:
    """A post-install check as the agent runs it (docs/agent-jobs.md, "Checks")."""
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in _CHECK_FIELDS:
        raise ValidationFailed(
            f"{where}.type: should be one of {', '.join(_CHECK_FIELDS)}, got {shown(kind)}"
        )
    unknown = sorted(str(key) for key in raw if key not in _CHECK_FIELDS[kind])
    if unknown:
        raise ValidationFailed(
            f"{where}: unknown key(s) {', '.join(unknown)} for a {kind} check",
            hint=f"{kind} checks take {', '.join(sorted(_CHECK_FIELDS[kind]))}",
        )
    if kind == "systemd":
        _pattern(raw.get("unit"), _UNIT, f"{where}.unit", "a systemd unit name")
    elif kind == "command":
        _pattern(raw.get("name"), _LOCAL_NAME, f"{where}.name", "a command name")
    elif kind == "tcp":
        _pattern(raw.get("host"), _HOST, f"{where}.host", "a host name or address")
        _whole(raw.get("port"), 1, 65535, f"{where}.port")
    else:
        _http_url(raw.get("url"), f"{where}.url")
        if "expect_status" in raw:
            _whole(raw["expect_status"], 100, 599, f"{where}.expect_status")
    return {str(key): value for key, value in raw.items()}


def _pattern(value: object, pattern: re.Pattern[str], where: str, expected: str) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValidationFailed(
            f"{where}: should be {expected} matching {pattern.pattern}, got {shown(value)}"
        )


def _whole(value: object, low: int, high: int, where: str) -> int:
    # bool is an int in Python, never in a policy.
    if not isinstance(value, int) or type(value) is bool or not low <= value <= high:
        raise ValidationFailed(
            f"{where}: should be a whole number from {low} to {high}, got {shown(value)}"
        )
    return value


def _http_url(value: object, where: str) -> None:
    problem = f"{where}: should be an http:// or https:// URL with a host"
    if not isinstance(value, str) or not 0 < len(value) <= MAX_URL_CHARS:
        raise ValidationFailed(f"{problem} (at most {MAX_URL_CHARS} characters)")
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError as exc:
        raise ValidationFailed(f"{problem}: {exc}") from None
    if parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in value):
        raise ValidationFailed(f"{problem}, got {shown(value)}")


def _policy_list(
    raw: Mapping[object, object],
    key: str,
    kind: type,
    *,
    expected: str,
    limit: int,
    where: str,
) -> list[object]:
    value = raw.get(key, [])
    if not isinstance(value, list) or len(value) > limit:
        raise ValidationFailed(
            f"{where}.{key}: should be a list of at most {limit} items, got {shown(value)}"
        )
    for index, item in enumerate(value):
        if not isinstance(item, kind):
            raise ValidationFailed(
                f"{where}.{key}[{index}]: should be {expected}, got {shown(item)}"
            )
    return value


@dataclass(frozen=True, slots=True)
class RolloutView:
    """Everything ``decide`` needs about one rollout."""

    status: RolloutStatus
    rings: tuple[RingPlan, ...]
    ring_states: tuple[RingState, ...]
    jobs: tuple[JobView, ...]
    windows: Mapping[int, tuple[MaintenanceWindow, ...]] = field(default_factory=dict)
    dependencies: tuple[tuple[int, int], ...] = ()
    expected_duration: timedelta = timedelta(minutes=30)
    claim_deadline: timedelta = timedelta(hours=4)
    progress_deadline: timedelta = timedelta(hours=2)


# ----------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Release:
    """Make a job claimable by its host's agent."""

    job_id: int


@dataclass(frozen=True, slots=True)
class ExpireLease:
    """A claim lapsed without a result: back to ``ready`` (the same attempt, which
    keeps its first-claim time so the progress deadline still applies)."""

    job_id: int


@dataclass(frozen=True, slots=True)
class MarkOffline:
    """Nobody claimed the job in time: the host is offline (not a failure)."""

    job_id: int


@dataclass(frozen=True, slots=True)
class TimeOut:
    """A claimed job passed the progress deadline: a failed attempt."""

    job_id: int


@dataclass(frozen=True, slots=True)
class StartRing:
    """Begin a ring."""

    ring: int


@dataclass(frozen=True, slots=True)
class AwaitApproval:
    """The ring's approval gate: wait for an approver."""

    ring: int


@dataclass(frozen=True, slots=True)
class StartSoak:
    """Every job finished and the threshold is met: soak until ``until``."""

    ring: int
    until: datetime


@dataclass(frozen=True, slots=True)
class CompleteRing:
    """The ring is done; the next one may start."""

    ring: int


@dataclass(frozen=True, slots=True)
class HaltRing:
    """Stop the ring (and the rollout); ``reason`` says why."""

    ring: int
    reason: str


@dataclass(frozen=True, slots=True)
class CompleteRollout:
    """Every ring completed."""


Action = (
    Release
    | ExpireLease
    | MarkOffline
    | TimeOut
    | StartRing
    | AwaitApproval
    | StartSoak
    | CompleteRing
    | HaltRing
    | CompleteRollout
)


# ---------------------------------------------------------------------- decisions


def after_failure(
    job_attempts: int, policy: RetryPolicy, now: datetime
) -> tuple[JobStatus, datetime | None]:
    """The status after a failed attempt: ``retry_wait`` (with when) or ``failed``."""
    if job_attempts < policy.max_attempts:
        return "retry_wait", now + policy.backoff(job_attempts)
    return "failed", None


def _deadlines(
    jobs: Iterable[JobView],
    *,
    claim_deadline: timedelta,
    progress_deadline: timedelta,
    now: datetime,
) -> list[Action]:
    actions: list[Action] = []
    for job in jobs:
        claimed = job.claimed_at
        if job.status in ("running", "ready") and claimed is not None:
            # The progress deadline runs from the attempt's first claim; a lapsed lease
            # does not restart it, so an agent that keeps dying still times out.
            if now - claimed >= progress_deadline:
                actions.append(TimeOut(job.job_id))
            elif job.status == "running" and job.lease_until is not None and job.lease_until <= now:
                actions.append(ExpireLease(job.job_id))
        elif (
            job.status == "ready"
            and job.released_at is not None
            and now - job.released_at >= claim_deadline
        ):
            actions.append(MarkOffline(job.job_id))
    return actions


def _window_open(view: RolloutView, asset_id: int, now: datetime) -> bool:
    windows = view.windows.get(asset_id, ())
    return not windows or can_start(windows, now, view.expected_duration)


def dependency_levels(dependencies: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Each group in the dependency graph with its depth (longest path from a root)."""
    edges = list(dependencies)
    levels = {g: 0 for edge in edges for g in edge}
    for _ in range(len(levels)):  # relax: a DAG settles within |groups| rounds
        changed = False
        for first, then in edges:
            if levels[then] < levels[first] + 1:
                levels[then] = levels[first] + 1
                changed = True
        if not changed:
            break
    return levels


def effective_groups(groups: frozenset[int], levels: Mapping[int, int]) -> frozenset[int]:
    """The dependency groups a host counts in: those of its earliest level.

    A host in groups of different levels goes with the earliest, so it never waits for
    hosts that wait for it (a host in groups 1 and 3 of ``1 → 2 → 3`` goes with 1).
    """
    ranked = [g for g in groups if g in levels]
    if not ranked:
        return frozenset()
    first = min(levels[g] for g in ranked)
    return frozenset(g for g in ranked if levels[g] == first)


def _waits(
    job: JobView, view: RolloutView, levels: Mapping[int, int], unfinished: set[int]
) -> bool:
    mine = effective_groups(job.groups, levels)
    return any(then in mine and first in unfinished for first, then in view.dependencies)


def validate_dependencies(dependencies: Iterable[tuple[int, int]]) -> None:
    """Refuse dependency cycles (they would hold hosts back forever)."""
    graph: dict[int, set[int]] = {}
    for first, then in dependencies:
        if first == then:
            raise ValidationFailed(f"group {first} cannot depend on itself")
        graph.setdefault(first, set()).add(then)
    done: set[int] = set()

    def visit(node: int, path: tuple[int, ...]) -> None:
        if node in path:
            cycle = " → ".join(str(n) for n in (*path[path.index(node) :], node))
            raise ValidationFailed(f"group dependencies form a cycle: {cycle}")
        if node in done:
            return
        for nxt in graph.get(node, ()):
            visit(nxt, (*path, node))
        done.add(node)

    for start in list(graph):
        visit(start, ())


def decide_rollbacks(
    jobs: Iterable[JobView],
    *,
    claim_deadline: timedelta,
    progress_deadline: timedelta,
    now: datetime,
) -> list[Action]:
    """Rollback jobs follow the same deadlines and retries as installs, but nothing
    holds them back — no window, ring or budget: undoing damage must not wait."""
    jobs = list(jobs)
    actions = _deadlines(
        jobs, claim_deadline=claim_deadline, progress_deadline=progress_deadline, now=now
    )
    actions.extend(
        Release(job.job_id)
        for job in jobs
        if job.status == "retry_wait" and (job.not_before is None or job.not_before <= now)
    )
    return actions


def decide(view: RolloutView, now: datetime) -> list[Action]:
    """What the orchestrator should do now for one rollout (see the module doc)."""
    if view.status not in ("running", "paused", "halted"):
        return []
    actions: list[Action] = _deadlines(
        view.jobs,
        claim_deadline=view.claim_deadline,
        progress_deadline=view.progress_deadline,
        now=now,
    )
    if view.status != "running":
        return actions  # paused or halted: in-flight work is still tracked, nothing new

    current = next(
        (
            i
            for i, state in enumerate(view.ring_states)
            if state.status not in ("completed", "rolled_back")
        ),
        None,
    )
    if current is None:
        return [*actions, CompleteRollout()]
    plan = view.rings[current]
    state = view.ring_states[current]
    ring_jobs = [j for j in view.jobs if j.ring == current]
    timed_out = {a.job_id for a in actions if isinstance(a, TimeOut)}

    if state.status in ("pending", "awaiting_approval"):
        if plan.requires_approval and not state.approved:
            if state.status != "awaiting_approval":
                actions.append(AwaitApproval(current))
            return actions
        actions.append(StartRing(current))
        return actions
    if state.status == "halted":
        return actions
    if state.status == "soaking":
        if state.soak_until is None or now >= state.soak_until:
            actions.append(CompleteRing(current))
        return actions

    # running
    failed_total = sum(1 for j in ring_jobs if j.status == "failed")
    failed = failed_total - state.failures_forgiven
    # A timed-out attempt may become a failure; count it pessimistically.
    failed_soon = failed + len(timed_out)
    if failed >= plan.error_budget:
        actions.append(
            HaltRing(
                current, f"{failed} failed hosts reached the error budget of {plan.error_budget}"
            )
        )
        return actions
    if not ring_jobs:
        actions.append(CompleteRing(current))
        return actions

    in_flight = sum(1 for j in ring_jobs if j.status in IN_FLIGHT)
    slots = plan.concurrency - in_flight
    if failed_soon < plan.error_budget and slots > 0:
        levels = dependency_levels(view.dependencies)
        unfinished_groups: set[int] = set()
        for other in view.jobs:
            if other.ring <= current and other.status not in FINAL:
                unfinished_groups |= effective_groups(other.groups, levels)
        for job in sorted(ring_jobs, key=lambda j: j.job_id):
            if slots <= 0:
                break
            if job.status != "pending":
                continue
            if levels and _waits(job, view, levels, unfinished_groups):
                continue
            if not _window_open(view, job.asset_id, now):
                continue
            actions.append(Release(job.job_id))
            slots -= 1
    # Retry-waits whose backoff passed are released again (they already hold a slot),
    # unless the ring reached its budget or the host's window is closed.
    if failed_soon < plan.error_budget:
        for job in ring_jobs:
            if (
                job.status == "retry_wait"
                and (job.not_before is None or job.not_before <= now)
                and _window_open(view, job.asset_id, now)
            ):
                actions.append(Release(job.job_id))

    unfinished = [j for j in ring_jobs if j.status not in FINAL]
    if not unfinished and not timed_out:
        succeeded = sum(1 for j in ring_jobs if j.status == "succeeded")
        judged = succeeded + failed_total
        ratio = 1.0 if judged == 0 else succeeded / judged
        if ratio + 1e-9 < plan.success_threshold:
            actions.append(
                HaltRing(
                    current,
                    f"{succeeded} of {judged} hosts succeeded ({ratio:.0%}), below the "
                    f"{plan.success_threshold:.0%} needed to promote",
                )
            )
        elif plan.soak > timedelta(0):
            actions.append(StartSoak(current, now + plan.soak))
        else:
            actions.append(CompleteRing(current))
    return actions
