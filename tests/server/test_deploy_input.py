"""Deployment input through both edges: ``patchwarden rollouts create`` / ``scripts
register`` / ``rollouts emergency-profile`` and the API, on SQLite and PostgreSQL.

The same mistake gives the same message (the field's path and what was expected) —
HTTP 422 or 409 with the JSON error, CLI exit 2 with one line — and nothing is written.
Hostile documents (billion laughs, deep nesting, huge files, YAML tags) are refused
before they cost more than their own size.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from patchwarden.cli.main import run
from patchwarden.server.context import AppContext
from patchwarden.server.services import identity
from patchwarden.store.audit import SYSTEM, Actor
from patchwarden.store.groups import create_group
from patchwarden.store.models import RolloutRow, ScriptPackageRow
from tests.server.conftest import SignedIn, sign_in

GOOD_SPEC: dict[str, Any] = {
    "name": "november",
    "target_groups": ["lab"],
    "advisories": ["DSA-0001-1"],
    "rings": [{"name": "lab", "concurrency": 1, "error_budget": "1"}],
}
COMMANDS = {
    "detect": ["/opt/vendor/bin/agent", "--version"],
    "install": ["/bin/sh", "{artifact}"],
    "verify": ["/opt/vendor/bin/agent", "--selftest"],
    "uninstall": ["/opt/vendor/uninstall"],
}


@pytest.fixture
def cli_home(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI on the test database (the same one ``ctx`` serves)."""
    monkeypatch.setenv("PATCHWARDEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATCHWARDEN_DATABASE_URL", db_url)
    monkeypatch.setenv("PATCHWARDEN_CREDENTIALS_FILE", str(tmp_path / "credentials.json"))
    return tmp_path


def sign_cli_in(ctx: AppContext, role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the CLI act as the fixture user of ``role`` (PATCHWARDEN_TOKEN)."""
    with ctx.db.session() as session:
        user = identity.get_user(session, role)
        _row, token = identity.create_token(
            session, SYSTEM, user, name="cli", scopes=None, days=1, now=datetime.now(UTC)
        )
    monkeypatch.setenv("PATCHWARDEN_TOKEN", token)


@dataclass
class Edges:
    """One user at both edges: the CLI (on the test database) and the API."""

    ctx: AppContext
    api: SignedIn
    folder: Path
    capsys: pytest.CaptureFixture[str]

    def cli(self, *argv: str) -> tuple[int, str, str]:
        code = run(list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def as_operator(
    ctx: AppContext,
    cli_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Edges]:
    with ctx.db.session() as session:
        create_group(session, Actor("test", "system"), name="lab", now=ctx.now())
    sign_cli_in(ctx, "operator", monkeypatch)
    signed = sign_in(ctx, "operator")
    with signed.client:
        yield Edges(ctx, signed, cli_home, capsys)


@pytest.fixture
def as_admin(
    ctx: AppContext,
    cli_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Edges]:
    sign_cli_in(ctx, "admin", monkeypatch)
    signed = sign_in(ctx, "admin")
    with signed.client:
        yield Edges(ctx, signed, cli_home, capsys)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    """The CLI's one error line, without its ``error: `` label."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert "internal error" not in err
    return lines[0].removeprefix("error: ")


def rollouts(ctx: AppContext) -> int:
    with ctx.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(RolloutRow)) or 0)


# ---------------------------------------------------------------- rollout specs


BAD_SPECS: list[tuple[dict[str, Any], str]] = [
    ({"rings": 5}, "rings: Input should be a valid list, got 5"),
    ({"advisories": [["x"]]}, "advisories[0]: Input should be a valid string, got ['x']"),
    ({"name": [1]}, "name: Input should be a valid string, got [1]"),
    ({"name": "ok\u202etxt.exe"}, "name: should be plain text: character U+202E"),
    ({"target_groups": "lab"}, "target_groups: Input should be a valid list, got 'lab'"),
    ({"emergency": "yes"}, "emergency: Input should be a valid boolean, got 'yes'"),
    (
        {"rings": [{"name": "lab", "concurrency": "soon"}]},
        "rings[0].concurrency: should be a whole number ≥ 1 or a percentage like '10%', got 'soon'",
    ),
    (
        {"rings": [{"name": "lab", "percent": 0}]},
        "rings[0].percent: Input should be greater than 0, got 0",
    ),
    ({"rings": [{"nmae": "lab"}]}, "rings[0].nmae: unknown key (known: name, groups"),
    ({"dependencies": [["lab"]]}, "dependencies[0]: List should have at least 2 items"),
    (
        {"policy": {"claim_deadline_minutes": "soon"}},
        "policy.claim_deadline_minutes: should be a whole number from 1 to 43200, got 'soon'",
    ),
    ({"policy": {"lease": 5}}, "policy: unknown key(s) lease"),
    (
        {"policy": {"checks": [{"type": "systemd", "unit": "x; reboot"}]}},
        "policy.checks[0].unit: should be a systemd unit name",
    ),
    ({"advisories": ["x"] * 10_001}, "advisories: List should have at most 10000 items"),
]


