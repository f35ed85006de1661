"""Agent protocol v1 on the server: enrollment rules, check-in, inventory reports."""

from __future__ import annotations

import gzip
import json
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patchwarden.collect.jsonfmt import inventory_to_json
from patchwarden.core.model import InstalledPackage, Inventory, OsInfo
from patchwarden.server.app import create_app
from patchwarden.server.context import AppContext
from patchwarden.server.services import agents
from patchwarden.store.audit import Actor
from patchwarden.store.models import (
    AgentCredentialRow,
    AgentReportRow,
    AssetPackage,
    AssetRow,
    AuditEventRow,
    EnrollmentTokenRow,
)
from tests.server.conftest import Clock, SignedIn, bearer

DEBIAN = OsInfo(id="debian", version_id="12", ecosystem="Debian:12", family="debian")


def make_token(ctx: AppContext, **options: object) -> str:
    with ctx.db.session() as session:
        _row, token = agents.create_enrollment_token(
            session,
            Actor("t", "system"),
            now=ctx.now(),
            **options,  # type: ignore[arg-type]
        )
    return token


def enroll(client: TestClient, token: str, hostname: str = "web-1", **extra: str) -> dict:
    response = client.post(
        "/api/agent/v1/enroll",
        json={"protocol": 1, "enrollment_token": token, "hostname": hostname, **extra},
    )
    return {"status": response.status_code, **response.json()}


def inventory(host: str = "web-1", *packages: tuple[str, str]) -> Inventory:
    pkgs = tuple(
        InstalledPackage(n, v, "Debian:12", "amd64", n, v)
        for n, v in packages or (("bash", "5.2-1"),)
    )
    return Inventory(hostname=host, packages=pkgs, os=DEBIAN)


def upload(
    client: TestClient, credential: str, inv: Inventory, *, raw: bytes | None = None
) -> object:
    body = raw if raw is not None else gzip.compress(json.dumps(inventory_to_json(inv)).encode())
    return client.put(
        "/api/agent/v1/inventory",
        content=body,
        headers={
            **bearer(credential),
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
        },
    )


def acknowledged(
    ctx: AppContext, asset_id: int, inv: Inventory, *, age: timedelta = timedelta(0), **options: str
) -> int:
    """Store a report as the upload route does (received ``age`` ago), without applying
    it, as a process that died before applying it would have left it; its id."""
    with ctx.db.session() as session:
        return agents.accept_inventory(
            session,
            asset_id,
            gzip.compress(json.dumps(inventory_to_json(inv)).encode()),
            encoding="gzip",
            now=ctx.now() - age,
            config=ctx.config,
            **options,  # type: ignore[arg-type]
        ).id


def checkin_json(client: TestClient, credential: str, inventory_hash: str) -> dict:
    """A check-in announcing ``inventory_hash``; the answer's JSON."""
    return client.post(
        "/api/agent/v1/checkin", json={"inventory_hash": inventory_hash}, headers=bearer(credential)
    ).json()


def test_enroll_checkin_upload_round_trip(ctx: AppContext, app_client: TestClient) -> None:
    enrolled = enroll(app_client, make_token(ctx), fqdn="web-1.example.net", machine_id="abc")
    assert enrolled["status"] == 200
    credential = enrolled["credential"]
    assert credential.startswith("pwa_")
    inv = inventory("web-1", ("bash", "5.2-1"), ("openssl", "3.0.9-1"))

    first = app_client.post(
        "/api/agent/v1/checkin",
        json={
            "protocol": 1,
            "inventory_hash": inv.content_hash(),
            "uptime_seconds": 99,
            "reboot_required": True,
        },
        headers=bearer(credential),
    )
    assert first.status_code == 200
    assert first.json() == {
        "protocol": 1,
        "upload_inventory": True,
        "next_checkin_seconds": 300,
        "jobs_waiting": 0,
        "inventory_error": None,
    }
    with ctx.db.session() as session:
        checked_in = session.get(AssetRow, enrolled["asset_id"])
        assert checked_in is not None
        assert checked_in.reboot_required is True  # liveness facts come with the check-in
        assert checked_in.uptime_seconds == 99

    accepted = upload(app_client, credential, inv)
    assert accepted.status_code == 202, accepted.text  # type: ignore[attr-defined]
    with ctx.db.session() as session:
        asset = session.get(AssetRow, enrolled["asset_id"])
        assert asset is not None
        assert asset.source == "agent"
        assert asset.fqdn == "web-1.example.net"
        assert asset.reboot_required is False  # the uploaded inventory is authoritative
        assert asset.inventory_hash == inv.content_hash()
        packages = session.scalar(
            select(func.count()).select_from(AssetPackage).where(AssetPackage.asset_id == asset.id)
        )
        assert packages == 2
        report = session.scalars(select(AgentReportRow)).one()
        assert report.status == "processed"

    again = app_client.post(
        "/api/agent/v1/checkin",
        json={"protocol": 1, "inventory_hash": inv.content_hash()},
        headers=bearer(credential),
    )
    assert again.json()["upload_inventory"] is False  # unchanged: no upload asked


