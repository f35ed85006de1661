"""Pieces of the rollout end-to-end test: packages, sandbox hosts, the clock, operators.

* Packages: ``pw-hello`` 1.0-1 and 2.0-1 (a good update) and ``pw-broken`` 1.0-1 and
  2.0-1, whose **RPM build** of 2.0-1 ships a broken health file (the Debian build is
  fine) — so the same update succeeds on some hosts and fails its check on others.
  Built with ``dpkg-deb`` + ``dpkg-scanpackages -m`` and ``rpmbuild`` + ``createrepo_c``
  (``tests/agent/pkgrepo``).
* ``SandboxHost``: one managed host — an apt or dnf sandbox root, the agent's state
  folder and its configuration (the collector and the package jobs both act on the
  root). Its ``snapshot`` pre-hook logs the job id and waits while ``hold`` exists, so
  a test can keep a job running for as long as it needs.
* ``FileClock``: the server's clock (``PATCHWARDEN_TEST_CLOCK_FILE``), moved by
  rewriting the file.
* ``Operator``: an API token holder talking to the server's REST API.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from patchwarden.agent.backends import AptBackend, DnfBackend, PackageTarget
from patchwarden.agent.config import AgentConfig
from patchwarden.agent.runner import Agent, CycleResult
from patchwarden.core.model import Advisory, Affected, AffectedRange, Event
from patchwarden.store.db import Database
from patchwarden.store.models import JobResultRow, JobRow
from tests.agent.pkgrepo import (
    build_apt_repo,
    build_rpm_repo,
    dpkg_installed,
    make_apt_root,
    make_dnf_root,
    rpm_installed,
)

V1, V2 = "1.0-1", "2.0-1"
DEB_PACKAGES = {
    "pw-hello": {
        V1: {"usr/share/pw-hello/version": "hello 1.0\n"},
        V2: {"usr/share/pw-hello/version": "hello 2.0\n"},
    },
    "pw-broken": {
        V1: {"usr/share/pw-broken/health": "healthy\n"},
        V2: {"usr/share/pw-broken/health": "healthy\n"},
    },
}
RPM_PACKAGES = {
    "pw-hello": {
        V1: {"usr/share/pw-hello/version": "hello 1.0"},
        V2: {"usr/share/pw-hello/version": "hello 2.0"},
    },
    "pw-broken": {
        V1: {"usr/share/pw-broken/health": "healthy"},
        V2: {"usr/share/pw-broken/health": "broken"},
    },
}
#: The command check every host defines; rollouts name it in their policy.
HEALTH_CHECK = {"type": "command", "name": "broken-healthy"}
HOOK = 'echo "$PATCHWARDEN_JOB_ID" >> "$0/snapshots"; while [ -e "$0/hold" ]; do sleep 0.05; done'


def build_repositories(base: Path) -> dict[str, Path]:
    """A flat apt repository and a dnf repository holding both versions of both."""
    return {
        "apt": build_apt_repo(base / "apt-repo", DEB_PACKAGES),
        "dnf": build_rpm_repo(base / "dnf-repo", RPM_PACKAGES),
    }


def advisories() -> list[Advisory]:
    """A DSA-like advisory per Debian package and an OSV (AlmaLinux) one per RPM package,
    each fixed in 2.0-1."""
    found = datetime(2026, 11, 1, tzinfo=UTC)
    fixed = (AffectedRange("ECOSYSTEM", (Event("introduced", "0"), Event("fixed", V2))),)
    made = []
    for number, name in ((9001, "pw-hello"), (9002, "pw-broken")):
        cve = f"CVE-2026-{number}"
        for ext_id, ecosystem, source in (
            (f"DSA-{number}-1", "Debian:12", "debian-dsa"),
            (f"ALSA-2026:{number}", "AlmaLinux:9", "osv"),
        ):
            made.append(
                Advisory(
                    id=ext_id,
                    modified=found,
                    published=found,
                    source=source,
                    aliases=(cve,),
                    summary=f"{name}: security update",
                    affected=(Affected(ecosystem, name, ranges=fixed),),
                )
            )
    return made


class FileClock:
    """The server's injected clock: an ISO-8601 UTC time in a file, read on every call."""

    def __init__(self, path: Path, start: datetime) -> None:
        self.path = path
        self.set(start)

    def set(self, moment: datetime) -> None:
        """Move the clock to ``moment`` (written atomically: the server reads it anytime)."""
        self.now = moment
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(moment.isoformat())
        os.replace(temporary, self.path)

    def advance(self, **delta: float) -> datetime:
        """Move the clock forward by ``timedelta(**delta)``."""
        self.set(self.now + timedelta(**delta))
        return self.now


