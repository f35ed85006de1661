"""The job contract (validation), the checks, the journal and the command runner —
everything of job execution that needs no package manager."""

from __future__ import annotations

import ast
import json
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest

import patchwarden.agent
from patchwarden.agent.backends.base import OUTPUT_LIMIT, run_command
from patchwarden.agent.checks import (
    CommandCheck,
    HttpCheck,
    SystemdCheck,
    TcpCheck,
    run_checks,
)
from patchwarden.agent.client import job_payload
from patchwarden.agent.jobs import ExecutionSettings, JobInvalid, execute_job, validate_job
from patchwarden.agent.journal import Journal, JournalEntry, JournalError
from patchwarden.core.errors import ConfigError
from patchwarden.server.api import agent as agent_api
from tests.agent.pkgrepo import LocalHttp

AGENT = Path(patchwarden.agent.__file__).parent
SHA = "a" * 64

#: The example of docs/agent-jobs.md.
EXAMPLE = {
    "job_id": 12,
    "attempt": 1,
    "kind": "install",
    "backend": "apt",
    "packages": [{"name": "openssl", "version": "3.0.11-1~deb12u2"}],
    "bandwidth_kbps": 0,
    "pre_hooks": ["snapshot"],
    "checks": [
        {"type": "systemd", "unit": "nginx"},
        {"type": "http", "url": "http://127.0.0.1:8080/health", "expect_status": 200},
        {"type": "tcp", "host": "127.0.0.1", "port": 5432},
        {"type": "command", "name": "app-selftest"},
    ],
    "check_timeout": 60,
    "check_retries": 3,
    "reboot": "if_required",
    "rollback_on_failure": True,
}
#: The script package example of docs/agent-jobs.md.
SCRIPT = {
    "name": "vendor-agent",
    "version": "7.2.1",
    "url": "https://patchwarden.example.org/api/agent/v1/script-packages/3/artifact",
    "sha256": SHA,
    "detect": ["/opt/vendor/bin/agent", "--version-is", "7.2.1"],
    "install": ["/bin/sh", "{artifact}", "--unattended"],
    "verify": ["/opt/vendor/bin/agent", "--selftest"],
    "uninstall": ["/opt/vendor/bin/uninstall", "--yes"],
}
ROLLBACK = {"job_id": 13, "attempt": 2, "kind": "rollback", "backend": "apt", "rollback_of": 12}


def documented_json(section: str) -> Any:
    """The first JSON example under ``section`` in docs/agent-jobs.md."""
    text = (AGENT.parents[2] / "docs" / "agent-jobs.md").read_text(encoding="utf-8")
    return json.loads(text.split(section, 1)[1].split("```json", 1)[1].split("```", 1)[0])


def test_the_documented_artifact_url_is_the_one_agents_fetch_from_the_servers_route() -> None:
    documented = documented_json("### Script packages")
    assert documented == {**SCRIPT, "sha256": documented["sha256"]}
    # The server names a package by id; the agent turns that into the artifact URL.
    wire = {key: value for key, value in documented.items() if key != "url"}
    made = job_payload(
        {"kind": "install", "script_package": {**wire, "id": 3}}, "https://patchwarden.example.org"
    )
    assert made["script_package"]["url"] == documented["url"]
    routes = {getattr(route, "path", "") for route in agent_api.router.routes}
    assert "/api/agent/v1/script-packages/{package_id}/artifact" in routes


def with_(**changes: Any) -> dict[str, Any]:
    payload = json.loads(json.dumps(EXAMPLE))
    for key, value in changes.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    return payload


