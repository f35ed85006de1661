"""The web UI in a real browser: headless Chromium against the real app under uvicorn.

Data is seeded through the store (advisories, inventories, findings, groups) exactly as
feeds and agents would leave it; every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import pytest

from patchwarden.core.model import (
    Advisory,
    Affected,
    AffectedRange,
    Event,
    InstalledPackage,
    Inventory,
    KevEntry,
    OsInfo,
)
from patchwarden.server.app import create_app
from patchwarden.server.auth import SESSION_COOKIE
from patchwarden.server.context import AppContext
from patchwarden.server.services.assets import update_asset
from patchwarden.store.advisories import import_advisories
from patchwarden.store.audit import Actor
from patchwarden.store.findings import refresh_findings
from patchwarden.store.groups import create_group
from patchwarden.store.intel import replace_kev
from patchwarden.store.inventory import record_inventory
from tests.e2e.browser import Browser, chromium, serve
from tests.server import conftest as server_fixtures

PASSWORD = server_fixtures.PASSWORD
# The server suite's fixtures: the app context on the test database, and its clock.
clock = server_fixtures.clock
ctx = server_fixtures.ctx

pytestmark = pytest.mark.timeout(120)

DEBIAN = OsInfo(
    id="debian",
    version_id="12",
    name="Debian GNU/Linux",
    pretty_name="Debian GNU/Linux 12 (bookworm)",
    ecosystem="Debian:12",
    family="debian",
)
SEEDER = Actor("e2e-seed", "system")
HOSTILE = '<img src=x onerror="alert(1)">'


def advisory(
    ident: str, source: str, fixed: str | None, *, cve: str, severity: str, now: datetime
) -> Advisory:
    """A Debian advisory for every version of ``source`` before ``fixed``."""
    events = [Event("introduced", "0")] + ([Event("fixed", fixed)] if fixed else [])
    return Advisory(
        id=ident,
        modified=now,
        source="debian-dsa",
        aliases=(cve,),
        summary=f"{source} security update",
        affected=(Affected("Debian:12", source, (AffectedRange("ECOSYSTEM", tuple(events)),)),),
        database_severity=severity,
    )


def pkg(name: str, version: str, source: str = "") -> InstalledPackage:
    """A Debian binary package (built from ``source``, by default itself)."""
    return InstalledPackage(name, version, "Debian:12", "amd64", source or name, version)


@dataclass
class Fleet:
    """Ids of the seeded assets and groups."""

    web: int
    db: int
    dev: int
    pilot: int
    production: int


def seed(context: AppContext) -> Fleet:
    """Three hosts, three advisories (one KEV-listed, one without a fix), two groups.

    Findings were first seen 40 days ago, so the P1 (7 days) and P2 (30 days) ones are
    overdue and the P3 one (90 days) is not; the hosts last reported two hours ago.
    """
    now = context.now()
    then = now - timedelta(days=40)
    inventories = {
        "web-1": Inventory(
            hostname="web-1",
            os=DEBIAN,
            kernel="6.1.0-18-amd64",
            reboot_required=True,
            packages=(
                pkg("openssl", "3.0.9-1"),
                pkg("libssl3", "3.0.9-1", "openssl"),
                pkg("curl", "7.88.1-1"),
                pkg("bash", "5.2.15-2"),
            ),
        ),
        "db-1": Inventory(
            hostname="db-1",
            os=DEBIAN,
            packages=(pkg("curl", "7.88.1-1"), pkg("openssl", "3.0.11-1")),
        ),
        "dev-1": Inventory(hostname="dev-1", os=DEBIAN, packages=(pkg("coreutils", "9.1-1"),)),
    }
    with context.db.session() as s:
        import_advisories(
            s,
            [
                advisory(
                    "DSA-5001-1",
                    "openssl",
                    "3.0.11-1",
                    cve="CVE-2023-1111",
                    severity="high",
                    now=then,
                ),
                advisory(
                    "DSA-5002-1",
                    "curl",
                    "7.88.1-10",
                    cve="CVE-2023-2222",
                    severity="critical",
                    now=then,
                ),
                advisory(
                    "DEBIAN-CVE-2024-3333",
                    "bash",
                    None,
                    cve="CVE-2024-3333",
                    severity="low",
                    now=then,
                ),
            ],
        )
        replace_kev(s, [KevEntry("CVE-2023-1111", then.date(), then.date() + timedelta(days=21))])
        ids = {
            host: record_inventory(
                s,
                inventory,
                now=then,
                criticality=5 if host == "web-1" else 3,
                exposure="internet" if host == "web-1" else "internal",
            )[0]
            for host, inventory in inventories.items()
        }
        update_asset(
            s,
            SEEDER,
            ids["web-1"],
            {"environment": "prod", "owner": "web team", "tags": ["web", "pci"]},
            now=then,
        )
        update_asset(s, SEEDER, ids["db-1"], {"environment": "prod"}, now=then)
        update_asset(s, SEEDER, ids["dev-1"], {"environment": "dev"}, now=then)
        refresh_findings(s, now=then)
        pilot = create_group(
            s, SEEDER, name="pilot", now=then, description=HOSTILE, members=[ids["web-1"]]
        )
        production = create_group(
            s, SEEDER, name="production", now=then, group_filter={"environment": ["prod"]}
        )
        # A later check-in with unchanged packages: only "last seen" moves.
        for host, inventory in inventories.items():
            record_inventory(s, inventory, now=now - timedelta(hours=2), asset_id=ids[host])
        return Fleet(ids["web-1"], ids["db-1"], ids["dev-1"], pilot.id, production.id)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the whole module."""
    with chromium() as b:
        yield b


