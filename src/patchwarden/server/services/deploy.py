"""Deployment services: windows, baselines, exceptions, rollouts, approvals, jobs.

Every change is audited in the same transaction. The orchestrator's rules live in
``core/rollout.py`` (decisions) and ``core/approval.py`` (baselines, exceptions); this
module turns database rows into their inputs and applies their outputs.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ScalarSelect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patchwarden.core import rollout as rules
from patchwarden.core.approval import BaselineRules, Candidate, approve, parse_rules
from patchwarden.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from patchwarden.core.remediation import FindingView, plan
from patchwarden.core.windows import Blackout, MaintenanceWindow, parse_window
from patchwarden.server.services.agents import request_checkin
from patchwarden.server.services.deploy_specs import (
    EmergencyProfileSpec,
    RingSpec,
    RolloutSpec,
    emergency_profile_spec,
    script_package_spec,
)
from patchwarden.store import audit
from patchwarden.store.audit import Actor
from patchwarden.store.findings import refresh_findings, threats_for
from patchwarden.store.groups import get_group, member_ids
from patchwarden.store.lookup import by_id_or_name
from patchwarden.store.models import (
    AdvisoryRow,
    ApprovalRow,
    AssetGroupMember,
    AssetRow,
    FindingRow,
    GroupWindow,
    JobResultRow,
    JobRow,
    MaintenanceWindowRow,
    PackageRow,
    PackageVuln,
    PatchBaselineRow,
    PolicyRow,
    RiskExceptionRow,
    RolloutRingRow,
    RolloutRow,
    ScriptPackageRow,
)

log = logging.getLogger("patchwarden.deploy")

ORCHESTRATOR = Actor("orchestrator", "system")
PRODUCTION_ENVIRONMENTS = frozenset({"prod", "production"})


# ----------------------------------------------------------------------- windows


def window_json(row: MaintenanceWindowRow) -> dict[str, Any]:
    """The API/CLI form of a maintenance window."""
    return {
        "id": row.id,
        "name": row.name,
        "rrule": row.rrule,
        "timezone": row.timezone,
        "duration_minutes": row.duration_minutes,
        "blackouts": row.blackouts,
        "created_at": row.created_at.isoformat(),
    }


def to_window(row: MaintenanceWindowRow) -> MaintenanceWindow:
    """The core value of a stored window."""
    return parse_window(
        row.rrule,
        row.timezone,
        row.duration_minutes,
        blackouts=tuple(
            Blackout(date.fromisoformat(a), date.fromisoformat(b)) for a, b in row.blackouts
        ),
        name=row.name,
    )


def _blackouts(raw: Sequence[Sequence[str]]) -> list[list[str]]:
    clean = []
    for item in raw:
        pair = [item, item] if isinstance(item, str) else list(item)
        if len(pair) != 2:
            raise ValidationFailed("a blackout is a date or a [start, end] pair of dates")
        try:
            start, end = date.fromisoformat(pair[0]), date.fromisoformat(pair[1])
        except ValueError as exc:
            raise ValidationFailed(f"blackout dates must be YYYY-MM-DD: {exc}") from exc
        clean.append([start.isoformat(), end.isoformat()])
    return clean


def create_window(
    session: Session,
    actor: Actor,
    *,
    name: str,
    rrule: str,
    timezone: str,
    duration_minutes: int,
    blackouts: Sequence[Sequence[str]] = (),
    now: datetime,
) -> MaintenanceWindowRow:
    """Create a named maintenance window (validated by ``core.windows``)."""
    if session.scalars(
        select(MaintenanceWindowRow.id).where(MaintenanceWindowRow.name == name)
    ).first():
        raise Conflict(f"a maintenance window named {name!r} already exists")
    row = MaintenanceWindowRow(
        name=name,
        rrule=rrule,
        timezone=timezone,
        duration_minutes=duration_minutes,
        blackouts=_blackouts(blackouts),
        created_at=now,
    )
    to_window(row)  # validates
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "window.create",
        now=now,
        target_type="window",
        target_id=row.id,
        after=window_json(row),
    )
    return row


def get_window(session: Session, ident: int | str) -> MaintenanceWindowRow:
    """A window by id or name."""
    return by_id_or_name(
        session,
        MaintenanceWindowRow,
        ident,
        name_column=MaintenanceWindowRow.name,
        what="maintenance window",
    )


def attach_window(
    session: Session,
    actor: Actor,
    group: int | str,
    window: int | str,
    *,
    now: datetime,
    detach: bool = False,
) -> None:
    """Attach (or detach) a window to a group."""
    group_row = get_group(session, group)
    window_row = get_window(session, window)
    existing = session.get(GroupWindow, (group_row.id, window_row.id))
    if detach:
        if existing is not None:
            session.delete(existing)
    elif existing is None:
        session.add(GroupWindow(group_id=group_row.id, window_id=window_row.id))
    audit.record(
        session,
        actor,
        "window.detach" if detach else "window.attach",
        now=now,
        target_type="group",
        target_id=group_row.id,
        after={"window": window_row.name},
    )


def host_windows(
    session: Session, asset_ids: Iterable[int] | ScalarSelect[Any]
) -> dict[int, tuple[MaintenanceWindow, ...]]:
    """The windows of every asset, through its groups (no entry: unrestricted).

    ``asset_ids`` is a list of ids or a scalar subquery selecting them (a rollout's
    hosts: no list of 100,000 parameters).
    """
    wanted = asset_ids if isinstance(asset_ids, ScalarSelect) else list(asset_ids)
    # Few groups carry windows: map those first, then read only their memberships.
    windows_of_group: dict[int, list[int]] = {}
    for group_id, window_id in session.execute(
        select(GroupWindow.group_id, GroupWindow.window_id).order_by(GroupWindow.window_id)
    ):
        windows_of_group.setdefault(group_id, []).append(window_id)
    if not windows_of_group:
        return {}
    parsed = {
        row.id: to_window(row)
        for row in session.scalars(
            select(MaintenanceWindowRow).where(
                MaintenanceWindowRow.id.in_(
                    sorted({w for ws in windows_of_group.values() for w in ws})
                )
            )
        )
    }
    groups_of: dict[int, set[int]] = {}
    for asset_id, group_id in session.execute(
        select(AssetGroupMember.asset_id, AssetGroupMember.group_id).where(
            AssetGroupMember.group_id.in_(sorted(windows_of_group)),
            AssetGroupMember.asset_id.in_(wanted),
        )
    ):
        groups_of.setdefault(asset_id, set()).add(group_id)
    # Hosts with the same windowed groups share one tuple (ordered by window id).
    shared: dict[frozenset[int], tuple[MaintenanceWindow, ...]] = {}
    result: dict[int, tuple[MaintenanceWindow, ...]] = {}
    for asset_id, group_ids in groups_of.items():
        key = frozenset(group_ids)
        if key not in shared:
            ids = sorted({w for g in key for w in windows_of_group[g]})
            shared[key] = tuple(parsed[w] for w in ids)
        result[asset_id] = shared[key]
    return result


# ---------------------------------------------------------------------- baselines


def baseline_json(row: PatchBaselineRow) -> dict[str, Any]:
    """The API/CLI form of a baseline."""
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "rules": row.rules,
        "groups": row.groups,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def _group_ids(session: Session, groups: Iterable[int | str]) -> list[int]:
    return sorted({get_group(session, g).id for g in groups})


def save_baseline(
    session: Session,
    actor: Actor,
    *,
    name: str,
    rules_json: dict[str, Any],
    groups: Sequence[int | str],
    description: str = "",
    now: datetime,
) -> PatchBaselineRow:
    """Create or replace a baseline by name."""
    parsed = parse_rules(rules_json)
    row = session.scalars(select(PatchBaselineRow).where(PatchBaselineRow.name == name)).first()
    before = baseline_json(row) if row else None
    if row is None:
        row = PatchBaselineRow(name=name, created_at=now, updated_at=now)
        session.add(row)
    row.description = description
    row.rules = parsed.to_json()
    row.groups = _group_ids(session, groups)
    row.updated_at = now
    session.flush()
    audit.record(
        session,
        actor,
        "baseline.save",
        now=now,
        target_type="baseline",
        target_id=row.id,
        before=before,
        after=baseline_json(row),
    )
    return row


def get_baseline(session: Session, ident: int | str) -> PatchBaselineRow:
    """A baseline by id or name."""
    return by_id_or_name(
        session,
        PatchBaselineRow,
        ident,
        name_column=PatchBaselineRow.name,
        what="patch baseline",
    )


# --------------------------------------------------------------------- exceptions


def exception_json(row: RiskExceptionRow) -> dict[str, Any]:
    """The API/CLI form of a risk exception."""
    return {
        "id": row.id,
        "advisory": row.advisory or None,
        "package": row.package or None,
        "asset_id": row.asset_id,
        "group_id": row.group_id,
        "justification": row.justification,
        "requested_by": row.requested_by,
        "requested_by_user": row.requested_by_user,
        "approved_by": row.approved_by or None,
        "approved_by_user": row.approved_by_user,
        "status": row.status,
        "created_at": row.created_at.isoformat(),
        "decided_at": row.decided_at.isoformat() if row.decided_at else None,
        "expires_at": row.expires_at.isoformat(),
    }


def request_exception(
    session: Session,
    actor: Actor,
    *,
    advisory: str = "",
    package: str = "",
    asset_id: int | None = None,
    group: int | str | None = None,
    justification: str,
    expires_at: datetime,
    now: datetime,
) -> RiskExceptionRow:
    """Request a risk acceptance; it takes effect once an approver approves it."""
    if not advisory and not package:
        raise ValidationFailed("an exception names an advisory, a package, or both")
    if (asset_id is None) == (group is None):
        raise ValidationFailed("an exception applies to exactly one asset or one group")
    if len(justification.strip()) < 10:
        raise ValidationFailed("a justification of at least 10 characters is required")
    if expires_at <= now:
        raise ValidationFailed("the expiry must be in the future")
    if expires_at > now + timedelta(days=366):
        raise ValidationFailed("exceptions last at most one year; renew them after review")
    group_id = get_group(session, group).id if group is not None else None
    if asset_id is not None and session.get(AssetRow, asset_id) is None:
        raise NotFound(f"no asset with id {asset_id}")
    row = RiskExceptionRow(
        advisory=advisory,
        package=package,
        asset_id=asset_id,
        group_id=group_id,
        justification=justification.strip(),
        requested_by=actor.name,
        requested_by_user=actor.user_id,
        status="pending",
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "exception.request",
        now=now,
        target_type="exception",
        target_id=row.id,
        after=exception_json(row),
    )
    return row


def _exception_assets(session: Session, row: RiskExceptionRow) -> list[int]:
    if row.asset_id is not None:
        return [row.asset_id]
    return member_ids(session, row.group_id) if row.group_id is not None else []


def decide_exception(
    session: Session, actor: Actor, exception_id: int, *, approve_it: bool, now: datetime
) -> RiskExceptionRow:
    """Approve or reject a pending exception (four eyes: not its requester)."""
    row = session.get(RiskExceptionRow, exception_id)
    if row is None:
        raise NotFound(f"no exception {exception_id}")
    if row.status != "pending":
        raise Conflict(f"exception {exception_id} is {row.status}, not pending")
    _require_second_person(
        actor,
        row.requested_by,
        row.requested_by_user,
        "an exception must be approved by someone other than its requester",
    )
    before = exception_json(row)
    row.status = "approved" if approve_it else "rejected"
    row.approved_by = actor.name
    row.approved_by_user = actor.user_id
    row.decided_at = now
    audit.record(
        session,
        actor,
        "exception.approve" if approve_it else "exception.reject",
        now=now,
        target_type="exception",
        target_id=row.id,
        before=before,
        after=exception_json(row),
    )
    if approve_it:
        refresh_findings(session, now=now, asset_ids=_exception_assets(session, row))
    return row


def revoke_exception(
    session: Session, actor: Actor, exception_id: int, *, now: datetime
) -> RiskExceptionRow:
    """End an exception early; its findings reopen."""
    row = session.get(RiskExceptionRow, exception_id)
    if row is None:
        raise NotFound(f"no exception {exception_id}")
    if row.status not in ("approved", "pending"):
        raise Conflict(f"exception {exception_id} is {row.status}; nothing to revoke")
    before = exception_json(row)
    row.status = "revoked"
    row.decided_at = now
    audit.record(
        session,
        actor,
        "exception.revoke",
        now=now,
        target_type="exception",
        target_id=row.id,
        before=before,
        after=exception_json(row),
    )
    refresh_findings(session, now=now, asset_ids=_exception_assets(session, row))
    return row


def expire_exceptions(session: Session, *, now: datetime) -> int:
    """Mark lapsed exceptions expired and reopen their findings (called by the loop)."""
    lapsed = list(
        session.scalars(
            select(RiskExceptionRow).where(
                RiskExceptionRow.status == "approved", RiskExceptionRow.expires_at <= now
            )
        )
    )
    assets: set[int] = set()
    for row in lapsed:
        row.status = "expired"
        assets.update(_exception_assets(session, row))
        audit.record(
            session,
            ORCHESTRATOR,
            "exception.expire",
            now=now,
            target_type="exception",
            target_id=row.id,
        )
    if assets:
        refresh_findings(session, now=now, asset_ids=sorted(assets))
    return len(lapsed)


def _display_user(display: str) -> str:
    """The username in a stored display name: 'bob', 'bob (token ci)', old 'cli:bob'."""
    return display.split(" (token", 1)[0].removeprefix("cli:")


def _require_second_person(
    actor: Actor, requester: str, requester_user: int | None, refusal: str
) -> None:
    """Four eyes: the decision is a signed-in user's, and not the requester's.

    People are compared by user id, whatever surface (browser, API token, CLI) they
    used. A request without a user id came from the system (anyone may decide it) or
    was stored before ids were recorded; then the stored name decides, and the old CLI
    form ``cli:<login>`` counts as the user of that name.
    """
    if actor.user_id is None:
        raise PermissionDenied("approvals are made by signed-in patchwarden users only")
    if requester_user is not None:
        same = requester_user == actor.user_id
    else:
        same = _display_user(requester) == _display_user(actor.name)
    if same:
        raise PermissionDenied(refusal)


# ----------------------------------------------------------------------- rollouts


#: The policy a rollout gets for every key it leaves out (docs/deployment.md).
DEFAULT_POLICY: dict[str, Any] = rules.RolloutPolicy().to_json()


def rollout_json(session: Session, row: RolloutRow, *, with_jobs: bool = False) -> dict[str, Any]:
    """The API/CLI form of a rollout with its rings and progress."""
    rings = list(
        session.scalars(
            select(RolloutRingRow)
            .where(RolloutRingRow.rollout_id == row.id)
            .order_by(RolloutRingRow.idx)
        )
    )
    jobs = list(
        session.scalars(select(JobRow).where(JobRow.rollout_id == row.id).order_by(JobRow.id))
    )
    out: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "emergency": row.emergency,
        "baseline_id": row.baseline_id,
        "selection": row.selection,
        "target_groups": row.target_groups,
        "dependencies": row.dependencies,
        "policy": row.policy,
        "requested_by": row.requested_by,
        "requested_by_user": row.requested_by_user,
        "created_at": row.created_at.isoformat(),
        "started_at": row.started_at.isoformat() if row.started_at else None,
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "halt_reason": row.halt_reason or None,
        "rings": [],
    }
    for ring in rings:
        ring_jobs = [j for j in jobs if j.ring_idx == ring.idx and j.kind == "install"]
        counts: dict[str, int] = {}
        for job in ring_jobs:
            counts[job.status] = counts.get(job.status, 0) + 1
        out["rings"].append(
            {
                "index": ring.idx,
                "name": ring.name,
                "status": ring.status,
                "hosts": len(ring_jobs),
                "jobs": counts,
                "concurrency": ring.concurrency,
                "error_budget": ring.error_budget,
                "success_threshold": ring.success_threshold,
                "soak_minutes": ring.soak_minutes,
                "requires_approval": ring.requires_approval,
                "approved": ring.approved,
                "windows": ring.windows,
                "soak_until": ring.soak_until.isoformat() if ring.soak_until else None,
                "started_at": ring.started_at.isoformat() if ring.started_at else None,
                "finished_at": ring.finished_at.isoformat() if ring.finished_at else None,
            }
        )
    if with_jobs:
        hostnames = dict(
            session.execute(
                select(AssetRow.id, AssetRow.hostname).where(
                    AssetRow.id.in_([j.asset_id for j in jobs] or [0])
                )
            )
            .tuples()
            .all()
        )
        out["jobs"] = [job_json(j, hostnames.get(j.asset_id, "")) for j in jobs]
    return out


def job_json(job: JobRow, hostname: str = "") -> dict[str, Any]:
    """The API form of a job."""
    return {
        "id": job.id,
        "ring": job.ring_idx,
        "asset_id": job.asset_id,
        "hostname": hostname,
        "kind": job.kind,
        "status": job.status,
        "attempt": job.attempt,
        "packages": job.payload.get("packages", []),
        "released_at": job.released_at.isoformat() if job.released_at else None,
        "claimed_at": job.claimed_at.isoformat() if job.claimed_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "last_error": job.last_error or None,
    }


def get_rollout(session: Session, rollout_id: int, *, lock: bool = False) -> RolloutRow:
    """A rollout by id (optionally locked FOR UPDATE on PostgreSQL)."""
    query = select(RolloutRow).where(RolloutRow.id == rollout_id)
    if lock:
        query = query.with_for_update()
    row = session.scalars(query).first()
    if row is None:
        raise NotFound(f"no rollout {rollout_id}")
    return row


def _candidates(
    session: Session, asset_ids: Sequence[int]
) -> dict[int, list[tuple[FindingView, Candidate, str]]]:
    """Open, fixable findings per asset with what a baseline needs to judge them."""
    rows = session.execute(
        select(
            FindingRow.asset_id,
            FindingRow.priority,
            FindingRow.risk_score,
            PackageRow.name,
            PackageRow.version,
            PackageRow.ecosystem,
            PackageVuln.matched_name,
            PackageVuln.matched_version,
            PackageVuln.fixed_version,
            AdvisoryRow.ext_id,
            AdvisoryRow.aliases,
            AdvisoryRow.related,
            AdvisoryRow.published,
            FindingRow.advisory_id,
        )
        .join(PackageRow, PackageRow.id == FindingRow.package_id)
        .join(
            PackageVuln,
            (PackageVuln.package_id == FindingRow.package_id)
            & (PackageVuln.advisory_id == FindingRow.advisory_id),
        )
        .join(AdvisoryRow, AdvisoryRow.id == FindingRow.advisory_id)
        .where(
            FindingRow.asset_id.in_(list(asset_ids)),
            FindingRow.state == "open",
            PackageVuln.fixed_version.is_not(None),
        )
    ).all()
    threats = threats_for(session, {r[13] for r in rows})
    result: dict[int, list[tuple[FindingView, Candidate, str]]] = {}
    for (
        asset_id,
        priority,
        score,
        name,
        version,
        eco,
        mname,
        mversion,
        fixed,
        ext_id,
        aliases,
        related,
        published,
        advisory_row,
    ) in rows:
        view = FindingView(eco, name, version, mname, mversion, ext_id, fixed, score)
        threat = threats[advisory_row]
        severity = threat.cvss.severity if threat.cvss else ""
        candidate = Candidate(
            ext_id,
            (*aliases, *related),
            mname,
            priority,
            severity,
            threat.kev is not None,
            published,
        )
        result.setdefault(asset_id, []).append((view, candidate, name))
    return result


def _selected(
    baseline: BaselineRules | None,
    advisories: set[str],
    packages: set[str],
    candidate: Candidate,
    *,
    binary: str,
    now: datetime,
) -> bool:
    if baseline is not None:
        return approve(baseline, candidate, now)[0]
    ids = {candidate.advisory_id, *candidate.aliases}
    return bool(ids & advisories) or candidate.package in packages or binary in packages


def _job_packages(views: Sequence[FindingView]) -> list[dict[str, str]]:
    """Binary packages to install and their versions, from the remediation plan."""
    targets: dict[str, str] = {}
    for upgrade in plan(views):
        binaries = upgrade.packages or (upgrade.name,)
        for binary in binaries:
            targets[binary] = upgrade.target_version
    return [{"name": n, "version": v} for n, v in sorted(targets.items())]


def create_rollout(
    session: Session,
    actor: Actor,
    *,
    name: str,
    target_groups: Sequence[int | str],
    rings: Sequence[RingSpec],
    now: datetime,
    baseline: int | str | None = None,
    advisories: Sequence[str] = (),
    packages: Sequence[str] = (),
    dependencies: Sequence[Sequence[int | str]] = (),
    policy: Mapping[str, Any] | None = None,
    emergency: bool = False,
    windows: Sequence[int | str] = (),
    target_assets: Sequence[int] = (),
) -> RolloutRow:
    """Plan a rollout: hosts per ring, the approved upgrades per host, one job each.

    Targets are groups, or (for emergency rollouts opened automatically) asset ids. The
    policy is checked in full (``core.rollout.parse_policy``) before anything is written.
    """
    if not rings:
        raise ValidationFailed("a rollout needs at least one ring")
    if baseline is None and not advisories and not packages:
        raise ValidationFailed("choose what to deploy: a baseline, advisories or packages")
    targets = _group_ids(session, target_groups)
    if not targets and not target_assets:
        raise ValidationFailed("a rollout needs at least one target group")
    baseline_row = get_baseline(session, baseline) if baseline is not None else None
    baseline_rules = parse_rules(baseline_row.rules) if baseline_row else None
    typed_policy = rules.parse_policy(policy or {})
    if any(len(pair) != 2 for pair in dependencies):
        raise ValidationFailed("a dependency is a pair of groups: [first, then]")
    deps = [[get_group(session, a).id, get_group(session, b).id] for a, b in dependencies]
    rules.validate_dependencies((a, b) for a, b in deps)
    own_windows = [get_window(session, w).id for w in windows]
    if own_windows and not emergency:
        raise ValidationFailed("only emergency rollouts carry their own windows")

    members = {g: member_ids(session, g) for g in targets}
    targeted = {a for ids in members.values() for a in ids} | set(target_assets)
    # Explicit assets form a pseudo group (id 0) that rings without groups take.
    everyone = (*targets, 0) if target_assets else tuple(targets)
    ring_members = []
    for spec in rings:
        groups = tuple(_group_ids(session, spec.groups)) if spec.groups else everyone
        ring_members.append(rules.RingMembers(groups, spec.percent))
    all_members = {
        g: (list(target_assets) if g == 0 else member_ids(session, g))
        for rm in ring_members
        for g in rm.groups
    }
    scoped = {g: [a for a in ids if a in targeted] for g, ids in all_members.items()}
    placement = rules.assign_rings(ring_members, scoped, seed=f"{name}:{now.isoformat()}")

    assets = {
        a.id: a
        for a in session.scalars(select(AssetRow).where(AssetRow.id.in_(list(placement) or [0])))
    }
    candidates = _candidates(session, list(placement))
    advisory_set, package_set = set(advisories), set(packages)
    rollout = RolloutRow(
        name=name,
        status="pending_approval" if emergency else "running",
        emergency=emergency,
        baseline_id=baseline_row.id if baseline_row else None,
        selection={"advisories": sorted(advisory_set), "packages": sorted(package_set)},
        target_groups=targets,
        dependencies=deps,
        policy=typed_policy.to_json(),
        windows=own_windows,
        requested_by=actor.name,
        requested_by_user=actor.user_id,
        created_at=now,
    )
    session.add(rollout)
    session.flush()

    per_ring: dict[int, list[int]] = {}
    skipped: dict[str, int] = {"no approved update": 0, "unsupported OS family": 0}
    jobs: list[JobRow] = []
    for asset_id, ring_index in sorted(placement.items()):
        asset = assets[asset_id]
        backend = {"debian": "apt", "rpm": "dnf"}.get(asset.os_family)
        chosen = [
            view
            for view, candidate, binary in candidates.get(asset_id, [])
            if _selected(
                baseline_rules, advisory_set, package_set, candidate, binary=binary, now=now
            )
        ]
        if not chosen:
            skipped["no approved update"] += 1
            continue
        if backend is None:
            skipped["unsupported OS family"] += 1
            continue
        payload = {
            "kind": "install",
            "backend": backend,
            "packages": _job_packages(chosen),
            **typed_policy.job_fields(),
        }
        jobs.append(
            JobRow(
                rollout_id=rollout.id,
                ring_idx=ring_index,
                asset_id=asset_id,
                kind="install",
                status="pending",
                payload=payload,
                plan={
                    "advisories": sorted({v.advisory_id for v in chosen}),
                    "risk_removed": round(sum(v.risk_score for v in chosen), 1),
                },
            )
        )
        per_ring.setdefault(ring_index, []).append(asset_id)
    session.add_all(jobs)

    for index, spec in enumerate(rings):
        hosts = per_ring.get(index, [])
        production = any(assets[a].environment.lower() in PRODUCTION_ENVIRONMENTS for a in hosts)
        ring_windows = [get_window(session, w).id for w in spec.windows]
        session.add(
            RolloutRingRow(
                rollout_id=rollout.id,
                idx=index,
                name=spec.name,
                members={"groups": list(ring_members[index].groups), "percent": spec.percent},
                windows=ring_windows,
                concurrency=rules.resolve_count(
                    spec.concurrency, max(1, len(hosts)), what=f"ring {spec.name} concurrency"
                ),
                error_budget=rules.resolve_count(
                    spec.error_budget, max(1, len(hosts)), what=f"ring {spec.name} error budget"
                ),
                success_threshold=_threshold(spec.success_threshold),
                soak_minutes=spec.soak_minutes,
                # Four eyes before production: forced on rings holding production hosts.
                requires_approval=spec.requires_approval or production,
                status="pending",
            )
        )
    session.flush()
    audit.record(
        session,
        actor,
        "rollout.create",
        now=now,
        target_type="rollout",
        target_id=rollout.id,
        after={
            "name": name,
            "jobs": len(jobs),
            "per_ring": {str(k): len(v) for k, v in per_ring.items()},
            "skipped": skipped,
            "emergency": emergency,
        },
    )
    return rollout


def create_rollout_from_spec(
    session: Session, actor: Actor, spec: RolloutSpec, *, now: datetime
) -> RolloutRow:
    """Plan the rollout a validated spec describes (the API's and the CLI's path)."""
    return create_rollout(
        session,
        actor,
        name=spec.name,
        target_groups=spec.target_groups,
        rings=[ring.to_spec() for ring in spec.rings],
        now=now,
        baseline=spec.baseline,
        advisories=spec.advisories,
        packages=spec.packages,
        dependencies=spec.dependencies,
        policy=spec.policy,
        emergency=spec.emergency,
        windows=spec.windows,
    )


def _threshold(percent: float) -> float:
    if not 0 <= percent <= 100:
        raise ValidationFailed("success threshold is a percentage 0-100")
    return percent / 100


def approve_rollout(
    session: Session,
    actor: Actor,
    rollout_id: int,
    *,
    ring: int | None,
    comment: str = "",
    now: datetime,
) -> RolloutRow:
    """Approve an emergency rollout (ring None) or a ring's gate — never one's own."""
    row = get_rollout(session, rollout_id, lock=True)
    _require_second_person(
        actor,
        row.requested_by,
        row.requested_by_user,
        "four eyes: the requester of a rollout cannot approve it",
    )
    if ring is None:
        if row.status != "pending_approval":
            raise Conflict(f"rollout {rollout_id} is {row.status}; pass a ring to approve a gate")
        row.status = "running"
    else:
        ring_row = _ring(session, rollout_id, ring)
        if ring_row.status not in ("pending", "awaiting_approval"):
            raise Conflict(f"ring {ring} is {ring_row.status}; nothing to approve")
        if not ring_row.requires_approval:
            raise Conflict(f"ring {ring} needs no approval")
        ring_row.approved = True
    session.add(
        ApprovalRow(
            rollout_id=rollout_id,
            ring_idx=ring,
            approver=actor.name,
            approver_user=actor.user_id,
            decision="approved",
            comment=comment,
            at=now,
        )
    )
    audit.record(
        session,
        actor,
        "rollout.approve",
        now=now,
        target_type="rollout",
        target_id=rollout_id,
        after={"ring": ring, "comment": comment},
    )
    return row


def reject_rollout(
    session: Session,
    actor: Actor,
    rollout_id: int,
    *,
    ring: int | None,
    comment: str = "",
    now: datetime,
) -> RolloutRow:
    """Turn down an emergency rollout or a ring's gate: the rollout is cancelled
    (unreleased jobs dropped, running ones finish) and the decision recorded."""
    row = get_rollout(session, rollout_id, lock=True)
    if ring is None and row.status != "pending_approval":
        raise Conflict(f"rollout {rollout_id} is {row.status}; pass a ring to reject a gate")
    if ring is not None:
        gate = _ring(session, rollout_id, ring)
        if not gate.requires_approval or gate.status not in ("pending", "awaiting_approval"):
            raise Conflict(f"ring {ring} is not waiting for an approval")
    session.add(
        ApprovalRow(
            rollout_id=rollout_id,
            ring_idx=ring,
            approver=actor.name,
            approver_user=actor.user_id,
            decision="rejected",
            comment=comment,
            at=now,
        )
    )
    audit.record(
        session,
        actor,
        "rollout.reject",
        now=now,
        target_type="rollout",
        target_id=rollout_id,
        after={"ring": ring, "comment": comment},
    )
    set_rollout_state(session, actor, rollout_id, "cancel", now=now)
    row.halt_reason = f"rejected by {actor.name}" + (f": {comment}" if comment else "")
    return row


def _ring(session: Session, rollout_id: int, index: int) -> RolloutRingRow:
    ring = session.scalars(
        select(RolloutRingRow).where(
            RolloutRingRow.rollout_id == rollout_id, RolloutRingRow.idx == index
        )
    ).first()
    if ring is None:
        raise NotFound(f"rollout {rollout_id} has no ring {index}")
    return ring


def set_rollout_state(
    session: Session, actor: Actor, rollout_id: int, action: str, *, now: datetime
) -> RolloutRow:
    """pause, resume (also a halted ring, forgiving its failures so far), or cancel."""
    row = get_rollout(session, rollout_id, lock=True)
    before = row.status
    if action == "pause":
        if row.status != "running":
            raise Conflict(f"rollout {rollout_id} is {row.status}; only running rollouts pause")
        row.status = "paused"
    elif action == "resume":
        if row.status not in ("paused", "halted"):
            raise Conflict(f"rollout {rollout_id} is {row.status}; nothing to resume")
        for ring in session.scalars(
            select(RolloutRingRow).where(
                RolloutRingRow.rollout_id == rollout_id, RolloutRingRow.status == "halted"
            )
        ):
            failed = len(
                list(
                    session.scalars(
                        select(JobRow.id).where(
                            JobRow.rollout_id == rollout_id,
                            JobRow.ring_idx == ring.idx,
                            JobRow.kind == "install",
                            JobRow.status == "failed",
                        )
                    )
                )
            )
            ring.failures_forgiven = failed
            ring.status = "running"
        row.status = "running"
        row.halt_reason = ""
    elif action == "cancel":
        if row.status in ("completed", "cancelled", "rolled_back"):
            raise Conflict(f"rollout {rollout_id} is already {row.status}")
        row.status = "cancelled"
        row.finished_at = now
        session.execute(
            update(JobRow)
            .where(
                JobRow.rollout_id == rollout_id,
                JobRow.status.in_(["pending", "ready", "retry_wait"]),
            )
            .values(status="cancelled", finished_at=now)
        )
    else:
        raise ValidationFailed(f"unknown rollout action {action!r}")
    audit.record(
        session,
        actor,
        f"rollout.{action}",
        now=now,
        target_type="rollout",
        target_id=rollout_id,
        before={"status": before},
        after={"status": row.status},
    )
    return row


ROLLBACK_KEYS = ("backend", "pre_hooks", "checks", "check_timeout", "reboot")


def rollback_rollout(
    session: Session, actor: Actor, rollout_id: int, *, ring: int | None, now: datetime
) -> int:
    """Roll back one ring (or every started ring): hosts whose install succeeded get a
    rollback job restoring their journaled versions. The rollout stops (halted); once
    every ring that ever started is rolled back, it is ``rolled_back`` and its
    never-started jobs are cancelled. Returns how many rollback jobs were made."""
    row = get_rollout(session, rollout_id, lock=True)
    all_rings = list(
        session.scalars(
            select(RolloutRingRow)
            .where(RolloutRingRow.rollout_id == rollout_id)
            .order_by(RolloutRingRow.idx)
        )
    )
    chosen = [r for r in all_rings if ring is None or r.idx == ring]
    if ring is not None and not chosen:
        raise NotFound(f"rollout {rollout_id} has no ring {ring}")
    created = 0
    for ring_row in chosen:
        for job in session.scalars(
            select(JobRow).where(
                JobRow.rollout_id == rollout_id,
                JobRow.ring_idx == ring_row.idx,
                JobRow.kind == "install",
            )
        ):
            if job.status in ("pending", "ready", "retry_wait"):
                job.status = "cancelled"
                job.finished_at = now
            if job.status != "succeeded":
                continue
            payload = {k: job.payload[k] for k in ROLLBACK_KEYS if k in job.payload}
            session.add(
                JobRow(
                    rollout_id=rollout_id,
                    ring_idx=ring_row.idx,
                    asset_id=job.asset_id,
                    kind="rollback",
                    status="ready",
                    released_at=now,
                    payload={**payload, "kind": "rollback", "rollback_of": job.id},
                    plan={"rollback_of": job.id},
                )
            )
            created += 1
        ring_row.status = "rolled_back"
        ring_row.finished_at = now
    started = [r for r in all_rings if r.started_at is not None or r.status != "pending"]
    if all(r.status == "rolled_back" for r in started):
        row.status = "rolled_back"
        row.finished_at = now
        session.execute(
            update(JobRow)
            .where(JobRow.rollout_id == rollout_id, JobRow.status == "pending")
            .values(status="cancelled", finished_at=now)
        )
    elif row.status in ("running", "paused"):
        row.status = "halted"
        row.halt_reason = row.halt_reason or f"ring rolled back by {actor.name}"
    session.flush()
    audit.record(
        session,
        actor,
        "rollout.rollback",
        now=now,
        target_type="rollout",
        target_id=rollout_id,
        after={"rings": [r.idx for r in chosen], "rollback_jobs": created, "status": row.status},
    )
    return created


# -------------------------------------------------------------------- agent jobs


def claim_jobs(session: Session, asset_id: int, *, now: datetime, limit: int = 5) -> list[JobRow]:
    """Claim the asset's released jobs under a lease (the same attempt after a lapse)."""
    claimed = []
    for job in session.scalars(
        select(JobRow)
        .where(JobRow.asset_id == asset_id, JobRow.status == "ready")
        .order_by(JobRow.id)
        .limit(limit)
    ):
        lease = agent_policy(session, job.rollout_id).lease
        fresh = job.claimed_at is None
        result = session.execute(
            update(JobRow)
            .where(JobRow.id == job.id, JobRow.status == "ready")
            .values(
                status="running",
                claimed_at=now if fresh else job.claimed_at,
                attempt=JobRow.attempt + (1 if fresh else 0),
                lease_until=now + lease,
            )
            .returning(JobRow.id)
        ).first()
        if result is not None:
            session.refresh(job)
            claimed.append(job)
    return claimed