def test_the_documented_example_is_valid() -> None:
    job = validate_job(EXAMPLE)
    assert (job.job_id, job.attempt, job.kind, job.backend) == (12, 1, "install", "apt")
    assert [(t.name, t.version) for t in job.packages] == [("openssl", "3.0.11-1~deb12u2")]
    assert job.checks == (
        SystemdCheck("nginx"),
        HttpCheck("http://127.0.0.1:8080/health", 200),
        TcpCheck("127.0.0.1", 5432),
        CommandCheck("app-selftest"),
    )
    assert [check.to_json() for check in job.checks] == EXAMPLE["checks"]
    assert job.pre_hooks == ("snapshot",)
    assert (job.reboot, job.rollback_on_failure) == ("if_required", True)
    dnf = {"name": "openssl-libs", "version": "1:3.0.7-27.el9"}
    minimal = validate_job(
        {"job_id": 1, "attempt": 1, "kind": "install", "backend": "dnf", "packages": [dnf]}
    )
    assert (minimal.check_timeout, minimal.check_retries, minimal.reboot) == (60, 3, "never")
    script = validate_job(with_(backend="script", packages=None, script_package=SCRIPT))
    assert script.script_package is not None
    assert script.script_package.install == ("/bin/sh", "{artifact}", "--unattended")
    assert script.script_package.to_json() == SCRIPT
    undo = validate_job(ROLLBACK)
    assert undo.rollback_of == 12


