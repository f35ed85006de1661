"""The pages work in Chromium under the content security policy the server now sends.

The policy allows scripts only from this origin, so the API reference page's script
moved from an inline block to /static/api-docs.js: Chromium must run it (the table of
operations fills) and the sign-in form must still post (``form-action 'self'``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from patchwarden.server.app import create_app
from patchwarden.server.context import AppContext
from tests.e2e.browser import Browser, chromium, serve
from tests.server import conftest as server_fixtures

clock = server_fixtures.clock
ctx = server_fixtures.ctx

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.parametrize("db_url", ["sqlite"], indirect=True),
]


@pytest.fixture
def browser(ctx: AppContext) -> Iterator[Browser]:
    with chromium() as b, serve(create_app(ctx, background=False)) as base_url:
        b.base_url = base_url
        yield b


def test_the_api_page_runs_its_script_under_the_policy(browser: Browser) -> None:
    browser.go("/login?next=%2Fapi%2Fdocs")
    browser.fill({"username": "admin", "password": server_fixtures.PASSWORD})
    browser.find("#sign-in").follow()
    assert browser.path == "/api/docs"
    deadline = time.monotonic() + 10
    rows: list[str] = []
    while time.monotonic() < deadline and len(rows) < 40:
        rows = browser.texts("#ops tbody tr")
        time.sleep(0.1)
    assert len(rows) > 40, rows
    assert any("/api/v1/assets" in row for row in rows)
