"""The agent against the real server (uvicorn subprocess), on SQLite and PostgreSQL:
enrollment, check-in, delta uploads, refusals, revocation, a crashed server, a 422."""

from __future__ import annotations

import gzip
import json
import logging
import stat
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from patchwarden.agent import cli
from patchwarden.agent.client import INVENTORY_PATH
from patchwarden.agent.errors import CredentialRevoked
from patchwarden.agent.runner import Agent
from patchwarden.core.errors import AuthenticationRequired
from patchwarden.server.services import agents
from patchwarden.store.audit import Actor
from patchwarden.store.db import Database
from patchwarden.store.inventory import asset_packages
from patchwarden.store.models import AgentCredentialRow, AssetRow
from tests.agent.conftest import Live, hours_ago, reports, wait_processed

CURL = ("curl", "7.88.1-10+deb12u5")
MACHINE_ID = "5e0f3c9a1b2d4e6f8a0b1c2d3e4f5a6b"


def asset(database: Database, asset_id: int) -> AssetRow:
    with database.session() as session:
        row = session.get(AssetRow, asset_id)
        assert row is not None
        return row


def stored_packages(database: Database, asset_id: int) -> set[tuple[str, str, str]]:
    with database.session() as session:
        return {(p.name, p.version, p.source_name) for p in asset_packages(session, asset_id)}


def test_enroll_checkin_and_upload_only_when_the_inventory_changes(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="patchwarden.agent")
    agent = Agent(live.config(live.server.url))
    assert not agent.enrolled
    agent.enroll(live.token(), hostname="web-01")
    assert agent.enrolled

    state_dir = agent.state_dir
    credential = state_dir.read_credential()
    assert credential.startswith("pwa_")
    assert stat.S_IMODE(state_dir.path.stat().st_mode) == 0o700
    assert stat.S_IMODE(state_dir.credential_path.stat().st_mode) == 0o600

    first = agent.run_once()
    assert (first.checked_in, first.uploaded, first.spooled, first.delivered) == (True, True, 0, 1)
    assert 270 <= first.next_interval <= 330  # the server's 300 s, ± 10 %
    [report] = wait_processed(live.database, 1)
    assert (report.status, report.content_hash) == ("processed", first.inventory_hash)

    asset_id = agent.status()["asset_id"]
    row = asset(live.database, asset_id)
    assert (row.hostname, row.source, row.os_ecosystem) == ("web-01", "agent", "Debian:12")
    assert row.inventory_hash == first.inventory_hash
    assert row.uptime_seconds is not None
    expected = {(name, version, source) for name, source, version in live.root.packages}
    assert stored_packages(live.database, asset_id) == expected

    unchanged = agent.run_once()
    assert (unchanged.checked_in, unchanged.uploaded, unchanged.delivered) == (True, False, 0)
    assert len(reports(live.database)) == 1

    live.root.add(*CURL)
    changed = agent.run_once()
    assert changed.uploaded
    assert changed.inventory_hash != first.inventory_hash
    rows = wait_processed(live.database, 2)
    assert [r.status for r in rows] == ["processed", "processed"]
    assert ("curl", CURL[1], "curl") in stored_packages(live.database, asset_id)
    assert asset(live.database, asset_id).inventory_hash == changed.inventory_hash

    status = agent.status()
    assert status["inventory_hash"] == changed.inventory_hash
    assert status["spool"] == {"reports": 0, "bytes": 0, "rejected": 0}
    secret = credential.split("_", 2)[2]  # pwa_<id>_<secret>; the secret may hold "_"
    assert secret not in json.dumps(status)
    assert secret not in caplog.text