def test_a_bad_spec_gets_the_same_error_from_the_cli_and_the_api(as_operator: Edges) -> None:
    path = as_operator.folder / "spec.yaml"
    api = as_operator.api
    for change, expected in BAD_SPECS:
        spec = {**GOOD_SPEC, **change}
        path.write_text(yaml.safe_dump(spec), encoding="utf-8")

        code, _, err = as_operator.cli("rollouts", "create", str(path))
        assert code == 2, change
        from_cli = error_line(err)
        assert from_cli.startswith(f"{path}: {expected}"), from_cli

        answer = api.client.post("/api/v1/rollouts", json=spec, headers=api.headers())
        assert answer.status_code == 422, answer.text
        body = answer.json()
        assert body["type"] == "ValidationFailed"
        assert body["error"].startswith(f"rollout spec: {expected}"), body["error"]
        # One validation: the same words after the source's name.
        assert from_cli.removeprefix(f"{path}: ") == body["error"].removeprefix("rollout spec: ")
    assert rollouts(as_operator.ctx) == 0


def test_a_good_spec_is_planned_through_both_edges(as_operator: Edges) -> None:
    path = as_operator.folder / "november.yaml"
    spec = {key: value for key, value in GOOD_SPEC.items() if key != "name"}
    path.write_text(yaml.safe_dump(spec) + "policy: {max_attempts: 1}\n", encoding="utf-8")
    code, out, err = as_operator.cli("rollouts", "create", str(path), "--json")
    assert code == 0, err
    created = json.loads(out)
    assert created["name"] == "november"  # the file's name when the spec has none
    assert created["policy"]["max_attempts"] == 1
    assert created["policy"]["claim_deadline_minutes"] == 240  # defaults are stored

    api = as_operator.api
    answer = api.client.post("/api/v1/rollouts", json=GOOD_SPEC, headers=api.headers())
    assert answer.status_code == 201, answer.text
    assert answer.json()["rings"][0]["concurrency"] == 1
    assert rollouts(as_operator.ctx) == 2
    # The API documents the model it validates with.
    paths = api.client.get("/api/openapi.json").json()["paths"]
    schema = paths["/api/v1/rollouts"]["post"]["requestBody"]["content"]["application/json"]
    assert {"name", "rings", "policy"} <= set(schema["schema"]["properties"])
    assert "$ref" not in json.dumps(schema)


BILLION_LAUGHS = """\
windows:
  - &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
  - &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
  - &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
  - &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
  - &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
  - &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
  - &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
  - &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
  - &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
name: *i
target_groups: [lab]
advisories: [DSA-0001-1]
rings: [{name: lab}]
"""


def _limit_memory() -> None:  # runs in the child before exec
    limit = 1536 * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_billion_laughs_is_refused_quickly_with_bounded_memory(cli_home: Path, db_url: str) -> None:
    """1.1 KB standing for 10^9 strings: refused at its first anchor, in a process
    whose address space is capped at 1.5 GiB (expanding it needs gigabytes)."""
    path = cli_home / "laughs.yaml"
    path.write_text(BILLION_LAUGHS, encoding="utf-8")
    assert path.stat().st_size < 2048
    env = {**os.environ, "PATCHWARDEN_DATABASE_URL": db_url, "COLUMNS": "500"}
    env.pop("PATCHWARDEN_DEBUG", None)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "patchwarden", "rollouts", "create", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        preexec_fn=_limit_memory,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    assert f"error: {path}, line 2: YAML anchors (&a) are not accepted" in result.stderr
    assert "hint:" in result.stderr
    assert elapsed < 30, f"took {elapsed:.1f}s"


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "deep.yaml",
            "name: x\nrings: " + "[" * 40 + "]" * 40 + "\n",
            "line 2: nested more than 32",
        ),
        ("deeper.yaml", "name: x\nrings: " + "[" * 50_000 + "]" * 50_000 + "\n", "line 2: "),
        ("deep.json", '{"rings": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested more than 32"),
        (
            "alias.yaml",
            "name: x\ntarget_groups: [lab]\nrings: [{name: a}]\nadvisories: *x\n",
            "line 4: YAML aliases",
        ),
        ("tag.yaml", "name: !!python/object/apply:os.system [id]\n", "line 1: the YAML tag"),
        (
            "binary.yaml",
            "name: !!binary aGVsbG8=\n",
            "line 1: the YAML tag tag:yaml.org,2002:binary",
        ),
        ("merge.yaml", "<<: {name: x}\n", "line 1: merge keys (<<) are not accepted"),
        ("twice.yaml", "name: a\nname: b\n", "line 2: the key 'name' appears twice"),
        ("twice.json", '{"name": "a", "name": "b"}', "the key 'name' appears twice"),
        ("nan.json", '{"name": "a", "rings": [{"percent": NaN}]}', "NaN is not accepted"),
        ("long.json", '{"soak": ' + "9" * 5000 + "}", "not valid JSON"),
        ("list.yaml", "- name: x\n", "a rollout spec must be an object"),
        ("broken.yaml", "name: [x\n", "line 2"),
        ("latin1.json", "", "is not UTF-8 text"),
    ],
)
def test_hostile_or_broken_documents_are_refused_with_their_line(
    cli_home: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, expected: str
) -> None:
    path = cli_home / name
    if name == "latin1.json":
        path.write_bytes('{"name": "Müller"}'.encode("latin-1"))
    else:
        path.write_text(text, encoding="utf-8")
    started = time.monotonic()
    code, _, err = cli(capsys, "rollouts", "create", str(path))
    assert code == 2
    assert error_line(err).startswith(f"{path}"), err
    assert expected in error_line(err), err
    assert time.monotonic() - started < 10


