"""Change records: one per rollout — scope, risk summary, plan, approvals, outcome.

Rendered as JSON (machine-readable, for ticketing) and Markdown (for humans and
change-advisory boards).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patchwarden.store.models import (
    ApprovalRow,
    AssetGroupRow,
    AssetRow,
    JobResultRow,
    JobRow,
    MaintenanceWindowRow,
    PatchBaselineRow,
    RolloutRingRow,
    RolloutRow,
)


def _names(session: Session, model: Any, ids: list[int]) -> list[str]:
    if not ids:
        return []
    return list(session.scalars(select(model.name).where(model.id.in_(ids)).order_by(model.name)))


def change_record(session: Session, rollout: RolloutRow) -> dict[str, Any]:
    """The change record of a rollout as a JSON-ready dict."""
    rings = list(
        session.scalars(
            select(RolloutRingRow)
            .where(RolloutRingRow.rollout_id == rollout.id)
            .order_by(RolloutRingRow.idx)
        )
    )
    jobs = list(
        session.scalars(select(JobRow).where(JobRow.rollout_id == rollout.id).order_by(JobRow.id))
    )
    hosts = dict(
        session.execute(
            select(AssetRow.id, AssetRow.hostname).where(
                AssetRow.id.in_([j.asset_id for j in jobs] or [0])
            )
        )
        .tuples()
        .all()
    )
    installs = [j for j in jobs if j.kind == "install"]
    advisories = sorted({a for j in installs for a in j.plan.get("advisories", [])})
    packages = sorted({p["name"] for j in installs for p in j.payload.get("packages", [])})
    approvals = list(
        session.scalars(
            select(ApprovalRow).where(ApprovalRow.rollout_id == rollout.id).order_by(ApprovalRow.at)
        )
    )
    failures = []
    for job in installs:
        if job.status in ("failed", "rolled_back") or job.last_error:
            last = session.scalars(
                select(JobResultRow)
                .where(JobResultRow.job_id == job.id)
                .order_by(JobResultRow.attempt.desc())
                .limit(1)
            ).first()
            failures.append(
                {
                    "host": hosts.get(job.asset_id, str(job.asset_id)),
                    "ring": job.ring_idx,
                    "status": job.status,
                    "attempts": job.attempt,
                    "error": job.last_error or None,
                    "result": last.detail if last else None,
                }
            )
    baseline = session.get(PatchBaselineRow, rollout.baseline_id) if rollout.baseline_id else None
    return {
        "change_id": f"PW-{rollout.id}",
        "title": rollout.name,
        "type": "emergency" if rollout.emergency else "standard",
        "requested_by": rollout.requested_by,
        "created_at": rollout.created_at.isoformat(),
        "scope": {
            "target_groups": _names(session, AssetGroupRow, list(rollout.target_groups)),
            "hosts": len(installs),
            "advisories": advisories,
            "packages": packages,
            "baseline": baseline.name if baseline else None,
        },
        "risk": {
            "risk_removed": round(sum(float(j.plan.get("risk_removed", 0)) for j in installs), 1),
            "advisories": len(advisories),
        },
        "plan": {
            "rings": [
                {
                    "name": r.name,
                    "hosts": sum(1 for j in installs if j.ring_idx == r.idx),
                    "concurrency": r.concurrency,
                    "error_budget": r.error_budget,
                    "success_threshold": f"{r.success_threshold:.0%}",
                    "soak_minutes": r.soak_minutes,
                    "requires_approval": r.requires_approval,
                    "windows": _names(session, MaintenanceWindowRow, list(r.windows)),
                }
                for r in rings
            ],
            "dependencies": rollout.dependencies,
            "policy": rollout.policy,
            "rollback": "automatic on failed checks; per ring on request",
        },
        "approvals": [
            {
                "approver": a.approver,
                "ring": a.ring_idx,
                "decision": a.decision,
                "comment": a.comment,
                "at": a.at.isoformat(),
            }
            for a in approvals
        ],
        "outcome": {
            "status": rollout.status,
            "started_at": rollout.started_at.isoformat() if rollout.started_at else None,
            "finished_at": rollout.finished_at.isoformat() if rollout.finished_at else None,
            "halt_reason": rollout.halt_reason or None,
            "rings": [{"name": r.name, "status": r.status} for r in rings],
            "jobs": _count(j.status for j in installs),
            "rollbacks": _count(j.status for j in jobs if j.kind == "rollback"),
            "failures": failures,
        },
    }


def _count(statuses: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return counts


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "—"


def to_markdown(record: dict[str, Any]) -> str:
    """The change record as Markdown."""
    scope, plan_, outcome = record["scope"], record["plan"], record["outcome"]
    advisories = ", ".join(scope["advisories"][:50]) or "—"
    lines = [
        f"# Change {record['change_id']}: {record['title']}",
        "",
        f"- Type: {record['type']}",
        f"- Requested by: {record['requested_by']} on {record['created_at']}",
        f"- Status: **{outcome['status']}**",
        "",
        "## Scope",
        "",
        f"- Target groups: {', '.join(scope['target_groups']) or '—'}",
        f"- Hosts: {scope['hosts']}",
        f"- Baseline: {scope['baseline'] or '—'}",
        f"- Advisories ({len(scope['advisories'])}): {advisories}",
        f"- Packages: {', '.join(scope['packages'][:50]) or '—'}",
        "",
        "## Risk",
        "",
        f"- Risk removed (sum of finding scores): {record['risk']['risk_removed']}",
        "",
        "## Plan",
        "",
        "| ring | hosts | concurrency | error budget | promote at | soak (min) | approval "
        "| windows |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for ring in plan_["rings"]:
        approval = "yes" if ring["requires_approval"] else "no"
        windows = ", ".join(ring["windows"]) or "any time"
        lines.append(
            f"| {ring['name']} | {ring['hosts']} | {ring['concurrency']} "
            f"| {ring['error_budget']} | {ring['success_threshold']} | {ring['soak_minutes']} "
            f"| {approval} | {windows} |"
        )
    lines += ["", f"Rollback: {plan_['rollback']}.", "", "## Approvals", ""]
    for a in record["approvals"]:
        what = f"ring {a['ring']}" if a["ring"] is not None else "the rollout"
        comment = f": {a['comment']}" if a["comment"] else ""
        lines.append(f"- {a['approver']} {a['decision']} {what} at {a['at']}{comment}")
    if not record["approvals"]:
        lines.append("- none")
    lines += ["", "## Outcome", ""]
    rings = ", ".join(f"{r['name']} {r['status']}" for r in outcome["rings"])
    lines.append(f"- Rings: {rings}")
    lines.append(f"- Jobs: {_counts(outcome['jobs'])}")
    if outcome["rollbacks"]:
        lines.append(f"- Rollbacks: {_counts(outcome['rollbacks'])}")
    if outcome["halt_reason"]:
        lines.append(f"- Halted: {outcome['halt_reason']}")
    for failure in outcome["failures"]:
        lines.append(
            f"- {failure['host']} (ring {failure['ring']}): {failure['status']} — "
            f"{failure['error'] or ''}"
        )
    return "\n".join(lines) + "\n"
