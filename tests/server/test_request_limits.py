"""Body limits and forwarded headers against a real `patchwarden server` process.

Issue 9: three anonymous 200 MB sign-in posts took the server from 134 MB to 1.7 GB,
and uvicorn believed ``X-Forwarded-For`` from 127.0.0.1, so a local client chose the
address that sign-in limits and the audit log saw. These tests speak raw HTTP to a
server started exactly as operators start it, and read its memory from /proc.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from patchwarden.server.services import agents, identity
from patchwarden.store.audit import Actor
from patchwarden.store.db import open_database
from patchwarden.store.models import LoginAttemptRow
from tests.e2e.servers import REPO, free_port
from tests.server.conftest import PASSWORD
from tests.support import TEST_AUDIT_KEY

JSON_LIMIT = 64 * 1024


@dataclass
class Server:
    url: str
    port: int
    pid: int
    database_url: str
    agent_credential: str

    def rss_kib(self) -> int:
        """Resident memory of the server process."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def _seed(database_url: str) -> str:
    database = open_database(database_url, migrate=True, audit_key=TEST_AUDIT_KEY)
    now = datetime.now(UTC)
    system = Actor("test", "system")
    try:
        with database.session() as session:
            identity.create_user(
                session, system, username="admin", password=PASSWORD, role="admin", now=now
            )
            _row, token = agents.create_enrollment_token(session, system, now=now)
            enrolled = agents.enroll(
                session,
                token=token,
                hostname="h1",
                fqdn="",
                machine_id="",
                agent_version="",
                ip="127.0.0.1",
                now=now,
            )
    finally:
        database.dispose()
    return enrolled.credential


def _start(tmp_path: Path, **env: str) -> Iterator[Server]:
    home = tmp_path / "home"
    home.mkdir()
    database_url = f"sqlite:///{home / 'patchwarden.db'}"
    credential = _seed(database_url)
    port = free_port()
    log = tmp_path / "server.log"
    environment = {
        **os.environ,
        "PATCHWARDEN_HOME": str(home),
        "PATCHWARDEN_DATABASE_URL": database_url,
        "PATCHWARDEN_MAX_JSON_BYTES": str(JSON_LIMIT),
        **env,
    }
    command = [sys.executable, "-m", "patchwarden", "server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield Server(url, port, process.pid, database_url, credential)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module (the tests only read from it, or fail to sign in)."""
    yield from _start(tmp_path_factory.mktemp("server"))


def _raw_request(port: int, head: bytes, body: Iterator[bytes]) -> bytes:
    """Send ``head`` and then ``body`` chunk by chunk while reading the answer.

    The server may answer (and stop reading) long before the body is sent, so the body
    goes out from a thread that gives up when the server closes the connection.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head)

    def send_body() -> None:
        try:
            for chunk in body:
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed the connection

    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    answer = b""
    try:
        while b"\r\n\r\n" not in answer:
            part = sock.recv(65536)
            if not part:
                break
            answer += part
    finally:
        sock.close()
        sender.join(timeout=30)
    return answer


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_a_declared_oversized_body_is_refused_before_it_is_sent(server: Server) -> None:
    head = (
        b"POST /api/v1/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 200000000\r\n\r\n"
    )
    started = time.monotonic()
    answer = _raw_request(server.port, head, iter(()))
    assert _status(answer) == 413, answer
    assert time.monotonic() - started < 5
    assert b"PayloadTooLarge" in answer or b"content-length" in answer.lower()


def test_a_chunked_flood_is_cut_off_and_memory_stays_bounded(server: Server) -> None:
    before = server.rss_kib()
    head = (
        b"POST /api/v1/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * (1024 * 1024)

    def flood() -> Iterator[bytes]:
        for _ in range(200):  # 200 MB, as in the issue
            yield b"%x\r\n%s\r\n" % (len(chunk), chunk)
        yield b"0\r\n\r\n"

    for _ in range(3):
        answer = _raw_request(server.port, head, flood())
        assert _status(answer) == 413, answer[:300]
    grown = server.rss_kib() - before
    assert grown < 40 * 1024, f"server grew by {grown} KiB"
    # The server still answers normally.
    signed_in = httpx.post(
        f"{server.url}/api/v1/session", json={"username": "admin", "password": PASSWORD}
    )
    assert signed_in.status_code == 200, signed_in.text


def test_the_limit_applies_to_every_route_but_inventory_uploads(server: Server) -> None:
    big = {"name": "g", "description": "d" * (JSON_LIMIT + 1)}
    refused = httpx.post(f"{server.url}/api/v1/groups", json=big)
    assert refused.status_code == 413
    body = refused.json()
    assert body["type"] == "PayloadTooLarge"
    assert str(JSON_LIMIT) in body["error"]
    # An inventory upload has its own, larger limit: this one is over the JSON limit
    # yet accepted (and validated as an inventory).
    document = {"format": "patchwarden-inventory/1", "packages": [], "padding": "p" * 200_000}
    upload = gzip.compress(json.dumps(document).encode(), compresslevel=0)
    assert len(upload) > JSON_LIMIT
    response = httpx.put(
        f"{server.url}/api/agent/v1/inventory",
        content=upload,
        headers={
            "Authorization": f"Bearer {server.agent_credential}",
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code != 413, response.text
    assert response.status_code < 500, response.text


def _failed_login_ip(server: Server, forwarded: str) -> str:
    response = httpx.post(
        f"{server.url}/api/v1/session",
        json={"username": "admin", "password": "wrong password!"},
        headers={"X-Forwarded-For": forwarded},
    )
    assert response.status_code == 401
    database = open_database(server.database_url, migrate=False)
    try:
        with database.session() as session:
            latest = select(LoginAttemptRow.ip).order_by(LoginAttemptRow.id.desc()).limit(1)
            return session.scalars(latest).one()
    finally:
        database.dispose()


def test_forwarded_addresses_are_ignored_unless_the_proxy_is_trusted(server: Server) -> None:
    # A local client cannot pick its address any more (uvicorn trusted 127.0.0.1).
    assert _failed_login_ip(server, "203.0.113.9") == "127.0.0.1"


def test_a_trusted_proxy_passes_the_client_address(tmp_path: Path) -> None:
    for running in _start(tmp_path, PATCHWARDEN_TRUSTED_PROXIES="127.0.0.1"):
        assert _failed_login_ip(running, "203.0.113.9") == "203.0.113.9"
