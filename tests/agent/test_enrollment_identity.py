"""Which asset an agent enrolls into, driven through the agent's CLI against the real
server (uvicorn subprocess) on SQLite and PostgreSQL: a second agent on the same
machine takes nothing from the first, and replacing a host's agent is an explicit,
single-use re-enroll token created with ``patchwarden enroll create --asset``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from patchwarden.agent import cli
from patchwarden.agent.errors import CredentialRevoked
from patchwarden.agent.runner import Agent
from patchwarden.cli.main import run
from patchwarden.store.models import AgentCredentialRow, EnrollmentTokenRow
from tests.agent.conftest import Live
from tests.conftest import make_user_token

MACHINE_ID = "9b1e7c3a5d2f4e6a8c0b1d2e3f4a5b6c"


@pytest.fixture
def enrolled(live: Live) -> Agent:
    """The first agent of the machine, enrolled and checked in."""
    live.root.set_machine_id(MACHINE_ID)
    agent = Agent(live.config(live.server.url))
    agent.enroll(live.token(), hostname="db-1")
    assert agent.run_once().checked_in
    return agent


def live_credentials(live: Live, asset_id: int) -> list[int]:
    with live.database.session() as session:
        return list(
            session.scalars(
                select(AgentCredentialRow.id).where(
                    AgentCredentialRow.asset_id == asset_id,
                    AgentCredentialRow.revoked_at.is_(None),
                )
            )
        )


def token_uses(live: Live) -> list[int]:
    with live.database.session() as session:
        return list(
            session.scalars(select(EnrollmentTokenRow.uses).order_by(EnrollmentTokenRow.id))
        )


def test_a_second_agent_with_another_hostname_does_not_take_over_the_first(
    live: Live, enrolled: Agent, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asset_id = enrolled.status()["asset_id"]
    credential = enrolled.state_dir.read_credential()
    token = live.token()
    second_state = tmp_path / "second-agent"
    config = tmp_path / "second-agent.conf"  # the same machine: the same collect_root
    config.write_text(f"[agent]\ncollect_root = {live.root.path}\nstate_dir = {second_state}\n")
    argv = ["--config", str(config), "enroll", token, "--server", live.server.url]

    code = cli.main([*argv, "--hostname", "db-1-second"])

    assert code == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert f"already enrolled as asset {asset_id}" in err
    assert f"patchwarden enroll create --asset {asset_id}" in err  # the server's hint
    assert token not in err
    assert not Agent(live.config(live.server.url, state_dir=second_state)).enrolled
    # The first agent goes on as before, with the only live credential of its asset.
    assert enrolled.run_once().checked_in
    assert enrolled.state_dir.read_credential() == credential
    assert live_credentials(live, asset_id) == [int(credential.split("_")[1])]
    assert token_uses(live)[-1] == 0


def test_an_agent_does_not_enroll_over_a_live_credential_in_its_state_directory(
    live: Live, enrolled: Agent, capsys: pytest.CaptureFixture[str]
) -> None:
    credential = enrolled.state_dir.read_credential()
    state_dir = str(enrolled.state_dir.path)
    token = live.token()

    code = cli.main(["--state-dir", state_dir, "enroll", token, "--hostname", "web-9"])

    assert code == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "already holds the live credential of asset" in err
    assert "state directory of its own" in err
    assert enrolled.state_dir.read_credential() == credential
    assert token_uses(live)[-1] == 0  # refused before the server was asked
    assert enrolled.run_once().checked_in


def test_replacing_an_agent_needs_a_reenroll_token_for_its_asset(
    live: Live,
    enrolled: Agent,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    asset_id = enrolled.status()["asset_id"]
    monkeypatch.setenv("PATCHWARDEN_HOME", str(tmp_path / "admin-home"))
    monkeypatch.setenv("PATCHWARDEN_DATABASE_URL", live.server.db_url)
    _user_id, admin_token = make_user_token(live.server.db_url, "enroller", "admin")
    monkeypatch.setenv("PATCHWARDEN_TOKEN", admin_token)
    capsys.readouterr()

    # Re-enroll tokens are single use.
    assert run(["enroll", "create", "--asset", str(asset_id), "--uses", "3"]) == 2
    assert "single use" in capsys.readouterr().err
    assert run(["enroll", "create", "--asset", str(asset_id), "--json"]) == 0
    token = json.loads(capsys.readouterr().out)
    assert (token["asset_id"], token["max_uses"]) == (asset_id, 1)

    # The host lost its state directory: a fresh agent enrolls with the bound token.
    replacement = str(tmp_path / "rebuilt-state")
    argv = ["--state-dir", replacement, "enroll", "-", "--server", live.server.url]
    monkeypatch.setattr("sys.stdin", io.StringIO(token["token"] + "\n"))
    assert cli.main(argv) == 0
    assert f"as asset {asset_id}" in capsys.readouterr().out
    with pytest.raises(CredentialRevoked):
        enrolled.run_once()  # the replaced agent is locked out
    fresh = Agent(live.config(live.server.url, state_dir=Path(replacement)))
    assert fresh.run_once().checked_in
    assert live_credentials(live, asset_id) == [
        int(fresh.state_dir.read_credential().split("_")[1])
    ]

    # Used once, it is spent.
    monkeypatch.setattr("sys.stdin", io.StringIO(token["token"] + "\n"))
    assert cli.main([*argv, "--replace"]) == cli.EXIT_REFUSED
    assert "used up" in capsys.readouterr().err

    # Rotating the credential in place: a new re-enroll token, and --replace, without
    # which the agent keeps the credential it holds.
    assert run(["enroll", "create", "--asset", str(asset_id), "--json"]) == 0
    rotation = json.loads(capsys.readouterr().out)["token"]
    held = fresh.state_dir.read_credential()
    in_place = ["--state-dir", replacement, "enroll", rotation]
    assert cli.main(in_place) == cli.EXIT_CONFIG
    assert fresh.state_dir.read_credential() == held
    assert cli.main([*in_place, "--replace"]) == 0
    rotated = fresh.state_dir.read_credential()
    assert rotated != held
    assert live_credentials(live, asset_id) == [int(rotated.split("_")[1])]
    assert fresh.run_once().checked_in