@pytest.fixture
def site(ctx: AppContext, browser: Browser) -> Iterator[Fleet]:
    """The seeded app served on a free port, with the browser pointed at it."""
    fleet = seed(ctx)
    with serve(create_app(ctx, background=False)) as base_url:
        browser.base_url = base_url
        try:
            yield fleet
        finally:
            browser.clear_cookies()


def sign_in(browser: Browser, username: str, password: str = PASSWORD) -> None:
    """Fill and submit the sign-in form of the current page."""
    browser.fill({"username": username, "password": password})
    browser.find("#sign-in").follow()


# The sign-in flow does not depend on the database; run it on one backend only.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def row(browser: Browser, host: str) -> dict[str, str]:
    """One asset-table row as {column heading: cell text}."""
    headings = browser.texts("table#assets thead th")
    cells = browser.texts(f'table#assets tr[data-host="{host}"] td')
    return dict(zip(headings, cells, strict=True))


@sqlite_only
def test_anonymous_visit_signs_in_and_returns_to_the_page(browser: Browser, site: Fleet) -> None:
    browser.go(f"/assets/{site.db}")
    assert browser.path == f"/login?next=%2Fassets%2F{site.db}"
    assert browser.text("h1") == "Sign in"

    sign_in(browser, "operator")

    assert browser.path == f"/assets/{site.db}"
    assert browser.text("h1").startswith("db-1")
    assert "operator" in browser.text(".who")


@sqlite_only
def test_wrong_password_shows_the_error(browser: Browser, site: Fleet) -> None:
    browser.go("/")
    sign_in(browser, "admin", "not the password")

    assert browser.text(".error") == "Wrong username or password."
    assert browser.path.startswith("/login")
    # The form is still usable: the right password gets in.
    sign_in(browser, "admin")
    assert browser.path == "/"


