"""Report worker processes: polling, sharing, requeueing what a dead process left."""

from __future__ import annotations

import random
import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from patchwarden.core.model import Inventory
from patchwarden.server.app import create_app
from patchwarden.server.context import AppContext
from patchwarden.server.report_worker import serve_reports
from patchwarden.server.services import agents
from patchwarden.store.advisories import import_advisories
from patchwarden.store.findings import refresh_findings
from patchwarden.store.models import AgentReportRow, AssetRow
from tests.server.test_agent_api import acknowledged, enroll, inventory, make_token, upload
from tests.store.test_incremental_refresh import _advisories, _random_inventory


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


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reports_applied_in_batches_leave_what_a_full_refresh_would(
    ctx: AppContext, seed: int
) -> None:
    """Random uploads of four hosts, applied in random batches (several reports of one
    host in a batch included): each host ends with its newest inventory, older ones
    superseded, and a full findings refresh afterwards finds nothing to do."""
    rng = random.Random(seed)
    with ctx.db.session() as session:
        import_advisories(session, _advisories())
    hosts = [f"batch-{n}" for n in range(4)]
    with TestClient(create_app(ctx, background=False)) as client:
        asset_ids = {host: enroll(client, make_token(ctx), host)["asset_id"] for host in hosts}
    newest: dict[str, Inventory] = {}
    outcomes: dict[int, str] = {}
    for _round in range(4):
        waiting = []
        for _ in range(rng.randint(1, 7)):
            host = rng.choice(hosts)
            inv = _random_inventory(rng, host)
            waiting.append(acknowledged(ctx, asset_ids[host], inv))
            newest[host] = inv
        outcomes.update(agents.process_reports(ctx.db, waiting, now=ctx.now()))
        with ctx.db.session() as session:
            full = refresh_findings(session, now=ctx.now())
        assert (full.new, full.resolved, full.reopened, full.rescored) == (0, 0, 0, 0)
    assert set(outcomes.values()) <= {"processed", "superseded"}
    with ctx.db.session() as session:
        stored = {h: session.get(AssetRow, asset_ids[h]).inventory_hash for h in newest}  # type: ignore[union-attr]
    assert stored == {h: newest[h].content_hash() for h in newest}


def test_a_bad_report_fails_alone_in_its_batch(ctx: AppContext) -> None:
    """A report failing validation or its hash check, and one whose application fails
    (here a database error injected for its host), are failed with the reason; the
    others of the batch are applied."""
    with TestClient(create_app(ctx, background=False)) as client:
        ids = [enroll(client, make_token(ctx), f"mixed-{n}")["asset_id"] for n in range(4)]
    good = [inventory(f"mixed-{n}", ("bash", "5.2-1")) for n in range(4)]
    wrong_hash = acknowledged(ctx, ids[1], good[1], declared_hash="0" * 64)
    reports = [
        acknowledged(ctx, ids[0], good[0], declared_hash=good[0].content_hash()),
        wrong_hash,
        acknowledged(ctx, ids[2], good[2]),
        acknowledged(ctx, ids[3], good[3]),
    ]
    real_store = agents.store_inventory

    def failing_store(session: Any, inv: Inventory, **options: Any) -> Any:
        if options.get("asset_id") == ids[2]:
            raise OperationalError("INSERT …", {}, Exception("disk full"))
        return real_store(session, inv, **options)

    agents.store_inventory = failing_store  # type: ignore[assignment]
    try:
        outcome = agents.process_reports(ctx.db, reports, now=ctx.now())
    finally:
        agents.store_inventory = real_store  # type: ignore[assignment]
    assert [outcome[r] for r in reports] == ["processed", "failed", "failed", "processed"]
    with ctx.db.session() as session:
        rows = [session.get(AgentReportRow, r) for r in reports]
        hashes = [session.get(AssetRow, a).inventory_hash for a in ids]  # type: ignore[union-attr]
    assert "declared" in rows[1].error  # type: ignore[union-attr]
    assert "disk full" in rows[2].error  # type: ignore[union-attr]
    assert [h == inv.content_hash() for h, inv in zip(hashes, good, strict=True)] == [
        True,
        False,
        False,
        True,
    ]
