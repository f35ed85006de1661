"""Deployment on the server: planning, approvals (four eyes), the orchestrator loop over
the agent job API, halts, resume, rollback, exceptions with expiry, change records,
leader election — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from patchwarden.cli.main import run
from patchwarden.core.errors import Conflict, PermissionDenied, ValidationFailed
from patchwarden.core.model import (
    Advisory,
    Affected,
    AffectedRange,
    Event,
    InstalledPackage,
    Inventory,
    OsInfo,
)
from patchwarden.reports.change_record import change_record, to_markdown
from patchwarden.server.context import AppContext
from patchwarden.server.services import agents, deploy, identity
from patchwarden.server.services.orchestrator import Leadership, tick
from patchwarden.store.advisories import import_advisories
from patchwarden.store.audit import SYSTEM
from patchwarden.store.findings import refresh_findings
from patchwarden.store.groups import create_group
from patchwarden.store.inventory import get_asset, record_inventory
from patchwarden.store.models import (
    ApprovalRow,
    AuditEventRow,
    FindingRow,
    JobResultRow,
    JobRow,
    RolloutRow,
)
from tests.server.conftest import USER_IDS, Clock, bearer, user_actor

OPERATOR = user_actor("operator")
APPROVER = user_actor("approver")
DEBIAN = OsInfo(id="debian", version_id="12", ecosystem="Debian:12", family="debian")


def advisory(ident: str, source: str, fixed: str, cve: str) -> Advisory:
    return Advisory(
        id=ident,
        modified=datetime(2026, 1, 1, tzinfo=UTC),
        published=datetime(2026, 1, 1, tzinfo=UTC),
        aliases=(cve,),
        affected=(
            Affected(
                "Debian:12",
                source,
                (AffectedRange("ECOSYSTEM", (Event("introduced", "0"), Event("fixed", fixed))),),
            ),
        ),
        database_severity="high",
    )


class Fleet:
    """Hosts enrolled as agents, with findings, groups lab/prod."""

    def __init__(self, ctx: AppContext, client: TestClient, lab: int, prod: int) -> None:
        self.ctx, self.client = ctx, client
        self.credentials: dict[int, str] = {}
        with ctx.db.session() as session:
            import_advisories(
                session,
                [
                    advisory("DSA-0001-1", "openssl", "3.0.11-1", "CVE-2026-0001"),
                    advisory("DSA-0002-1", "curl", "7.88.1-10", "CVE-2026-0002"),
                ],
            )
            _row, token = agents.create_enrollment_token(
                session, OPERATOR, now=ctx.now(), max_uses=lab + prod
            )
        for n in range(lab + prod):
            env = "lab" if n < lab else "production"
            enrolled = client.post(
                "/api/agent/v1/enroll", json={"enrollment_token": token, "hostname": f"{env}-{n}"}
            ).json()
            self.credentials[enrolled["asset_id"]] = enrolled["credential"]
            with ctx.db.session() as session:
                record_inventory(
                    session,
                    Inventory(
                        hostname=f"{env}-{n}",
                        os=DEBIAN,
                        packages=(
                            InstalledPackage(
                                "libssl3", "3.0.9-1", "Debian:12", "amd64", "openssl", "3.0.9-1"
                            ),
                            InstalledPackage(
                                "curl", "7.88.1-1", "Debian:12", "amd64", "curl", "7.88.1-1"
                            ),
                        ),
                    ),
                    now=ctx.now(),
                    asset_id=enrolled["asset_id"],
                    source="agent",
                )
                get_asset(session, enrolled["asset_id"]).environment = env
        with ctx.db.session() as session:
            refresh_findings(session, now=ctx.now())
            ids = sorted(self.credentials)
            create_group(session, OPERATOR, name="lab", now=ctx.now(), members=ids[:lab])
            create_group(session, OPERATOR, name="prod", now=ctx.now(), members=ids[lab:])

    def rollout(self, **overrides: object) -> int:
        spec: dict[str, object] = {
            "name": "nov",
            "target_groups": ["lab", "prod"],
            "advisories": ["DSA-0001-1"],
            "rings": [
                deploy.RingSpec("lab", groups=("lab",), concurrency="1", error_budget="1"),
                deploy.RingSpec("prod", groups=("prod",), concurrency="2", error_budget="1"),
            ],
            "policy": {"max_attempts": 1},
        }
        spec.update(overrides)
        with self.ctx.db.session() as session:
            row = deploy.create_rollout(session, OPERATOR, now=self.ctx.now(), **spec)  # type: ignore[arg-type]
            return row.id

    def agent_cycle(self, outcome: dict[int, str] | None = None) -> dict[int, list[int]]:
        """Every agent claims its jobs and reports ``outcome`` (default: succeeded)."""
        done: dict[int, list[int]] = {}
        for asset_id, credential in self.credentials.items():
            jobs = self.client.get("/api/agent/v1/jobs", headers=bearer(credential)).json()["jobs"]
            for job in jobs:
                status = (outcome or {}).get(asset_id, "succeeded")
                answer = self.client.post(
                    f"/api/agent/v1/jobs/{job['job_id']}/result",
                    headers=bearer(credential),
                    json={
                        "attempt": job["attempt"],
                        "status": status,
                        "result": {"error": None if status == "succeeded" else "check failed"},
                    },
                )
                assert answer.status_code == 200, answer.text
                done.setdefault(asset_id, []).append(job["job_id"])
        return done

    def statuses(self, rollout_id: int) -> dict[str, str]:
        with self.ctx.db.session() as session:
            row = session.get(RolloutRow, rollout_id)
            assert row is not None
            out = deploy.rollout_json(session, row)
        return {"rollout": out["status"], **{r["name"]: r["status"] for r in out["rings"]}}


@pytest.fixture
def fleet(ctx: AppContext, app_client: TestClient) -> Fleet:
    return Fleet(ctx, app_client, lab=2, prod=3)


def test_planning_jobs_and_production_approval(fleet: Fleet, ctx: AppContext) -> None:
    rollout_id = fleet.rollout()
    with ctx.db.session() as session:
        jobs = list(session.scalars(select(JobRow).where(JobRow.rollout_id == rollout_id)))
        rings = deploy.rollout_json(session, deploy.get_rollout(session, rollout_id))["rings"]
    assert len(jobs) == 5
    assert {tuple((p["name"], p["version"]) for p in j.payload["packages"]) for j in jobs} == {
        (("libssl3", "3.0.11-1"),)  # only the selected advisory; curl is not in scope
    }
    assert jobs[0].payload["backend"] == "apt"
    assert [r["requires_approval"] for r in rings] == [False, True]  # production hosts

    with ctx.db.session() as session, pytest.raises(PermissionDenied, match="four eyes"):
        deploy.approve_rollout(session, OPERATOR, rollout_id, ring=1, now=ctx.now())


def test_rings_progress_with_concurrency_and_a_gate(
    fleet: Fleet, ctx: AppContext, clock: Clock
) -> None:
    rollout_id = fleet.rollout()
    tick(ctx.db, now=ctx.now())  # start lab
    tick(ctx.db, now=ctx.now())  # release 1 (concurrency 1)
    with ctx.db.session() as session:
        ready = session.scalar(
            select(func.count()).select_from(JobRow).where(JobRow.status == "ready")
        )
    assert ready == 1
    for _ in range(4):
        fleet.agent_cycle()
        tick(ctx.db, now=ctx.now())
    assert fleet.statuses(rollout_id) == {
        "rollout": "running",
        "lab": "completed",
        "prod": "awaiting_approval",
    }
    with ctx.db.session() as session:
        deploy.approve_rollout(session, APPROVER, rollout_id, ring=1, comment="ok", now=ctx.now())
    for _ in range(4):
        tick(ctx.db, now=ctx.now())
        fleet.agent_cycle()
    tick(ctx.db, now=ctx.now())
    tick(ctx.db, now=ctx.now())
    assert fleet.statuses(rollout_id)["rollout"] == "completed"
    with ctx.db.session() as session:
        record = change_record(session, deploy.get_rollout(session, rollout_id))
    assert record["outcome"]["jobs"] == {"succeeded": 5}
    assert record["approvals"][0]["approver"] == "approver"
    markdown = to_markdown(record)
    assert "# Change PW-" in markdown
    assert "| prod | 3 | 2 | 1 |" in markdown


def test_failures_halt_then_resume_and_rollback(fleet: Fleet, ctx: AppContext) -> None:
    rollout_id = fleet.rollout()
    ids = sorted(fleet.credentials)
    tick(ctx.db, now=ctx.now())
    tick(ctx.db, now=ctx.now())
    fleet.agent_cycle(outcome={ids[0]: "rolled_back", ids[1]: "rolled_back"})
    tick(ctx.db, now=ctx.now())
    status = fleet.statuses(rollout_id)
    assert status == {"rollout": "halted", "lab": "halted", "prod": "pending"}
    with ctx.db.session() as session:
        row = deploy.get_rollout(session, rollout_id)
        assert "error budget" in row.halt_reason
        still_pending = session.scalar(
            select(func.count())
            .select_from(JobRow)
            .where(
                JobRow.rollout_id == rollout_id, JobRow.ring_idx == 0, JobRow.status == "pending"
            )
        )
    assert still_pending == 1  # nothing released after the halt
    tick(ctx.db, now=ctx.now())
    assert fleet.agent_cycle() == {}  # halted: no job handed out

    with ctx.db.session() as session:
        deploy.set_rollout_state(session, OPERATOR, rollout_id, "resume", now=ctx.now())
    tick(ctx.db, now=ctx.now())
    done = fleet.agent_cycle()
    assert list(done) == [ids[1]]  # the second lab host runs now
    tick(ctx.db, now=ctx.now())

    with ctx.db.session() as session:
        created = deploy.rollback_rollout(session, OPERATOR, rollout_id, ring=0, now=ctx.now())
    assert created == 1  # only the host whose install succeeded is rolled back
    rolled = fleet.agent_cycle()
    assert list(rolled) == [ids[1]]
    with ctx.db.session() as session:
        kinds = dict(
            session.execute(
                select(JobRow.kind, func.count())
                .where(JobRow.rollout_id == rollout_id, JobRow.status == "rolled_back")
                .group_by(JobRow.kind)
            )
            .tuples()
            .all()
        )
        assert kinds == {"install": 1}
        assert deploy.get_rollout(session, rollout_id).status == "rolled_back"


def test_results_are_idempotent_and_retries_are_visible(
    fleet: Fleet, ctx: AppContext, clock: Clock
) -> None:
    rollout_id = fleet.rollout(policy={"max_attempts": 2, "retry_backoff_minutes": 1})
    ids = sorted(fleet.credentials)
    tick(ctx.db, now=ctx.now())
    tick(ctx.db, now=ctx.now())
    credential = fleet.credentials[ids[0]]
    (job,) = fleet.client.get("/api/agent/v1/jobs", headers=bearer(credential)).json()["jobs"]
    body = {"attempt": 1, "status": "failed", "result": {"error": "dpkg lock"}}
    first = fleet.client.post(
        f"/api/agent/v1/jobs/{job['job_id']}/result", json=body, headers=bearer(credential)
    )
    again = fleet.client.post(
        f"/api/agent/v1/jobs/{job['job_id']}/result", json=body, headers=bearer(credential)
    )
    assert first.json()["status"] == "retry_wait"
    assert again.json()["duplicate"] is True
    other = fleet.credentials[ids[1]]
    stolen = fleet.client.post(
        f"/api/agent/v1/jobs/{job['job_id']}/result", json=body, headers=bearer(other)
    )
    assert stolen.status_code == 404  # an agent only reports on its own host's jobs
    clock.advance(minutes=2)
    tick(ctx.db, now=ctx.now())
    (retry,) = fleet.client.get("/api/agent/v1/jobs", headers=bearer(credential)).json()["jobs"]
    assert retry["attempt"] == 2
    with ctx.db.session() as session:
        results = session.scalar(select(func.count()).select_from(JobResultRow))
    assert results == 1
    del rollout_id


def test_offline_hosts_and_lapsed_leases(fleet: Fleet, ctx: AppContext, clock: Clock) -> None:
    rollout_id = fleet.rollout(
        policy={"claim_deadline_minutes": 30, "lease_minutes": 5, "progress_deadline_minutes": 60}
    )
    tick(ctx.db, now=ctx.now())
    tick(ctx.db, now=ctx.now())
    ids = sorted(fleet.credentials)
    credential = fleet.credentials[ids[0]]
    (job,) = fleet.client.get("/api/agent/v1/jobs", headers=bearer(credential)).json()["jobs"]
    clock.advance(minutes=6)  # the agent died: the lease lapses
    tick(ctx.db, now=ctx.now())
    (again,) = fleet.client.get("/api/agent/v1/jobs", headers=bearer(credential)).json()["jobs"]
    assert again["job_id"] == job["job_id"]
    assert again["attempt"] == 1  # same attempt: at-least-once, idempotent on (job, attempt)
    beat = fleet.client.post(
        f"/api/agent/v1/jobs/{job['job_id']}/heartbeat",
        json={"attempt": 1},
        headers=bearer(credential),
    )
    assert beat.status_code == 200
    fleet.client.post(
        f"/api/agent/v1/jobs/{job['job_id']}/result",
        json={"attempt": 1, "status": "succeeded", "result": {}},
        headers=bearer(credential),
    )
    tick(ctx.db, now=ctx.now())  # releases the second lab host, which never claims it
    clock.advance(minutes=31)
    tick(ctx.db, now=ctx.now())
    with ctx.db.session() as session:
        statuses = sorted(
            session.scalars(
                select(JobRow.status).where(JobRow.rollout_id == rollout_id, JobRow.ring_idx == 0)
            )
        )
    assert statuses == ["offline", "succeeded"]
    tick(ctx.db, now=ctx.now())
    assert fleet.statuses(rollout_id)["lab"] == "completed"  # offline is not a failure


def test_emergency_rollouts_wait_for_one_approver(fleet: Fleet, ctx: AppContext) -> None:
    rollout_id = fleet.rollout(emergency=True)
    assert fleet.statuses(rollout_id)["rollout"] == "pending_approval"
    tick(ctx.db, now=ctx.now())
    assert fleet.agent_cycle() == {}
    with ctx.db.session() as session:
        deploy.approve_rollout(session, APPROVER, rollout_id, ring=None, now=ctx.now())
        with pytest.raises(Conflict):
            deploy.approve_rollout(session, APPROVER, rollout_id, ring=None, now=ctx.now())
    assert fleet.statuses(rollout_id)["rollout"] == "running"


def test_windows_gate_releases(fleet: Fleet, ctx: AppContext, clock: Clock) -> None:
    with ctx.db.session() as session:
        deploy.create_window(
            session,
            OPERATOR,
            name="sat",
            rrule="FREQ=WEEKLY;BYDAY=SA;BYHOUR=2",
            timezone="Europe/Berlin",
            duration_minutes=120,
            now=ctx.now(),
        )
        deploy.attach_window(session, OPERATOR, "lab", "sat", now=ctx.now())
        with pytest.raises(ValidationFailed):
            deploy.create_window(
                session,
                OPERATOR,
                name="bad",
                rrule="FREQ=SOMETIMES",
                timezone="Europe/Berlin",
                duration_minutes=60,
                now=ctx.now(),
            )
    rollout_id = fleet.rollout()
    clock.value = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # a Friday
    tick(ctx.db, now=ctx.now())
    tick(ctx.db, now=ctx.now())
    assert fleet.agent_cycle() == {}
    clock.value = datetime(2026, 11, 28, 1, 30, tzinfo=UTC)  # Saturday 02:30 in Berlin
    tick(ctx.db, now=ctx.now())
    assert len(fleet.agent_cycle()) == 1
    clock.value = datetime(2026, 11, 28, 2, 45, tzinfo=UTC)  # 15 min left < 30 expected
    tick(ctx.db, now=ctx.now())
    assert fleet.agent_cycle() == {}
    del rollout_id


def test_exceptions_four_eyes_accept_and_reopen_on_expiry(
    fleet: Fleet, ctx: AppContext, clock: Clock
) -> None:
    ids = sorted(fleet.credentials)
    with ctx.db.session() as session:
        row = deploy.request_exception(
            session,
            OPERATOR,
            advisory="CVE-2026-0001",
            asset_id=ids[0],
            justification="compensating WAF rule in front",
            expires_at=ctx.now() + timedelta(days=7),
            now=ctx.now(),
        )
        with pytest.raises(PermissionDenied):
            deploy.decide_exception(session, OPERATOR, row.id, approve_it=True, now=ctx.now())
        deploy.decide_exception(session, APPROVER, row.id, approve_it=True, now=ctx.now())
        states = dict(
            session.execute(
                select(FindingRow.state, func.count())
                .where(FindingRow.asset_id == ids[0])
                .group_by(FindingRow.state)
            )
            .tuples()
            .all()
        )
    assert states == {"accepted": 1, "open": 1}  # the openssl finding is accepted, curl stays
    rollout_id = fleet.rollout()
    with ctx.db.session() as session:
        hosts = set(session.scalars(select(JobRow.asset_id).where(JobRow.rollout_id == rollout_id)))
    assert ids[0] not in hosts  # excluded from deployment
    clock.advance(days=8)
    report = tick(ctx.db, now=ctx.now())
    assert report.expired_exceptions == 1
    with ctx.db.session() as session:
        reopened = session.scalar(
            select(func.count())
            .select_from(FindingRow)
            .where(FindingRow.asset_id == ids[0], FindingRow.state == "open")
        )
    assert reopened == 2


def test_only_one_orchestrator_leads(ctx: AppContext) -> None:
    first, second = Leadership(ctx.db), Leadership(ctx.db)
    try:
        assert first.acquire()
        assert first.acquire()  # idempotent for the leader
        assert not second.acquire()
        first.release()
        assert second.acquire()
    finally:
        first.release()
        second.release()


def test_new_kev_finding_on_exposed_asset_opens_an_emergency_rollout(
    fleet: Fleet, ctx: AppContext, clock: Clock
) -> None:
    from patchwarden.core.model import KevEntry
    from patchwarden.store.intel import replace_kev
    from patchwarden.store.models import AssetRow

    ids = sorted(fleet.credentials)
    with ctx.db.session() as session:
        with pytest.raises(ValidationFailed):
            deploy.set_emergency_profile(
                session, OPERATOR, {"rings": [{"groups": [1]}]}, now=ctx.now()
            )
        deploy.set_emergency_profile(
            session,
            OPERATOR,
            {"enabled": True, "rings": [{"name": "now", "concurrency": "50%"}]},
            now=ctx.now(),
        )
    assert tick(ctx.db, now=ctx.now()).emergency_rollout is None  # nothing new yet
    clock.advance(minutes=1)
    with ctx.db.session() as session:
        session.get(AssetRow, ids[0]).exposure = "internet"  # type: ignore[union-attr]
        import_advisories(session, [advisory("DSA-0003-1", "bash", "5.2.21-2", "CVE-2026-0003")])
        replace_kev(session, [KevEntry("CVE-2026-0003", clock().date(), clock().date())])
        record_inventory(
            session,
            Inventory(
                hostname="lab-0",
                os=DEBIAN,
                packages=(
                    InstalledPackage("bash", "5.2.15-2", "Debian:12", "amd64", "bash", "5.2.15-2"),
                ),
            ),
            now=ctx.now(),
            asset_id=ids[0],
        )
        refresh_findings(session, now=ctx.now())
    clock.advance(minutes=1)
    opened = tick(ctx.db, now=ctx.now()).emergency_rollout
    assert opened is not None
    with ctx.db.session() as session:
        row = deploy.get_rollout(session, opened)
        assert row.emergency
        assert row.status == "pending_approval"
        assert row.selection["advisories"] == ["DSA-0003-1"]
        hosts = list(session.scalars(select(JobRow.asset_id).where(JobRow.rollout_id == opened)))
    assert hosts == [ids[0]]
    assert tick(ctx.db, now=ctx.now()).emergency_rollout is None  # opened once


def test_rejecting_a_gate_cancels_the_rollout(fleet: Fleet, ctx: AppContext) -> None:
    rollout_id = fleet.rollout(emergency=True)
    with ctx.db.session() as session:
        with pytest.raises(Conflict):
            deploy.reject_rollout(session, APPROVER, rollout_id, ring=0, now=ctx.now())
        deploy.reject_rollout(
            session, APPROVER, rollout_id, ring=None, comment="not now", now=ctx.now()
        )
    assert fleet.statuses(rollout_id)["rollout"] == "cancelled"
    with ctx.db.session() as session:
        record = change_record(session, deploy.get_rollout(session, rollout_id))
    assert record["approvals"][0]["decision"] == "rejected"
    assert record["outcome"]["halt_reason"] == "rejected by approver: not now"


def test_rolling_back_one_ring_keeps_the_others_and_tracks_rollback_jobs(
    fleet: Fleet, ctx: AppContext, clock: Clock
) -> None:
    rollout_id = fleet.rollout(
        policy={
            "max_attempts": 2,
            "retry_backoff_minutes": 1,
            "lease_minutes": 5,
            "progress_deadline_minutes": 30,
        }
    )
    ids = sorted(fleet.credentials)
    for _ in range(4):  # lab completes
        tick(ctx.db, now=ctx.now())
        fleet.agent_cycle()
    with ctx.db.session() as session:
        deploy.approve_rollout(session, APPROVER, rollout_id, ring=1, now=ctx.now())
    tick(ctx.db, now=ctx.now())
    tick(ctx.db, now=ctx.now())
    fleet.agent_cycle()  # two production hosts patched
    with ctx.db.session() as session:
        created = deploy.rollback_rollout(session, OPERATOR, rollout_id, ring=1, now=ctx.now())
    assert created == 2
    status = fleet.statuses(rollout_id)
    assert status == {"rollout": "halted", "lab": "completed", "prod": "rolled_back"}
    with ctx.db.session() as session:
        rollback = session.scalars(select(JobRow).where(JobRow.kind == "rollback")).first()
        assert rollback is not None
        assert set(rollback.payload) <= {
            "kind",
            "rollback_of",
            "backend",
            "pre_hooks",
            "checks",
            "check_timeout",
            "reboot",
        }
        leftover = session.scalar(
            select(func.count())
            .select_from(JobRow)
            .where(JobRow.rollout_id == rollout_id, JobRow.status == "pending")
        )
    assert leftover == 0  # the production host never started is cancelled

    # A rollback job whose agent dies is still tracked: its lease lapses and it retries.
    owner = rollback.asset_id
    credential = fleet.credentials[owner]
    (claimed,) = fleet.client.get("/api/agent/v1/jobs", headers=bearer(credential)).json()["jobs"]
    assert claimed["kind"] == "rollback"
    fleet.client.post(
        f"/api/agent/v1/jobs/{claimed['job_id']}/result",
        json={"attempt": 1, "status": "failed", "result": {"error": "apt lock"}},
        headers=bearer(credential),
    )
    clock.advance(minutes=2)
    report = tick(ctx.db, now=ctx.now())
    assert report.actions.get("Release") == 1
    (retried,) = fleet.client.get("/api/agent/v1/jobs", headers=bearer(credential)).json()["jobs"]
    assert retried["attempt"] == 2
    del ids


def test_cli_approves_a_gate_only_as_another_user(
    fleet: Fleet,
    ctx: AppContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's `rollouts approve 1 --ring 2  # as a different user than the
    requester`, from the CLI: the requester is refused by user id, an approver is not."""
    rollout_id = fleet.rollout()  # requested by the operator
    tokens = {}
    with ctx.db.session() as session:
        for role in ("operator", "approver"):
            user = identity.get_user(session, role)
            _row, tokens[role] = identity.create_token(
                session, SYSTEM, user, name="cli", scopes=None, days=1, now=datetime.now(UTC)
            )
    monkeypatch.setenv("PATCHWARDEN_HOME", str(tmp_path / "home"))
    url = ctx.db.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("PATCHWARDEN_DATABASE_URL", url)
    monkeypatch.setenv("PATCHWARDEN_CREDENTIALS_FILE", str(tmp_path / "credentials.json"))

    monkeypatch.setenv("PATCHWARDEN_TOKEN", tokens["operator"])
    assert run(["rollouts", "approve", str(rollout_id), "--ring", "1"]) == 2
    assert "lacks the 'approve' permission" in capsys.readouterr().err

    # An admin who requested the rollout holds 'approve' but is still its requester.
    with ctx.db.session() as session:
        session.get(RolloutRow, rollout_id).requested_by_user = USER_IDS["admin"]  # type: ignore[union-attr]
        admin = identity.get_user(session, "admin")
        _row, tokens["admin"] = identity.create_token(
            session, SYSTEM, admin, name="cli", scopes=None, days=1, now=datetime.now(UTC)
        )
    monkeypatch.setenv("PATCHWARDEN_TOKEN", tokens["admin"])
    assert run(["rollouts", "approve", str(rollout_id), "--ring", "1"]) == 2
    assert "four eyes" in capsys.readouterr().err

    monkeypatch.setenv("PATCHWARDEN_TOKEN", tokens["approver"])
    assert run(["rollouts", "approve", str(rollout_id), "--ring", "1", "--comment", "ok"]) == 0
    with ctx.db.session() as session:
        approvals = list(session.scalars(select(ApprovalRow)))
        gate = deploy.rollout_json(session, deploy.get_rollout(session, rollout_id))["rings"][1]
    assert [(a.approver_user, a.comment) for a in approvals] == [(USER_IDS["approver"], "ok")]
    assert gate["approved"] is True


