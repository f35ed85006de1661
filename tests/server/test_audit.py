"""The audit log: every mutation lands in it, the chain detects tampering, the
database refuses edits, and the CLI verifies and exports it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from patchwarden.cli.main import run
from patchwarden.server.context import AppContext
from patchwarden.store import audit
from patchwarden.store.audit import Actor
from patchwarden.store.models import AuditEventRow
from tests.server.conftest import SignedIn


def actions(ctx: AppContext) -> list[str]:
    with ctx.db.session() as session:
        return list(session.scalars(select(AuditEventRow.action).order_by(AuditEventRow.seq)))


def test_api_mutations_are_audited_with_who_what_before_after(
    ctx: AppContext, admin: SignedIn
) -> None:
    created = admin.client.post(
        "/api/v1/groups",
        json={"name": "web", "filter": {"tags_any": ["web"]}},
        headers=admin.headers(),
    )
    assert created.status_code == 201, created.text
    group_id = created.json()["id"]
    changed = admin.client.patch(
        f"/api/v1/groups/{group_id}",
        json={"description": "front ends"},
        headers=admin.headers(),
    )
    assert changed.status_code == 200
    with ctx.db.session() as session:
        event = session.scalars(
            select(AuditEventRow).where(AuditEventRow.action == "group.update")
        ).one()
    assert event.actor == "admin"
    assert event.actor_type == "user"
    assert event.ip == "testclient"
    assert event.target_type == "group"
    assert event.target_id == str(group_id)
    assert event.before is not None
    assert event.before["description"] == ""
    assert event.after is not None
    assert event.after["description"] == "front ends"
    assert {"auth.login", "group.create", "group.update"} <= set(actions(ctx))


def test_failed_logins_are_audited_and_rate_limited(
    ctx: AppContext, app_client: TestClient
) -> None:
    client = app_client
    for _ in range(5):
        bad = client.post("/api/v1/session", json={"username": "auditor", "password": "wrong"})
        assert bad.status_code == 401
    limited = client.post(
        "/api/v1/session", json={"username": "auditor", "password": "correct horse battery staple"}
    )
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert actions(ctx).count("auth.login_failed") == 5


def test_chain_detects_alteration_and_removal(ctx: AppContext) -> None:
    with ctx.db.session() as session:
        for n in range(5):
            audit.record(session, Actor("t", "system"), f"test.{n}", now=ctx.now(), after={"n": n})
        result = audit.verify(session)
    assert result.ok
    assert result.events >= 5  # the fixture's user creations are audited too

    # Tamper through a raw connection with the trigger dropped, as an attacker with
    # database access would.
    with ctx.db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_no_change"))
        else:
            conn.execute(text("DROP TRIGGER audit_event_no_update"))
        conn.execute(text("UPDATE audit_event SET actor = 'mallory' WHERE action = 'test.2'"))
    with ctx.db.session() as session:
        broken = audit.verify(session)
    with ctx.db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # the database is shared by later tests
            conn.execute(text("ALTER TABLE audit_event ENABLE TRIGGER audit_event_no_change"))
    assert not broken.ok
    assert "altered" in broken.problem
    assert broken.bad_seq is not None


def test_database_refuses_update_and_delete(ctx: AppContext) -> None:
    with ctx.db.session() as session:
        audit.record(session, Actor("t", "system"), "test.x", now=ctx.now())
    for statement in (
        "UPDATE audit_event SET actor = 'x'",
        "DELETE FROM audit_event",
    ):
        with pytest.raises(DBAPIError) as caught, ctx.db.engine.begin() as conn:
            conn.execute(text(statement))
        assert "append-only" in str(caught.value)


def test_cli_verify_and_export(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["groups", "create", "db", "--filter", '{"tags_any": ["db"]}']) == 0
    capsys.readouterr()
    assert run(["audit", "verify", "--json"]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified["ok"] is True
    out = tmp_path / "audit.jsonl"
    assert run(["audit", "export", "--output", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    assert lines[-1]["action"] == "group.create"
    assert lines[-1]["actor"] == "cli-admin (token tests)"
    assert lines[-1]["actor_type"] == "cli"
    assert all(lines[i]["prev_hash"] == lines[i - 1]["hash"] for i in range(1, len(lines)))