REFUSED = {
    "unknown field": (with_(command="rm -rf /"), "unknown field(s) command"),
    "unknown backend": (with_(backend="yum"), "backend must be one of apt, dnf, script"),
    "unknown kind": (with_(kind="exec"), "kind must be one of install, rollback"),
    "job_id as bool": (with_(job_id=True), "job_id must be an integer"),
    "job_id as text": (with_(job_id="12"), "job_id must be an integer"),
    "attempt zero": (with_(attempt=0), "attempt must be an integer from 1"),
    "no packages": (with_(packages=[]), "an apt install job needs packages"),
    "option as name": (
        with_(packages=[{"name": "-oDebug::x=1", "version": "1"}]),
        "packages[0].name",
    ),
    "bad dpkg version": (
        with_(packages=[{"name": "a", "version": "1.0 -1"}]),
        "not a dpkg version",
    ),
    "rpm without release": (
        with_(backend="dnf", packages=[{"name": "a", "version": "1.0"}]),
        "version-release",
    ),
    "twice": (with_(packages=[{"name": "a", "version": "1"}] * 2), "a is listed twice"),
    "extra package field": (
        with_(packages=[{"name": "a", "version": "1", "arch": "amd64"}]),
        "unknown field(s) arch",
    ),
    "too many packages": (
        with_(packages=[{"name": f"p{i}", "version": "1"} for i in range(501)]),
        "limit is 500",
    ),
    "hook as command": (with_(pre_hooks=["lvcreate -s"]), "pre_hooks[0]"),
    "empty hook name": (with_(pre_hooks=[""]), "pre_hooks[0]"),
    "null list": (with_(pre_hooks=None) | {"pre_hooks": None}, "pre_hooks must be a list"),
    "shell check": (with_(checks=[{"type": "shell", "cmd": "id"}]), "checks[0].type must be"),
    "command check with argv": (
        with_(checks=[{"type": "command", "name": "x", "argv": ["id"]}]),
        "unknown field(s) argv",
    ),
    "unit as option": (with_(checks=[{"type": "systemd", "unit": "-H evil"}]), "checks[0].unit"),
    "file url": (
        with_(checks=[{"type": "http", "url": "file:///etc/shadow"}]),
        "http:// or https://",
    ),
    "port zero": (with_(checks=[{"type": "tcp", "host": "db", "port": 0}]), "port must be"),
    "timeout zero": (with_(check_timeout=0), "check_timeout must be an integer from 1 to 3600"),
    "retries": (with_(check_retries=11), "check_retries must be an integer from 0 to 10"),
    "bandwidth": (with_(bandwidth_kbps=-1), "bandwidth_kbps must be"),
    "reboot": (with_(reboot="sometimes"), "reboot must be one of never, if_required, always"),
    "bool as text": (with_(rollback_on_failure="yes"), "rollback_on_failure must be true or false"),
    "oversized": (with_(padding="x" * 300_000), "the limit is 262144"),
    "install with rollback_of": (with_(rollback_of=3), "rollback_of belongs to rollback jobs"),
    "rollback without target": (with_(kind="rollback", packages=None), "rollback_of is required"),
    "rollback of itself": (with_(kind="rollback", packages=None, rollback_of=12), "itself"),
    "rollback with packages": (with_(kind="rollback", rollback_of=3), "takes no packages"),
    "script with packages": (
        with_(backend="script", script_package=SCRIPT),
        "needs script_package and no packages",
    ),
    "argv as a string": (
        with_(backend="script", packages=None, script_package={**SCRIPT, "install": "sh x.sh"}),
        "script_package.install must be a list",
    ),
    "empty argv": (
        with_(backend="script", packages=None, script_package={**SCRIPT, "verify": []}),
        "script_package.verify must be a list of 1 to 64",
    ),
    "argv with a number": (
        with_(backend="script", packages=None, script_package={**SCRIPT, "detect": ["ls", 1]}),
        "every item must be a string",
    ),
    "huge argv": (
        with_(backend="script", packages=None, script_package={**SCRIPT, "detect": ["a"] * 65}),
        "1 to 64 strings",
    ),
    "short sha": (
        with_(backend="script", packages=None, script_package={**SCRIPT, "sha256": "abc"}),
        "sha256",
    ),
    "upper-case sha": (
        with_(backend="script", packages=None, script_package={**SCRIPT, "sha256": "A" * 64}),
        "sha256",
    ),
    "ftp artifact": (
        with_(backend="script", packages=None, script_package={**SCRIPT, "url": "ftp://x/y"}),
        "http:// or https://",
    ),
    "incomplete script": (
        with_(backend="script", packages=None, script_package={"name": "x"}),
        "lacks detect",
    ),
    "not an object": ([EXAMPLE], "must be a JSON object"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_anything_outside_the_contract_is_refused(case: str) -> None:
    payload, message = REFUSED[case]
    with pytest.raises(JobInvalid) as refused:
        validate_job(payload)
    assert message in str(refused.value)


def test_local_names_and_script_consent_are_checked_against_the_host(tmp_path: Path) -> None:
    host = ExecutionSettings(
        journal_dir=tmp_path,
        hooks={"snapshot": ["true"]},
        check_commands={"app-selftest": ["true"]},
    )
    validate_job(EXAMPLE, host)
    with pytest.raises(JobInvalid, match="pre-hook 'drain' is not defined on this host"):
        validate_job(with_(pre_hooks=["snapshot", "drain"]), host)
    with pytest.raises(JobInvalid, match="check command 'app-selftest' is not defined"):
        validate_job(EXAMPLE, ExecutionSettings(journal_dir=tmp_path, hooks={"snapshot": ["true"]}))
    with pytest.raises(JobInvalid, match="script packages are not allowed on this host"):
        validate_job(with_(backend="script", packages=None, script_package=SCRIPT), host)
    with pytest.raises(ConfigError, match="non-empty list of strings"):
        ExecutionSettings(journal_dir=tmp_path, hooks={"snapshot": "lvcreate -s"})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="hook name"):
        ExecutionSettings(journal_dir=tmp_path, hooks={"two words": ["true"]})


def test_a_refused_job_is_reported_and_touches_nothing(tmp_path: Path) -> None:
    settings = ExecutionSettings(journal_dir=tmp_path / "journal", root=tmp_path / "root")
    result = execute_job(with_(backend="yum"), settings)
    assert result["status"] == "failed"
    assert result["job_id"] == 12
    assert result["error"].startswith("job refused: job: backend must be one of")
    assert (result["steps"], result["before"], result["rollback"]) == ([], {}, None)
    assert not (tmp_path / "journal").exists()
    with pytest.raises(JobInvalid, match="job_id and attempt"):
        execute_job({"attempt": 1}, settings)


def test_a_corrupt_journal_fails_the_job_and_is_left_alone(tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    (journal_dir / "7.json").write_text("{not json")
    settings = ExecutionSettings(journal_dir=journal_dir)
    result = execute_job({**ROLLBACK, "job_id": 8, "rollback_of": 7}, settings)
    assert result["status"] == "failed"
    assert "7.json: not JSON" in result["error"]
    assert (journal_dir / "7.json").read_text() == "{not json"


def test_the_journal_is_private_and_round_trips(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    assert journal.load(3) is None
    before = {"openssl": "3.0.11-1", "new": None}
    entry = JournalEntry(3, "install", "apt", before, "2024-05-01T00:00:00+00:00")
    journal.save(entry)
    assert journal.load(3) == entry
    assert stat.S_IMODE(journal.entry_path(3).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "journal").stat().st_mode) == 0o700
    assert [p.name for p in (tmp_path / "journal").iterdir()] == ["3.json"]  # no temporary left
    journal.entry_path(4).write_text(json.dumps({**entry.to_json(), "job_id": 3}))
    with pytest.raises(JournalError, match="holds job 3, not 4"):
        journal.load(4)
    journal.entry_path(5).write_text(json.dumps({**entry.to_json(), "job_id": 5, "before": [1]}))
    with pytest.raises(JournalError, match="malformed"):
        journal.load(5)


def test_the_command_runner_bounds_time_and_output(tmp_path: Path) -> None:
    started = time.monotonic()
    slow = run_command(["sh", "-c", "sleep 30 & sleep 30"], timeout=0.3)
    assert slow.timed_out
    assert not slow.ok
    assert "timed out" in slow.summary()
    assert time.monotonic() - started < 10
    chatty = run_command(["python3", "-c", "print('x' * 10000 + 'END')"], timeout=10)
    assert chatty.ok
    assert len(chatty.output.encode()) <= OUTPUT_LIMIT
    assert chatty.output.rstrip().endswith("END")
    missing = run_command([str(tmp_path / "no-such-program")], timeout=5)
    assert missing.returncode == 127
    assert missing.summary().startswith("cannot run")


def test_checks_probe_what_they_name_and_retry() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    with listener:
        [open_port] = run_checks(
            [TcpCheck("127.0.0.1", port)], timeout=2, retries=0, retry_delay=0, commands={}
        )
    assert open_port.ok
    assert open_port.detail.endswith("connected")

    def answer(path: str) -> tuple[int, bytes]:
        return {"/ok": (200, b"ok"), "/moved": (302, b"")}.get(path, (500, b"boom"))

    naps: list[float] = []
    with LocalHttp(answer) as server:
        outcomes = run_checks(
            [
                HttpCheck(f"{server.url}/ok"),
                HttpCheck(f"{server.url}/moved", 200),  # a redirect is not followed
                HttpCheck(f"{server.url}/moved", 302),
                HttpCheck(f"{server.url}/broken"),
            ],
            timeout=2,
            retries=2,
            retry_delay=0.5,
            commands={},
            sleep=naps.append,
        )
    assert [o.ok for o in outcomes] == [True, False, True, False]
    assert [o.attempts for o in outcomes] == [1, 3, 1, 3]
    assert naps == [0.5] * 4
    assert outcomes[1].detail.endswith("status 302 (expected 200)")
    assert outcomes[3].to_json()["detail"].endswith("status 500 (expected 200)")

    commands = {"fine": ["true"], "hangs": ["sleep", "10"]}
    checks = [CommandCheck("fine"), CommandCheck("hangs"), CommandCheck("unknown")]
    fine, hangs, unknown = run_checks(
        checks, timeout=0.2, retries=0, retry_delay=0, commands=commands
    )
    assert fine.ok
    assert not hangs.ok
    assert "timed out" in hangs.detail
    assert unknown.detail == "no command 'unknown' is defined on this host"


def test_job_modules_are_python_39_code() -> None:
    """ruff checks the grammar of the agent folder as 3.9; this also covers what would
    only break when evaluated (``X | Y`` outside annotations, 3.10+ keywords)."""
    paths = [AGENT / name for name in ("jobs.py", "checks.py", "journal.py")]
    paths += sorted((AGENT / "backends").glob("*.py"))
    for path in paths:
        source = path.read_text()
        tree = ast.parse(source, feature_version=(3, 9))
        assert "from __future__ import annotations" in source, path.name
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword):
                assert node.arg not in ("slots", "kw_only"), path.name
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.BinOp):
                assert not isinstance(node.value.op, ast.BitOr), f"{path.name}: runtime X | Y"
