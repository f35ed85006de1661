"""A staged deployment end to end: real server processes, real agents, real apt and dnf.

Five hosts, each an agent with its own sandbox root (``apt-get -o Dir=…`` or
``dnf --installroot=…``) and state folder, enrolled with a live server (uvicorn, on
SQLite and on PostgreSQL) whose clock the test moves through a file. Their packages come
from repositories built here; advisories say ``pw-hello`` and ``pw-broken`` are fixed in
2.0-1, and the RPM build of ``pw-broken`` 2.0-1 breaks its health check.

1. The bad update walks lab → pilot: lab succeeds; in pilot the Debian host succeeds,
   the RPM host fails its check, rolls back, retries after the backoff, fails again —
   the ring halts at its error budget and production is never touched. An operator
   rolls the halted ring back: the Debian host that had succeeded returns to 1.0-1.
2. The good update goes through lab, pilot (soak) and — after a second person approved
   and the maintenance window opened — production. The server is killed (SIGKILL)
   while a production job is released, and again while it runs, with its lease
   lapsing meanwhile; after each restart every job finishes, exactly once.

The agents are ``Agent`` objects driven cycle by cycle from the test; the server's
orchestrator runs on its own every 0.2 s.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from patchwarden.agent.runner import Agent, CycleResult
from patchwarden.core import rollout as rules
from patchwarden.server.services import agents, deploy
from patchwarden.server.services.identity import create_token, create_user
from patchwarden.server.services.orchestrator import build_view
from patchwarden.store.advisories import import_advisories
from patchwarden.store.audit import Actor
from patchwarden.store.db import Database, open_database
from patchwarden.store.groups import create_group
from patchwarden.store.models import (
    AgentReportRow,
    AssetPackage,
    FindingRow,
    JobResultRow,
    JobRow,
    PackageRow,
    RolloutRingRow,
    RolloutRow,
)
from tests.agent.pkgrepo import APT_TOOLS, DNF_TOOLS, require_tools
from tests.e2e.rollout_support import (
    HEALTH_CHECK,
    V1,
    V2,
    FileClock,
    Operator,
    SandboxHost,
    advisories,
    build_repositories,
    drive,
    jobs,
    results,
    wait_for,
)
from tests.e2e.servers import ServerProcess
from tests.support import TEST_AUDIT_KEY

WEDNESDAY = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
#: 02:05 in Berlin: five minutes into the production window.
SATURDAY_NIGHT = datetime(2026, 12, 5, 1, 5, tzinfo=UTC)
HOSTS = (
    ("deb-lab", "apt", "lab"),
    ("deb-pilot", "apt", "pilot"),
    ("rpm-pilot", "dnf", "pilot"),
    ("deb-prod", "apt", "production"),
    ("rpm-prod", "dnf", "production"),
)
SETUP = Actor("e2e-setup", "system")


@pytest.fixture(scope="module")
def repositories(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_tools(*APT_TOOLS, *DNF_TOOLS)
    return build_repositories(tmp_path_factory.mktemp("repos"))


class Scene:
    """Everything the test works with: server, clock, database, hosts, people, groups."""

    def __init__(
        self,
        server: ServerProcess,
        clock: FileClock,
        database: Database,
        hosts: dict[str, SandboxHost],
    ) -> None:
        self.server = server
        self.clock = clock
        self.database = database
        self.hosts = hosts
        self.groups: dict[str, int] = {}
        self.asset_ids: dict[str, int] = {}
        self.operator: Operator
        self.approver: Operator

    @property
    def all_hosts(self) -> list[SandboxHost]:
        return list(self.hosts.values())

    def host_of(self, asset_id: int) -> SandboxHost:
        return next(self.hosts[n] for n, a in self.asset_ids.items() if a == asset_id)

    def rollout(self, rollout_id: int) -> dict[str, Any]:
        found: dict[str, Any] = self.operator.call("GET", f"/api/v1/rollouts/{rollout_id}")
        return found

    def ring_statuses(self, rollout_id: int) -> list[str]:
        return [ring["status"] for ring in self.rollout(rollout_id)["rings"]]

    def job_of(self, rollout_id: int, host: str, kind: str = "install") -> Any:
        asset_id = self.asset_ids[host]
        return next(
            j for j in jobs(self.database, rollout_id) if j.asset_id == asset_id and j.kind == kind
        )

    def spec(self, name: str, *, max_attempts: int, **selection: list[str]) -> dict[str, Any]:
        lab, pilot, production = (self.groups[g] for g in ("lab", "pilot", "production"))
        return {
            "name": name,
            "target_groups": [lab, pilot, production],
            **selection,
            "rings": [
                {"name": "lab", "groups": [lab], "concurrency": "1", "error_budget": "1"},
                {
                    "name": "pilot",
                    "groups": [pilot],
                    "concurrency": "2",
                    "error_budget": "1",
                    "soak_minutes": 60,
                },
                {
                    "name": "production",
                    "groups": [production],
                    "concurrency": "1",
                    "error_budget": "1",
                    "requires_approval": True,
                },
            ],
            "policy": {
                "max_attempts": max_attempts,
                "retry_backoff_minutes": 5,
                "expected_minutes": 30,
                "lease_minutes": 15,
                "pre_hooks": ["snapshot"],
                "checks": [HEALTH_CHECK],
                "check_timeout": 10,
                "reboot": "never",
            },
        }


@pytest.fixture
def scene(
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    repositories: dict[str, Path],
) -> Iterator[Scene]:
    """A running server with five enrolled hosts (inventories uploaded), two people,
    three groups and a Saturday-night window on production."""
    clock = FileClock(tmp_path / "clock", WEDNESDAY)
    monkeypatch.setenv("PATCHWARDEN_TEST_CLOCK_FILE", str(clock.path))
    monkeypatch.setenv("PATCHWARDEN_ORCHESTRATOR_INTERVAL", "0.2")
    database = open_database(db_url, migrate=False, audit_key=TEST_AUDIT_KEY)
    with database.session() as session:
        import_advisories(session, advisories())
        olga = create_user(
            session,
            SETUP,
            username="olga",
            password="operator-pass-1234",
            role="operator",
            now=clock.now,
        )
        arne = create_user(
            session,
            SETUP,
            username="arne",
            password="approver-pass-1234",
            role="approver",
            now=clock.now,
        )
        olga_token = create_token(
            session, SETUP, olga, name="e2e", scopes=None, days=30, now=clock.now
        )[1]
        arne_token = create_token(
            session, SETUP, arne, name="e2e", scopes=None, days=30, now=clock.now
        )[1]
        _token_row, enrollment = agents.create_enrollment_token(
            session, SETUP, now=clock.now, max_uses=len(HOSTS)
        )
    hosts = {
        name: SandboxHost.create(tmp_path / "hosts", name, backend, repositories[backend], n + 1)
        for n, (name, backend, _group) in enumerate(HOSTS)
    }
    server = ServerProcess(db_url, tmp_path / "server").start()
    scene = Scene(server, clock, database, hosts)
    scene.operator = Operator(server.url, olga_token)
    scene.approver = Operator(server.url, arne_token)
    try:
        for host in scene.all_hosts:
            host.agent = Agent(host.config(server.url))
            host.agent.enroll(enrollment, hostname=host.name)
            first = host.run_once()
            assert (first.checked_in, first.uploaded, first.jobs) == (True, True, ())
            scene.asset_ids[host.name] = int(host.agent.status()["asset_id"])
        wait_for("the inventories to be processed", lambda: processed(database) == len(HOSTS))
        with database.session() as session:
            for group in ("lab", "pilot", "production"):
                members = [scene.asset_ids[h] for h, _b, g in HOSTS if g == group]
                row = create_group(session, SETUP, name=group, now=clock.now, members=members)
                scene.groups[group] = row.id
            window = deploy.create_window(
                session,
                SETUP,
                name="saturday-night",
                rrule="FREQ=WEEKLY;BYDAY=SA;BYHOUR=2",
                timezone="Europe/Berlin",
                duration_minutes=120,
                now=clock.now,
            )
            deploy.attach_window(session, SETUP, "production", window.id, now=clock.now)
        yield scene
    finally:
        server.stop()
        database.dispose()


def processed(database: Database) -> int:
    """Agent reports the server has finished processing (0 while any is still open)."""
    with database.session() as session:
        statuses = list(session.scalars(select(AgentReportRow.status)))
    return 0 if set(statuses) - {"processed"} else len(statuses)


def open_findings(database: Database, asset_id: int) -> set[str]:
    """Names of the packages with open findings on an asset."""
    with database.session() as session:
        return set(
            session.scalars(
                select(PackageRow.name)
                .join(FindingRow, FindingRow.package_id == PackageRow.id)
                .where(FindingRow.asset_id == asset_id, FindingRow.state == "open")
            )
        )


def stored_versions(database: Database, asset_id: int) -> dict[str, str]:
    """What the server believes is installed on an asset."""
    with database.session() as session:
        rows = session.execute(
            select(PackageRow.name, PackageRow.version)
            .join(AssetPackage, AssetPackage.package_id == PackageRow.id)
            .where(AssetPackage.asset_id == asset_id)
        )
        return dict(rows.tuples().all())


def results_per_attempt(database: Database) -> Counter[tuple[int, int]]:
    """How many results the server stored for each (job, attempt)."""
    with database.session() as session:
        rows = session.execute(select(JobResultRow.job_id, JobResultRow.attempt))
        return Counter(rows.tuples().all())


def test_rings_windows_budget_rollback_and_a_server_crash(scene: Scene) -> None:
    for name, asset_id in scene.asset_ids.items():
        assert open_findings(scene.database, asset_id) == {"pw-hello", "pw-broken"}, name
    bad = bad_update_halts_in_pilot_and_is_rolled_back(scene)
    good = good_update_reaches_production_through_two_crashes(scene)

    # Exactly one stored result per (job, attempt), across both rollouts.
    counts = results_per_attempt(scene.database)
    assert set(counts.values()) == {1}, counts
    with scene.database.session() as session:
        statuses = dict(session.execute(select(RolloutRow.id, RolloutRow.status)).tuples().all())
    # Only the pilot ring was rolled back; lab stays patched, so the rollout stays halted.
    assert statuses == {bad: "halted", good: "completed"}


def bad_update_halts_in_pilot_and_is_rolled_back(scene: Scene) -> int:
    """pw-broken 2.0-1: fine on Debian, its RPM build fails the health check."""
    hosts = scene.hosts
    created = scene.operator.call(
        "POST",
        "/api/v1/rollouts",
        json=scene.spec("pw-broken 2.0", max_attempts=2, packages=["pw-broken"]),
        expect=201,
    )
    rollout_id = int(created["id"])
    planned = jobs(scene.database, rollout_id)
    assert [j.ring_idx for j in planned] == [0, 1, 1, 2, 2]
    assert all(j.payload["packages"] == [{"name": "pw-broken", "version": V2}] for j in planned)
    assert {j.payload["backend"] for j in planned} == {"apt", "dnf"}

    # Lab: one host, concurrency 1.
    lab = scene.job_of(rollout_id, "deb-lab")
    drive(scene.all_hosts, "the lab job", lambda: status(scene, lab.id) == "succeeded")
    assert hosts["deb-lab"].installed()["pw-broken"] == V2

    # Pilot: concurrency 2 releases both hosts at once; the RPM host fails its check
    # and rolls back.
    deb_job = scene.job_of(rollout_id, "deb-pilot")
    rpm_job = scene.job_of(rollout_id, "rpm-pilot")
    wait_for(
        "both pilot jobs to be released",
        lambda: {status(scene, deb_job.id), status(scene, rpm_job.id)} == {"ready"},
    )
    drive(
        scene.all_hosts,
        "the pilot jobs' first attempts",
        lambda: (
            (status(scene, deb_job.id), status(scene, rpm_job.id)) == ("succeeded", "retry_wait")
        ),
    )
    [first] = results(scene.database, [rpm_job.id])
    assert (first.attempt, first.status) == (1, "rolled_back")
    assert first.detail["error"].startswith("check failed: broken-healthy")
    assert first.detail["rollback"] == {
        "attempted": True,
        "ok": True,
        "restored": {"pw-broken": V1},
    }
    assert hosts["rpm-pilot"].installed()["pw-broken"] == V1
    assert scene.ring_statuses(rollout_id) == ["completed", "running", "pending"]

    # After the backoff the retry fails the same way: the budget of 1 is spent.
    scene.clock.advance(minutes=6)
    drive(
        scene.all_hosts,
        "the pilot ring to halt",
        lambda: scene.rollout(rollout_id)["status"] == "halted",
    )
    attempts = results(scene.database, [rpm_job.id])
    assert [(r.attempt, r.status) for r in attempts] == [(1, "rolled_back"), (2, "rolled_back")]
    # The second attempt kept the first attempt's journal: 1.0-1 is what it restored.
    assert attempts[1].detail["before"] == {"pw-broken": V1}
    assert hosts["rpm-pilot"].snapshots() == [rpm_job.id, rpm_job.id]
    shown = scene.rollout(rollout_id)
    assert [r["status"] for r in shown["rings"]] == ["completed", "halted", "pending"]
    assert "error budget of 1" in shown["halt_reason"]
    assert hosts["rpm-pilot"].installed() == {"pw-hello": V1, "pw-broken": V1}
    assert hosts["rpm-pilot"].health.read_text().strip() == "healthy"
    assert hosts["rpm-pilot"].installs("pw-broken", V2) == 2  # one install per attempt
    for name in ("deb-prod", "rpm-prod"):
        job = scene.job_of(rollout_id, name)
        assert (job.status, job.released_at, job.attempt) == ("pending", None, 0)
        assert hosts[name].installed()["pw-broken"] == V1
        assert hosts[name].snapshots() == []

    # The operator rolls the halted ring back: the host that had succeeded returns to 1.0-1.
    scene.operator.call("POST", f"/api/v1/rollouts/{rollout_id}/rollback?ring=1")
    undo = scene.job_of(rollout_id, "deb-pilot", kind="rollback")
    assert undo.payload["rollback_of"] == deb_job.id
    with pytest.raises(StopIteration):
        scene.job_of(rollout_id, "rpm-pilot", kind="rollback")  # it restored itself
    drive(scene.all_hosts, "the rollback job", lambda: status(scene, undo.id) == "succeeded")
    [undone] = results(scene.database, [undo.id])
    assert undone.detail["rollback"] == {
        "attempted": True,
        "ok": True,
        "restored": {"pw-broken": V1},
    }
    assert hosts["deb-pilot"].installed() == {"pw-hello": V1, "pw-broken": V1}
    assert hosts["deb-pilot"].installs("pw-broken", V1) == 2  # first install, then the rollback
    assert status(scene, deb_job.id) == "rolled_back"
    # The server learns the restored versions (an inventory the host had reported before).
    drive(
        scene.all_hosts,
        "the restored inventory",
        lambda: stored_versions(scene.database, deb_job.asset_id)["pw-broken"] == V1,
    )
    assert hosts["deb-lab"].installed()["pw-broken"] == V2  # the lab ring was not rolled back
    return rollout_id


def good_update_reaches_production_through_two_crashes(scene: Scene) -> int:
    """pw-hello 2.0-1 by advisory, through an approval gate and a maintenance window,
    with the server killed while a production job is released and while it runs."""
    hosts, clock = scene.hosts, scene.clock
    created = scene.operator.call(
        "POST",
        "/api/v1/rollouts",
        json=scene.spec("pw-hello 2.0", max_attempts=2, advisories=["CVE-2026-9001"]),
        expect=201,
    )
    rollout_id = int(created["id"])
    assert all(
        j.payload["packages"] == [{"name": "pw-hello", "version": V2}]
        for j in jobs(scene.database, rollout_id)
    )
    pilot = [scene.job_of(rollout_id, name).id for name in ("deb-pilot", "rpm-pilot")]
    drive(
        scene.all_hosts,
        "lab and pilot",
        lambda: scene.ring_statuses(rollout_id) == ["completed", "soaking", "pending"],
    )
    assert {status(scene, job_id) for job_id in pilot} == {"succeeded"}
    soak_until = scene.rollout(rollout_id)["rings"][1]["soak_until"]
    assert datetime.fromisoformat(soak_until) == clock.now + timedelta(minutes=60)

    # Soaked: production waits for an approver — not the requester, who may not.
    clock.advance(minutes=61)
    wait_for(
        "the approval gate",
        lambda: scene.ring_statuses(rollout_id) == ["completed", "completed", "awaiting_approval"],
    )
    scene.operator.call(
        "POST", f"/api/v1/rollouts/{rollout_id}/approve?ring=2", json={}, expect=403
    )
    scene.approver.call(
        "POST", f"/api/v1/rollouts/{rollout_id}/approve?ring=2", json={"comment": "go"}
    )
    wait_for("production to start", lambda: scene.ring_statuses(rollout_id)[2] == "running")

    # Wednesday: the production window is closed, so nothing is released there.
    production = [scene.job_of(rollout_id, name).id for name in ("deb-prod", "rpm-prod")]
    with scene.database.session() as session:
        row = session.get(RolloutRow, rollout_id)
        assert row is not None
        actions = rules.decide(build_view(session, row), clock.now)
    assert not [a for a in actions if isinstance(a, rules.Release)], actions
    assert [host.run_once().jobs for host in scene.all_hosts] == [()] * len(HOSTS)
    assert {status(scene, job_id) for job_id in production} == {"pending"}

    # Saturday 02:05 in Berlin: the window is open; concurrency 1 releases one job.
    clock.set(SATURDAY_NIGHT)
    first, second = production
    wait_for("the first production job", lambda: status(scene, first) == "ready")
    assert status(scene, second) == "pending"
    prod_host = hosts["deb-prod"]
    assert scene.job_of(rollout_id, "deb-prod").id == first

    # Crash 1: the job is released, nobody has claimed it yet.
    scene.server.kill()
    scene.server.start()
    released = scene.job_of(rollout_id, "deb-prod")
    assert (released.status, released.attempt, released.claimed_at) == ("ready", 0, None)

    # The job starts and its snapshot hook holds it; heartbeats renew the lease.
    prod_host.hold.touch()
    outcome: list[CycleResult] = []
    running = threading.Thread(target=lambda: outcome.append(prod_host.run_once()))
    running.start()
    try:
        wait_for("the held job to start", lambda: prod_host.snapshots() == [first])
        claimed = scene.job_of(rollout_id, "deb-prod")
        assert (claimed.status, claimed.attempt) == ("running", 1)
        assert claimed.lease_until == clock.now + timedelta(minutes=15)
        clock.advance(minutes=1)
        renewed = clock.now + timedelta(minutes=15)
        wait_for(
            "a heartbeat",
            lambda: scene.job_of(rollout_id, "deb-prod").lease_until == renewed,
            timeout=10,
        )

        # Crash 2: the server dies while the job runs, and its lease lapses meanwhile.
        scene.server.kill()
        clock.advance(minutes=20)
    finally:
        prod_host.hold.unlink(missing_ok=True)
        running.join(timeout=60)
    [cycle] = outcome
    assert [(j["job_id"], j["status"]) for j in cycle.jobs] == [(first, "succeeded")]
    assert cycle.spooled >= 1  # the result waits on disk
    assert prod_host.agent is not None
    assert prod_host.agent.status()["job_results_waiting"] == 1
    assert results(scene.database, [first]) == []
    assert prod_host.installed()["pw-hello"] == V2

    scene.server.start()
    # The restarted orchestrator sees the lapsed lease and offers the job again …
    wait_for("the lapsed lease", lambda: status(scene, first) == "ready")
    # … but the agent first delivers the result it kept: the job is done, not re-run.
    after = prod_host.run_once()
    assert (after.jobs, after.spooled) == ((), 0)
    assert status(scene, first) == "succeeded"
    drive(
        scene.all_hosts,
        "the rest of production",
        lambda: scene.rollout(rollout_id)["status"] == "completed",
    )
    assert scene.ring_statuses(rollout_id) == ["completed"] * 3

    # Every job ran once: one result each, one install of 2.0-1 per host.
    for job in jobs(scene.database, rollout_id):
        assert [(r.attempt, r.status) for r in results(scene.database, [job.id])] == [
            (1, "succeeded")
        ]
        assert (job.status, job.attempt) == ("succeeded", 1)
    for host in scene.all_hosts:
        assert host.installed()["pw-hello"] == V2, host.name
        assert host.installs("pw-hello", V2) == 1, host.name
    assert prod_host.snapshots() == [first]
    assert hosts["rpm-prod"].snapshots() == [second]

    # The agents reported their new inventories: the findings are resolved.
    wait_for("the last inventories", lambda: processed(scene.database) > 0)
    for name, asset_id in scene.asset_ids.items():
        assert stored_versions(scene.database, asset_id)["pw-hello"] == V2, name
        assert "pw-hello" not in open_findings(scene.database, asset_id), name
    return rollout_id


def status(scene: Scene, job_id: int) -> str:
    """A job's status as stored."""
    with scene.database.session() as session:
        row = session.get(JobRow, job_id)
        assert row is not None
        return row.status


