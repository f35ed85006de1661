"""The deployment pages in a real browser: rollouts, approvals and exceptions.

The fleet, a rollout half way through its first ring (one host patched, one failed with
the agent's full output, one still running; the ring halted on its error budget) and an
emergency rollout are seeded through the same services the API and the orchestrator
use. The browser then acts as each role would: the operator steers the rollout, the
approver opens gates and decides exceptions, the auditor only reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from patchwarden.core.model import Inventory
from patchwarden.server.app import create_app
from patchwarden.server.auth import SESSION_COOKIE
from patchwarden.server.context import AppContext
from patchwarden.server.services import deploy
from patchwarden.server.services.assets import update_asset
from patchwarden.server.services.orchestrator import tick
from patchwarden.server.web.pages import CheckOutput, JobOutput, job_output
from patchwarden.store.advisories import import_advisories
from patchwarden.store.findings import refresh_findings
from patchwarden.store.groups import create_group
from patchwarden.store.inventory import record_inventory
from tests.e2e import test_web_pages as web
from tests.e2e.browser import Browser, serve
from tests.server import conftest as server_fixtures
from tests.server.conftest import user_actor

# Shared with the other page tests: the app context and clock, one Chromium per module,
# cheap password hashing for the fixture users, the sign-in form helper.
clock = server_fixtures.clock
ctx = server_fixtures.ctx
browser = web.browser
sign_in = web.sign_in
sqlite_only = web.sqlite_only

pytestmark = pytest.mark.timeout(120)

OPERATOR = user_actor("operator")
APPROVER = user_actor("approver")
ADMIN = user_actor("admin")
LAB = ("lab-1", "lab-2", "lab-3")
PROD = ("web-1", "web-2")
HOSTILE_OUTPUT = "<script>alert(1)</script> Setting up openssl (3.0.11-1) ..."
CHECK_ERROR = "check failed: GET http://127.0.0.1:8080/health: status 503 (expected 200)"

# What an apt agent reports when the health check fails after the install and the
# journal is restored (docs/agent-jobs.md, "Result").
ROLLED_BACK: dict[str, Any] = {
    "status": "rolled_back",
    "steps": [
        {"name": "prepare", "ok": True, "seconds": 1.2, "output": "$ apt-get -q -y update"},
        {"name": "journal", "ok": True, "seconds": 0.002, "output": "recorded 2 package(s)"},
        {
            "name": "install",
            "ok": True,
            "seconds": 9.8,
            "output": f"$ apt-get -q -y install openssl=3.0.11-1\n{HOSTILE_OUTPUT}",
        },
        {"name": "checks", "ok": False, "seconds": 15.1, "output": "FAILED: GET /health: 503"},
        {"name": "rollback", "ok": True, "seconds": 8.7, "output": "$ apt-get install ..."},
    ],
    "before": {"libssl3": "3.0.9-1", "openssl": "3.0.9-1"},
    "after": {"libssl3": "3.0.9-1", "openssl": "3.0.9-1"},
    "checks": [
        {
            "check": {"type": "http", "url": "http://127.0.0.1:8080/health", "expect_status": 200},
            "ok": False,
            "detail": "GET http://127.0.0.1:8080/health: status 503 (expected 200)",
            "attempts": 4,
        }
    ],
    "rollback": {
        "attempted": True,
        "ok": True,
        "restored": {"libssl3": "3.0.9-1", "openssl": "3.0.9-1"},
    },
    "reboot_required": False,
    "rebooted": False,
    "error": CHECK_ERROR,
}


@dataclass
class Deployment:
    """Ids of what was seeded."""

    hosts: dict[str, int]
    rollout: int  # requested by the operator: lab halted, production behind its gate
    emergency: int  # requested by the admin, waiting for an approver
    expired_exception: int


def seed(context: AppContext) -> Deployment:
    """Five Debian hosts with an openssl finding, two rollouts, an expired exception."""
    now = context.now()
    with context.db.session() as s:
        import_advisories(
            s,
            [
                web.advisory(
                    "DSA-5001-1",
                    "openssl",
                    "3.0.11-1",
                    cve="CVE-2023-1111",
                    severity="high",
                    now=now - timedelta(days=10),
                )
            ],
        )
        hosts = {}
        for host in LAB + PROD:
            packages = (web.pkg("openssl", "3.0.9-1"), web.pkg("libssl3", "3.0.9-1", "openssl"))
            inventory = Inventory(hostname=host, os=web.DEBIAN, packages=packages)
            hosts[host] = record_inventory(s, inventory, now=now - timedelta(hours=1))[0]
            environment = "lab" if host in LAB else "prod"
            update_asset(s, web.SEEDER, hosts[host], {"environment": environment}, now=now)
        refresh_findings(s, now=now)
        create_group(s, web.SEEDER, name="lab", now=now, members=[hosts[h] for h in LAB])
        create_group(s, web.SEEDER, name="prod", now=now, members=[hosts[h] for h in PROD])
        rollout = deploy.create_rollout(
            s,
            OPERATOR,
            name="november security updates",
            target_groups=["lab", "prod"],
            advisories=["DSA-5001-1"],
            rings=[
                deploy.RingSpec(
                    "lab", groups=("lab",), concurrency="3", error_budget="1", success_threshold=50
                ),
                # Production hosts: the gate is forced on.
                deploy.RingSpec("production", groups=("prod",), concurrency="1"),
            ],
            policy={"max_attempts": 1},
            now=now,
        )
        emergency = deploy.create_rollout(
            s,
            ADMIN,
            name="emergency openssl fix",
            target_groups=["prod"],
            advisories=["DSA-5001-1"],
            rings=[deploy.RingSpec("all")],
            emergency=True,
            now=now,
        )
        # Accepted ten days ago for five days: lapsed by now.
        expired = deploy.request_exception(
            s,
            OPERATOR,
            package="openssl",
            asset_id=hosts["lab-3"],
            justification="lab host, rebuilt weekly from the image",
            expires_at=now - timedelta(days=5),
            now=now - timedelta(days=10),
        )
        deploy.decide_exception(
            s, APPROVER, expired.id, approve_it=True, now=now - timedelta(days=9)
        )
        deploy.expire_exceptions(s, now=now)
        ids = Deployment(hosts, rollout.id, emergency.id, expired.id)

    tick(context.db, now=now)  # starts the lab ring
    tick(context.db, now=now)  # releases its three jobs
    with context.db.session() as s:
        jobs = {h: deploy.claim_jobs(s, hosts[h], now=now)[0] for h in LAB}
        for host, status, detail in (
            ("lab-1", "succeeded", {"status": "succeeded", "error": None}),
            ("lab-2", "rolled_back", ROLLED_BACK),
        ):
            job = jobs[host]
            deploy.record_result(
                s, hosts[host], job.id, attempt=job.attempt, status=status, detail=detail, now=now
            )
    tick(context.db, now=now)  # one failure reaches the error budget: the ring halts
    return ids


@pytest.fixture
def site(ctx: AppContext, browser: Browser) -> Iterator[Deployment]:
    """The seeded app served on a free port, with the browser pointed at it."""
    seeded = seed(ctx)
    with serve(create_app(ctx, background=False)) as base_url:
        browser.base_url = base_url
        try:
            yield seeded
        finally:
            browser.clear_cookies()


def login(browser: Browser, username: str, path: str) -> None:
    """Start a fresh session as ``username`` and open ``path``."""
    browser.clear_cookies()
    browser.go(path)
    sign_in(browser, username)
    assert browser.path == path


def cells(browser: Browser, table: str, row: str) -> dict[str, str]:
    """One row of a table as {column heading: cell text}."""
    headings = browser.texts(f"{table} thead th")
    return dict(zip(headings, browser.texts(f"{table} {row} td"), strict=True))


def submit(browser: Browser, form: str) -> None:
    """Press the submit button of the form matching ``form`` and wait for the next page."""
    browser.find(f"{form} button[type=submit]").follow()


def test_rollout_list_and_detail_show_rings_progress_and_failure_output(
    browser: Browser, site: Deployment
) -> None:
    login(browser, "operator", "/rollouts")

    listed = browser.find(f'table#rollouts tr[data-rollout="{site.rollout}"]')
    assert listed.find(".name a").text == "november security updates"
    assert listed.find(".status").text == "halted"
    assert listed.find(".requester").text == "operator"
    assert listed.find(".created").text == "just now"
    assert listed.find_all(".emergency") == []
    rings = f'table#rollouts tr[data-rollout="{site.rollout}"] .ring'
    assert browser.texts(f"{rings} .ring-name") == ["lab", "production"]
    assert browser.texts(f"{rings} .legend") == [
        "1 succeeded · 1 failed · 1 running · 0 pending",
        "0 succeeded · 0 failed · 0 running · 2 pending",
    ]
    assert browser.text(f'{rings}[data-ring="production"] .gate') == "needs approval"
    emergency = browser.find(f'table#rollouts tr[data-rollout="{site.emergency}"]')
    assert emergency.find(".status").text == "pending approval"
    assert emergency.find(".emergency").text == "emergency"
    assert emergency.find(".requester").text == "admin"

    listed.find(".name a").follow()
    assert browser.path == f"/rollouts/{site.rollout}"
    assert browser.text("#halt-reason").startswith(
        "Halted — ring lab: 1 failed hosts reached the error budget of 1."
    )
    lab = cells(browser, "table#rings", 'tr[data-ring="lab"]')
    assert (lab["Status"], lab["Hosts"], lab["Concurrency"], lab["Error budget"]) == (
        "halted",
        "3",
        "3",
        "1",
    )
    assert (lab["Promote at"], lab["Soak"], lab["Approval"], lab["Windows"]) == (
        "50%",
        "none",
        "not required",
        "any time",
    )
    production = cells(browser, "table#rings", 'tr[data-ring="production"]')
    assert (production["Status"], production["Promote at"], production["Approval"]) == (
        "pending",
        "100%",
        "required",
    )
    assert production["Progress"].endswith("0 succeeded · 0 failed · 0 running · 2 pending")
    href = browser.find("#change-record a").attribute("href")
    assert href == f"/api/v1/rollouts/{site.rollout}/change-record?format=markdown"

    # The failure: what went wrong and how the rollback went, the output folded away.
    failures = browser.find_all("article.failure")
    assert [f.attribute("data-host") for f in failures] == ["lab-2"]
    failure = failures[0]
    assert failure.find("h3").text == "lab-2 ring lab · failed after 1 attempt"
    assert failure.find(".error").text == CHECK_ERROR
    assert failure.find(".rollback").text == "Rollback: restored libssl3 3.0.9-1, openssl 3.0.9-1"
    assert failure.find(".steps").text == ""
    failure.find("details summary").click()
    steps = browser.texts("article.failure .steps > li")
    assert [s.split("\n")[0] for s in steps] == [
        "OK prepare 1.2 s",
        "OK journal 0.0 s",
        "OK install 9.8 s",
        "FAILED checks 15.1 s",
        "OK rollback 8.7 s",
    ]
    # Agent output is text, never markup.
    assert HOSTILE_OUTPUT in steps[2]
    assert "<script" not in browser.source
    check = browser.texts("article.failure table.checks tbody td")
    assert check == [
        "http http://127.0.0.1:8080/health 200",
        "failed",
        "4",
        "GET http://127.0.0.1:8080/health: status 503 (expected 200)",
    ]
    failure.find("h3 a").follow()
    assert browser.path == f"/assets/{site.hosts['lab-2']}"

    browser.go(f"/rollouts/{site.rollout}")
    jobs = {host: cells(browser, "table#jobs", f'tr[data-host="{host}"]') for host in LAB + PROD}
    assert {h: (j["Ring"], j["Status"], j["Attempt"]) for h, j in jobs.items()} == {
        "lab-1": ("lab", "succeeded", "1"),
        "lab-2": ("lab", "failed", "1"),
        "lab-3": ("lab", "running", "1"),
        "web-1": ("production", "pending", "0"),
        "web-2": ("production", "pending", "0"),
    }
    assert jobs["lab-1"]["Packages"] == "libssl3 3.0.11-1, openssl 3.0.11-1"
    assert jobs["lab-2"]["Last error"] == CHECK_ERROR


def test_operator_resumes_pauses_and_rolls_back_with_the_buttons(
    browser: Browser, site: Deployment
) -> None:
    page = f"/rollouts/{site.rollout}"
    login(browser, "operator", page)
    # An operator steers rollouts but approves nothing.
    assert browser.find_all('form[action$="/approve"]') == []
    assert browser.find_all('#rollout-actions form[action$="/pause"]') == []

    submit(browser, f'form[action="{page}/resume"]')
    assert browser.path == page
    assert browser.text("#flash") == f"Rollout {site.rollout} resumed."
    assert browser.text("h1 .state") == "running"
    assert browser.find_all("#halt-reason") == []

    submit(browser, f'form[action="{page}/pause"]')
    assert browser.text("#flash") == f"Rollout {site.rollout} paused."
    assert browser.text("h1 .state") == "paused"
    # The message is shown once.
    browser.go(page)
    assert browser.find_all("#flash") == []

    submit(browser, f'form[action="{page}/resume"]')
    assert browser.text("h1 .state") == "running"

    # Rolling a ring back is behind a second click.
    ring = browser.find('table#rings tr[data-ring="lab"]')
    assert ring.find("details.confirm button").text == ""
    ring.find("details.confirm summary").click()
    ring.find("details.confirm button").follow()
    assert browser.text("#flash") == (
        "Rolled back ring lab: 1 rollback job(s) queued for patched hosts."
    )
    assert browser.text('table#rings tr[data-ring="lab"] .status') == "rolled back"
    kinds = browser.texts('table#jobs tr[data-host="lab-1"] td:nth-child(3)')
    assert kinds == ["install", "rollback"]


def test_approver_opens_a_ring_gate_from_the_approvals_page(
    ctx: AppContext, browser: Browser, site: Deployment
) -> None:
    # The operator resumes; lab-3 finishes; lab completes (2 of 3 ≥ 50%) and the
    # orchestrator stops at the production gate.
    now = ctx.now()
    with ctx.db.session() as s:
        deploy.set_rollout_state(s, OPERATOR, site.rollout, "resume", now=now)
        job = next(
            j
            for j in deploy.rollout_json(s, deploy.get_rollout(s, site.rollout), with_jobs=True)[
                "jobs"
            ]
            if j["hostname"] == "lab-3"
        )
        deploy.record_result(
            s, site.hosts["lab-3"], job["id"], attempt=1, status="succeeded", detail={}, now=now
        )
    tick(ctx.db, now=now)
    tick(ctx.db, now=now)

    login(browser, "approver", "/approvals")
    gate_row = f'tr[data-rollout="{site.rollout}"][data-ring="production"]'
    gate = f"table#gates {gate_row}"
    row = cells(browser, "table#gates", gate_row)
    assert (row["Waiting"], row["Hosts"], row["Before it"], row["Requested by"]) == (
        "now",
        "2",
        "lab completed",
        "operator",
    )
    browser.find(f"{gate} input[name=comment]").type("CAB 2026-11-27 approved")
    submit(browser, gate)
    assert browser.path == "/approvals"
    assert browser.text("#flash") == f"Ring production of rollout {site.rollout} approved."
    assert browser.find_all(gate) == []

    browser.find('nav a[href="/rollouts"]').follow()
    ring = f'table#rollouts tr[data-rollout="{site.rollout}"] .ring[data-ring="production"]'
    assert browser.text(f"{ring} .gate") == "gate approved"
    tick(ctx.db, now=now)  # the gate is open: production starts
    browser.go("/rollouts")
    assert browser.text(f"{ring} .state") == "running"
    browser.go(f"/rollouts/{site.rollout}")
    assert browser.texts("#approvals li")[0].startswith("approver approved ring production")
    assert browser.texts("#approvals li")[0].endswith("“CAB 2026-11-27 approved”")


def test_requester_cannot_approve_their_own_rollout(browser: Browser, site: Deployment) -> None:
    login(browser, "admin", "/approvals")
    row = f'table#emergencies tr[data-rollout="{site.emergency}"]'
    assert browser.text(f"{row} .requester") == "admin\nyou requested this"
    submit(browser, row)

    assert browser.path == "/approvals"
    flash = browser.find("#flash")
    assert flash.text == "four eyes: the requester of a rollout cannot approve it"
    assert flash.attribute("role") == "alert"
    assert browser.find_all(row) != []  # still waiting

    login(browser, "approver", "/approvals")
    submit(browser, row)
    assert browser.text("#flash") == (
        f"Rollout {site.emergency} approved: it starts with the next orchestrator pass."
    )
    assert browser.find_all(row) == []
    browser.go("/rollouts?status=running")
    assert f"/rollouts/{site.emergency}" in browser.source


def test_exception_requested_by_operator_and_approved_by_approver(
    browser: Browser, site: Deployment
) -> None:
    login(browser, "operator", "/exceptions")
    expired = browser.find(f'table#exceptions tr[data-exception="{site.expired_exception}"]')
    assert expired.attribute("class") == "lapsed"
    assert expired.find(".status").text == "expired"
    assert expired.find(".approver").text.startswith("approver")
    assert expired.find(".expires").text.endswith("expired 5 days ago")
    assert browser.find_all("table#exceptions form") == []  # operators do not decide

    browser.find("#request summary").click()
    justification = "web-1 is behind the WAF; the vendor fix ships next sprint"
    browser.fill({"advisory": "DSA-5001-1", "asset": "web-1", "justification": justification})
    browser.find('#request select[name="group"] option:nth-child(2)').click()
    submit(browser, "#request form")
    # Host and group both given: the service refuses, the form keeps what was typed.
    assert browser.text("#request-error") == (
        "an exception applies to exactly one asset or one group"
    )
    assert browser.find('[name="advisory"]').attribute("value") == "DSA-5001-1"
    assert browser.text('[name="justification"]') == justification

    browser.find('#request select[name="group"] option[value=""]').click()
    submit(browser, "#request form")
    assert browser.path == "/exceptions"
    flash = browser.text("#flash")
    assert flash.endswith("requested: an approver other than you must approve it.")
    new_id = flash.split()[1]
    new = f'table#exceptions tr[data-exception="{new_id}"]'
    assert browser.text(f"{new} .status") == "pending"
    assert browser.text(f"{new} .scope") == "DSA-5001-1\non host web-1"
    assert browser.text(f"{new} .expires").endswith("in 30 days")

    login(browser, "approver", "/approvals")
    pending = f'table#pending-exceptions tr[data-exception="{new_id}"]'
    assert browser.text(f"{pending} .justification") == justification
    submit(browser, f'{pending} form[action$="/approve"]')
    assert browser.text("#flash") == f"Exception {new_id} approved."
    assert browser.find_all(pending) == []

    browser.go("/exceptions")
    row = cells(browser, "table#exceptions", f'tr[data-exception="{new_id}"]')
    assert row["Status"] == "approved"
    assert row["Requested by"].startswith("operator")
    assert row["Decided by"].startswith("approver")
    assert browser.find_all(f'{new} form[action$="/revoke"]') != []


@sqlite_only
def test_auditor_sees_everything_and_can_change_nothing(browser: Browser, site: Deployment) -> None:
    login(browser, "auditor", "/approvals")
    assert browser.texts("table#emergencies .name a") == ["emergency openssl fix"]
    pages = ("/approvals", "/rollouts", f"/rollouts/{site.rollout}", "/exceptions")
    for path in pages:
        browser.go(path)
        assert browser.path == path
        # The only form is signing out; no action is offered.
        assert [f.attribute("action") for f in browser.find_all("form[method=post]")] == ["/logout"]
        assert "<script" not in browser.source

    # Forged posts, even with the session's own CSRF token, are refused by permission.
    token = browser.find('.signout input[name="csrf_token"]').attribute("value")
    cookies = {SESSION_COOKIE: browser.cookie(SESSION_COOKIE)}
    for path in (
        f"/rollouts/{site.rollout}/cancel",
        f"/rollouts/{site.emergency}/approve",
        f"/exceptions/{site.expired_exception}/revoke",
    ):
        forged = httpx.post(
            browser.base_url + path,
            data={"csrf_token": token or ""},
            cookies=cookies,
            timeout=10,
            follow_redirects=False,
        )
        assert forged.status_code == 403, path
    browser.go("/rollouts")
    assert browser.text(f'tr[data-rollout="{site.rollout}"] .status') == "halted"
    assert browser.text(f'tr[data-rollout="{site.emergency}"] .status') == "pending approval"


def test_job_output_reads_sparse_and_malformed_results() -> None:
    # No browser: the agent's result is untrusted JSON, and a page must render any shape.
    assert job_output(None) == job_output({}) == JobOutput("", (), (), "", ())
    odd = job_output(
        {
            "steps": "not a list",
            "checks": [1, {"check": "tcp", "ok": 1, "attempts": "3", "detail": None}],
            "rollback": {"attempted": False},
            "before": {"openssl": "3.0.9-1"},
            "after": ["not", "a", "dict"],
            "error": 42,
        }
    )
    assert odd == JobOutput(
        "42",
        (),
        (CheckOutput("tcp", True, "", None),),
        "not attempted (rollback on failure is off)",
        (("openssl", "3.0.9-1", "absent"),),
    )
    timed_out = job_output({"error": "progress deadline passed"})
    assert (timed_out.error, timed_out.steps, timed_out.rollback) == (
        "progress deadline passed",
        (),
        "",
    )