@pytest.mark.parametrize("problem", ["expired", "used up", "revoked"])
def test_enrollment_with_a_bad_token_is_refused_clearly(
    problem: str, live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    if problem == "expired":
        token = live.token(hours=1, created=hours_ago(2))
    else:
        token = live.token(max_uses=1)
        if problem == "used up":
            Agent(live.config(live.server.url, state_dir=live.server.home / "other")).enroll(token)
        else:
            with live.database.session() as session:
                token_id = agents.list_enrollment_tokens(session)[-1].id
                agents.revoke_enrollment_token(
                    session, Actor("test", "system"), token_id, now=datetime.now(UTC)
                )
    agent = Agent(live.config(live.server.url))
    with pytest.raises(AuthenticationRequired, match="invalid, expired, revoked or used up"):
        agent.enroll(token)
    assert not agent.enrolled
    assert not agent.state_dir.credential_path.exists()

    state_dir = str(agent.state_dir.path)
    code = cli.main(["--state-dir", state_dir, "enroll", token, "--server", live.server.url])
    assert code == cli.EXIT_REFUSED
    err = capsys.readouterr().err
    assert "enrollment refused" in err
    assert "new enrollment token" in err  # the server's hint
    assert token not in err


def test_a_revoked_credential_stops_the_agent_until_it_is_enrolled_again(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    live.root.set_machine_id(MACHINE_ID)  # what recognises the host when it comes back
    config = live.config(live.server.url)
    agent = Agent(config)
    agent.enroll(live.token())
    assert agent.run_once().checked_in
    asset_id = agent.status()["asset_id"]

    with live.database.session() as session:
        agents.revoke_credentials(session, Actor("test", "system"), asset_id, now=datetime.now(UTC))
    with pytest.raises(CredentialRevoked, match="invalid or revoked") as refused:
        agent.run_once()
    assert "re-enroll" in str(refused.value)
    assert not agent.enrolled
    assert agent.status()["revoked"] == "agent credential invalid or revoked"

    # It does not keep knocking: later cycles stop before any request.
    live.server.kill()
    with pytest.raises(CredentialRevoked):
        Agent(config).run_once()
    stopped = Agent(config)
    stop = threading.Event()
    runner = threading.Thread(target=stopped.run_forever, args=(stop,))
    runner.start()
    runner.join(timeout=10)
    assert not runner.is_alive()
    assert not stop.is_set()
    assert isinstance(stopped.halted, CredentialRevoked)
    code = cli.main(["--state-dir", str(config.state_dir), "run", "--once"])
    assert code == cli.EXIT_REFUSED
    assert "re-enroll" in capsys.readouterr().err

    live.server.start()
    agent.enroll(live.token())
    assert agent.enrolled
    assert agent.run_once().checked_in
    assert agent.status()["asset_id"] == asset_id  # same host, same asset
    with live.database.session() as session:
        usable = session.scalars(
            select(AgentCredentialRow).where(
                AgentCredentialRow.asset_id == asset_id, AgentCredentialRow.revoked_at.is_(None)
            )
        ).all()
    assert len(usable) == 1


def test_reports_survive_a_killed_server_and_a_restarted_agent_and_arrive_once(
    live: Live,
) -> None:
    config = live.config(live.server.url)
    Agent(config).enroll(live.token())
    live.server.kill()

    offline = Agent(config).run_once()
    assert (offline.checked_in, offline.uploaded, offline.spooled) == (False, False, 1)
    assert "connection refused" in offline.error
    assert 27 <= offline.next_interval <= 33  # first retry: 30 s ± 10 %
    assert len(list((config.state_dir / "spool").glob("*.report"))) == 1

    # A restarted agent finds the spool; the same inventory is not spooled twice, and a
    # newer snapshot replaces the undelivered older one.
    assert Agent(config).run_once().spooled == 1
    live.root.add(*CURL)
    newer = Agent(config).run_once()
    assert newer.spooled == 1
    assert newer.inventory_hash != offline.inventory_hash
    assert Agent(config).status()["consecutive_failures"] == 3

    live.server.start()
    back = Agent(config).run_once()
    assert (back.checked_in, back.delivered, back.spooled) == (True, 1, 0)
    assert not back.uploaded  # the spooled report was the upload; the server had it
    [report] = wait_processed(live.database, 1)
    assert (report.status, report.content_hash) == ("processed", newer.inventory_hash)
    asset_id = Agent(config).status()["asset_id"]
    assert asset(live.database, asset_id).inventory_hash == newer.inventory_hash
    assert ("curl", CURL[1], "curl") in stored_packages(live.database, asset_id)

    calm = Agent(config).run_once()
    assert (calm.checked_in, calm.uploaded, calm.delivered, calm.spooled) == (True, False, 0, 0)
    assert len(reports(live.database)) == 1
    assert Agent(config).status()["consecutive_failures"] == 0


def test_a_report_the_server_refuses_moves_to_rejected_with_its_message(live: Live) -> None:
    agent = Agent(live.config(live.server.url))
    agent.enroll(live.token())
    bad = gzip.compress(json.dumps({"format": "patchwarden-inventory/1", "packages": []}).encode())
    spooled = agent.spool.add(
        "inventory", "PUT", INVENTORY_PATH, bad, content_encoding="gzip", content_hash="b" * 64
    )

    result = agent.run_once()
    assert (result.checked_in, result.uploaded) == (True, True)  # the good one still goes
    assert agent.spool.rejected() == [spooled.name]
    kept = agent.spool.rejected_path / spooled.name
    reason = json.loads(kept.with_suffix(".json").read_text())
    assert (reason["status"], reason["type"]) == (422, "InventoryError")
    assert "hostname: missing" in reason["error"]
    assert kept.read_bytes().endswith(bad)
    assert agent.status()["spool"]["rejected"] == 1
    [report] = wait_processed(live.database, 1)  # only the good one was stored
    assert report.content_hash == result.inventory_hash


def test_an_inventory_over_the_upload_limit_is_kept_back(live: Live) -> None:
    for number in range(200):
        live.root.packages.append((f"lib{number:03d}x", f"src{number}", f"1.{number}-{number}"))
    live.root.write()
    agent = Agent(live.config(live.server.url, max_upload_bytes=1024))
    agent.enroll(live.token())

    first = agent.run_once()
    assert (first.checked_in, first.uploaded, first.spooled) == (True, False, 0)
    [name] = agent.spool.rejected()
    reason = json.loads((agent.spool.rejected_path / name).with_suffix(".json").read_text())
    assert reason["type"] == "LocalLimit"
    assert "max_upload_bytes" in reason["error"]
    assert not agent.run_once().uploaded  # not retried while the inventory is unchanged
    assert agent.spool.rejected() == [name]
    assert reports(live.database) == []
