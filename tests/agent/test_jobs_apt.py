"""Deployment jobs through the real apt-get and dpkg, in a sandbox root.

Packages are built with dpkg-deb and served from a flat ``file:`` repository
(``pkgrepo``); every job installs into ``tmp_path/root`` and the result is checked
against that root's dpkg status database, read with patchwarden.collect's parser.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from patchwarden.agent.backends import AptBackend, PackageTarget
from patchwarden.agent.jobs import execute_job
from tests.agent.pkgrepo import (
    APT_ROOT_FOLDERS,
    APT_TOOLS,
    DEB_PACKAGES,
    HEALTHY,
    LocalHttp,
    SandboxHost,
    build_apt_repo,
    dpkg_installed,
    install_job,
    make_apt_root,
    require_tools,
    rollback_job,
    step_names,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "agent-jobs.md"


@pytest.fixture(scope="module")
def apt_repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The full repository, and one holding only pw-broken 2.0-1 (no way back)."""
    require_tools(*APT_TOOLS)
    base = tmp_path_factory.mktemp("apt")
    only_new = {"pw-broken": {"2.0-1": DEB_PACKAGES["pw-broken"]["2.0-1"]}}
    return {
        "full": build_apt_repo(base / "repo", DEB_PACKAGES),
        "only-new": build_apt_repo(base / "repo-only-new", only_new),
    }


@pytest.fixture
def host(tmp_path: Path, apt_repos: dict[str, Path]) -> SandboxHost:
    return SandboxHost(make_apt_root(tmp_path / "root", apt_repos["full"]), tmp_path / "state")


def job(job_id: int, *packages: tuple[str, str], **fields: Any) -> dict[str, Any]:
    return install_job("apt", job_id, *packages, **fields)


def rollback(job_id: int, of: int, **fields: Any) -> dict[str, Any]:
    return rollback_job("apt", job_id, of, **fields)


def test_install_then_upgrade_journals_the_old_version(host: SandboxHost) -> None:
    settings = host.settings()
    first = execute_job(job(1, ("pw-hello", "1.0-1")), settings)
    assert first["status"] == "succeeded", first
    assert first["before"] == {"pw-hello": None}
    assert first["after"] == {"pw-hello": "1.0-1"}

    second = execute_job(job(2, ("pw-hello", "2.0-1")), settings)
    assert second["status"] == "succeeded", second
    assert (second["before"], second["after"]) == ({"pw-hello": "1.0-1"}, {"pw-hello": "2.0-1"})
    assert second["error"] is None
    assert second["rollback"] is None
    assert step_names(second) == ["prepare", "journal", "install"]
    install = second["steps"][-1]["output"]
    assert "pw-hello=2.0-1" in install
    assert f"--root={host.root}" in install
    assert "--allow-downgrades" not in install
    assert dpkg_installed(host.root) == {"pw-hello": "2.0-1"}
    assert (host.root / "usr/share/pw-hello/version").read_text() == "hello 2.0\n"
    assert host.journal(2)["before"] == {"pw-hello": "1.0-1"}
    assert host.journal(1)["before"] == {"pw-hello": None}
    kept = json.loads((host.state / "journal/2.result.json").read_text())
    assert kept["status"] == "succeeded"
    # The sandbox never reached the host's own dpkg database.
    on_host = subprocess.run(["dpkg-query", "-W", "pw-hello"], capture_output=True, check=False)
    assert on_host.returncode != 0


def test_a_repeated_delivery_is_a_no_op_that_keeps_the_first_journal(host: SandboxHost) -> None:
    settings = host.settings()
    execute_job(job(1, ("pw-hello", "1.0-1")), settings)
    payload = job(2, ("pw-hello", "2.0-1"), pre_hooks=["snapshot"])
    execute_job(payload, settings)
    journal_bytes = (host.state / "journal/2.json").read_bytes()
    (host.state / "snapshot-taken").unlink()

    again = execute_job({**payload, "attempt": 2}, settings)
    assert again["status"] == "succeeded", again
    assert again["attempt"] == 2
    assert again["before"] == {"pw-hello": "1.0-1"}  # the first attempt's view, kept
    assert again["after"] == {"pw-hello": "2.0-1"}
    assert step_names(again) == ["prepare", "journal", "install"]
    assert "already" in again["steps"][-1]["output"]
    assert "earlier attempt" in again["steps"][1]["output"]
    assert not (host.state / "snapshot-taken").exists()  # nothing to do, no hook
    assert (host.state / "journal/2.json").read_bytes() == journal_bytes