def test_enrollment_token_limits(ctx: AppContext, app_client: TestClient, clock: Clock) -> None:
    twice = make_token(ctx, max_uses=2)
    assert enroll(app_client, twice, "a")["status"] == 200
    assert enroll(app_client, twice, "b")["status"] == 200
    used_up = enroll(app_client, twice, "c")
    assert used_up["status"] == 401
    assert "used up" in used_up["error"]

    short = make_token(ctx, hours=1)
    clock.advance(hours=2)
    assert enroll(app_client, short, "d")["status"] == 401

    revoked = make_token(ctx)
    with ctx.db.session() as session:
        agents.revoke_enrollment_token(
            session, Actor("t", "system"), int(revoked.split("_")[1]), now=ctx.now()
        )
    assert enroll(app_client, revoked, "e")["status"] == 401
    forged = make_token(ctx)
    token_id = forged.split("_")[1]
    assert enroll(app_client, f"pwe_{token_id}_not-the-secret", "f")["status"] == 401


MACHINE = "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
OTHER_MACHINE = "0123456789abcdef0123456789abcdef"


def checkin_status(client: TestClient, credential: str) -> int:
    return client.post("/api/agent/v1/checkin", json={}, headers=bearer(credential)).status_code


def live_credentials(ctx: AppContext, asset_id: int) -> list[int]:
    with ctx.db.session() as session:
        return list(
            session.scalars(
                select(AgentCredentialRow.id)
                .where(
                    AgentCredentialRow.asset_id == asset_id, AgentCredentialRow.revoked_at.is_(None)
                )
                .order_by(AgentCredentialRow.id)
            )
        )


def audit_events(ctx: AppContext, action: str) -> list[AuditEventRow]:
    with ctx.db.session() as session:
        return list(
            session.scalars(
                select(AuditEventRow)
                .where(AuditEventRow.action == action)
                .order_by(AuditEventRow.seq)
            )
        )


def token_uses(ctx: AppContext, token: str) -> int:
    with ctx.db.session() as session:
        row = session.get(EnrollmentTokenRow, int(token.split("_")[1]))
        assert row is not None
        return row.uses


def test_an_enrollment_token_never_takes_over_an_enrolled_host(
    ctx: AppContext, app_client: TestClient
) -> None:
    victim = enroll(
        app_client, make_token(ctx), "victim-db", fqdn="victim-db.example.org", machine_id=MACHINE
    )
    assert victim["status"] == 200
    assert upload(app_client, victim["credential"], inventory("victim-db")).status_code == 202  # type: ignore[attr-defined]
    with ctx.db.session() as session:
        before = session.get(AssetRow, victim["asset_id"])
        assert before is not None
        victim_facts = (before.hostname, before.fqdn, before.serial, before.inventory_hash)

    # Anyone holding an enrollment token claims the victim's name, then its fqdn.
    by_name = enroll(app_client, make_token(ctx), "victim-db")
    by_fqdn = enroll(app_client, make_token(ctx), "victim-db", fqdn="victim-db.example.org")
    for attacker in (by_name, by_fqdn):
        assert attacker["status"] == 200
        assert attacker["asset_id"] != victim["asset_id"]  # a new asset of its own
    assert by_name["asset_id"] != by_fqdn["asset_id"]
    assert [e.after["asset"] for e in audit_events(ctx, "agent.enroll")] == ["created"] * 3  # type: ignore[index]

    # The victim keeps its one credential and its asset; nothing of the attacker reaches it.
    assert checkin_status(app_client, victim["credential"]) == 200
    assert live_credentials(ctx, victim["asset_id"]) == [int(victim["credential"].split("_")[1])]
    evil = inventory("victim-db", ("bash", "5.2-1"), ("backdoor", "6.6.6"))
    assert upload(app_client, by_name["credential"], evil).status_code == 202  # type: ignore[attr-defined]
    jobs = app_client.get("/api/agent/v1/jobs", headers=bearer(by_name["credential"]))
    assert jobs.json()["jobs"] == []
    with ctx.db.session() as session:
        after = session.get(AssetRow, victim["asset_id"])
        assert after is not None
        assert (after.hostname, after.fqdn, after.serial, after.inventory_hash) == victim_facts
        assert after.inventory_hash != evil.content_hash()
        attacker_asset = session.get(AssetRow, by_name["asset_id"])
        assert attacker_asset is not None
        assert attacker_asset.inventory_hash == evil.content_hash()
    assert audit_events(ctx, "agent.replace") == []