def rollout_policy(session: Session, rollout_id: int) -> rules.RolloutPolicy:
    """A rollout's stored policy, typed. A stored policy that breaks the rules (written
    by an older version, or edited in the database) raises ``ValidationFailed`` naming
    the rollout and the key; the orchestrator then halts that rollout."""
    stored = session.scalar(select(RolloutRow.policy).where(RolloutRow.id == rollout_id))
    return rules.parse_policy(
        {} if stored is None else stored, where=f"rollout {rollout_id} policy"
    )


def agent_policy(session: Session, rollout_id: int) -> rules.RolloutPolicy:
    """The policy for the agent-facing calls (claim, heartbeat, result): when the stored
    policy is broken, the defaults — an agent is not refused for a record it cannot
    fix, and the orchestrator halts and reports that rollout on its next pass."""
    try:
        return rollout_policy(session, rollout_id)
    except ValidationFailed as exc:
        log.warning("%s; using the default policy for its agents", exc.message)
        return rules.RolloutPolicy()


def job_payload(job: JobRow) -> dict[str, Any]:
    """What the agent receives for a claimed job."""
    return {**job.payload, "job_id": job.id, "attempt": job.attempt}


def heartbeat(
    session: Session, asset_id: int, job_id: int, attempt: int, *, now: datetime
) -> datetime:
    """Extend a running job's lease; returns the new lease end."""
    job = session.get(JobRow, job_id)
    if job is None or job.asset_id != asset_id:
        raise NotFound(f"no job {job_id} for this host")
    if job.status != "running" or job.attempt != attempt:
        raise Conflict(f"job {job_id} attempt {attempt} is not running (status {job.status})")
    job.lease_until = now + agent_policy(session, job.rollout_id).lease
    return job.lease_until


