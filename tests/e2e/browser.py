"""Drive Debian's headless Chromium through chromedriver, and serve the real app.

The browser is driven with the W3C WebDriver protocol spoken directly over HTTP with
httpx (already a dependency): the handful of commands the tests need fit in this file,
nothing is downloaded at run time, and the chromedriver used is always the one Debian
ships next to its Chromium (so their versions match). See docs/web-ui.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from tests.e2e.servers import free_port

#: WebDriver's key for element references in JSON.
ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"

#: Flags that let Chromium run headless as root in a container, and stay offline.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--window-size=1280,900",
)


class WebDriverError(AssertionError):
    """A WebDriver command failed (no such element, timeout, …)."""


def find_tools() -> tuple[str, str]:
    """Paths of chromium and chromedriver; skips the test with a reason when one is absent.

    ``PATCHWARDEN_CHROMIUM`` and ``PATCHWARDEN_CHROMEDRIVER`` override the lookup.
    """
    chromium = os.environ.get("PATCHWARDEN_CHROMIUM") or shutil.which("chromium")
    driver = os.environ.get("PATCHWARDEN_CHROMEDRIVER") or shutil.which("chromedriver")
    missing = [
        name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path
    ]
    if chromium is None or driver is None:
        pytest.skip(
            f"{' and '.join(missing)} not found: install Debian's chromium and chromium-driver "
            "packages (scripts/test does) to run the browser tests"
        )
    return chromium, driver


@dataclass(frozen=True)
class Element:
    """A reference to an element of the current page."""

    browser: Browser
    ref: str

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.browser.command(method, f"/element/{self.ref}{path}", body)

    @property
    def text(self) -> str:
        """The rendered (visible) text, as a user sees it."""
        value: str = self._call("GET", "/text")
        return value

    def attribute(self, name: str) -> str | None:
        """An HTML attribute's value, or None."""
        value: str | None = self._call("GET", f"/attribute/{name}")
        return value

    def click(self) -> None:
        """Click it (and wait for any page load it starts)."""
        self._call("POST", "/click", {})

    def follow(self, timeout: float = 10.0) -> None:
        """Click a link or submit button and wait until the next page has replaced this one.

        A click returns once the event is dispatched; a form post may still be in flight.
        The old page's root element going stale is the sign that the new page is in.
        """
        old_root = self.browser.find("html")
        self.click()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                old_root.attribute("lang")
            except WebDriverError as exc:
                # Chromium says "stale element", or (mid-navigation, some versions) that
                # the node no longer belongs to the document: either way the page went.
                if any(sign in str(exc) for sign in _GONE):
                    return
                raise
            time.sleep(0.02)
        raise WebDriverError(f"no new page within {timeout} s")

    def type(self, text: str) -> None:
        """Replace the field's value with ``text``, typed key by key."""
        self._call("POST", "/clear", {})
        self._call("POST", "/value", {"text": text})

    def find(self, css: str) -> Element:
        """The first descendant matching ``css``."""
        found = self._call("POST", "/element", {"using": "css selector", "value": css})
        return Element(self.browser, found[ELEMENT_KEY])

    def find_all(self, css: str) -> list[Element]:
        """Every descendant matching ``css``."""
        found = self._call("POST", "/elements", {"using": "css selector", "value": css})
        return [Element(self.browser, item[ELEMENT_KEY]) for item in found]


_GONE = ("stale element", "does not belong to the document")