def test_a_second_agent_on_the_same_machine_is_refused_and_the_first_keeps_working(
    ctx: AppContext, app_client: TestClient
) -> None:
    first = enroll(app_client, make_token(ctx), "db-1", machine_id=MACHINE)
    token = make_token(ctx)
    second = enroll(app_client, token, "db-1-other-name", machine_id=MACHINE)

    assert second["status"] == 409
    assert second["type"] == "Conflict"
    assert f"already enrolled as asset {first['asset_id']}" in second["error"]
    assert f"patchwarden enroll create --asset {first['asset_id']}" in second["hint"]
    assert checkin_status(app_client, first["credential"]) == 200
    assert live_credentials(ctx, first["asset_id"]) == [int(first["credential"].split("_")[1])]
    # Refused as a whole: the token was not used and still enrolls another host.
    assert token_uses(ctx, token) == 0
    assert enroll(app_client, token, "db-2")["status"] == 200


def test_a_revoked_agent_reenrolls_into_its_asset_by_machine_id_but_never_by_name(
    ctx: AppContext, app_client: TestClient
) -> None:
    first = enroll(app_client, make_token(ctx), "db-1", machine_id=MACHINE)
    named = enroll(app_client, make_token(ctx), "web-1")
    with ctx.db.session() as session:
        for enrolled in (first, named):
            agents.revoke_credentials(
                session, Actor("t", "system"), enrolled["asset_id"], now=ctx.now()
            )

    again = enroll(app_client, make_token(ctx), "db-1-renamed", machine_id=MACHINE)
    assert again["status"] == 200
    assert again["asset_id"] == first["asset_id"]  # same system, no live agent: its asset
    assert live_credentials(ctx, first["asset_id"]) == [int(again["credential"].split("_")[1])]
    assert audit_events(ctx, "agent.enroll")[-1].after["asset"] == "matched by machine id"  # type: ignore[index]

    # Without a machine id only the name would match: not enough, a new asset.
    renamed = enroll(app_client, make_token(ctx), "web-1")
    assert renamed["status"] == 200
    assert renamed["asset_id"] != named["asset_id"]


def test_a_reenroll_token_replaces_the_agent_of_its_asset_once_and_is_audited(
    ctx: AppContext, app_client: TestClient, admin: SignedIn
) -> None:
    old = enroll(app_client, make_token(ctx), "db-1", machine_id=MACHINE)
    old_id = int(old["credential"].split("_")[1])
    other = enroll(app_client, make_token(ctx), "web-1", machine_id=OTHER_MACHINE)
    created = admin.client.post(
        "/api/v1/enrollment-tokens",
        json={"asset_id": old["asset_id"], "note": "disk replaced"},
        headers=admin.headers(),
    )
    assert created.status_code == 201, created.text
    bound = created.json()
    assert (bound["asset_id"], bound["max_uses"]) == (old["asset_id"], 1)
    [creation] = [
        e for e in audit_events(ctx, "enrollment_token.create") if e.target_id == str(bound["id"])
    ]
    assert (creation.actor, creation.after["asset_id"]) == ("admin", old["asset_id"])  # type: ignore[index]

    # It replaces this asset's agent only: a system that is another asset's live agent
    # is refused, and the token stays unused.
    wrong = enroll(app_client, bound["token"], "web-1", machine_id=OTHER_MACHINE)
    assert wrong["status"] == 409, wrong
    assert f"enrolled as asset {other['asset_id']}" in wrong["error"]
    assert token_uses(ctx, bound["token"]) == 0
    assert checkin_status(app_client, other["credential"]) == 200

    new = enroll(app_client, bound["token"], "db-1-rebuilt", machine_id=MACHINE)
    assert new["status"] == 200
    assert new["asset_id"] == old["asset_id"]
    assert checkin_status(app_client, old["credential"]) == 401  # replaced
    assert checkin_status(app_client, new["credential"]) == 200
    new_id = int(new["credential"].split("_")[1])
    assert live_credentials(ctx, old["asset_id"]) == [new_id]
    [replaced] = audit_events(ctx, "agent.replace")
    assert (replaced.actor, replaced.target_type, replaced.target_id) == (
        "agent-enroll:db-1-rebuilt",
        "asset",
        str(old["asset_id"]),
    )
    assert replaced.after == {
        "hostname": "db-1-rebuilt",
        "machine_id": MACHINE,
        "enrollment_token": bound["id"],
        "credential": new_id,
        "authorized_by": "admin",
        "revoked_credentials": [old_id],
    }

    # Single use: the same token again is refused, and the new agent keeps its place.
    reused = enroll(app_client, bound["token"], "db-1-rebuilt", machine_id=MACHINE)
    assert reused["status"] == 401
    assert checkin_status(app_client, new["credential"]) == 200


