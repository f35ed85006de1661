"""Script packages: an artifact served over HTTP with its sha256, and admin commands.

The artifact comes from a local HTTP server through the downloader the agent passes
(``pkgrepo.fetch``); the commands are plain programs (cp, cmp, rm, touch), never a
shell, and act on a folder under ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from patchwarden.agent import jobs
from patchwarden.agent.backends import CommandResult
from patchwarden.agent.jobs import ExecutionSettings, execute_job
from tests.agent.pkgrepo import LocalHttp, fetch, rollback_job, step_names

ARTIFACT = b"#!/bin/sh\necho pw-tool 1.0\n"
SHA256 = hashlib.sha256(ARTIFACT).hexdigest()


@pytest.fixture
def server() -> Iterator[LocalHttp]:
    def respond(path: str) -> tuple[int, bytes]:
        return (200, ARTIFACT) if path == "/files/pw-tool-1.0.sh" else (404, b"")

    with LocalHttp(respond) as running:
        yield running


def settings(tmp_path: Path, **changes: Any) -> ExecutionSettings:
    values: dict[str, Any] = {
        "journal_dir": tmp_path / "state/journal",
        "root": tmp_path / "root",
        "allow_script_packages": True,
        "downloader": fetch,
        "reboot": lambda: None,
        "check_retry_delay": 0.01,
    }
    values.update(changes)
    return ExecutionSettings(**values)


def script_job(job_id: int, server: LocalHttp, target: Path, **changes: Any) -> dict[str, Any]:
    package = {
        "name": "pw-tool",
        "version": "1.0",
        "url": f"{server.url}/files/pw-tool-1.0.sh",
        "sha256": SHA256,
        "detect": ["cmp", "-s", "{artifact}", str(target)],
        "install": ["cp", "{artifact}", str(target)],
        "verify": ["test", "-s", str(target)],
        "uninstall": ["rm", "-f", str(target)],
    }
    package.update(changes)
    return {
        "job_id": job_id,
        "attempt": 1,
        "kind": "install",
        "backend": "script",
        "script_package": package,
    }


def test_install_repeat_and_roll_back_a_script_package(tmp_path: Path, server: LocalHttp) -> None:
    target = tmp_path / "opt/pw-tool"
    target.parent.mkdir(parents=True)
    config = settings(tmp_path)
    payload = script_job(1, server, target)

    first = execute_job(payload, config)
    assert first["status"] == "succeeded", first
    assert (first["before"], first["after"]) == ({"pw-tool": None}, {"pw-tool": "1.0"})
    assert step_names(first) == ["prepare", "journal", "install", "install"]
    assert "sha256 " + SHA256 + " verified" in first["steps"][0]["output"]
    assert target.read_bytes() == ARTIFACT
    stored = tmp_path / "state/artifacts" / SHA256 / "pw-tool-1.0.sh"
    assert stored.read_bytes() == ARTIFACT
    assert stat.S_IMODE(stored.stat().st_mode) == 0o700
    assert server.requests == ["/files/pw-tool-1.0.sh"]

    again = execute_job({**payload, "attempt": 2}, config)
    assert again["status"] == "succeeded"
    assert "reusing" in again["steps"][0]["output"]  # no second download
    assert "already" in again["steps"][-1]["output"]  # detect said installed
    assert server.requests == ["/files/pw-tool-1.0.sh"]

    undone = execute_job(rollback_job("script", 2, of=1), config)
    assert undone["status"] == "succeeded", undone
    assert undone["after"] == {"pw-tool": None}
    assert undone["rollback"] == {"attempted": True, "ok": True, "restored": {"pw-tool": None}}
    assert not target.exists()
    assert server.requests == ["/files/pw-tool-1.0.sh"]


def test_a_wrong_sha256_is_refused_before_anything_runs(tmp_path: Path, server: LocalHttp) -> None:
    marker = tmp_path / "something-ran"
    touch = ["touch", str(marker)]
    payload = script_job(
        1, server, tmp_path / "t", sha256="0" * 64, detect=touch, install=touch, verify=touch
    )
    config = settings(tmp_path, hooks={"snapshot": touch})
    result = execute_job({**payload, "pre_hooks": ["snapshot"]}, config)
    assert result["status"] == "failed"
    assert f"has sha256 {SHA256}, expected {'0' * 64}; refusing to run anything" in result["error"]
    assert step_names(result) == ["prepare"]
    assert not marker.exists()
    assert not (tmp_path / "state/artifacts" / ("0" * 64) / "pw-tool-1.0.sh").exists()
    assert not (tmp_path / "state/journal/1.json").exists()


def test_script_packages_need_the_hosts_consent(tmp_path: Path, server: LocalHttp) -> None:
    payload = script_job(1, server, tmp_path / "t")
    result = execute_job(payload, settings(tmp_path, allow_script_packages=False))
    assert result["status"] == "failed"
    assert result["error"].startswith("job refused: script packages are not allowed on this host")
    assert result["steps"] == []
    assert server.requests == []


@pytest.mark.parametrize("failure", ["verify", "check"])
def test_a_failed_verify_or_check_uninstalls(
    tmp_path: Path, server: LocalHttp, failure: str
) -> None:
    target = tmp_path / "pw-tool"
    if failure == "verify":
        payload = script_job(1, server, target, verify=["false"])
    else:
        payload = script_job(1, server, target)
        payload.update(checks=[{"type": "tcp", "host": "127.0.0.1", "port": 9}], check_retries=0)
    result = execute_job(payload, settings(tmp_path))
    assert result["status"] == "rolled_back", result
    assert result["after"] == {"pw-tool": None}
    assert result["rollback"] == {"attempted": True, "ok": True, "restored": {"pw-tool": None}}
    expected = (
        "install failed: false exited" if failure == "verify" else "check failed: 127.0.0.1:9"
    )
    assert result["error"].startswith(expected)
    assert not target.exists()


def test_the_default_reboot_never_reboots_the_host_for_a_sandbox_root(
    tmp_path: Path, server: LocalHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[list[str]] = []

    def record(argv: list[str], **_options: Any) -> CommandResult:
        ran.append(list(argv))
        return CommandResult(tuple(argv), 0, "", 0.0)

    # Should the guard fail, the reboot command is recorded here rather than run.
    monkeypatch.setattr(jobs, "run_command", record)
    config = settings(tmp_path, reboot=jobs.system_reboot)
    payload = {**script_job(1, server, tmp_path / "t"), "reboot": "always"}
    result = execute_job(payload, config)
    assert result["status"] == "succeeded", result
    assert result["rebooted"] is False
    assert result["steps"][-1]["name"] == "reboot"
    assert "not rebooting the host" in result["steps"][-1]["output"]
    assert ["systemctl", "reboot"] not in ran