def test_a_huge_file_is_refused_before_parsing(
    cli_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cli_home / "huge.yaml"
    with path.open("w", encoding="utf-8") as handle:
        handle.write("name: x\nadvisories:\n")
        for n in range(100_000):
            handle.write(f"  - DSA-{n}-1\n")
    assert path.stat().st_size > 1024 * 1024
    started = time.monotonic()
    code, _, err = cli(capsys, "rollouts", "create", str(path))
    assert code == 2
    assert error_line(err) == f"{path} is larger than 1024 KiB; refusing to parse it"
    assert time.monotonic() - started < 5


def test_deep_and_huge_specs_over_the_api_are_refused(as_operator: Edges) -> None:
    """JSON has no aliases, but a body can still nest deeply or list a lot: a 4xx with
    a message, never a 5xx, and nothing created."""
    api = as_operator.api
    headers = {**api.headers(), "Content-Type": "application/json"}
    nested = json.loads("[" * 500 + "]" * 500)
    deep = json.dumps({**GOOD_SPEC, "policy": {"checks": [nested]}})
    answer = api.client.post("/api/v1/rollouts", content=deep, headers=headers)
    assert answer.status_code == 422
    assert answer.json()["error"].startswith(
        "rollout spec: policy.checks[0]: should be an object, got [[[["
    )
    deeper = '{"name": ' + "[" * 100_000 + "]" * 100_000 + "}"
    answer = api.client.post("/api/v1/rollouts", content=deeper, headers=headers)
    assert 400 <= answer.status_code < 500, answer.text
    started = time.monotonic()
    # Over the body limit (PATCHWARDEN_MAX_JSON_BYTES, 1 MiB): refused before parsing.
    huge = {**GOOD_SPEC, "advisories": [f"DSA-{n}-1" for n in range(500_000)]}
    answer = api.client.post("/api/v1/rollouts", json=huge, headers=api.headers())
    assert answer.status_code == 413
    # Within it, but longer than a spec may list.
    many = {**GOOD_SPEC, "advisories": [f"DSA-{n}-1" for n in range(20_000)]}
    answer = api.client.post("/api/v1/rollouts", json=many, headers=api.headers())
    assert answer.status_code == 422
    assert answer.json()["error"] == (
        "rollout spec: advisories: List should have at most 10000 items after validation, "
        "not 20000, got ['DSA-0-1', 'DSA-1-1', 'DSA-2-1', 'DSA-3-1', ...]"
    )
    assert time.monotonic() - started < 30
    assert rollouts(as_operator.ctx) == 0


# ----------------------------------------------------------- the emergency profile


def test_emergency_profile_errors_match_through_both_edges(as_operator: Edges) -> None:
    api = as_operator.api
    for profile, expected in (
        ({"enabled": "yes"}, "enabled: Input should be a valid boolean, got 'yes'"),
        ({"rings": [{"groups": ["lab"]}]}, "rings[0].groups: emergency rings take hosts by"),
        ({"policy": {"max_attempts": "2"}}, "policy.max_attempts: should be a whole number"),
        ({"rings": 5}, "rings: Input should be a valid list, got 5"),
    ):
        path = as_operator.folder / "emergency.json"
        path.write_text(json.dumps(profile), encoding="utf-8")
        code, _, err = as_operator.cli("rollouts", "emergency-profile", "--file", str(path))
        assert code == 2
        assert error_line(err).startswith(f"emergency profile: {expected}"), err
        answer = api.client.put("/api/v1/policies/emergency", json=profile, headers=api.headers())
        assert answer.status_code == 422
        assert answer.json()["error"] == error_line(err)
    # Nothing was stored: the profile is still the default.
    assert api.client.get("/api/v1/policies/emergency").json() == {"enabled": False}


# -------------------------------------------------------------- script packages

BAD_NAMES_AND_VERSIONS = [
    ("../../etc/cron.d/x", "1.0", "name: should be 1-120 letters, digits"),
    ("", "1.0", "name: should be 1-120 letters, digits"),
    ("vendor\x01agent", "1.0", "name: should be 1-120 letters"),
    ("vendor\u202eagent", "1.0", "name: should be 1-120 letters"),
    ("vendor agent", "1.0", "name: should be 1-120 letters"),
    ("-rf", "1.0", "name: should be 1-120 letters"),
    ("x" * 5000, "1.0", "name: should be 1-120 letters"),
    ("vendor\n", "1.0", "name: should be 1-120 letters"),
    ("vendor-agent", "", "version: should be 1-60 letters"),
    ("vendor-agent", "1.0/../../x", "version: should be 1-60 letters"),
    ("vendor-agent", "1" * 61, "version: should be 1-60 letters"),
    ("vendor-agent", "1.0\x00", "version: should be 1-60 letters"),
]


def test_bad_script_package_names_and_versions_are_refused_through_both_edges(
    as_admin: Edges,
) -> None:
    for name, version, expected in BAD_NAMES_AND_VERSIONS:
        _refused_both_ways(as_admin, name, version, expected)


def _refused_both_ways(edges: Edges, name: str, version: str, expected: str) -> None:
    artifact, commands = _script_files(edges.folder)
    code, _, err = edges.cli(
        "scripts", "register", "--artifact", str(artifact), "--commands", str(commands),
        "--", name, version,
    )  # fmt: skip
    assert code == 2, (name, version, err)
    from_cli = error_line(err)
    assert from_cli.startswith(f"script package: {expected}"), from_cli
    api = edges.api
    answer = api.client.post(
        "/api/v1/script-packages", json=_upload(name, version, artifact), headers=api.headers()
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == from_cli
    with edges.ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(ScriptPackageRow)) == 0


def test_a_duplicate_script_package_is_a_conflict_without_sql(as_admin: Edges) -> None:
    artifact, commands = _script_files(as_admin.folder)
    argv = ["scripts", "register", "vendor-agent", "7.2.1", "--artifact", str(artifact)]
    argv += ["--commands", str(commands)]
    code, _, err = as_admin.cli(*argv)
    assert code == 0, err
    code, _, err = as_admin.cli(*argv)
    assert code == 2
    assert error_line(err) == "script package vendor-agent 7.2.1 is already registered"
    api = as_admin.api
    answer = api.client.post(
        "/api/v1/script-packages",
        json=_upload("vendor-agent", "7.2.1", artifact),
        headers=api.headers(),
    )
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"] == "script package vendor-agent 7.2.1 is already registered"
    assert "INSERT" not in answer.text
    assert "UNIQUE" not in answer.text.upper()
    newer = api.client.post(
        "/api/v1/script-packages",
        json=_upload("vendor-agent", "7.2.2", artifact),
        headers=api.headers(),
    )
    assert newer.status_code == 201, newer.text
    with as_admin.ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(ScriptPackageRow)) == 2