def test_reenroll_tokens_are_single_use_for_an_existing_asset_without_defaults(
    ctx: AppContext, admin: SignedIn
) -> None:
    asset_id = enroll(admin.client, make_token(ctx), "db-1")["asset_id"]
    for body, status, words in (
        ({"asset_id": asset_id, "max_uses": 2}, 422, "single use"),
        ({"asset_id": asset_id, "defaults": {"environment": "prod"}}, 422, "no asset defaults"),
        ({"asset_id": 9999}, 404, "no asset with id 9999"),
        ({"asset_id": 0}, 422, ""),
    ):
        refused = admin.client.post("/api/v1/enrollment-tokens", json=body, headers=admin.headers())
        assert refused.status_code == status, (body, refused.text)
        assert words in refused.json()["error"]
    listed = admin.client.get("/api/v1/enrollment-tokens").json()["items"]
    assert [t["asset_id"] for t in listed] == [None]  # only make_token's; nothing half-made


def test_an_asset_known_without_an_agent_is_attached_only_by_a_reenroll_token(
    ctx: AppContext, app_client: TestClient
) -> None:
    with ctx.db.session() as session:
        collected = AssetRow(hostname="legacy-1", fqdn="legacy-1.example.org", source="ssh",
                             status="unmanaged", created_at=ctx.now())  # fmt: skip
        session.add(collected)
        session.flush()
        legacy = collected.id
    by_name = enroll(app_client, make_token(ctx), "legacy-1", fqdn="legacy-1.example.org")
    assert by_name["status"] == 200
    assert by_name["asset_id"] != legacy

    adopted = enroll(app_client, make_token(ctx, asset_id=legacy), "legacy-1", machine_id=MACHINE)
    assert adopted["asset_id"] == legacy
    with ctx.db.session() as session:
        asset = session.get(AssetRow, legacy)
        assert asset is not None
        assert (asset.source, asset.status, asset.serial) == (
            "agent",
            "managed",
            f"machine-id:{MACHINE}",
        )
    assert audit_events(ctx, "agent.replace")[-1].after["revoked_credentials"] == []  # type: ignore[index]


def test_deleting_an_asset_deletes_its_reenroll_tokens(
    ctx: AppContext, app_client: TestClient, admin: SignedIn
) -> None:
    asset_id = enroll(app_client, make_token(ctx), "db-1")["asset_id"]
    token = make_token(ctx, asset_id=asset_id)
    deleted = admin.client.delete(f"/api/v1/assets/{asset_id}", headers=admin.headers())
    assert deleted.status_code == 200, deleted.text
    refused = enroll(app_client, token, "db-1")
    assert refused["status"] == 401  # never an ordinary token: gone with its asset
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(EnrollmentTokenRow)) == 1


def test_revoking_a_host_locks_its_agent_out_at_once(
    ctx: AppContext, app_client: TestClient
) -> None:
    enrolled = enroll(app_client, make_token(ctx))
    credential = enrolled["credential"]
    assert (
        app_client.post("/api/agent/v1/checkin", json={}, headers=bearer(credential)).status_code
        == 200
    )
    with ctx.db.session() as session:
        assert (
            agents.revoke_credentials(
                session, Actor("t", "system"), enrolled["asset_id"], now=ctx.now()
            )
            == 1
        )
    refused = app_client.post("/api/agent/v1/checkin", json={}, headers=bearer(credential))
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error"]
    assert upload(app_client, credential, inventory()).status_code == 401  # type: ignore[attr-defined]


