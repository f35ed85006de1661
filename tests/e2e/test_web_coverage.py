"""The asset page in a real browser says when no loaded advisory covers the host.

A Debian 12 host while only Debian 11 advisories are loaded (an older DSA list) must
not read "No open findings": it was not checked. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from patchwarden.core.model import (
    Advisory,
    Affected,
    AffectedRange,
    Event,
    InstalledPackage,
    Inventory,
)
from patchwarden.server.app import create_app
from patchwarden.server.context import AppContext
from patchwarden.store.advisories import import_advisories
from patchwarden.store.findings import refresh_findings
from patchwarden.store.inventory import record_inventory
from tests.e2e import test_web_pages as pages
from tests.e2e.browser import Browser, chromium, serve

# The page suite's fixtures: app context and clock.
clock = pages.clock
ctx = pages.ctx

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module."""
    with chromium() as b:
        yield b


def bash_advisory(ident: str, ecosystem: str, now: datetime) -> Advisory:
    """Every bash before 5.2.16-1 in ``ecosystem``."""
    events = (Event("introduced", "0"), Event("fixed", "5.2.16-1"))
    return Advisory(
        id=ident,
        modified=now,
        source="debian-dsa",
        affected=(Affected(ecosystem, "bash", (AffectedRange("ECOSYSTEM", events),)),),
    )


def test_asset_page_says_the_host_was_not_checked(ctx: AppContext, browser: Browser) -> None:
    now = ctx.now()
    # bash 5.2.15-2 is below the fix: a Debian 12 advisory would report it.
    bash = InstalledPackage("bash", "5.2.15-2", "Debian:12", "amd64", "bash", "5.2.15-2")
    with ctx.db.session() as s:
        import_advisories(s, [bash_advisory("DSA-11-1", "Debian:11", now)])
        asset_id, _ = record_inventory(s, Inventory("bookworm", (bash,), os=pages.DEBIAN), now=now)
        refresh_findings(s, now=now)
    with serve(create_app(ctx, background=False)) as base_url:
        browser.base_url = base_url
        try:
            browser.go(f"/assets/{asset_id}")
            pages.sign_in(browser, "operator")
            assert browser.path == f"/assets/{asset_id}"
            notice = browser.text("#coverage .uncovered")
            assert notice.startswith(
                "Not checked: no loaded advisory covers Debian:12 (1 packages)"
            )
            assert "patchwarden feeds sync --ecosystem Debian:12" in notice
            assert browser.text("#no-findings") == (
                "No findings, because no package of this host was checked (see above)."
            )

            # A release-less "Debian" advisory applies to Debian 12: now it is checked.
            with ctx.db.session() as s:
                import_advisories(s, [bash_advisory("DEBIAN-TEST-1", "Debian", now)])
                refresh_findings(s, now=now)
            browser.go(f"/assets/{asset_id}")
            assert browser.find_all("#coverage") == []
            assert browser.texts("#findings tr.finding td.advisory")[0].startswith("DEBIAN-TEST-1")
        finally:
            browser.clear_cookies()
