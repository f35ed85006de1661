"""The audit log: every mutation lands in it, the keyed chain detects tampering, the
database refuses edits, checkpoints outside the database catch a chain cut back or
rewritten, and the CLI and the API verify it.

The attacks are played as someone with the database owner's rights but without the
audit key: they switch the refusal triggers off, rewrite rows, and recompute hashes
with anything they can compute (the unkeyed sha256 of old, a key of their own)."""

from __future__ import annotations

import hashlib
import json
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import Connection, func, select, text
from sqlalchemy.exc import DBAPIError

from patchwarden.cli.main import run
from patchwarden.core.errors import ConfigError
from patchwarden.server.app import create_app
from patchwarden.server.context import AppContext, ServerConfig
from patchwarden.settings import Settings
from patchwarden.store import audit
from patchwarden.store.audit import GENESIS, Actor, AuditKey
from patchwarden.store.db import Database, alembic_config, make_engine, open_database, upgrade
from patchwarden.store.models import AssetGroupRow, AuditEventRow, AuditHeadRow, UtcDateTime
from tests.server.conftest import SignedIn, sign_in
from tests.support import TEST_AUDIT_KEY


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


# ------------------------------------------------------------------ the attacker's tools


def unkeyed_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """The chain's function before it was keyed: anyone can compute it."""
    canonical = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(prev_hash.encode() + canonical).hexdigest()


def with_key(key: AuditKey) -> Callable[[str, dict[str, Any]], str]:
    """The keyed function with a key of the attacker's choosing."""
    return key.event_mac


@contextmanager
def owner_rights(db: Database) -> Iterator[Connection]:
    """A transaction in which the refusal triggers are off, as the database owner can do
    (switched back on before it commits: the PostgreSQL database is shared by later
    tests; each SQLite test has its own file)."""
    postgres = db.engine.dialect.name == "postgresql"
    with db.engine.begin() as conn:
        if postgres:
            for table in ("audit_event", "audit_head"):
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            for name in ("audit_event_no_update", "audit_event_no_delete", "audit_head_no_delete"):
                conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
        yield conn
        if postgres:
            for table in ("audit_event", "audit_head"):
                conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


def chain(db: Database) -> list[dict[str, Any]]:
    with db.session() as session:
        rows = session.scalars(select(AuditEventRow).order_by(AuditEventRow.seq))
        return [audit.event_json(row) for row in rows]


def rehash(
    db: Database,
    *,
    edit_seq: int | None,
    start_seq: int,
    mac: Callable[[str, dict[str, Any]], str],
    key_id: str | None = None,
) -> None:
    """Change event ``edit_seq``'s actor to mallory, recompute every hash from
    ``start_seq`` on with ``mac`` (setting ``key_id`` when given), move the head along."""
    events = chain(db)
    prev = GENESIS if start_seq == 1 else events[start_seq - 2]["hash"]
    changes = []
    for event in events[start_seq - 1 :]:
        fields = {k: v for k, v in event.items() if k not in ("key_id", "prev_hash", "hash")}
        if event["seq"] == edit_seq:
            fields["actor"] = "mallory"
        digest = mac(prev, fields)
        changes.append(
            {"seq": event["seq"], "actor": fields["actor"], "prev": prev, "hash": digest}
        )
        prev = digest
    statement = text(
        "UPDATE audit_event SET actor = :actor, prev_hash = :prev, hash = :hash WHERE seq = :seq"
        if key_id is None
        else "UPDATE audit_event SET actor = :actor, prev_hash = :prev, hash = :hash, "
        "key_id = :key_id WHERE seq = :seq"
    )
    with owner_rights(db) as conn:
        for change in changes:
            conn.execute(statement, {**change, "key_id": key_id})
        conn.execute(text("UPDATE audit_head SET last_hash = :h WHERE id = 1"), {"h": prev})


def rewind(db: Database, keep: int) -> None:
    """Delete every event after ``keep`` and rewind the head to match."""
    with owner_rights(db) as conn:
        conn.execute(text("DELETE FROM audit_event WHERE seq > :keep"), {"keep": keep})
        conn.execute(
            text(
                "UPDATE audit_head SET seq = :keep, "
                "last_hash = (SELECT hash FROM audit_event WHERE seq = :keep) WHERE id = 1"
            ),
            {"keep": keep},
        )