def test_bad_reports_are_refused_and_nothing_is_applied(
    ctx: AppContext, app_client: TestClient
) -> None:
    credential = enroll(app_client, make_token(ctx))["credential"]
    bad_json = upload(app_client, credential, inventory(), raw=gzip.compress(b"{not json"))
    assert bad_json.status_code == 422  # type: ignore[attr-defined]
    assert "not valid JSON" in bad_json.json()["error"]  # type: ignore[attr-defined]
    document = inventory_to_json(inventory())
    document["packages"][0]["version"] = ""
    bad_field = upload(
        app_client, credential, inventory(), raw=gzip.compress(json.dumps(document).encode())
    )
    assert bad_field.status_code == 422  # type: ignore[attr-defined]
    assert "packages[0].version" in bad_field.json()["error"]  # type: ignore[attr-defined]
    not_gzip = upload(app_client, credential, inventory(), raw=b"\x1f\x8b garbage")
    assert not_gzip.status_code == 422  # type: ignore[attr-defined]
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(AgentReportRow)) == 0
        assert session.scalar(select(func.count()).select_from(AssetPackage)) == 0


def test_size_limits_and_protocol_version(ctx: AppContext, app_client: TestClient) -> None:
    ctx.config.max_inventory_bytes = 2048
    ctx.config.max_inventory_uncompressed = 64 * 1024
    credential = enroll(app_client, make_token(ctx))["credential"]
    too_big = upload(app_client, credential, inventory(), raw=b"\x00" * 4096)
    assert too_big.status_code == 413  # type: ignore[attr-defined]
    assert "limit" in too_big.json()["error"]  # type: ignore[attr-defined]
    bomb = gzip.compress(b" " * (1024 * 1024))  # compresses to ~1 KiB, expands to 1 MiB
    assert len(bomb) < 2048
    exploded = upload(app_client, credential, inventory(), raw=bomb)
    assert exploded.status_code == 413  # type: ignore[attr-defined]
    assert "too large" in exploded.json()["error"]  # type: ignore[attr-defined]
    future = app_client.post(
        "/api/agent/v1/checkin", json={"protocol": 99}, headers=bearer(credential)
    )
    assert future.status_code == 422
    assert "unsupported agent protocol 99" in future.json()["error"]


def test_an_agent_only_ever_writes_its_own_host(ctx: AppContext, app_client: TestClient) -> None:
    one = enroll(app_client, make_token(ctx), "one")
    two = enroll(app_client, make_token(ctx), "two")
    # Agent "one" uploads an inventory that *claims* to be host "two": it still lands on one.
    claimed = inventory("two", ("nginx", "1.22.1-9"))
    assert upload(app_client, one["credential"], claimed).status_code == 202  # type: ignore[attr-defined]
    with ctx.db.session() as session:
        rows = session.execute(
            select(AssetPackage.asset_id, func.count()).group_by(AssetPackage.asset_id)
        ).all()
    assert rows == [(one["asset_id"], 1)]
    assert two["asset_id"] != one["asset_id"]


def test_server_can_ask_for_an_early_checkin(ctx: AppContext, app_client: TestClient) -> None:
    enrolled = enroll(app_client, make_token(ctx))
    with ctx.db.session() as session:
        agents.request_checkin(
            session, Actor("t", "system"), enrolled["asset_id"], 20, now=ctx.now()
        )
    answer = app_client.post(
        "/api/agent/v1/checkin", json={}, headers=bearer(enrolled["credential"])
    )
    assert answer.json()["next_checkin_seconds"] == 20
    later = app_client.post(
        "/api/agent/v1/checkin", json={}, headers=bearer(enrolled["credential"])
    )
    assert later.json()["next_checkin_seconds"] == 300  # the hint is used once


@pytest.mark.parametrize("header", ["Bearer pwa_1", "Bearer pwa_x_y", "Basic abc", ""])
def test_malformed_agent_credentials(app_client: TestClient, header: str) -> None:
    response = app_client.post("/api/agent/v1/checkin", json={}, headers={"Authorization": header})
    assert response.status_code == 401


