"""The CLI changes nothing as an anonymous local operator: its user signs in, holds the
API's permissions, and four eyes knows them by user id whatever surface they use."""

from __future__ import annotations

import io
import json
import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from patchwarden.cli.common import now
from patchwarden.cli.main import run
from patchwarden.core.model import InstalledPackage, Inventory, OsInfo
from patchwarden.server.app import create_app
from patchwarden.server.context import AppContext
from patchwarden.server.services.identity import create_token
from patchwarden.store.audit import SYSTEM
from patchwarden.store.db import open_database
from patchwarden.store.inventory import record_inventory
from patchwarden.store.models import ApiTokenRow, AuditEventRow, RiskExceptionRow, UserRow
from tests.conftest import make_user_token
from tests.support import TEST_AUDIT_KEY

DEBIAN = OsInfo(id="debian", version_id="12", ecosystem="Debian:12", family="debian")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def anonymous(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The CLI on the test database with nobody signed in."""
    monkeypatch.setenv("PATCHWARDEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATCHWARDEN_DATABASE_URL", db_url)
    monkeypatch.setenv("PATCHWARDEN_CREDENTIALS_FILE", str(tmp_path / "credentials.json"))
    monkeypatch.delenv("PATCHWARDEN_TOKEN", raising=False)
    return db_url


def _asset(url: str) -> int:
    database = open_database(url, audit_key=TEST_AUDIT_KEY)
    try:
        with database.session() as session:
            asset_id, _ = record_inventory(
                session,
                Inventory(
                    hostname="db-1",
                    os=DEBIAN,
                    packages=(InstalledPackage("bash", "5.2-1", "Debian:12", "amd64"),),
                ),
                now=now(),
            )
            return asset_id
    finally:
        database.dispose()


def _exception(url: str) -> RiskExceptionRow:
    database = open_database(url, audit_key=TEST_AUDIT_KEY)
    try:
        with database.session() as session:
            row = session.scalars(select(RiskExceptionRow)).one()
            session.expunge(row)
            return row
    finally:
        database.dispose()


def _request_exception(capsys: pytest.CaptureFixture[str], asset_id: int) -> int:
    code, out, err = cli(
        capsys,
        "exceptions",
        "request",
        "--advisory",
        "CVE-2026-1111",
        "--asset",
        str(asset_id),
        "--why",
        "compensating control in front of it",
        "--days",
        "30",
        "--json",
    )
    assert code == 0, err
    return int(json.loads(out)["id"])


def test_a_unix_login_is_not_an_identity(
    anonymous: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The red-team request: `env LOGNAME=alice USER=alice patchwarden exceptions approve 4`.
    _root, root_token = make_user_token(anonymous, "root", "admin")
    make_user_token(anonymous, "alice", "approver")
    monkeypatch.setenv("PATCHWARDEN_TOKEN", root_token)
    exception_id = _request_exception(capsys, _asset(anonymous))

    monkeypatch.delenv("PATCHWARDEN_TOKEN")
    monkeypatch.setenv("LOGNAME", "alice")
    monkeypatch.setenv("USER", "alice")
    code, _, err = cli(capsys, "exceptions", "approve", str(exception_id))
    assert code == 2
    assert err.startswith("error: this command changes patchwarden data")
    assert "patchwarden login" in err
    assert _exception(anonymous).status == "pending"


def test_the_same_user_through_the_api_and_the_cli_is_one_person(
    anonymous: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    database = open_database(anonymous, audit_key=TEST_AUDIT_KEY)
    ctx = AppContext(db=database)
    bob_id, bob_token = make_user_token(anonymous, "bob", "admin")
    alice_id, alice_token = make_user_token(anonymous, "alice", "approver")
    asset_id = _asset(anonymous)
    try:
        with TestClient(create_app(ctx, background=False)) as client:
            answer = client.post(
                "/api/v1/exceptions",
                headers={"Authorization": f"Bearer {bob_token}"},
                json={
                    "advisory": "CVE-2026-1111",
                    "asset_id": asset_id,
                    "justification": "compensating control in front of it",
                    "expires_at": (now() + timedelta(days=30)).isoformat(),
                },
            )
            assert answer.status_code == 201, answer.text
            exception_id = answer.json()["id"]
    finally:
        database.dispose()

    monkeypatch.setenv("PATCHWARDEN_TOKEN", bob_token)
    code, _, err = cli(capsys, "exceptions", "approve", str(exception_id))
    assert code == 2
    assert "someone other than its requester" in err
    assert _exception(anonymous).status == "pending"

    monkeypatch.setenv("PATCHWARDEN_TOKEN", alice_token)
    code, _, err = cli(capsys, "exceptions", "approve", str(exception_id))
    assert code == 0, err
    decided = _exception(anonymous)
    assert (decided.status, decided.requested_by_user, decided.approved_by_user) == (
        "approved",
        bob_id,
        alice_id,
    )


def test_cli_permissions_are_the_apis(
    anonymous: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _admin, admin_token = make_user_token(anonymous, "root", "admin")
    _op, operator_token = make_user_token(anonymous, "olga", "operator")
    monkeypatch.setenv("PATCHWARDEN_TOKEN", admin_token)
    exception_id = _request_exception(capsys, _asset(anonymous))

    monkeypatch.setenv("PATCHWARDEN_TOKEN", operator_token)
    code, _, err = cli(capsys, "exceptions", "approve", str(exception_id))
    assert code == 2
    assert "olga (token tests) (operator) lacks the 'approve' permission" in err
    code, _, err = cli(
        capsys, "users", "create", "mallory", "--role", "admin", "--password", "p" * 16
    )
    assert code == 2
    assert "lacks the 'users:write' permission" in err

    monkeypatch.setenv("PATCHWARDEN_TOKEN", "pwt_1_not-the-secret")
    code, _, err = cli(capsys, "groups", "create", "db", "--filter", '{"tags_any": ["db"]}')
    assert code == 2
    assert "invalid API token (from PATCHWARDEN_TOKEN)" in err


def test_every_changing_command_needs_a_user(
    anonymous: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\ntarget_groups: [lab]\nrings:\n  - {name: lab, groups: [lab]}\n")
    inventory = tmp_path / "inv.txt"
    inventory.write_text("bash 5.2-1\n")
    for argv in (
        ["scan", "--inventory", str(inventory), "--ecosystem", "Debian:12", "--hostname", "h"],
        ["feeds", "import", str(spec)],
        ["groups", "create", "g", "--member", "1"],
        ["enroll", "create"],
        ["tokens", "create"],
        ["windows", "create", "w", "--rrule", "FREQ=DAILY", "--tz", "UTC", "--minutes", "60"],
        ["rollouts", "create", str(spec)],
        ["rollouts", "tick"],
        ["assets", "delete", "1"],
    ):
        code, _, err = cli(capsys, *argv)
        assert code == 2, argv
        assert "needs a signed-in patchwarden user" in err, (argv, err)
    # Reading needs only the database.
    assert cli(capsys, "assets", "list", "--json")[0] == 0
    assert cli(capsys, "exceptions", "list", "--json")[0] == 0


def test_login_whoami_logout(
    anonymous: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_user_token(anonymous, "carol", "approver")  # password "x" * 16
    credentials = Path(os.environ["PATCHWARDEN_CREDENTIALS_FILE"])

    monkeypatch.setattr("sys.stdin", io.StringIO("wrong password!!\n"))
    code, _, err = cli(capsys, "login", "carol")
    assert (code, err.splitlines()[0]) == (2, "error: wrong username or password")
    assert not credentials.exists()

    monkeypatch.setattr("sys.stdin", io.StringIO("x" * 16 + "\n"))
    code, out, err = cli(capsys, "login", "carol", "--json")
    assert code == 0, err
    assert json.loads(out)["username"] == "carol"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    stored = json.loads(credentials.read_text())
    assert len(stored) == 1

    code, out, _ = cli(capsys, "whoami", "--json")
    assert code == 0
    me = json.loads(out)
    assert me["role"] == "approver"
    assert "approve" in me["permissions"]
    assert me["source"].startswith("patchwarden login")

    code, out, _ = cli(capsys, "logout", "--json")
    assert (code, json.loads(out)) == (0, {"signed_out": "carol"})
    assert json.loads(credentials.read_text()) == {}
    database = open_database(anonymous, audit_key=TEST_AUDIT_KEY)
    try:
        with database.session() as session:
            carol = session.scalars(select(UserRow).where(UserRow.username == "carol")).one()
            tokens = session.scalars(select(ApiTokenRow).where(ApiTokenRow.user_id == carol.id))
            login_token = next(t for t in tokens if t.name.startswith("cli login"))
            assert login_token.revoked_at is not None
            actions = list(
                session.scalars(select(AuditEventRow.action).order_by(AuditEventRow.seq))
            )
    finally:
        database.dispose()
    # The failed attempt was recorded although the command failed.
    assert "auth.login_failed" in actions
    assert actions[-1] == "token.revoke"
    code, _, err = cli(capsys, "whoami")
    assert code == 2
    assert "not signed in" in err


def test_bootstrap_creates_only_the_first_admin(
    anonymous: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password-1\n"))
    code, out, err = cli(capsys, "bootstrap", "root", "--json")
    assert code == 0, err
    assert json.loads(out)["role"] == "admin"
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password-2\n"))
    code, _, err = cli(capsys, "bootstrap", "second")
    assert code == 2
    assert "already has users" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password-1\n"))
    assert cli(capsys, "login", "root")[0] == 0
    code, _, err = cli(capsys, "groups", "create", "db", "--filter", '{"tags_any": ["db"]}')
    assert code == 0, err


def test_a_scoped_token_mints_nothing_broader_from_the_cli(
    anonymous: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API's rule holds in the CLI: a token creates only tokens within its own
    scopes and lifetime."""
    make_user_token(anonymous, "root", "admin")
    database = open_database(anonymous, audit_key=TEST_AUDIT_KEY)
    try:
        with database.session() as session:
            root = session.scalars(select(UserRow).where(UserRow.username == "root")).one()
            parent, scoped = create_token(
                session,
                SYSTEM,
                root,
                name="narrow",
                scopes=["read", "tokens:self"],
                days=2,
                now=now(),
            )
            parent_expiry = parent.expires_at
    finally:
        database.dispose()
    monkeypatch.setenv("PATCHWARDEN_TOKEN", scoped)

    code, out, err = cli(capsys, "tokens", "create", "--name", "minted", "--json")
    assert code == 0, err
    minted = json.loads(out)
    assert set(minted["scopes"]) <= {"read", "tokens:self"}
    assert minted["expires_at"] <= parent_expiry.isoformat()

    code, _, err = cli(capsys, "tokens", "create", "--scope", "users:write")
    assert code == 2
    assert "cannot grant scopes it lacks: users:write" in err
    code, _, err = cli(capsys, "tokens", "create", "--days", "30")
    assert code == 2
    assert "cannot outlive the token that creates it" in err
    code, _, err = cli(
        capsys, "users", "create", "mallory", "--role", "admin", "--password", "p" * 16
    )
    assert code == 2
    assert "lacks the 'users:write' permission" in err


def test_script_packages_need_scripts_write(
    anonymous: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _operator, operator_token = make_user_token(anonymous, "olga", "operator")
    artifact = tmp_path / "tool.tar"
    artifact.write_bytes(b"not really a tarball")
    commands = tmp_path / "commands.json"
    commands.write_text(
        json.dumps(
            {
                "detect": ["true"],
                "install": ["true"],
                "verify": ["true"],
                "uninstall": ["true"],
            }
        )
    )
    monkeypatch.setenv("PATCHWARDEN_TOKEN", operator_token)
    argv = ["scripts", "register", "tool", "1.0", "--artifact", str(artifact)]
    code, _, err = cli(capsys, *argv, "--commands", str(commands))
    assert code == 2
    assert "lacks the 'scripts:write' permission" in err