def test_a_broken_stored_policy_halts_its_rollout_and_the_others_go_on(
    fleet: Fleet, ctx: AppContext
) -> None:
    healthy = fleet.rollout(name="healthy")
    broken = fleet.rollout(name="broken")
    tick(ctx.db, now=ctx.now())  # both start their lab ring
    tick(ctx.db, now=ctx.now())  # both release a lab job
    # An older version or a manual edit left a policy today's rules refuse, written
    # straight into the row (no service in between).
    with ctx.db.engine.begin() as connection:
        connection.execute(
            update(RolloutRow)
            .where(RolloutRow.id == broken)
            .values(policy={"claim_deadline_minutes": "soon", "max_attempts": 1})
        )
    fleet.agent_cycle()  # agents still claim and report (the defaults cover them)

    report = tick(ctx.db, now=ctx.now())
    assert set(report.failures) == {f"rollout {broken}"}
    assert "claim_deadline_minutes" in report.failures[f"rollout {broken}"]
    assert report.actions.get("Release") == 1  # the healthy rollout moved on
    assert fleet.statuses(healthy) == {"rollout": "running", "lab": "running", "prod": "pending"}
    with ctx.db.session() as session:
        row = deploy.get_rollout(session, broken)
        assert row.status == "halted"
        assert row.halt_reason.startswith("the orchestrator cannot process this rollout: ")
        assert (
            f"rollout {broken} policy.claim_deadline_minutes: should be a whole number"
            in row.halt_reason
        )
        released = session.scalar(
            select(func.count())
            .select_from(JobRow)
            .where(JobRow.rollout_id == broken, JobRow.status == "ready")
        )
    assert released == 0  # nothing left for agents to start

    # The next passes report it again but audit the halt only once.
    for _ in range(2):
        again = tick(ctx.db, now=ctx.now())
        assert f"rollout {broken}" in again.failures
    with ctx.db.session() as session:
        halts = session.scalars(
            select(AuditEventRow.after).where(
                AuditEventRow.action == "rollout.halt", AuditEventRow.target_id == str(broken)
            )
        ).all()
    assert len(halts) == 1
    assert halts[0] is not None
    assert "claim_deadline_minutes" in halts[0]["reason"]
    assert fleet.statuses(healthy)["rollout"] == "running"


def test_a_bad_policy_is_refused_when_the_rollout_is_created(fleet: Fleet, ctx: AppContext) -> None:
    with pytest.raises(ValidationFailed) as caught:
        fleet.rollout(policy={"claim_deadline_minutes": "soon"})
    assert caught.value.message == (
        "policy.claim_deadline_minutes: should be a whole number from 1 to 43200, got 'soon'"
    )
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(RolloutRow)) == 0