def test_resent_and_failed_reports_are_not_processed_twice(
    ctx: AppContext, app_client: TestClient
) -> None:
    enrolled = enroll(app_client, make_token(ctx))
    credential = enrolled["credential"]
    inv = inventory("web-1", ("bash", "5.2-1"))
    first_id = acknowledged(ctx, enrolled["asset_id"], inv)  # not yet processed
    checkin = app_client.post(
        "/api/agent/v1/checkin",
        json={"inventory_hash": inv.content_hash()},
        headers=bearer(credential),
    )
    assert checkin.json()["upload_inventory"] is False  # already on its way
    again = upload(app_client, credential, inv)  # the agent re-sends its spool file
    assert again.json()["report_id"] == first_id  # type: ignore[attr-defined]
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(AgentReportRow)) == 1

    # A report that fails after its 202 is not asked for again; the reason is returned.
    changed = inventory("web-1", ("bash", "5.2-2"))
    failed_id = acknowledged(ctx, enrolled["asset_id"], changed)
    with ctx.db.session() as session:
        failed = session.get(AgentReportRow, failed_id)
        assert failed is not None
        failed.status, failed.error = "failed", "bad luck"
    told = checkin_json(app_client, credential, changed.content_hash())
    assert told["upload_inventory"] is False
    assert told["inventory_error"] == "bad luck"
    wrong = app_client.put(
        "/api/agent/v1/inventory",
        content=b"{}",
        headers={**bearer(credential), "X-Patchwarden-Protocol": "7"},
    )
    assert wrong.status_code == 422


def test_an_earlier_inventory_is_asked_for_again_after_a_rollback(
    ctx: AppContext, app_client: TestClient
) -> None:
    credential = enroll(app_client, make_token(ctx))["credential"]
    v1 = inventory("web-1", ("pw-hello", "1.0-1"))
    v2 = inventory("web-1", ("pw-hello", "2.0-1"))
    for inv in (v1, v2):
        assert upload(app_client, credential, inv).status_code == 202  # type: ignore[attr-defined]
    back = app_client.post(
        "/api/agent/v1/checkin",
        json={"inventory_hash": v1.content_hash()},
        headers=bearer(credential),
    ).json()
    assert back["upload_inventory"] is True  # the host returned to v1: the server holds v2


def test_checkin_records_liveness_takes_the_hint_once_and_refuses_bad_calls(
    ctx: AppContext, app_client: TestClient
) -> None:
    # The check-in is one statement on PostgreSQL and separate ones on SQLite: both must
    # give the same answers and leave the same rows.
    enrolled = enroll(app_client, make_token(ctx))
    credential, asset_id = enrolled["credential"], enrolled["asset_id"]

    def checkin(**body: object) -> dict:
        response = app_client.post(
            "/api/agent/v1/checkin", json={"protocol": 1, **body}, headers=bearer(credential)
        )
        return {"status": response.status_code, **response.json()}

    assert checkin(reboot_required=True, uptime_seconds=50, agent_version="9.9")["status"] == 200
    # Omitted facts keep their stored values; an empty version does not erase the known one.
    assert checkin()["next_checkin_seconds"] == 300
    with ctx.db.session() as session:
        asset = session.get(AssetRow, asset_id)
        assert asset is not None
        assert (asset.reboot_required, asset.uptime_seconds) == (True, 50)
        assert asset.last_seen == ctx.now()
        credential_row = session.scalars(
            select(AgentCredentialRow).where(AgentCredentialRow.asset_id == asset_id)
        ).one()
        assert credential_row.agent_version == "9.9"
        assert credential_row.last_seen == ctx.now()

    # An operator asks for a quick check-in: the next answer carries it, once.
    with ctx.db.session() as session:
        agents.request_checkin(session, Actor("t", "system"), asset_id, 20, now=ctx.now())
    assert checkin()["next_checkin_seconds"] == 20
    assert checkin()["next_checkin_seconds"] == 300

    # A malformed body is refused before anything is recorded.
    before = ctx.now()
    ctx.clock.advance(minutes=5)  # type: ignore[attr-defined]
    assert checkin(uptime_seconds=-1)["status"] == 422
    with ctx.db.session() as session:
        asset = session.get(AssetRow, asset_id)
        assert asset is not None
        assert asset.last_seen == before

    # Wrong secret, wrong prefix, no header: 401 with a reason; nothing else is touched.
    row_id = credential.split("_")[1]
    for headers in (bearer(f"pwa_{row_id}_{'x' * 43}"), bearer("pwt_1_abc"), {}):
        refused = app_client.post("/api/agent/v1/checkin", json={"protocol": 1}, headers=headers)
        assert refused.status_code == 401
        assert refused.json()["error"]
    # A newer protocol is refused with what this server speaks.
    newer = checkin(protocol=2)
    assert newer["status"] == 422
    assert "this server speaks 1" in newer["error"]


