"""`patchwarden server` on PostgreSQL applies agent reports in worker processes of
lower CPU priority, restarts one that dies, and stops them with the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx

from patchwarden.server.services import agents
from patchwarden.store.audit import Actor
from patchwarden.store.db import open_database
from patchwarden.store.models import AgentReportRow
from tests.e2e.servers import REPO, free_port
from tests.e2e.test_multi_server import inventory
from tests.support import TEST_AUDIT_KEY

T = TypeVar("T")


def _children(pid: int) -> dict[int, str]:
    """Direct children of ``pid``: their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry.name)] = cmdline
    return found


def _niceness(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[16])


def _wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_server_runs_restarts_and_stops_its_report_workers(
    postgres_url: str, tmp_path: Path
) -> None:
    database = open_database(postgres_url, migrate=False, audit_key=TEST_AUDIT_KEY)
    with database.session() as session:
        _row, token = agents.create_enrollment_token(
            session, Actor("test", "system"), now=datetime.now(UTC), max_uses=1
        )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "patchwarden", "server", "--port", str(port), "--workers", "2"],
        env={
            **os.environ,
            "PATCHWARDEN_HOME": str(tmp_path),
            "PATCHWARDEN_DATABASE_URL": postgres_url,
            "PATCHWARDEN_REPORT_NICE": "7",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        start_new_session=True,  # so that a failing test can kill the whole tree
    )

    def report_workers() -> list[int]:
        return [p for p, cmd in _children(server.pid).items() if "report-worker" in cmd]

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def applied(report_id: int) -> bool:
        with database.session() as session:
            row = session.get(AgentReportRow, report_id)
            return row is not None and row.status == "processed"

    try:
        _wait_for("the server", healthy)
        # By default as many report workers as request workers; each lowers its own
        # priority once started (PATCHWARDEN_REPORT_NICE).
        _wait_for("two report workers", lambda: len(report_workers()) == 2)
        first_two = report_workers()
        for pid in first_two:
            _wait_for("the workers' niceness", lambda pid=pid: _niceness(pid) == 7)
        worker = first_two[0]
        assert _niceness(server.pid) == 0

        enrolled = httpx.post(
            f"{url}/api/agent/v1/enroll",
            json={"protocol": 1, "enrollment_token": token, "hostname": "worker-1"},
            timeout=10,
        ).json()
        headers = {"Authorization": f"Bearer {enrolled['credential']}", "Content-Encoding": "gzip"}

        def put(extra: int) -> int:
            answer = httpx.put(
                f"{url}/api/agent/v1/inventory",
                content=inventory("worker-1", extra),
                headers=headers,
                timeout=30,
            )
            assert answer.status_code == 202, answer.text
            return int(answer.json()["report_id"])

        first = put(0)
        _wait_for("the report applied by the worker", lambda: applied(first))

        os.kill(worker, signal.SIGKILL)  # a crash: the server starts another one
        (restarted,) = _wait_for(
            "a new report worker", lambda: [p for p in report_workers() if p not in first_two]
        )
        second = put(1)
        _wait_for("the report applied by the new worker", lambda: applied(second))
        _wait_for("the new worker's niceness", lambda: _niceness(restarted) == 7)

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert (
            not Path(f"/proc/{restarted}").exists()
            or "Z" in Path(f"/proc/{restarted}/stat").read_text().rsplit(")", 1)[1].split()[0]
        )
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
        database.dispose()