class Browser:
    """One WebDriver session: navigate, find elements, read text, click, type."""

    def __init__(self, http: httpx.Client, session_id: str) -> None:
        self.http = http
        self.session_id = session_id
        self.base_url = ""

    def command(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one WebDriver command; return its ``value`` or raise WebDriverError."""
        response = self.http.request(method, f"/session/{self.session_id}{path}", json=body)
        value = response.json()["value"]
        if response.status_code != 200:
            raise WebDriverError(f"{method} {path}: {value.get('error')}: {value.get('message')}")
        return value

    def go(self, path: str) -> None:
        """Open ``path`` on the app under test and wait until it has loaded."""
        self.command("POST", "/url", {"url": self.base_url + path})

    @property
    def url(self) -> str:
        """The current address."""
        value: str = self.command("GET", "/url")
        return value

    @property
    def path(self) -> str:
        """The current path with its query string."""
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    @property
    def title(self) -> str:
        """The page title."""
        value: str = self.command("GET", "/title")
        return value

    @property
    def source(self) -> str:
        """The current page's HTML."""
        value: str = self.command("GET", "/source")
        return value

    def find(self, css: str) -> Element:
        """The first element matching ``css``; WebDriverError when there is none."""
        found = self.command("POST", "/element", {"using": "css selector", "value": css})
        return Element(self, found[ELEMENT_KEY])

    def find_all(self, css: str) -> list[Element]:
        """Every element matching ``css`` (possibly none)."""
        found = self.command("POST", "/elements", {"using": "css selector", "value": css})
        return [Element(self, item[ELEMENT_KEY]) for item in found]

    def text(self, css: str) -> str:
        """The visible text of the first element matching ``css``."""
        return self.find(css).text

    def texts(self, css: str) -> list[str]:
        """The rendered text of every element matching ``css``, in one round trip.

        This runs a script in the page — the harness's, not the app's: the pages
        themselves ship none.
        """
        value: list[str] = self.command(
            "POST",
            "/execute/sync",
            {
                "script": "return Array.from(document.querySelectorAll(arguments[0]),"
                " e => e.innerText.trim())",
                "args": [css],
            },
        )
        return value

    def fill(self, fields: dict[str, str]) -> None:
        """Type into form fields found by their ``name``."""
        for name, value in fields.items():
            self.find(f'[name="{name}"]').type(value)

    def cookie(self, name: str) -> str:
        """The value of the current site's cookie ``name``."""
        value: dict[str, Any] = self.command("GET", f"/cookie/{name}")
        return str(value["value"])

    def set_cookie(self, name: str, value: str) -> None:
        """Set a cookie for the current site (path /)."""
        self.command("POST", "/cookie", {"cookie": {"name": name, "value": value, "path": "/"}})

    def clear_cookies(self) -> None:
        """Forget every cookie of every site and path (a fresh visitor for the next test).

        WebDriver's own "delete all cookies" only reaches the current page's cookies;
        chromedriver's DevTools passthrough clears the whole jar.
        """
        self.command(
            "POST", "/goog/cdp/execute", {"cmd": "Network.clearBrowserCookies", "params": {}}
        )


def _wait_ready(http: httpx.Client, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromedriver exited with status {process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if http.get("/status").json()["value"].get("ready"):
                return
        time.sleep(0.05)
    raise RuntimeError(f"chromedriver was not ready within {timeout} s")


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium with a throwaway profile, for the duration of the block."""
    chromium_path, driver_path = find_tools()
    port = free_port()
    with contextlib.ExitStack() as stack:
        profile = stack.enter_context(tempfile.TemporaryDirectory(prefix="pw-chromium-"))
        process = subprocess.Popen(
            [driver_path, f"--port={port}", "--allowed-ips=127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(process.wait, 10)
        stack.callback(process.terminate)
        http = stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30))
        _wait_ready(http, process, timeout=15)
        options = {
            "binary": chromium_path,
            "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"],
        }
        response = http.post(
            "/session",
            json={
                "capabilities": {
                    "alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}
                }
            },
        )
        value = response.json()["value"]
        if response.status_code != 200:
            raise RuntimeError(f"could not start Chromium: {value.get('message')}")
        browser = Browser(http, value["sessionId"])
        stack.callback(http.delete, f"/session/{browser.session_id}")
        yield browser


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free local port in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", ws="none", lifespan="on", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app under test did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