def test_the_report_processor_thread_applies_acknowledged_uploads(ctx: AppContext) -> None:
    # With background work on (as `patchwarden server` runs), uploads go to the
    # process's report-processor thread, committed before it can see them.
    with TestClient(create_app(ctx, background=True)) as client:
        enrolled = enroll(client, make_token(ctx), "proc-1")
        hosts = [inventory("proc-1", ("bash", f"5.2-{n}"), ("zlib1g", "1.2.13-1")) for n in (1, 2)]
        report_ids = []
        for inv in hosts:
            accepted = upload(client, enrolled["credential"], inv)
            assert accepted.status_code == 202  # type: ignore[attr-defined]
            report_ids.append(accepted.json()["report_id"])  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        statuses: list[str] = []
        while time.monotonic() < deadline:
            with ctx.db.session() as session:
                statuses = [session.get(AgentReportRow, r).status for r in report_ids]  # type: ignore[union-attr]
            if all(s in ("processed", "superseded") for s in statuses):
                break
            time.sleep(0.05)
        # The first one is superseded when the second arrived before it was taken.
        assert statuses[0] in ("processed", "superseded")
        assert statuses[1] == "processed"
    with ctx.db.session() as session:
        asset = session.get(AssetRow, enrolled["asset_id"])
        assert asset is not None
        assert asset.inventory_hash == hosts[1].content_hash()  # applied in arrival order


def _declared(credential: str, digest: str) -> dict[str, str]:
    return {
        **bearer(credential),
        "Content-Encoding": "gzip",
        "Content-Type": "application/json",
        agents.INVENTORY_HASH_HEADER: digest,
    }


def test_an_upload_with_its_declared_hash_is_checked_in_full_when_applied(
    ctx: AppContext, app_client: TestClient
) -> None:
    """With X-Patchwarden-Inventory-Hash the 202 comes after the envelope check only; a
    bad package field or a wrong hash then fails the report, nothing of it applied,
    and the next check-in tells the agent why."""
    enrolled = enroll(app_client, make_token(ctx))
    credential, asset_id = enrolled["credential"], enrolled["asset_id"]
    good = inventory("web-1", ("bash", "5.2-1"))
    body = gzip.compress(json.dumps(inventory_to_json(good)).encode())
    accepted = app_client.put(
        "/api/agent/v1/inventory", content=body, headers=_declared(credential, good.content_hash())
    )
    assert accepted.status_code == 202, accepted.text

    # A bad field passes the envelope check, then fails when applied.
    bad = inventory("web-1", ("bash", "5.2-2"))
    document = inventory_to_json(bad)
    document["packages"][0]["version"] = "5.2 2"
    took = app_client.put(
        "/api/agent/v1/inventory",
        content=gzip.compress(json.dumps(document).encode()),
        headers=_declared(credential, bad.content_hash()),
    )
    assert took.status_code == 202, took.text
    told = checkin_json(app_client, credential, bad.content_hash())
    assert told["upload_inventory"] is False
    assert "packages[0].version" in told["inventory_error"]

    # A hash that is not the document's: refused when applied, named in the error.
    other = inventory("web-1", ("bash", "5.2-3"))
    wrong = "0" * 64
    took = app_client.put(
        "/api/agent/v1/inventory",
        content=gzip.compress(json.dumps(inventory_to_json(other)).encode()),
        headers=_declared(credential, wrong),
    )
    assert took.status_code == 202
    told = checkin_json(app_client, credential, wrong)
    assert other.content_hash() in told["inventory_error"]
    assert agents.INVENTORY_HASH_HEADER in told["inventory_error"]

    with ctx.db.session() as session:
        statuses = [r.status for r in session.scalars(select(AgentReportRow).order_by("id"))]
        assert statuses == ["processed", "failed", "failed"]
        asset = session.get(AssetRow, asset_id)
        assert asset is not None
        assert asset.inventory_hash == good.content_hash()  # the failures applied nothing
        assert session.scalar(select(func.count()).select_from(AssetPackage)) == 1