def test_script_packages_come_from_the_server_checked_and_only_where_allowed(
    scene: Scene, tmp_path: Path
) -> None:
    """Script jobs as the server sends them (``script_package`` names its ``id``): the
    artifact is fetched through the agent's credential and checked against the sha256
    the server announces; a host that does not allow script packages refuses the job.

    The server does not plan script jobs from a rollout spec yet, so the rollout, its
    ring and the jobs are written here the way ``deploy`` writes them."""
    now = scene.clock.now
    markers = {version: tmp_path / f"vendor-tool-{version}" for version in ("7.2.1", "7.2.2")}

    def commands(version: str) -> dict[str, list[str]]:
        marker = str(markers[version])
        return {
            "detect": ["grep", "-qx", version, marker],
            "install": ["/bin/sh", "{artifact}", version, marker],
            "verify": ["test", "-s", marker],
            "uninstall": ["rm", "-f", marker],
        }

    installer = b'#!/bin/sh\necho "$1" > "$2"\n'
    with scene.database.session() as session:
        packages = {
            version: deploy.register_script_package(
                session,
                SETUP,
                name="vendor-tool",
                version=version,
                artifact=installer,
                commands=commands(version),
                now=now,
            )
            for version in markers
        }
        packages["7.2.2"].artifact = b'#!/bin/sh\necho "tampered" > "$2"\n'  # sha256 kept
        rollout = RolloutRow(
            name="vendor tool",
            status="running",
            requested_by="olga",
            created_at=now,
            policy={**deploy.DEFAULT_POLICY, "max_attempts": 1, "reboot": "never"},
        )
        session.add(rollout)
        session.flush()
        session.add(
            RolloutRingRow(
                rollout_id=rollout.id,
                idx=0,
                name="all",
                concurrency=3,
                error_budget=3,
                success_threshold=0.0,
            )
        )
        planned = {"deb-lab": "7.2.1", "deb-pilot": "7.2.2", "rpm-pilot": "7.2.1"}
        for name, version in planned.items():
            row = packages[version]
            wire = {"id": row.id, "name": row.name, "version": row.version, "sha256": row.sha256}
            session.add(
                JobRow(
                    rollout_id=rollout.id,
                    ring_idx=0,
                    asset_id=scene.asset_ids[name],
                    kind="install",
                    status="ready",
                    released_at=now,
                    payload={
                        "kind": "install",
                        "backend": "script",
                        "reboot": "never",
                        "script_package": {**wire, **row.commands},
                    },
                )
            )
        rollout_id = rollout.id
    for allowed in ("deb-lab", "deb-pilot"):  # rpm-pilot keeps the default: not allowed
        host = scene.hosts[allowed]
        host.agent = Agent(host.config(scene.server.url).replace(allow_script_packages=True))

    drive(
        [scene.hosts[name] for name in planned],
        "the script jobs",
        lambda: all(j.status in rules.FINAL for j in jobs(scene.database, rollout_id)),
    )
    outcome = {
        scene.host_of(j.asset_id).name: (j.status, results(scene.database, [j.id])[0].detail)
        for j in jobs(scene.database, rollout_id)
    }
    status_installed, installed = outcome["deb-lab"]
    assert status_installed == "succeeded", installed
    assert markers["7.2.1"].read_text() == "7.2.1\n"
    assert "sha256" in installed["steps"][0]["output"]
    assert installed["after"] == {"vendor-tool": "7.2.1"}

    status_tampered, tampered = outcome["deb-pilot"]
    assert status_tampered == "failed"
    assert "the server announced" in tampered["error"]
    assert [step["name"] for step in tampered["steps"]] == ["prepare"]  # nothing ran
    assert not markers["7.2.2"].exists()

    status_refused, refused = outcome["rpm-pilot"]
    assert status_refused == "failed"
    assert refused["error"].startswith("job refused: script packages are not allowed")