def write_events(ctx: AppContext, count: int) -> int:
    """Append ``count`` events; the number of the last."""
    with ctx.db.session() as session:
        for n in range(count):
            last = audit.record(
                session, Actor("t", "system"), f"test.{n}", now=ctx.now(), after={"n": n}
            )
    return last.seq


@pytest.fixture
def cli(cli_env: str, tmp_path: Path) -> Path:
    """The signed-in CLI on the test database (with the test audit key); a checkpoint
    file path."""
    return tmp_path / "outside" / "checkpoints.jsonl"


# ------------------------------------------------------------------ keyed chain


def test_events_are_hmacs_under_the_key_not_plain_sha256(ctx: AppContext) -> None:
    with ctx.db.session() as session:
        row = audit.record(session, Actor("t", "system"), "test.x", now=ctx.now())
    event = chain(ctx.db)[-1]
    fields = {k: v for k, v in event.items() if k not in ("key_id", "prev_hash", "hash")}
    assert row.key_id == event["key_id"] == TEST_AUDIT_KEY.key_id
    assert event["hash"] == TEST_AUDIT_KEY.event_mac(event["prev_hash"], fields)
    assert event["hash"] != unkeyed_hash(event["prev_hash"], fields)
    with ctx.db.session() as session:
        assert audit.verify(session).ok