def record_result(
    session: Session,
    asset_id: int,
    job_id: int,
    *,
    attempt: int,
    status: str,
    detail: dict[str, Any],
    now: datetime,
) -> tuple[JobRow, bool]:
    """Store an agent's result, idempotent on (job, attempt); returns (job, duplicate)."""
    if status not in ("succeeded", "failed", "rolled_back"):
        raise ValidationFailed("result status must be succeeded, failed or rolled_back")
    job = session.get(JobRow, job_id)
    if job is None or job.asset_id != asset_id:
        raise NotFound(f"no job {job_id} for this host")
    existing = session.scalars(
        select(JobResultRow).where(JobResultRow.job_id == job_id, JobResultRow.attempt == attempt)
    ).first()
    if existing is not None:
        return job, True
    session.add(
        JobResultRow(job_id=job_id, attempt=attempt, status=status, detail=detail, reported_at=now)
    )
    if attempt != job.attempt or job.status in rules.FINAL:
        return job, False  # a stale attempt: kept for the record, no state change
    if status == "succeeded":
        job.status = "succeeded"
        job.finished_at = now
        job.lease_until = None
        if job.kind == "rollback" and job.payload.get("rollback_of"):
            original = session.get(JobRow, int(job.payload["rollback_of"]))
            if original is not None:
                original.status = "rolled_back"
        # Ask the agent for its new inventory soon, so findings resolve promptly.
        request_checkin(session, ORCHESTRATOR, asset_id, 15, now=now)
    else:
        retry = agent_policy(session, job.rollout_id).retry
        new_status, not_before = rules.after_failure(job.attempt, retry, now)
        job.status = new_status
        job.not_before = not_before
        job.claimed_at = None
        job.lease_until = None
        job.last_error = str(detail.get("error") or status)[:2000]
        if new_status == "failed":
            job.finished_at = now
    return job, False