def test_a_failing_command_check_rolls_back_to_the_journaled_version(host: SandboxHost) -> None:
    settings = host.settings()
    good = execute_job(job(1, ("pw-broken", "1.0-1"), checks=[HEALTHY]), settings)
    assert good["status"] == "succeeded", good
    assert good["checks"] == [
        {
            "check": HEALTHY,
            "ok": True,
            "detail": "broken-healthy: grep exited with status 0",
            "attempts": 1,
        }
    ]

    payload = job(2, ("pw-broken", "2.0-1"), checks=[HEALTHY], check_retries=1)
    result = execute_job({**payload, "pre_hooks": ["snapshot"]}, settings)
    assert result["status"] == "rolled_back", result
    assert result["before"] == {"pw-broken": "1.0-1"}
    assert result["after"] == {"pw-broken": "1.0-1"}
    assert result["checks"][0]["ok"] is False
    assert result["checks"][0]["attempts"] == 2
    assert result["rollback"] == {"attempted": True, "ok": True, "restored": {"pw-broken": "1.0-1"}}
    assert result["error"].startswith("check failed: broken-healthy")
    assert step_names(result) == [
        "prepare", "journal", "pre_hook:snapshot", "install", "checks", "rollback",
    ]  # fmt: skip
    assert "--allow-downgrades" in result["steps"][-1]["output"]
    assert (host.state / "snapshot-taken").exists()
    assert host.health.read_text() == "healthy\n"
    assert dpkg_installed(host.root) == {"pw-broken": "1.0-1"}


def test_a_failing_http_check_removes_a_package_that_was_absent(host: SandboxHost) -> None:
    def health(_path: str) -> tuple[int, bytes]:
        try:
            state = host.health.read_text().strip()
        except FileNotFoundError:
            return 404, b"not installed"
        return (200, b"ok") if state == "healthy" else (503, state.encode())

    with LocalHttp(health) as server:
        check = {"type": "http", "url": f"{server.url}/health", "expect_status": 200}
        payload = job(1, ("pw-broken", "2.0-1"), checks=[check], check_retries=0)
        result = execute_job(payload, host.settings())
    assert result["status"] == "rolled_back", result
    assert result["before"] == {"pw-broken": None}
    assert result["after"] == {"pw-broken": None}
    assert result["checks"][0]["ok"] is False
    assert "status 503 (expected 200)" in result["checks"][0]["detail"]
    assert result["rollback"] == {"attempted": True, "ok": True, "restored": {"pw-broken": None}}
    assert "pw-broken" not in dpkg_installed(host.root)
    assert not host.health.exists()


def test_without_rollback_on_failure_the_new_version_stays(host: SandboxHost) -> None:
    settings = host.settings()
    execute_job(job(1, ("pw-broken", "1.0-1")), settings)
    payload = job(2, ("pw-broken", "2.0-1"), checks=[HEALTHY], check_retries=0)
    result = execute_job({**payload, "rollback_on_failure": False}, settings)
    assert result["status"] == "failed"
    assert result["rollback"] == {"attempted": False, "ok": False, "restored": {}}
    assert "rollback_on_failure is off" in result["error"]
    assert dpkg_installed(host.root) == {"pw-broken": "2.0-1"}