@pytest.mark.parametrize("clear_key_id", [False, True], ids=["key-id-kept", "key-id-cleared"])
def test_edited_event_rehashed_with_the_unkeyed_function_fails_verify(
    ctx: AppContext, cli: Path, capsys: pytest.CaptureFixture[str], clear_key_id: bool
) -> None:
    last = write_events(ctx, 6)
    edited = last - 3
    rehash(
        ctx.db,
        edit_seq=edited,
        start_seq=edited,
        mac=unkeyed_hash,
        key_id="" if clear_key_id else None,
    )
    assert chain(ctx.db)[edited - 1]["actor"] == "mallory"
    # No checkpoint needed: the key alone shows it.
    assert run(["audit", "verify", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False
    assert result["bad_seq"] == edited
    if clear_key_id:
        assert "rewritten with the unkeyed hash function" in result["problem"]
    else:
        assert f"event {edited} was altered" in result["problem"]


def test_chain_rehashed_with_a_wrong_key_fails_verify(ctx: AppContext) -> None:
    last = write_events(ctx, 4)
    mallory = AuditKey.generate()
    # Under our key id the MACs do not match (the unkeyed code caught this one too)...
    rehash(ctx.db, edit_seq=last - 1, start_seq=last - 1, mac=with_key(mallory))
    with ctx.db.session() as session:
        result = audit.verify(session)
    assert (result.ok, result.bad_seq) == (False, last - 1)
    assert "altered" in result.problem
    # ... and under the attacker's own key id they are refused as another key's.
    rehash(ctx.db, edit_seq=None, start_seq=last - 1, mac=with_key(mallory), key_id=mallory.key_id)
    with ctx.db.session() as session:
        result = audit.verify(session)
    assert (result.ok, result.bad_seq) == (False, last - 1)
    assert f"signed with audit key {mallory.key_id}" in result.problem


# ------------------------------------------------------------------ checkpoints


def test_chain_cut_back_and_head_rewound_fails_verify_with_a_checkpoint(
    ctx: AppContext, cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    last = write_events(ctx, 5)
    assert run(["audit", "checkpoint", "--file", str(cli)]) == 0
    assert f"checkpoint of event {last}" in capsys.readouterr().out
    assert stat.S_IMODE(cli.stat().st_mode) == 0o600

    rewind(ctx.db, keep=last - 3)
    # The database alone cannot tell: the remaining chain and its head agree.
    assert run(["audit", "verify"]) == 0
    capsys.readouterr()
    assert run(["audit", "verify", "--checkpoint", str(cli)]) == 1
    err = capsys.readouterr().err
    assert f"checkpoint 1 (event {last}," in err
    assert f"no longer holds event {last}" in err
    assert f"ends at event {last - 3}" in err
    assert "rewound" in err

    # New events fill the numbers again; they cannot reproduce the checkpointed hash.
    write_events(ctx, 3)
    with ctx.db.session() as session:
        assert audit.verify(session).ok
    assert run(["audit", "verify", "--checkpoint", str(cli), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["bad_seq"] == last
    assert "the chain was rewritten" in result["problem"]


def test_whole_chain_rewritten_unkeyed_passes_alone_but_not_against_a_checkpoint(
    ctx: AppContext, cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    last = write_events(ctx, 3)
    assert run(["audit", "checkpoint", "--file", str(cli)]) == 0
    rehash(ctx.db, edit_seq=2, start_seq=1, mac=unkeyed_hash, key_id="")
    with ctx.db.session() as session:
        alone = audit.verify(session)
    # Without an anchor, a fully unkeyed chain looks like events from before keying.
    assert alone.ok
    assert alone.legacy_events == last
    capsys.readouterr()
    assert run(["audit", "verify", "--checkpoint", str(cli)]) == 1
    assert "the chain was rewritten" in capsys.readouterr().err


def test_edited_or_forged_checkpoints_fail(
    ctx: AppContext, cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_events(ctx, 2)
    assert run(["audit", "checkpoint", "--file", str(cli)]) == 0
    genuine = json.loads(cli.read_text())
    assert set(genuine) == {"seq", "hash", "at", "key_id", "mac"}
    assert genuine["key_id"] == TEST_AUDIT_KEY.key_id
    write_events(ctx, 1)
    assert run(["audit", "checkpoint", "--file", str(cli)]) == 0
    capsys.readouterr()
    assert run(["audit", "verify", "--checkpoint", str(cli), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoints"] == 2

    mallory = AuditKey.generate()
    moved = {**genuine, "seq": genuine["seq"] - 1}
    own = {k: v for k, v in genuine.items() if k != "mac"}
    forged_ours = {**own, "mac": mallory.checkpoint_mac(own)}
    own_key = {**own, "key_id": mallory.key_id}
    forged_own = {**own_key, "mac": mallory.checkpoint_mac(own_key)}
    cases = [
        (moved, "signature does not match"),
        (forged_ours, "signature does not match"),
        (forged_own, f"signed with audit key {mallory.key_id}"),
        ("not json {", "is not a checkpoint record"),
        ({**genuine, "seq": "7"}, "is not a checkpoint record"),
    ]
    for n, (line, expected) in enumerate(cases):
        tampered = cli.with_name(f"tampered-{n}.jsonl")
        text_line = line if isinstance(line, str) else json.dumps(line)
        # The forged line second: the genuine first line is checked and passes.
        tampered.write_text(cli.read_text().splitlines()[0] + "\n" + text_line + "\n")
        assert run(["audit", "verify", "--checkpoint", str(tampered)]) == 1, expected
        err = capsys.readouterr().err
        assert "checkpoint 2" in err
        assert expected in err

    assert run(["audit", "verify", "--checkpoint", str(cli.with_name("missing"))]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_checkpoint_command_verifies_since_the_last_checkpoint_before_writing(
    ctx: AppContext, cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_events(ctx, 2)
    assert run(["audit", "checkpoint", "--file", str(cli), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["written"]["seq"] == first["verified"]["events"]
    assert run(["audit", "checkpoint", "--file", str(cli)]) == 0
    assert "nothing new to checkpoint" in capsys.readouterr().out
    assert len(cli.read_text().splitlines()) == 1

    last = write_events(ctx, 2)
    rehash(ctx.db, edit_seq=last, start_seq=last, mac=unkeyed_hash)
    before = cli.read_text()
    assert run(["audit", "checkpoint", "--file", str(cli)]) == 1
    err = capsys.readouterr().err
    assert "no checkpoint written" in err
    assert f"event {last} was altered" in err
    assert cli.read_text() == before  # a tampered chain is never anchored

    # A checkpoint file whose last line was edited is not extended either.
    lines = before.splitlines()
    cli.write_text(lines[0].replace('"seq":', '"seq":1', 1) + "\n")
    assert run(["audit", "checkpoint", "--file", str(cli)]) == 1
    assert "the last checkpoint in" in capsys.readouterr().err


def test_server_writes_checkpoints_and_the_api_checks_them(ctx: AppContext, tmp_path: Path) -> None:
    path = tmp_path / "server-checkpoints.jsonl"
    ctx.config = ServerConfig(
        orchestrator_interval=0.05,
        audit_checkpoint_file=path,
        audit_checkpoint_interval=0.01,
    )
    write_events(ctx, 2)
    with TestClient(create_app(ctx)):
        deadline = time.monotonic() + 20
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    (line,) = path.read_text().splitlines()  # the clock stood still: one checkpoint
    with ctx.db.session() as session:
        head = session.get(AuditHeadRow, 1)
        assert head is not None
        assert json.loads(line)["seq"] == head.seq
        assert audit.verify(session, checkpoints=[line]).checkpoints == 1

    auditor = sign_in(ctx, "auditor")
    with auditor.client:
        answer = auditor.client.get("/api/v1/audit/verify")
        assert answer.status_code == 200
        assert answer.json()["ok"] is True
        assert answer.json()["checkpoints"] == 1
        rewind(ctx.db, keep=1)
        answer = auditor.client.get("/api/v1/audit/verify")
        assert answer.status_code == 200
        assert answer.json()["ok"] is False
        assert "rewound" in answer.json()["problem"]


# ------------------------------------------------------------------ refusals


def test_database_refuses_truncate_and_removing_the_head(ctx: AppContext) -> None:
    write_events(ctx, 1)
    if ctx.db.engine.dialect.name == "postgresql":
        statements = {
            "TRUNCATE audit_event": "audit_event is append-only",
            "TRUNCATE audit_head": "audit_head cannot be removed",
            "TRUNCATE audit_event, audit_head": "append-only",
            "DELETE FROM audit_head": "audit_head cannot be removed",
        }
    else:  # SQLite has no TRUNCATE: a DELETE without WHERE is its counterpart
        statements = {
            "DELETE FROM audit_event": "audit_event is append-only",
            "DELETE FROM audit_head": "audit_head cannot be removed",
        }
    for statement, message in statements.items():
        with pytest.raises(DBAPIError) as caught, ctx.db.engine.begin() as conn:
            conn.execute(text(statement))
        assert message in str(caught.value), statement
    with ctx.db.session() as session:
        assert audit.verify(session).ok
        assert session.scalar(select(func.count()).select_from(AuditEventRow))


# ------------------------------------------------------------------ the key


def test_key_file_is_created_once_private_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PATCHWARDEN_AUDIT_KEY")
    monkeypatch.setenv("PATCHWARDEN_HOME", str(tmp_path / "home"))
    settings = Settings()
    with pytest.raises(ConfigError) as missing:
        settings.load_audit_key()
    assert f"{tmp_path / 'home' / 'audit.key'} does not exist" in missing.value.message
    assert "PATCHWARDEN_AUDIT_KEY" in str(missing.value.hint)

    created = settings.load_audit_key(create=True)
    path = settings.audit_key_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == created.text() + "\n"
    assert len(created.secret) == 32
    assert settings.load_audit_key(create=True) == created
    assert [p.name for p in path.parent.iterdir()] == ["audit.key"]  # no temporary left

    path.chmod(0o644)
    with pytest.raises(ConfigError) as loose:
        settings.load_audit_key()
    assert "accessible to other users" in loose.value.message
    assert loose.value.hint == f"chmod 600 {path}"

    monkeypatch.setenv("PATCHWARDEN_AUDIT_KEY", "00" * 31)
    with pytest.raises(ConfigError) as short:
        Settings().load_audit_key()
    assert "PATCHWARDEN_AUDIT_KEY is not 64 hexadecimal digits" in short.value.message
    monkeypatch.setenv("PATCHWARDEN_AUDIT_KEY", created.text())
    assert Settings().load_audit_key() == created
    assert created.text() not in repr(created) + repr(Settings())


def test_db_upgrade_creates_the_key_and_a_worker_without_one_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PATCHWARDEN_AUDIT_KEY")
    monkeypatch.setenv("PATCHWARDEN_HOME", str(tmp_path / "home"))
    assert run(["report-worker"]) == 2
    err = capsys.readouterr().err
    assert "no audit key" in err
    assert "Traceback" not in err
    assert not (tmp_path / "home" / "audit.key").exists()
    assert run(["db", "upgrade"]) == 0
    assert (tmp_path / "home" / "audit.key").exists()


def test_a_process_with_another_key_cannot_write_or_pass_verification(
    ctx: AppContext, cli: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_events(ctx, 1)
    other = AuditKey.generate()
    monkeypatch.setenv("PATCHWARDEN_AUDIT_KEY", other.text())
    assert run(["groups", "create", "web", "--filter", '{"tags_any": ["web"]}']) == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert f"keyed with audit key {TEST_AUDIT_KEY.key_id}" in err
    assert f"this process has key {other.key_id}" in err
    with ctx.db.session() as session:  # nothing half-written
        assert session.scalars(select(AssetGroupRow)).first() is None
    assert run(["audit", "verify"]) == 1
    assert f"not with this machine's key {other.key_id}" in capsys.readouterr().err

    keyless = Database(ctx.db.engine)
    with pytest.raises(ConfigError, match="no audit key"), keyless.session() as session:
        audit.record(session, Actor("t", "system"), "test.x", now=ctx.now())


# ------------------------------------------------------------------ upgrade


@pytest.fixture(params=["sqlite", "postgres"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own (the upgrade test migrates it step by step)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'legacy.db'}"
        return
    base: str = request.getfixturevalue("postgres_url")
    name = f"pw_test_legacy_{uuid.uuid4().hex[:12]}"
    dsn = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_keeps_events_written_before_the_key_verifiable(unmigrated_url: str) -> None:
    engine = make_engine(unmigrated_url)
    before_keys = ScriptDirectory.from_config(alembic_config(engine)).get_revision("0012")
    assert before_keys is not None
    upgrade(engine, str(before_keys.down_revision))
    # Events as the unkeyed code wrote them, in the columns that schema has.
    legacy = sa.table(
        "audit_event",
        *(sa.column(n) for n in ("seq", "actor", "actor_type", "action", "target_type")),
        *(sa.column(n) for n in ("target_id", "ip", "prev_hash", "hash")),
        sa.column("at", UtcDateTime()),
        sa.column("before", sa.JSON()),
        sa.column("after", sa.JSON()),
    )
    prev, at = GENESIS, datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    with engine.begin() as conn:
        for seq in range(1, 4):
            fields: dict[str, Any] = {
                "seq": seq,
                "at": (at + timedelta(minutes=seq)).isoformat(),
                "actor": "admin",
                "actor_type": "user",
                "action": "group.create",
                "target_type": "group",
                "target_id": str(seq),
                "ip": "10.0.0.1",
                "before": None,
                "after": {"name": f"g{seq}"},
            }
            digest = unkeyed_hash(prev, fields)
            values = {**fields, "at": at + timedelta(minutes=seq), "prev_hash": prev}
            conn.execute(legacy.insert().values(**values, hash=digest))
            prev = digest
        conn.execute(text("UPDATE audit_head SET seq = 3, last_hash = :h"), {"h": prev})
    engine.dispose()

    db = open_database(unmigrated_url, migrate=True, audit_key=TEST_AUDIT_KEY)
    try:
        with db.session() as session:
            result = audit.verify(session)
        assert (result.ok, result.events, result.legacy_events) == (True, 3, 3)
        with db.session() as session:
            keyed = audit.record(
                session, Actor("t", "system"), "test.after-upgrade", now=at + timedelta(days=1)
            )
            assert keyed.prev_hash == prev
        with db.session() as session:
            result = audit.verify(session)
        assert (result.ok, result.events, result.legacy_events) == (True, 4, 3)

        # Rewriting a legacy event and its unkeyed successors breaks the first keyed one.
        rehash(db, edit_seq=2, start_seq=2, mac=unkeyed_hash)
        with owner_rights(db) as conn:  # and make the keyed event follow the new chain
            conn.execute(
                text(
                    "UPDATE audit_event SET prev_hash = (SELECT hash FROM audit_event e "
                    "WHERE e.seq = 3) WHERE seq = 4"
                )
            )
        with db.session() as session:
            result = audit.verify(session)
        assert not result.ok
        assert result.bad_seq == 4
        assert "altered" in result.problem
    finally:
        db.dispose()
