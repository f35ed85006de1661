"""Report worker processes: polling, sharing, requeueing what a dead process left."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from patchwarden.core.errors import ConfigError
from patchwarden.server.app import create_app
from patchwarden.server.context import AppContext
from patchwarden.server.report_worker import serve_reports
from patchwarden.server.services import agents
from patchwarden.settings import load_settings
from patchwarden.store.models import AgentReportRow, AssetRow
from tests.server.test_agent_api import acknowledged, enroll, inventory, make_token, upload


def _statuses(ctx: AppContext, report_ids: list[int]) -> list[str]:
    with ctx.db.session() as session:
        return [session.get(AgentReportRow, r).status for r in report_ids]  # type: ignore[union-attr]


def _drain(ctx: AppContext, share: tuple[int, int] | None = None) -> int:
    """Run a worker until it finds nothing pending; how many it processed."""
    return serve_reports(
        ctx.db, clock=ctx.now, stop=threading.Event(), share=share, on_idle=lambda: False
    )


def test_server_processes_leave_reports_to_the_workers(ctx: AppContext) -> None:
    """With PATCHWARDEN_REPORT_PROCESSOR=external a server process only acknowledges;
    two workers apply the reports, each its own share, each report once."""
    external = replace(ctx, config=replace(ctx.config, apply_reports=False))
    report_ids = []
    with TestClient(create_app(external, background=True)) as client:
        assert not hasattr(client.app.state, "reports")  # type: ignore[attr-defined]
        for n in range(6):
            host = f"shared-{n}"
            enrolled = enroll(client, make_token(ctx), host)
            accepted = upload(client, enrolled["credential"], inventory(host, ("bash", f"5.{n}")))
            assert accepted.status_code == 202  # type: ignore[attr-defined]
            report_ids.append(accepted.json()["report_id"])  # type: ignore[attr-defined]
    assert _statuses(ctx, report_ids) == ["pending"] * 6  # nothing applied them in the app

    first = _drain(ctx, share=(0, 2))
    assert _statuses(ctx, report_ids) == [
        "processed" if r % 2 == 0 else "pending" for r in report_ids
    ]
    second = _drain(ctx, share=(1, 2))
    assert (first, second) == (
        sum(1 for r in report_ids if r % 2 == 0),
        sum(1 for r in report_ids if r % 2 == 1),
    )
    assert _statuses(ctx, report_ids) == ["processed"] * 6
    with ctx.db.session() as session:
        hashes = {
            row.hostname: row.inventory_hash
            for row in session.query(AssetRow).filter(AssetRow.hostname.like("shared-%"))
        }
    assert hashes == {
        f"shared-{n}": inventory(f"shared-{n}", ("bash", f"5.{n}")).content_hash() for n in range(6)
    }


def test_a_report_left_processing_by_a_dead_process_is_applied_later(ctx: AppContext) -> None:
    """A claim older than the lease (or from before claims were timed) goes back to
    'pending' and is applied; a recent claim is left to the process holding it."""
    with TestClient(create_app(ctx, background=False)) as client:
        hosts = [enroll(client, make_token(ctx), f"claimed-{n}")["asset_id"] for n in range(3)]
    invs = [inventory(f"claimed-{n}", ("bash", "5.2-1")) for n in range(3)]
    report_ids = [acknowledged(ctx, a, inv) for a, inv in zip(hosts, invs, strict=True)]
    claims = [
        ctx.now() - agents.REPORT_LEASE - timedelta(seconds=1),  # its process died
        None,  # claimed by a version that did not time its claims
        ctx.now() - timedelta(minutes=1),  # being applied right now
    ]
    with ctx.db.session() as session:
        for report_id, claimed_at in zip(report_ids, claims, strict=True):
            session.execute(
                update(AgentReportRow)
                .where(AgentReportRow.id == report_id)
                .values(status="processing", claimed_at=claimed_at)
            )
    assert _drain(ctx) == 2
    assert _statuses(ctx, report_ids) == ["processed", "processed", "processing"]
    assert agents.requeue_stale(ctx.db, now=ctx.now()) == 0
    with ctx.db.session() as session:
        applied = [session.get(AssetRow, a).inventory_hash for a in hosts]  # type: ignore[union-attr]
    assert applied[:2] == [inv.content_hash() for inv in invs[:2]]
    assert applied[2] != invs[2].content_hash()


def test_a_claim_records_its_time(ctx: AppContext) -> None:
    with TestClient(create_app(ctx, background=False)) as client:
        asset_id = enroll(client, make_token(ctx), "timed-1")["asset_id"]
    report_id = acknowledged(ctx, asset_id, inventory("timed-1"))
    assert agents.process_report(ctx.db, report_id, now=ctx.now()) == "processed"
    with ctx.db.session() as session:
        row = session.get(AgentReportRow, report_id)
        assert row is not None
        assert row.claimed_at == ctx.now()


def test_report_worker_command(tmp_path: Path) -> None:
    """`patchwarden report-worker` refuses a share it cannot have, and a worker whose
    server is gone (its parent is not the one it was started by) stops by itself."""
    env = {**os.environ, "PATCHWARDEN_HOME": str(tmp_path)}
    env.pop("PATCHWARDEN_DATABASE_URL", None)
    command = [sys.executable, "-m", "patchwarden", "report-worker"]
    refused = subprocess.run(
        [*command, "--index", "2", "--count", "2"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2
    assert "--index 2 is not below --count 2" in refused.stderr
    # A worker never migrates: it refuses a database without the schema...
    unmigrated = subprocess.run(
        [*command, "--parent-pid", str(os.getpid() + 1_000_000)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unmigrated.returncode == 2
    assert "no patchwarden schema yet" in unmigrated.stderr
    upgrade = [sys.executable, "-m", "patchwarden", "db", "upgrade"]
    subprocess.run(upgrade, check=True, env=env, capture_output=True, timeout=120)
    orphan = subprocess.run(
        [*command, "--parent-pid", str(os.getpid() + 1_000_000)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert orphan.returncode == 0, orphan.stderr


def test_report_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty PATCHWARDEN_REPORT_PROCESSES means the default; a bad value is a clear
    error naming the setting."""
    monkeypatch.setenv("PATCHWARDEN_REPORT_PROCESSES", "")
    assert load_settings().report_processes is None
    monkeypatch.setenv("PATCHWARDEN_REPORT_PROCESSES", "2")
    assert load_settings().report_processes == 2
    monkeypatch.setenv("PATCHWARDEN_REPORT_PROCESSES", "many")
    with pytest.raises(ConfigError, match="PATCHWARDEN_REPORT_PROCESSES"):
        load_settings()
    monkeypatch.setenv("PATCHWARDEN_REPORT_PROCESSES", "2")
    monkeypatch.setenv("PATCHWARDEN_REPORT_PROCESSOR", "elsewhere")
    with pytest.raises(ConfigError, match="PATCHWARDEN_REPORT_PROCESSOR"):
        load_settings()