def test_a_failed_rollback_reports_both_errors(
    host: SandboxHost, apt_repos: dict[str, Path]
) -> None:
    settings = host.settings()
    execute_job(job(1, ("pw-broken", "1.0-1")), settings)
    # The repository loses 1.0-1: the way back is gone.
    (host.root / "etc/apt/sources.list").write_text(
        f"deb [trusted=yes] file:{apt_repos['only-new']} ./\n"
    )
    payload = job(2, ("pw-broken", "2.0-1"), checks=[HEALTHY], check_retries=0)
    result = execute_job(payload, settings)
    assert result["status"] == "failed", result
    assert result["error"].startswith("check failed: broken-healthy")
    assert "; rollback failed: apt-get exited with status 100" in result["error"]
    assert result["rollback"] == {
        "attempted": True, "ok": False, "restored": {"pw-broken": "2.0-1"},
    }  # fmt: skip
    assert dpkg_installed(host.root) == {"pw-broken": "2.0-1"}


def test_a_rollback_job_restores_what_the_journal_recorded(host: SandboxHost) -> None:
    settings = host.settings()
    execute_job(job(1, ("pw-hello", "1.0-1")), settings)
    execute_job(job(2, ("pw-hello", "2.0-1")), settings)

    undone = execute_job(rollback(3, of=2), settings)
    assert undone["status"] == "succeeded", undone
    assert (undone["before"], undone["after"]) == ({"pw-hello": "2.0-1"}, {"pw-hello": "1.0-1"})
    assert undone["rollback"] == {"attempted": True, "ok": True, "restored": {"pw-hello": "1.0-1"}}
    assert dpkg_installed(host.root) == {"pw-hello": "1.0-1"}

    again = execute_job({**rollback(3, of=2), "attempt": 2}, settings)
    assert again["status"] == "succeeded"
    assert again["rollback"] == {"attempted": False, "ok": True, "restored": {}}
    assert again["before"] == {"pw-hello": "2.0-1"}  # this rollback job's own journal

    removed = execute_job(rollback(4, of=1), settings)  # job 1 found pw-hello absent
    assert removed["status"] == "succeeded", removed
    assert removed["after"] == {"pw-hello": None}
    assert dpkg_installed(host.root) == {}

    missing = execute_job(rollback(5, of=99), settings)
    assert missing["status"] == "failed"
    assert "no journal of job 99" in missing["error"]


def apt_warnings(result: dict[str, Any]) -> list[str]:
    """apt's warning lines in a job's steps (each output must be whole, not a tail)."""
    warnings = []
    for step in result["steps"]:
        if step["name"] in ("prepare", "install", "rollback"):
            assert step["output"].startswith("$ apt-get"), step["output"][:200]
            warnings += [line for line in step["output"].splitlines() if line.startswith("W:")]
    return warnings


def test_the_documented_sandbox_root_leaves_apt_nothing_to_warn_about(host: SandboxHost) -> None:
    documented = DOCS.read_text(encoding="utf-8").split("**Sandbox root**", 1)[1]
    documented = documented.split("### dnf", 1)[0]
    listed = {line.split()[0] for line in documented.splitlines() if line.strip()}
    missing = [folder for folder in APT_ROOT_FOLDERS if folder not in listed]
    assert missing == [], "docs/agent-jobs.md does not list these sandbox folders"

    settings = host.settings()
    installed = execute_job(job(1, ("pw-hello", "1.0-1")), settings)
    undone = execute_job(rollback(2, of=1), settings)
    for result in (installed, undone):
        assert result["status"] == "succeeded", result
        assert apt_warnings(result) == []

    # Without a folder of the list, the warning is there to see.
    (host.root / "etc/apt/preferences.d").rmdir()
    warned = execute_job(job(3, ("pw-hello", "2.0-1")), settings)
    assert any("preferences.d/ - DirectoryExists" in line for line in apt_warnings(warned))


