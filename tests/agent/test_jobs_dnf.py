"""Deployment jobs through the real dnf and rpm, in a sandbox installroot.

RPMs are built with rpmbuild from spec files written by ``pkgrepo`` and indexed with
createrepo_c; every job installs into ``tmp_path/root`` (``dnf --installroot``) and the
result is checked with ``rpm --root``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from patchwarden.agent.backends import DnfBackend, PackageTarget
from patchwarden.agent.jobs import execute_job
from tests.agent.pkgrepo import (
    DNF_TOOLS,
    HEALTHY,
    RPM_PACKAGES,
    SandboxHost,
    build_rpm_repo,
    install_job,
    make_dnf_root,
    require_tools,
    rollback_job,
    rpm_installed,
    step_names,
)


@pytest.fixture(scope="module")
def rpm_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools(*DNF_TOOLS)
    return build_rpm_repo(tmp_path_factory.mktemp("dnf") / "repo", RPM_PACKAGES)


@pytest.fixture
def host(tmp_path: Path, rpm_repo: Path) -> SandboxHost:
    return SandboxHost(make_dnf_root(tmp_path / "root", rpm_repo), tmp_path / "state")


def job(job_id: int, *packages: tuple[str, str], **fields: Any) -> dict[str, Any]:
    return install_job("dnf", job_id, *packages, **fields)


def test_install_upgrade_and_a_repeated_delivery(host: SandboxHost) -> None:
    settings = host.settings()
    first = execute_job(job(1, ("pw-hello", "1.0-1")), settings)
    assert first["status"] == "succeeded", first
    assert first["after"] == {"pw-hello": "1.0-1"}
    assert f"--installroot={host.root}" in first["steps"][-1]["output"]

    upgrade = job(2, ("pw-hello", "0:2.0-1"))  # a zero epoch is the same version
    second = execute_job(upgrade, settings)
    assert second["status"] == "succeeded", second
    assert (second["before"], second["after"]) == ({"pw-hello": "1.0-1"}, {"pw-hello": "2.0-1"})
    assert " upgrade pw-hello-2.0-1" in second["steps"][-1]["output"]
    assert rpm_installed(host.root) == {"pw-hello": "2.0-1"}
    assert (host.root / "usr/share/pw-hello/version").read_text() == "hello 2.0\n"
    assert host.journal(2)["before"] == {"pw-hello": "1.0-1"}

    again = execute_job({**upgrade, "attempt": 2}, settings)
    assert again["status"] == "succeeded"
    assert again["before"] == {"pw-hello": "1.0-1"}
    assert step_names(again) == ["journal", "install"]
    assert "already" in again["steps"][-1]["output"]


def test_a_failing_check_rolls_back_and_a_rollback_job_restores(host: SandboxHost) -> None:
    settings = host.settings()
    execute_job(job(1, ("pw-broken", "1.0-1"), ("pw-hello", "1.0-1")), settings)
    payload = job(2, ("pw-broken", "2.0-1"), ("pw-hello", "2.0-1"), checks=[HEALTHY])
    failed = execute_job({**payload, "check_retries": 0}, settings)
    assert failed["status"] == "rolled_back", failed
    assert failed["after"] == {"pw-broken": "1.0-1", "pw-hello": "1.0-1"}
    assert failed["rollback"]["restored"] == {"pw-broken": "1.0-1", "pw-hello": "1.0-1"}
    assert " install pw-broken-1.0-1 pw-hello-1.0-1" in failed["steps"][-1]["output"]
    assert rpm_installed(host.root) == {"pw-broken": "1.0-1", "pw-hello": "1.0-1"}
    assert host.health.read_text() == "healthy\n"

    fine = execute_job(job(3, ("pw-hello", "2.0-1")), settings)
    assert fine["status"] == "succeeded", fine
    undone = execute_job(rollback_job("dnf", 4, of=3), settings)
    assert undone["status"] == "succeeded", undone
    assert undone["rollback"] == {"attempted": True, "ok": True, "restored": {"pw-hello": "1.0-1"}}
    assert rpm_installed(host.root)["pw-hello"] == "1.0-1"

    removed = execute_job(rollback_job("dnf", 5, of=1), settings)  # job 1 found both absent
    assert removed["status"] == "succeeded", removed
    assert removed["after"] == {"pw-broken": None, "pw-hello": None}
    assert rpm_installed(host.root) == {}


def test_install_jobs_never_downgrade_and_missing_versions_fail(host: SandboxHost) -> None:
    settings = host.settings()
    execute_job(job(1, ("pw-hello", "2.0-1")), settings)
    downgrade = execute_job(job(2, ("pw-hello", "1.0-1")), settings)
    assert downgrade["status"] == "failed"
    assert "pw-hello is at 2.0-1, not 1.0-1" in downgrade["error"]
    assert downgrade["rollback"] is None
    missing = execute_job(job(3, ("pw-broken", "9.0-1")), settings)
    assert missing["status"] == "failed"
    assert missing["error"].startswith("install failed: dnf exited with status 1")
    assert rpm_installed(host.root) == {"pw-hello": "2.0-1"}


def test_the_bandwidth_limit_reaches_dnf(host: SandboxHost) -> None:
    backend = DnfBackend(host.root)
    targets = [PackageTarget("pw-hello", "2.0-1"), PackageTarget("pw-new", "1.0-1")]
    argvs = backend.install_argvs(targets, {"pw-hello": "1.0-1", "pw-new": None}, 256)
    assert [argv[argv.index("--setopt=throttle=256k") + 1 :] for argv in argvs] == [
        ["--refresh", "upgrade", "pw-hello-2.0-1"],
        ["install", "pw-new-1.0-1"],
    ]
    assert all(f"--installroot={host.root}" in argv for argv in argvs)
    assert "--releasever=9" in argvs[0]
    assert not any("throttle" in item for item in backend.base_argv(0))
    assert DnfBackend(Path("/")).base_argv(0) == ["dnf", "-y", "--setopt=install_weak_deps=False"]

    result = execute_job(job(1, ("pw-hello", "1.0-1"), bandwidth_kbps=256), host.settings())
    assert result["status"] == "succeeded", result
    assert "--setopt=throttle=256k" in result["steps"][-1]["output"]
    assert rpm_installed(host.root) == {"pw-hello": "1.0-1"}