def test_overview_counts_findings_per_asset_and_filters(browser: Browser, site: Fleet) -> None:
    browser.go("/login")
    sign_in(browser, "admin")

    cards = {
        key: browser.text(f"#{key}")
        for key in ("asset-count", "open-p1", "open-p2", "open-p3", "open-p4", "overdue-count")
    }
    # web-1: openssl and libssl3 (KEV, internet-facing: P1), curl (P2), bash (P3);
    # db-1: curl (P2). P1 and P2 findings are 40 days old: past their 7/30-day SLAs.
    assert cards == {
        "asset-count": "3",
        "open-p1": "2",
        "open-p2": "2",
        "open-p3": "1",
        "open-p4": "0",
        "overdue-count": "4",
    }
    assert browser.texts("table#assets tbody td.host a") == ["db-1", "dev-1", "web-1"]
    assert row(browser, "web-1") == {
        "Host": "web-1",
        "OS": "Debian GNU/Linux 12 (bookworm)",
        "Environment": "prod",
        "Last seen": "2 hours ago",
        "P1": "2",
        "P2": "1",
        "P3": "1",
        "P4": "0",
        "Overdue": "3",
        "Reboot": "required",
        "Source": "scan",
    }
    db_row = row(browser, "db-1")
    assert (db_row["P1"], db_row["P2"], db_row["Overdue"], db_row["Reboot"]) == ("0", "1", "1", "")

    # Filters are a plain GET form: choose, submit, and the query string carries them.
    browser.find('select[name="priority"] option[value="P1"]').click()
    browser.find(".filters button").follow()
    assert browser.path == "/?q=&group=&environment=&priority=P1"
    assert browser.texts("table#assets tbody td.host a") == ["web-1"]

    browser.go("/")
    browser.find(f'select[name="group"] option[value="{site.production}"]').click()
    browser.find('select[name="environment"] option[value="prod"]').click()
    browser.fill({"q": "db"})
    browser.find(".filters button").follow()
    assert browser.texts("table#assets tbody td.host a") == ["db-1"]
    assert browser.text("#asset-total") == "1 asset match"

    browser.go("/?environment=dev")
    assert browser.texts("table#assets tbody td.host a") == ["dev-1"]
    browser.find('.cards a[href="/?priority=P2"]').follow()
    assert browser.texts("table#assets tbody td.host a") == ["db-1", "web-1"]


def test_asset_page_explains_findings_and_plans_the_fix(
    browser: Browser, site: Fleet, clock: server_fixtures.Clock
) -> None:
    browser.go(f"/assets/{site.web}")
    sign_in(browser, "approver")

    facts = dict(zip(browser.texts("#facts dt"), browser.texts("#facts dd"), strict=True))
    assert facts["Ecosystem"] == "Debian:12"
    assert facts["Kernel"] == "6.1.0-18-amd64"
    assert facts["Criticality"] == "5 of 5"
    assert facts["Exposure"] == "internet"
    assert facts["Owner"] == "web team"
    assert facts["Environment"] == "prod"
    assert facts["Tags"] == "pci web"
    assert facts["Groups"] == "pilot, production"
    assert facts["Agent"] == "no agent"
    assert facts["Reboot"] == "required"

    findings = browser.find_all("table#findings tbody tr.finding")
    assert [(f.attribute("data-advisory"), f.attribute("data-package")) for f in findings] == [
        ("DSA-5001-1", "libssl3"),
        ("DSA-5001-1", "openssl"),
        ("DSA-5002-1", "curl"),
        ("DEBIAN-CVE-2024-3333", "bash"),
    ]
    assert [f.find(".prio").text for f in findings] == ["P1", "P1", "P2", "P3"]
    libssl = findings[0]
    assert libssl.find(".versions").text == "3.0.9-1 → 3.0.11-1"
    assert libssl.find(".package").text == "libssl3\nfrom openssl"
    assert "CVE-2023-1111" in libssl.find(".advisory").text
    assert "KEV" in libssl.find(".advisory").text
    assert "3.0.9-1" in libssl.find(".why p").text
    # Due: first seen 40 days ago + 7 days for P1 (sooner than the KEV rule's 14 or 21).
    first_seen = clock().date() - timedelta(days=40)
    assert libssl.find(".due").text == f"{first_seen + timedelta(days=7)}\n33 days overdue"
    assert "overdue" in (libssl.attribute("class") or "")
    bash = findings[3]
    assert bash.find(".due").text == f"{first_seen + timedelta(days=90)}\nin 50 days"
    assert "overdue" not in (bash.attribute("class") or "")
    assert bash.find(".versions").text == "5.2.15-2 → no fix yet"

    # The risk factors are folded away until asked for.
    assert libssl.find("table.factors").text == ""
    libssl.find("details summary").click()
    factors = libssl.find("table.factors").text
    assert "KEV" in factors or "exploit" in factors.lower()
    assert "exposure" in factors.lower()

    plan = browser.find_all("table#remediation tbody tr")
    assert [p.attribute("data-package") for p in plan] == ["openssl", "curl"]
    assert plan[0].find(".target").text == "3.0.11-1"
    assert plan[0].find(".binaries").text == "libssl3, openssl"
    assert plan[0].find(".fixes").text == "DSA-5001-1"
    assert plan[1].find(".target").text == "7.88.1-10"
    assert browser.find_all("table#unfixed tbody tr")[0].attribute("data-package") == "bash"
    assert browser.text("#unfixed-count") == "1"

    # Installed packages are collapsed; opening them shows all four.
    assert browser.find("#packages table").text == ""
    browser.find("#packages summary").click()
    assert browser.texts("#packages tbody td:first-child") == [
        "bash",
        "curl",
        "libssl3",
        "openssl",
    ]