def test_script_commands_are_checked_the_same_way(as_admin: Edges) -> None:
    artifact, commands = _script_files(as_admin.folder)
    commands.write_text(yaml.safe_dump({**COMMANDS, "install": "/bin/sh {artifact}"}))
    code, _, err = as_admin.cli(
        "scripts", "register", "vendor", "1", "--artifact", str(artifact),
        "--commands", str(commands),
    )  # fmt: skip
    assert code == 2
    expected = "script package: commands.install: Input should be a valid list"
    assert error_line(err).startswith(expected)
    body = _upload("vendor", "1", artifact)
    body["commands"]["install"] = "/bin/sh {artifact}"
    api = as_admin.api
    answer = api.client.post("/api/v1/script-packages", json=body, headers=api.headers())
    assert answer.json()["error"] == error_line(err)


def _script_files(folder: Path) -> tuple[Path, Path]:
    artifact = folder / "installer.sh"
    artifact.write_bytes(b"#!/bin/sh\nexit 0\n")
    commands = folder / "commands.yaml"
    commands.write_text(yaml.safe_dump(COMMANDS), encoding="utf-8")
    return artifact, commands


def _upload(name: str, version: str, artifact: Path) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "artifact_base64": base64.b64encode(artifact.read_bytes()).decode(),
        "commands": {key: list(argv) for key, argv in COMMANDS.items()},
    }
