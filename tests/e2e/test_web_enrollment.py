"""The enrollment tokens page in a real browser (headless Chromium, the real app under
uvicorn): readers list tokens without secrets, enroll:write creates one — its secret
shown once and usable by an agent at once — binds one to an asset, and revokes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from patchwarden.server.app import create_app
from patchwarden.server.auth import SESSION_COOKIE
from patchwarden.server.context import AppContext
from patchwarden.server.services import agents
from patchwarden.store.audit import Actor
from tests.e2e.browser import Browser, chromium, serve
from tests.server import conftest as server_fixtures

PASSWORD = server_fixtures.PASSWORD
clock = server_fixtures.clock
ctx = server_fixtures.ctx

pytestmark = pytest.mark.timeout(120)
SEEDER = Actor("e2e-seed", "system")
HOSTILE = '<img src=x onerror="alert(1)">'


@dataclass
class Seeded:
    """The enrolled host and the tokens the page starts with."""

    host: int
    host_credential: str
    active: int
    revoked: int


def seed(context: AppContext) -> Seeded:
    now = context.now()
    with context.db.session() as s:
        _first, first_secret = agents.create_enrollment_token(
            s, SEEDER, now=now, note="first host", max_uses=1
        )
        host = agents.enroll(
            s,
            token=first_secret,
            hostname="db-1",
            fqdn="",
            machine_id="",
            agent_version="",
            ip="127.0.0.1",
            now=now,
        )
        active, _ = agents.create_enrollment_token(s, SEEDER, now=now, note=HOSTILE, max_uses=10)
        revoked, _ = agents.create_enrollment_token(s, SEEDER, now=now, note="old batch")
        agents.revoke_enrollment_token(s, SEEDER, revoked.id, now=now)
        return Seeded(host.asset_id, host.credential, active.id, revoked.id)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def site(ctx: AppContext, browser: Browser) -> Iterator[Seeded]:
    seeded = seed(ctx)
    with serve(create_app(ctx, background=False)) as base_url:
        browser.base_url = base_url
        try:
            yield seeded
        finally:
            browser.clear_cookies()


def login(browser: Browser, username: str) -> None:
    browser.clear_cookies()
    browser.go("/enrollment-tokens")
    browser.fill({"username": username, "password": PASSWORD})
    browser.find("#sign-in").follow()
    assert browser.path == "/enrollment-tokens"


def cells(browser: Browser, token_id: int | str) -> dict[str, str]:
    headings = browser.texts("table#enrollment-tokens thead th")
    row = browser.texts(f'table#enrollment-tokens tr[data-token="{token_id}"] td')
    return dict(zip(headings, row, strict=True))


def enroll(base_url: str, token: str, hostname: str) -> httpx.Response:
    """An agent's enrollment request, as the agent sends it."""
    body = {"protocol": 1, "enrollment_token": token, "hostname": hostname}
    return httpx.post(f"{base_url}/api/agent/v1/enroll", json=body, timeout=10)


def test_readers_list_tokens_without_secrets_or_forms(browser: Browser, site: Seeded) -> None:
    login(browser, "auditor")
    assert browser.text("h1") == "Enrollment tokens"
    assert browser.find('nav a[href="/enrollment-tokens"]').attribute("aria-current") == "page"
    assert cells(browser, site.active)["Status"] == "active"
    assert cells(browser, site.active)["Note"] == HOSTILE  # shown as text, not markup
    assert cells(browser, site.active)["Uses"] == "0 / 10"
    assert cells(browser, site.revoked)["Status"] == "revoked"
    assert cells(browser, 1)["Status"] == "used up"
    assert cells(browser, 1)["Asset"] == "any new host"
    assert browser.find_all("form[action^='/enrollment-tokens']") == []
    assert "pwe_" not in browser.source
    assert "<script" not in browser.source


def test_admin_creates_a_token_sees_its_secret_once_and_an_agent_enrolls_with_it(
    browser: Browser, site: Seeded
) -> None:
    login(browser, "admin")
    browser.find("#create summary").click()
    browser.fill({"note": "rack 4", "uses": "5", "hours": "48"})
    browser.find("#create-token").follow()

    secret = browser.text("#new-token")
    token_id = secret.split("_")[1]
    assert secret.startswith(f"pwe_{token_id}_")
    assert browser.text("#created h2") == f"Token {token_id} created"
    row = cells(browser, token_id)
    assert (row["Status"], row["Note"], row["Uses"]) == ("active", "rack 4", "0 / 5")
    assert row["Created by"].startswith("admin")
    assert row["Expires"].endswith("in 2 days")

    enrolled = enroll(browser.base_url, secret, "web-7")
    assert enrolled.status_code == 200, enrolled.text
    browser.go("/enrollment-tokens")
    assert secret not in browser.source  # shown once, never listed
    assert browser.find_all("#new-token") == []
    assert cells(browser, token_id)["Uses"] == "1 / 5"