def test_groups_list_and_show_members(browser: Browser, site: Fleet) -> None:
    browser.go("/groups")
    sign_in(browser, "operator")
    assert browser.path == "/groups"

    pilot = browser.find('table#groups tr[data-group="pilot"]')
    production = browser.find('table#groups tr[data-group="production"]')
    assert pilot.find(".kind").text == "static"
    assert pilot.find(".members").text == "1"
    # Hostile text is shown as text, never run or parsed as markup.
    assert HOSTILE in pilot.text
    assert browser.find_all("table#groups img") == []
    assert production.find(".kind").text == "dynamic"
    assert production.find(".filter").text == "environment prod"
    assert production.find(".members").text == "2"

    production.find("a").follow()
    assert browser.path == f"/groups/{site.production}"
    assert browser.text("#group-filter") == "environment\nprod"
    assert browser.texts("table#assets tbody td.host a") == ["db-1", "web-1"]
    assert browser.text("#member-total") == "2"

    browser.go(f"/groups/{site.pilot}")
    assert browser.texts("table#assets tbody td.host a") == ["web-1"]
    browser.find('table#assets a[href^="/assets/"]').follow()
    assert browser.path == f"/assets/{site.web}"


@sqlite_only
def test_sign_out_ends_the_session(browser: Browser, site: Fleet) -> None:
    browser.go("/login")
    sign_in(browser, "admin")
    assert browser.path == "/"
    session_cookie = browser.cookie(SESSION_COOKIE)

    # A form posted from elsewhere, without the session's CSRF token, is refused.
    forged = httpx.post(
        browser.base_url + "/logout", cookies={SESSION_COOKIE: session_cookie}, timeout=10
    )
    assert forged.status_code == 403
    browser.go("/groups")
    assert browser.path == "/groups"

    browser.find("#sign-out").follow()

    assert browser.path == "/login"
    browser.go("/groups")
    assert browser.path == "/login?next=%2Fgroups"
    # The session ended on the server too: the old cookie no longer opens anything.
    browser.set_cookie(SESSION_COOKIE, session_cookie)
    browser.go("/")
    assert browser.path == "/login?next=%2F"


def test_auditor_reads_every_page_without_scripts(browser: Browser, site: Fleet) -> None:
    browser.go("/login")
    sign_in(browser, "auditor")
    for path, heading in (
        ("/", "Fleet"),
        (f"/assets/{site.dev}", "dev-1"),
        ("/groups", "Asset groups"),
        (f"/groups/{site.pilot}", "pilot"),
    ):
        browser.go(path)
        assert browser.path == path
        assert browser.text("h1").startswith(heading)
        assert "auditor" in browser.text(".who")
        assert "<script" not in browser.source  # the pages need no JavaScript


@sqlite_only
def test_overview_pages_through_a_larger_fleet(
    ctx: AppContext, browser: Browser, site: Fleet
) -> None:
    with ctx.db.session() as s:
        for n in range(60):
            record_inventory(
                s, Inventory(hostname=f"node-{n:02d}", os=DEBIAN, packages=()), now=ctx.now()
            )
    browser.go("/login")
    sign_in(browser, "admin")
    browser.go("/?q=node")

    assert browser.text("#asset-total") == "60 assets match"
    first = browser.texts("table#assets tbody td.host a")
    assert (len(first), first[0], first[-1]) == (50, "node-00", "node-49")
    assert browser.text(".pager span") == "Page 1 of 2"
    browser.find('.pager a[rel="next"]').follow()
    assert browser.path == "/?q=node&page=2"
    assert browser.texts("table#assets tbody td.host a") == [f"node-{n}" for n in range(50, 60)]
    assert browser.find_all('.pager a[rel="next"]') == []