@dataclass
class SandboxHost:
    """One managed host: a sandbox root, an agent state folder, an agent."""

    name: str
    backend: str  # apt or dnf
    root: Path
    state: Path
    agent: Agent | None = None

    @classmethod
    def create(cls, base: Path, name: str, backend: str, repo: Path, machine: int) -> SandboxHost:
        """Lay out the root, its machine id and hostname, and install the 1.0-1 versions."""
        root = base / name / "root"
        if backend == "apt":
            make_apt_root(root, repo)
        else:
            make_dnf_root(root, repo)
            # rpm on a Debian host keeps its database in ~/.rpmdb (the root's
            # root/.rpmdb); the collector looks in var/lib/rpm, as on RPM systems.
            (root / "var/lib").mkdir(parents=True, exist_ok=True)
            (root / "var/lib/rpm").symlink_to("../../root/.rpmdb")
        (root / "etc/machine-id").write_text(f"{machine:032x}\n")
        (root / "etc/hostname").write_text(f"{name}\n")
        host = cls(name, backend, root, base / name / "state")
        host.state.mkdir(parents=True)
        targets = [PackageTarget("pw-hello", V1), PackageTarget("pw-broken", V1)]
        package_manager = AptBackend(root) if backend == "apt" else DnfBackend(root)
        results = package_manager.prepare(targets, 0) + package_manager.install(targets, 0)
        assert all(r.ok for r in results), [r.output for r in results]
        return host

    def config(self, server_url: str) -> AgentConfig:
        """The agent's configuration: collector and package jobs act on the root."""
        return AgentConfig(
            server_url=server_url,
            state_dir=self.state / "agent",
            collect_root=self.root,
            package_root=self.root,
            timeout=5.0,
            hooks={"snapshot": ("/bin/sh", "-c", HOOK, str(self.state))},
            check_commands={"broken-healthy": ("grep", "-qx", "healthy", str(self.health))},
            job_lease=15,
            check_retry_delay=0.05,
        )

    @property
    def health(self) -> Path:
        return self.root / "usr/share/pw-broken/health"

    @property
    def hold(self) -> Path:
        """While this file exists, the host's snapshot hook (and so its job) waits."""
        return self.state / "hold"

    def snapshots(self) -> list[int]:
        """The job ids the snapshot hook ran for, in order."""
        log = self.state / "snapshots"
        return [int(line) for line in log.read_text().split()] if log.exists() else []

    def run_once(self) -> CycleResult:
        assert self.agent is not None
        return self.agent.run_once()

    def installed(self) -> dict[str, str]:
        """name → version, read from the root's own package database."""
        return dpkg_installed(self.root) if self.backend == "apt" else rpm_installed(self.root)

    def installs(self, name: str, version: str) -> int:
        """How many times the package manager installed ``name`` at ``version`` here
        (dpkg's log, or dnf's rpm transaction log), whatever the direction."""
        if self.backend == "apt":
            text = (self.root / "var/log/dpkg.log").read_text()
            pattern = rf" (install|upgrade) {re.escape(name)}:all \S+ {re.escape(version)}$"
        else:
            text = (self.root / "var/log/dnf.rpm.log").read_text()
            # "Upgrade: new" / "Upgraded: old": the present tense names what went in.
            pattern = rf" (Installed|Upgrade|Downgrade): {re.escape(name)}-{re.escape(version)}\."
        return sum(1 for line in text.splitlines() if re.search(pattern, line))

    def dnf_transactions(self) -> int:
        """Transactions in dnf's history database (dnf hosts)."""
        with sqlite3.connect(self.root / "var/lib/dnf/history.sqlite") as db:
            count: int = db.execute("SELECT count(*) FROM trans").fetchone()[0]
        return count


class Operator:
    """Someone using the REST API with an API token."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, *, expect: int = 200, **kwargs: Any) -> Any:
        answer = httpx.request(
            method, self.base_url + path, headers=self.headers, timeout=30, **kwargs
        )
        assert answer.status_code == expect, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {value!r})")
        time.sleep(0.05)


def drive(
    hosts: Sequence[SandboxHost], what: str, done: Callable[[], bool], rounds: int = 30
) -> list[CycleResult]:
    """Run agent cycles, host after host and round after round, until ``done()`` (checked
    after every cycle, so no host starts new work once it holds)."""
    results: list[CycleResult] = []
    for _ in range(rounds):
        for host in hosts:
            results.append(host.run_once())
            if done():
                return results
        time.sleep(0.3)  # let the orchestrator take its next step
    raise AssertionError(f"agents did not get to: {what}")


def jobs(database: Database, rollout_id: int) -> list[JobRow]:
    """The rollout's jobs, by id."""
    with database.session() as session:
        return list(
            session.scalars(
                select(JobRow).where(JobRow.rollout_id == rollout_id).order_by(JobRow.id)
            )
        )


def results(database: Database, job_ids: Iterable[int]) -> list[JobResultRow]:
    """Every stored result of these jobs, oldest first."""
    with database.session() as session:
        return list(
            session.scalars(
                select(JobResultRow)
                .where(JobResultRow.job_id.in_(list(job_ids)))
                .order_by(JobResultRow.id)
            )
        )
