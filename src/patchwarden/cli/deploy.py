"""``patchwarden windows|baselines|exceptions|rollouts|scripts``: safe deployment."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from sqlalchemy import select

from patchwarden.cli.admin import _table
from patchwarden.cli.common import EXIT_OK, database, now, print_json, stdout
from patchwarden.cli.documents import load_document
from patchwarden.cli.identity import actor, require
from patchwarden.core.documents import parse_document
from patchwarden.core.windows import next_window
from patchwarden.reports.change_record import change_record, to_markdown
from patchwarden.server.services import deploy
from patchwarden.server.services.deploy_specs import rollout_spec
from patchwarden.server.services.orchestrator import tick
from patchwarden.store.models import (
    MaintenanceWindowRow,
    PatchBaselineRow,
    RiskExceptionRow,
    RolloutRow,
)

windows_app = typer.Typer(
    help="Maintenance windows (RRULE + time zone + duration).", no_args_is_help=True
)
baselines_app = typer.Typer(
    help="Patch baselines: which updates are approved.", no_args_is_help=True
)
exceptions_app = typer.Typer(help="Risk exceptions with approver and expiry.", no_args_is_help=True)
rollouts_app = typer.Typer(help="Rollouts through rings.", no_args_is_help=True)
scripts_app = typer.Typer(
    help="Script packages for software without a repository.", no_args_is_help=True
)

JsonFlag = typer.Option(False, "--json", help="Print JSON.")


# ------------------------------------------------------------------------ windows


@windows_app.command("create")
def windows_create(
    name: str,
    rrule: str = typer.Option(..., "--rrule", help="e.g. 'FREQ=WEEKLY;BYDAY=SA;BYHOUR=2'"),
    timezone: str = typer.Option(..., "--tz", help="IANA zone, e.g. Europe/Berlin."),
    minutes: int = typer.Option(..., "--minutes", min=1, help="Duration in minutes."),
    blackouts: list[str] = typer.Option([], "--blackout", help="YYYY-MM-DD or START..END"),
    as_json: bool = JsonFlag,
) -> int:
    """Create a maintenance window."""
    pairs = [b.split("..", 1) if ".." in b else [b, b] for b in blackouts]
    with database() as db, db.session() as session:
        row = deploy.create_window(
            session,
            actor(session, "deploy:write"),
            name=name,
            rrule=rrule,
            timezone=timezone,
            duration_minutes=minutes,
            blackouts=pairs,
            now=now(),
        )
        out = deploy.window_json(row)
    print_json(out) if as_json else stdout().print(f"created window {escape(name)}")
    return EXIT_OK


@windows_app.command("list")
def windows_list(as_json: bool = JsonFlag) -> int:
    """List maintenance windows with their next opening."""
    moment = now()
    with database() as db, db.session() as session:
        rows = list(
            session.scalars(select(MaintenanceWindowRow).order_by(MaintenanceWindowRow.name))
        )
        out = []
        for row in rows:
            item = deploy.window_json(row)
            upcoming = _next(row, moment)
            item["next"] = upcoming
            out.append(item)
    if as_json:
        print_json(out)
    else:
        _table(
            "Maintenance windows",
            ["name", "rrule", "zone", "minutes", "next opening"],
            [[w["name"], w["rrule"], w["timezone"], w["duration_minutes"], w["next"]] for w in out],
        )
    return EXIT_OK


def _next(row: MaintenanceWindowRow, moment: datetime) -> str | None:
    found = next_window(deploy.to_window(row), moment)
    return found.start.isoformat() if found else None


@windows_app.command("attach")
def windows_attach(
    window: str,
    group: str,
    detach: bool = typer.Option(False, "--detach", help="Detach instead."),
) -> int:
    """Attach a window to a group (its hosts are patched only inside it)."""
    with database() as db, db.session() as session:
        deploy.attach_window(
            session, actor(session, "deploy:write"), group, window, now=now(), detach=detach
        )
    stdout().print(f"{'detached' if detach else 'attached'} {escape(window)} → {escape(group)}")
    return EXIT_OK


# ---------------------------------------------------------------------- baselines


@baselines_app.command("save")
def baselines_save(
    name: str,
    rules: str = typer.Option("{}", "--rules", help='Rules JSON, e.g. \'{"min_priority": "P2"}\''),
    groups: list[str] = typer.Option([], "--group", help="Group it applies to (repeatable)."),
    description: str = typer.Option("", "--description"),
    as_json: bool = JsonFlag,
) -> int:
    """Create or replace a patch baseline (rules: see docs/deployment.md)."""
    parsed = parse_document(rules, source="--rules", yaml_syntax=False, what="the rules")
    with database() as db, db.session() as session:
        row = deploy.save_baseline(
            session,
            actor(session, "deploy:write"),
            name=name,
            rules_json=parsed,
            groups=groups,
            description=description,
            now=now(),
        )
        out = deploy.baseline_json(row)
    print_json(out) if as_json else stdout().print(f"saved baseline {escape(name)}")
    return EXIT_OK


@baselines_app.command("list")
def baselines_list(as_json: bool = JsonFlag) -> int:
    """List baselines."""
    with database() as db, db.session() as session:
        out = [
            deploy.baseline_json(r)
            for r in session.scalars(select(PatchBaselineRow).order_by(PatchBaselineRow.name))
        ]
    if as_json:
        print_json(out)
    else:
        _table(
            "Baselines",
            ["name", "groups", "rules"],
            [[b["name"], b["groups"], json.dumps(b["rules"])] for b in out],
        )
    return EXIT_OK


# --------------------------------------------------------------------- exceptions


@exceptions_app.command("request")
def exceptions_request(
    justification: str = typer.Option(..., "--why", help="Why the risk is accepted."),
    advisory: str = typer.Option("", "--advisory", help="Advisory or CVE id."),
    package: str = typer.Option("", "--package", help="Package name."),
    asset: int | None = typer.Option(None, "--asset", help="Asset id."),
    group: str | None = typer.Option(None, "--group", help="Group name or id."),
    days: int = typer.Option(30, "--days", min=1, max=366, help="Lifetime in days."),
    as_json: bool = JsonFlag,
) -> int:
    """Request a risk exception (an approver other than you approves it)."""
    moment = now()
    with database() as db, db.session() as session:
        row = deploy.request_exception(
            session,
            actor(session, "deploy:write"),
            advisory=advisory,
            package=package,
            asset_id=asset,
            group=group,
            justification=justification,
            expires_at=moment + timedelta(days=days),
            now=moment,
        )
        out = deploy.exception_json(row)
    print_json(out) if as_json else stdout().print(f"exception {out['id']} requested")
    return EXIT_OK


@exceptions_app.command("approve")
def exceptions_approve(
    exception_id: int,
    reject: bool = typer.Option(False, "--reject", help="Reject instead."),
    as_json: bool = JsonFlag,
) -> int:
    """Approve (or reject) a pending exception."""
    with database() as db, db.session() as session:
        row = deploy.decide_exception(
            session, actor(session, "approve"), exception_id, approve_it=not reject, now=now()
        )
        out = deploy.exception_json(row)
    print_json(out) if as_json else stdout().print(f"exception {exception_id} {out['status']}")
    return EXIT_OK


@exceptions_app.command("revoke")
def exceptions_revoke(exception_id: int) -> int:
    """End an exception early; its findings reopen."""
    with database() as db, db.session() as session:
        deploy.revoke_exception(session, actor(session, "approve"), exception_id, now=now())
    stdout().print(f"exception {exception_id} revoked")
    return EXIT_OK


@exceptions_app.command("list")
def exceptions_list(
    status: str = typer.Option("", "--status", help="pending, approved, expired, …"),
    as_json: bool = JsonFlag,
) -> int:
    """List risk exceptions."""
    with database() as db, db.session() as session:
        query = select(RiskExceptionRow).order_by(RiskExceptionRow.id.desc())
        if status:
            query = query.where(RiskExceptionRow.status == status)
        out = [deploy.exception_json(r) for r in session.scalars(query)]
    if as_json:
        print_json(out)
    else:
        _table(
            "Exceptions",
            [
                "id",
                "status",
                "advisory",
                "package",
                "asset",
                "group",
                "expires",
                "requested by",
                "approved by",
            ],
            [
                [
                    e["id"],
                    e["status"],
                    e["advisory"],
                    e["package"],
                    e["asset_id"],
                    e["group_id"],
                    e["expires_at"],
                    e["requested_by"],
                    e["approved_by"],
                ]
                for e in out
            ],
        )
    return EXIT_OK


# ----------------------------------------------------------------------- rollouts


@rollouts_app.command("create")
def rollouts_create(
    spec: Path = typer.Argument(
        ...,
        help="Rollout spec (YAML or JSON); see docs/deployment.md.",
        exists=True,
        dir_okay=False,
    ),
    as_json: bool = JsonFlag,
) -> int:
    """Plan a rollout from a spec file (without ``name``, the file's name is used)."""
    data = load_document(spec, what="a rollout spec")
    data.setdefault("name", spec.stem)
    checked = rollout_spec(data, source=str(spec))
    with database() as db, db.session() as session:
        row = deploy.create_rollout_from_spec(
            session, actor(session, "deploy:write"), checked, now=now()
        )
        out = deploy.rollout_json(session, row)
    if as_json:
        print_json(out)
    else:
        _print_rollout(out)
    return EXIT_OK


def _print_rollout(out: dict[str, Any]) -> None:
    console = stdout()
    console.print(
        f"[bold]rollout {out['id']}[/] {escape(out['name'])}: [bold]{out['status']}[/]"
        + (f" — {escape(out['halt_reason'])}" if out.get("halt_reason") else ""),
        highlight=False,
    )
    _table(
        "Rings",
        ["#", "name", "status", "hosts", "jobs", "concurrency", "budget", "approval"],
        [
            [
                r["index"],
                r["name"],
                r["status"],
                r["hosts"],
                ", ".join(f"{k} {v}" for k, v in sorted(r["jobs"].items())),
                r["concurrency"],
                r["error_budget"],
                ("approved" if r["approved"] else "required") if r["requires_approval"] else "—",
            ]
            for r in out["rings"]
        ],
    )
    failed = [j for j in out.get("jobs", []) if j["last_error"]]
    if failed:
        _table(
            "Failures",
            ["host", "ring", "status", "attempt", "error"],
            [
                [j["hostname"], j["ring"], j["status"], j["attempt"], j["last_error"]]
                for j in failed
            ],
        )


@rollouts_app.command("list")
def rollouts_list(as_json: bool = JsonFlag) -> int:
    """List rollouts."""
    with database() as db, db.session() as session:
        out = [
            deploy.rollout_json(session, r)
            for r in session.scalars(select(RolloutRow).order_by(RolloutRow.id.desc()))
        ]
    if as_json:
        print_json(out)
    else:
        _table(
            "Rollouts",
            ["id", "name", "status", "emergency", "requested by", "created"],
            [
                [
                    r["id"],
                    r["name"],
                    r["status"],
                    r["emergency"],
                    r["requested_by"],
                    r["created_at"],
                ]
                for r in out
            ],
        )
    return EXIT_OK


@rollouts_app.command("show")
def rollouts_show(rollout_id: int, as_json: bool = JsonFlag) -> int:
    """Show a rollout: rings, progress, failures with their output."""
    with database() as db, db.session() as session:
        out = deploy.rollout_json(session, deploy.get_rollout(session, rollout_id), with_jobs=True)
    print_json(out) if as_json else _print_rollout(out)
    return EXIT_OK


@rollouts_app.command("approve")
def rollouts_approve(
    rollout_id: int,
    ring: int | None = typer.Option(None, "--ring", help="Approve this ring's gate."),
    comment: str = typer.Option("", "--comment"),
    reject: bool = typer.Option(False, "--reject", help="Reject (cancels the rollout)."),
) -> int:
    """Approve (or reject) an emergency rollout or a ring's promotion (not your own)."""
    with database() as db, db.session() as session:
        if reject:
            deploy.reject_rollout(
                session,
                actor(session, "approve"),
                rollout_id,
                ring=ring,
                comment=comment,
                now=now(),
            )
        else:
            deploy.approve_rollout(
                session,
                actor(session, "approve"),
                rollout_id,
                ring=ring,
                comment=comment,
                now=now(),
            )
    verb = "rejected" if reject else "approved"
    stdout().print(f"{verb} rollout {rollout_id}" + (f" ring {ring}" if ring is not None else ""))
    return EXIT_OK


def _state(rollout_id: int, action: str) -> int:
    with database() as db, db.session() as session:
        row = deploy.set_rollout_state(
            session, actor(session, "deploy:write"), rollout_id, action, now=now()
        )
        status = row.status
    stdout().print(f"rollout {rollout_id}: {status}")
    return EXIT_OK


@rollouts_app.command("pause")
def rollouts_pause(rollout_id: int) -> int:
    """Pause: nothing new is released; running jobs finish."""
    return _state(rollout_id, "pause")


@rollouts_app.command("resume")
def rollouts_resume(rollout_id: int) -> int:
    """Resume a paused or halted rollout (a halted ring's failures so far are forgiven)."""
    return _state(rollout_id, "resume")


@rollouts_app.command("cancel")
def rollouts_cancel(rollout_id: int) -> int:
    """Cancel: unreleased jobs are dropped."""
    return _state(rollout_id, "cancel")


@rollouts_app.command("rollback")
def rollouts_rollback(
    rollout_id: int,
    ring: int | None = typer.Option(None, "--ring", help="Only this ring."),
) -> int:
    """Roll back: hosts that were patched restore their journaled versions."""
    with database() as db, db.session() as session:
        created = deploy.rollback_rollout(
            session, actor(session, "deploy:write"), rollout_id, ring=ring, now=now()
        )
    stdout().print(f"rollout {rollout_id}: {created} rollback job(s) released")
    return EXIT_OK


@rollouts_app.command("change-record")
def rollouts_change_record(
    rollout_id: int,
    markdown: bool = typer.Option(False, "--markdown", help="Markdown instead of JSON."),
) -> int:
    """Print the rollout's change record."""
    with database() as db, db.session() as session:
        record = change_record(session, deploy.get_rollout(session, rollout_id))
    if markdown:
        stdout().print(to_markdown(record), markup=False, highlight=False)
    else:
        print_json(record)
    return EXIT_OK


@rollouts_app.command("tick")
def rollouts_tick(as_json: bool = JsonFlag) -> int:
    """Run one orchestrator pass now (the server does this every few seconds)."""
    require("deploy:write")
    with database() as db:
        report = tick(db, now=now())
    out = {
        "rollouts": report.rollouts,
        "actions": report.actions,
        "expired_exceptions": report.expired_exceptions,
        "failures": report.failures,
    }
    print_json(out) if as_json else stdout().print(json.dumps(out))
    return EXIT_OK


# ------------------------------------------------------------------------ scripts


@scripts_app.command("register")
def scripts_register(
    name: str,
    version: str,
    artifact: Path = typer.Option(..., "--artifact", exists=True, dir_okay=False),
    commands: Path = typer.Option(
        ...,
        "--commands",
        exists=True,
        dir_okay=False,
        help="JSON/YAML: detect, install, verify, uninstall argv lists.",
    ),
    as_json: bool = JsonFlag,
) -> int:
    """Register a script package (admins): agents verify its sha256 before running it."""
    with database() as db, db.session() as session:
        row = deploy.register_script_package(
            session,
            actor(session, "scripts:write"),
            name=name,
            version=version,
            artifact=artifact.read_bytes(),
            commands=load_document(commands, what="the commands"),
            now=now(),
        )
        out = {"id": row.id, "name": name, "version": version, "sha256": row.sha256}
    print_json(out) if as_json else stdout().print(f"registered {name} {version} ({row.sha256})")
    return EXIT_OK


@rollouts_app.command("emergency-profile")
def rollouts_emergency_profile(
    spec: Path | None = typer.Option(
        None,
        "--file",
        help="Set the profile from YAML/JSON (enabled, rings, policy, windows).",
        exists=True,
        dir_okay=False,
    ),
    as_json: bool = JsonFlag,
) -> int:
    """Show or set the prepared emergency rollout: when enabled, a new KEV-listed or P1
    finding on an internet-facing asset opens an emergency rollout awaiting approval."""
    with database() as db, db.session() as session:
        if spec is not None:
            profile = load_document(spec, what="the emergency profile")
            out = deploy.set_emergency_profile(
                session, actor(session, "deploy:write"), profile, now=now()
            )
        else:
            out = deploy.emergency_profile(session)
    if as_json or spec is None:
        print_json(out)
    else:
        stdout().print("emergency profile " + ("enabled" if out["enabled"] else "disabled"))
    return EXIT_OK