def test_the_bandwidth_limit_reaches_apt(host: SandboxHost) -> None:
    backend = AptBackend(host.root)
    argv = backend.install_argv([PackageTarget("pw-hello", "1.0-1")], 512)
    assert argv[0] == "apt-get"
    assert argv[-2:] == ["install", "pw-hello=1.0-1"]
    limit = argv.index("Acquire::http::Dl-Limit=512")
    assert argv[limit - 1] == "-o"
    assert "Acquire::https::Dl-Limit=512" in argv
    assert not any("Dl-Limit" in item for item in backend.install_argv([], 0))
    assert backend.update_argv(64)[-3:] == ["-o", "Acquire::https::Dl-Limit=64", "update"]
    on_host = AptBackend(Path("/")).install_argv([PackageTarget("openssl", "3.0.11-1")], 0)
    assert not any(item.startswith(("Dir", "DPkg::Options::=--root")) for item in on_host)

    result = execute_job(job(1, ("pw-hello", "1.0-1"), bandwidth_kbps=512), host.settings())
    assert result["status"] == "succeeded", result
    for step in result["steps"]:
        if step["name"] in ("prepare", "install"):
            assert "Acquire::http::Dl-Limit=512" in step["output"]
    assert dpkg_installed(host.root) == {"pw-hello": "1.0-1"}


def test_install_failures_change_nothing(host: SandboxHost) -> None:
    settings = host.settings()
    missing = execute_job(job(1, ("pw-hello", "9.9-1")), settings)
    assert missing["status"] == "failed"
    assert missing["rollback"] is None
    assert missing["error"].startswith("install failed: apt-get exited with status 100")
    assert "nothing to roll back" in missing["error"]

    execute_job(job(2, ("pw-hello", "2.0-1")), settings)
    downgrade = execute_job(job(3, ("pw-hello", "1.0-1")), settings)  # only rollbacks go down
    assert downgrade["status"] == "failed"
    assert "pw-hello is at 2.0-1, not 1.0-1" in downgrade["error"]
    assert dpkg_installed(host.root) == {"pw-hello": "2.0-1"}

    hooked = execute_job(job(4, ("pw-broken", "1.0-1"), pre_hooks=["snapshot", "fail"]), settings)
    assert hooked["status"] == "failed"
    assert hooked["error"] == "pre_hook:fail failed; nothing installed"
    assert step_names(hooked) == ["prepare", "journal", "pre_hook:snapshot", "pre_hook:fail"]
    assert "pw-broken" not in dpkg_installed(host.root)


def test_reboot_policies(host: SandboxHost) -> None:
    settings = host.settings()
    never = execute_job(job(1, ("pw-hello", "1.0-1"), reboot="never"), settings)
    assert (never["reboot_required"], never["rebooted"], host.reboots) == (False, False, [])

    quiet = execute_job(job(2, ("pw-hello", "2.0-1"), reboot="if_required"), settings)
    assert (quiet["reboot_required"], quiet["rebooted"], host.reboots) == (False, False, [])

    (host.root / "run/reboot-required").write_text("*** System restart required ***\n")
    asked = job(3, ("pw-hello", "2.0-1"), reboot="if_required")
    required = execute_job(asked, settings)
    assert required["status"] == "succeeded", required
    assert required["reboot_required"] is True
    assert required["rebooted"] is True
    assert host.reboots == ["reboot"]
    assert host.journal(3)["reboot_boot_id"]
    # Delivered again (say, after the reboot): no second reboot.
    repeat = execute_job({**asked, "attempt": 2}, settings)
    assert repeat["rebooted"] is True
    assert host.reboots == ["reboot"]
    assert "earlier attempt" in repeat["steps"][-1]["output"]

    def refuse() -> None:
        raise RuntimeError("reboot refused by policy")

    always = job(4, ("pw-hello", "2.0-1"), reboot="always")
    broken = execute_job(always, host.settings(reboot=refuse))
    assert broken["status"] == "failed"
    assert broken["rebooted"] is False
    assert "reboot failed: reboot refused by policy" in broken["error"]
    assert host.journal(4)["reboot_boot_id"] == ""
    retried = execute_job({**always, "attempt": 2}, settings)
    assert retried["status"] == "succeeded"
    assert retried["rebooted"] is True
    assert host.reboots == ["reboot", "reboot"]
    # A job that failed does not reboot, whatever the policy.
    failed = execute_job(job(5, ("pw-hello", "9.9-1"), reboot="always"), settings)
    assert failed["status"] == "failed"
    assert failed["rebooted"] is False
    assert host.reboots == ["reboot", "reboot"]