def test_a_reenroll_token_for_an_asset_replaces_its_agent(browser: Browser, site: Seeded) -> None:
    login(browser, "admin")
    browser.find("#create summary").click()
    # Refused as sent: the form comes back with the reason and what was typed.
    browser.fill({"note": "db-1 rebuilt", "asset": str(site.host), "uses": "3"})
    browser.find("#create-token").follow()
    assert "single use" in browser.text("#create-error")
    assert browser.find('[name="note"]').attribute("value") == "db-1 rebuilt"
    browser.fill({"asset": "db-1", "uses": "1"})
    browser.find("#create-token").follow()
    assert browser.text("#create-error").startswith("asset must be an asset id")

    browser.fill({"asset": str(site.host)})
    browser.find("#create-token").follow()
    secret = browser.text("#new-token")
    token_id = secret.split("_")[1]
    assert browser.text("#created h2") == f"Token {token_id} created for asset {site.host}"
    assert cells(browser, token_id)["Asset"] == "re-enroll db-1"
    assert cells(browser, token_id)["Uses"] == "0 / 1"

    replaced = enroll(browser.base_url, secret, "db-1")
    assert replaced.json()["asset_id"] == site.host
    old = httpx.post(
        f"{browser.base_url}/api/agent/v1/checkin",
        json={},
        headers={"Authorization": f"Bearer {site.host_credential}"},
        timeout=10,
    )
    assert old.status_code == 401


def test_revoking_a_token_from_the_page(browser: Browser, site: Seeded, ctx: AppContext) -> None:
    login(browser, "admin")
    row = f'table#enrollment-tokens tr[data-token="{site.active}"]'
    assert browser.find_all(f'table#enrollment-tokens tr[data-token="{site.revoked}"] form') == []
    browser.find(f"{row} button[type=submit]").follow()

    assert browser.path == "/enrollment-tokens"
    assert browser.text("#flash") == (
        f"Enrollment token {site.active} revoked; agents enrolled with it keep working."
    )
    assert cells(browser, site.active)["Status"] == "revoked"
    assert browser.find_all(f"{row} form") == []
    with ctx.db.session() as s:
        assert [t.revoked_at is not None for t in agents.list_enrollment_tokens(s)] == [
            False,
            True,
            True,
        ]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_forged_and_unprivileged_posts_are_refused(
    browser: Browser, site: Seeded, ctx: AppContext
) -> None:
    login(browser, "admin")
    cookies = {SESSION_COOKIE: browser.cookie(SESSION_COOKIE)}
    base = browser.base_url
    forged = httpx.post(f"{base}/enrollment-tokens", data={"note": "x"}, cookies=cookies)
    assert forged.status_code == 403  # no CSRF token: a form posted from elsewhere
    forged_revoke = httpx.post(f"{base}/enrollment-tokens/{site.active}/revoke", cookies=cookies)
    assert forged_revoke.status_code == 403

    login(browser, "operator")
    assert browser.find_all("#create") == []
    assert browser.find_all("table#enrollment-tokens form") == []
    csrf = browser.find('form.signout [name="csrf_token"]').attribute("value") or ""
    refused = httpx.post(
        f"{base}/enrollment-tokens",
        data={"note": "x", "csrf_token": csrf},
        cookies={SESSION_COOKIE: browser.cookie(SESSION_COOKIE)},
        headers={"Accept": "application/json"},
    )
    assert refused.status_code == 403
    assert "enroll:write" in refused.json()["error"]
    with ctx.db.session() as s:
        assert len(agents.list_enrollment_tokens(s)) == 3  # nothing was created


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_list_pages_through_many_tokens(
    browser: Browser, site: Seeded, ctx: AppContext
) -> None:
    with ctx.db.session() as s:
        for n in range(60):
            agents.create_enrollment_token(s, SEEDER, now=ctx.now(), note=f"batch {n}")
    login(browser, "auditor")
    first = browser.texts("table#enrollment-tokens tbody td.note")
    assert (len(first), first[0]) == (50, "batch 59")  # newest first
    browser.find('.pager a[rel="next"]').follow()
    assert browser.path == "/enrollment-tokens?page=2"
    assert len(browser.texts("table#enrollment-tokens tbody tr")) == 13  # 10 + the seeded 3