def script_package_for_job(session: Session, asset_id: int, package_id: int) -> ScriptPackageRow:
    """A script package artifact, only for a host with a job that uses it."""
    row = session.get(ScriptPackageRow, package_id)
    if row is None:
        raise NotFound(f"no script package {package_id}")
    wanted = session.scalars(
        select(JobRow.id).where(
            JobRow.asset_id == asset_id, JobRow.status.in_(["running", "ready"])
        )
    ).all()
    for job_id in wanted:
        job = session.get(JobRow, job_id)
        if job is not None and (job.payload.get("script_package") or {}).get("id") == package_id:
            return row
    raise NotFound(f"no job of this host uses script package {package_id}")


def register_script_package(
    session: Session,
    actor: Actor,
    *,
    name: str,
    version: str,
    artifact: bytes,
    commands: object,
    now: datetime,
) -> ScriptPackageRow:
    """Register third-party software: an artifact and its detect/install/verify/uninstall.

    Name, version and commands follow ``deploy_specs.ScriptPackageSpec``; a name and
    version registered already is a ``Conflict``.
    """
    spec = script_package_spec({"name": name, "version": version, "commands": commands})
    if not artifact:
        raise ValidationFailed("the artifact is empty")
    taken = ScriptPackageRow.name == spec.name, ScriptPackageRow.version == spec.version
    if session.scalar(select(ScriptPackageRow.id).where(*taken)) is not None:
        raise _script_conflict(spec.name, spec.version)
    row = ScriptPackageRow(
        name=spec.name,
        version=spec.version,
        sha256=hashlib.sha256(artifact).hexdigest(),
        artifact=artifact,
        commands=spec.commands.model_dump(),
        created_by=actor.name,
        created_at=now,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:  # registered concurrently since the check above
        raise _script_conflict(spec.name, spec.version) from exc
    audit.record(
        session,
        actor,
        "script_package.register",
        now=now,
        target_type="script_package",
        target_id=row.id,
        after={
            "name": spec.name,
            "version": spec.version,
            "sha256": row.sha256,
            "commands": row.commands,
        },
    )
    return row


def _script_conflict(name: str, version: str) -> Conflict:
    return Conflict(
        f"script package {name} {version} is already registered",
        hint="register the new artifact under a new version",
    )


# ------------------------------------------------------------------ emergencies

EMERGENCY_KEY = "emergency"


def emergency_profile(session: Session) -> dict[str, Any]:
    """The prepared emergency rollout profile (disabled until configured)."""
    row = session.get(PolicyRow, EMERGENCY_KEY)
    return dict(row.value) if row is not None else {"enabled": False}


def set_emergency_profile(
    session: Session, actor: Actor, profile: object, *, now: datetime
) -> dict[str, Any]:
    """Validate (``deploy_specs.EmergencyProfileSpec``) and store the emergency profile:
    ``enabled``, ``rings`` (as in a rollout spec, without groups), ``policy``,
    ``windows`` (names or ids)."""
    spec = emergency_profile_spec(profile)
    for window in spec.windows:
        get_window(session, window)
    clean: dict[str, Any] = {
        "enabled": spec.enabled,
        "rings": [ring.model_dump(exclude_defaults=True) for ring in spec.effective_rings()],
        "policy": dict(spec.policy),
        "windows": list(spec.windows),
    }
    row = session.get(PolicyRow, EMERGENCY_KEY)
    before = dict(row.value) if row is not None else None
    if row is None:
        row = PolicyRow(key=EMERGENCY_KEY, value=clean, updated_at=now, updated_by=actor.name)
        session.add(row)
    else:
        row.value = {**clean, "last_scan": row.value.get("last_scan")}
        row.updated_at, row.updated_by = now, actor.name
    audit.record(
        session,
        actor,
        "policy.emergency",
        now=now,
        target_type="policy",
        target_id=EMERGENCY_KEY,
        before=before,
        after=clean,
    )
    return clean


def open_emergency_rollouts(session: Session, *, now: datetime) -> int | None:
    """Open one emergency rollout (pending approval) for new KEV-listed or P1 findings
    on internet-facing assets since the last scan; returns its id, or None."""
    row = session.get(PolicyRow, EMERGENCY_KEY)
    if row is None or not row.value.get("enabled"):
        return None
    last = row.value.get("last_scan")
    since = datetime.fromisoformat(last) if last else now - timedelta(days=1)
    found = session.execute(
        select(FindingRow.asset_id, FindingRow.advisory_id, FindingRow.priority)
        .join(AssetRow, AssetRow.id == FindingRow.asset_id)
        .join(
            PackageVuln,
            (PackageVuln.package_id == FindingRow.package_id)
            & (PackageVuln.advisory_id == FindingRow.advisory_id),
        )
        .where(
            FindingRow.state == "open",
            FindingRow.first_seen > since,
            AssetRow.exposure == "internet",
            PackageVuln.fixed_version.is_not(None),
        )
    ).all()
    row.value = {**row.value, "last_scan": now.isoformat()}
    if not found:
        return None
    threats = threats_for(session, {a for _, a, _ in found})
    urgent = [
        (asset, adv) for asset, adv, prio in found if prio == "P1" or threats[adv].kev is not None
    ]
    if not urgent:
        return None
    busy = set(
        session.scalars(
            select(JobRow.asset_id).where(
                JobRow.status.in_(["pending", "ready", "running", "retry_wait"])
            )
        )
    )
    assets = sorted({a for a, _ in urgent} - busy)
    if not assets:
        return None
    advisories = sorted(
        set(
            session.scalars(
                select(AdvisoryRow.ext_id).where(AdvisoryRow.id.in_({adv for _, adv in urgent}))
            )
        )
    )
    profile = _stored_emergency_profile(row.value)
    rollout = create_rollout(
        session,
        ORCHESTRATOR,
        name=f"emergency {now.date().isoformat()}: {', '.join(advisories[:3])}"
        + (" …" if len(advisories) > 3 else ""),
        target_groups=(),
        target_assets=assets,
        rings=[ring.to_spec() for ring in profile.effective_rings()],
        now=now,
        advisories=advisories,
        policy=profile.policy,
        emergency=True,
        windows=profile.windows,
    )
    return rollout.id


def _stored_emergency_profile(value: Mapping[str, Any]) -> EmergencyProfileSpec:
    """The stored profile, checked again (it may predate today's rules)."""
    return emergency_profile_spec(
        {k: v for k, v in value.items() if k != "last_scan"}, source="stored emergency profile"
    )