@pytest.mark.parametrize(
    ("body", "digest", "message"),
    [
        (gzip.compress(b"{not json"), "a" * 64, "not valid JSON"),
        (b"\x1f\x8b garbage", "a" * 64, "not valid gzip"),
        (gzip.compress(b'{"hostname": "web-1", "packages": []}'), "a" * 64, "format"),
        (
            gzip.compress(b'{"format": "patchwarden-inventory/1", "hostname": "web-1"}'),
            "a" * 64,
            "packages: missing",
        ),
        (
            gzip.compress(
                b'{"format": "patchwarden-inventory/1", "hostname": "web-1", "packages": {}}'
            ),
            "a" * 64,
            "packages: expected a list",
        ),
        (gzip.compress(b'{"format": "patchwarden-inventory/1"}')[:-4], "a" * 64, "truncated"),
        (gzip.compress(b"{}"), "ABC", "64 lowercase hex digits"),
    ],
)
def test_an_upload_with_a_declared_hash_still_gets_its_envelope_refused_at_once(
    ctx: AppContext, app_client: TestClient, body: bytes, digest: str, message: str
) -> None:
    credential = enroll(app_client, make_token(ctx))["credential"]
    refused = app_client.put(
        "/api/agent/v1/inventory", content=body, headers=_declared(credential, digest)
    )
    assert refused.status_code == 422, refused.text
    assert message in refused.json()["error"]
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(AgentReportRow)) == 0


def test_agent_and_server_name_the_same_hash_header() -> None:
    from patchwarden.agent.client import INVENTORY_HASH_HEADER

    assert INVENTORY_HASH_HEADER == agents.INVENTORY_HASH_HEADER


@pytest.mark.parametrize("newer_first", [False, True])
def test_an_older_report_of_a_host_never_overwrites_a_newer_one(
    ctx: AppContext, app_client: TestClient, newer_first: bool
) -> None:
    """Two reports of one host waiting (a backlog, or two server processes): whichever
    is taken first, the older one is superseded and the newer one applied."""
    enrolled = enroll(app_client, make_token(ctx))
    asset_id = enrolled["asset_id"]
    old = inventory("web-1", ("bash", "5.2-1"))
    new = inventory("web-1", ("bash", "5.2-2"), ("curl", "7.88.1-10"))
    old_id, new_id = acknowledged(ctx, asset_id, old), acknowledged(ctx, asset_id, new)
    order = [new_id, old_id] if newer_first else [old_id, new_id]
    outcomes = {rid: agents.process_report(ctx.db, rid, now=ctx.now()) for rid in order}
    assert outcomes == {old_id: "superseded", new_id: "processed"}
    with ctx.db.session() as session:
        asset = session.get(AssetRow, asset_id)
        assert asset is not None
        assert asset.inventory_hash == new.content_hash()
        assert session.scalar(select(func.count()).select_from(AssetPackage)) == 2
        superseded = session.get(AgentReportRow, old_id)
        assert superseded is not None
        assert superseded.error == f"report {new_id} is newer"
        assert superseded.payload == b""
    # An agent back on the old inventory (a rollback) is asked for it again.
    assert checkin_json(app_client, enrolled["credential"], old.content_hash())["upload_inventory"]


def test_the_sweeper_hands_reports_left_pending_to_the_processor(ctx: AppContext) -> None:
    """A report another process acknowledged and never applied (it died) is applied by
    the processor of a server that starts later."""
    with TestClient(create_app(ctx, background=False)) as client:
        enrolled = enroll(client, make_token(ctx), "orphan-1")
    inv = inventory("orphan-1", ("bash", "5.2-1"))
    report_id = acknowledged(
        ctx, enrolled["asset_id"], inv, age=timedelta(minutes=1), declared_hash=inv.content_hash()
    )
    with TestClient(create_app(ctx, background=True)):
        deadline = time.monotonic() + 30
        status = "pending"
        while time.monotonic() < deadline and status in ("pending", "processing"):
            time.sleep(0.05)
            with ctx.db.session() as session:
                status = session.get(AgentReportRow, report_id).status  # type: ignore[union-attr]
    assert status == "processed"
    with ctx.db.session() as session:
        asset = session.get(AssetRow, enrolled["asset_id"])
        assert asset is not None
        assert asset.inventory_hash == inv.content_hash()
