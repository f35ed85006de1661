"""Agent fixtures: the real server in a uvicorn subprocess, enrollment tokens made
through the server's own service, and a fake OS tree for the collector to read."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from patchwarden.agent.config import AgentConfig
from patchwarden.server.services import agents
from patchwarden.store.audit import Actor
from patchwarden.store.db import Database, open_database
from patchwarden.store.models import AgentReportRow
from tests.support import TEST_AUDIT_KEY

OS_RELEASE = 'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\nNAME="Debian GNU/Linux"\n'
STANZA = (
    "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\n"
    "Source: {source}\nVersion: {version}\n\n"
)
BASE_PACKAGES = (
    ("libssl3", "openssl", "3.0.11-1~deb12u2"),
    ("openssl", "openssl", "3.0.11-1~deb12u2"),
    ("bash", "bash", "5.2.15-2+b2"),
)


def sqlite_copy(template: Path, folder: Path) -> str:
    """A fresh migrated SQLite database (for tests whose subject is not the database)."""
    target = folder / "patchwarden.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """``uvicorn patchwarden.server.main:app_factory`` in a subprocess on 127.0.0.1."""

    def __init__(self, db_url: str, home: Path, *, tls: tuple[Path, Path] | None = None) -> None:
        self.db_url = db_url
        self.home = home
        self.port = free_port()
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = home / "server.log"

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [
            sys.executable, "-m", "uvicorn", "patchwarden.server.main:app_factory", "--factory",
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
        ]  # fmt: skip
        if self.tls:
            argv += ["--ssl-certfile", str(self.tls[0]), "--ssl-keyfile", str(self.tls[1])]
        env = {
            **os.environ,
            "PATCHWARDEN_HOME": str(self.home),
            "PATCHWARDEN_DATABASE_URL": self.db_url,
        }
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            if self._healthy():
                return
            time.sleep(0.1)
        raise RuntimeError(f"server did not come up: {self.log_path.read_text()}")

    def _healthy(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
        except OSError:
            return False
        if self.tls:
            return True  # the port answers; TLS tests check the rest themselves
        try:
            health = f"{self.url}/healthz"  # always http://127.0.0.1 here
            with urllib.request.urlopen(health, timeout=2) as answer:  # noqa: S310
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flushing — a crash."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    """The test database, opened by the test process (the server has its own pool)."""
    db = open_database(db_url, migrate=False, audit_key=TEST_AUDIT_KEY)
    try:
        yield db
    finally:
        db.dispose()


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """The real server, started on the test database (SQLite and PostgreSQL)."""
    home = tmp_path / "server-home"
    home.mkdir()
    live = LiveServer(db_url, home)
    live.start()
    try:
        yield live
    finally:
        live.stop()


TokenFactory = Callable[..., str]


@pytest.fixture
def make_token(database: Database) -> TokenFactory:
    """Create an enrollment token through the server's service; returns the secret."""

    def make(*, max_uses: int = 1, hours: int = 1, created: datetime | None = None) -> str:
        with database.session() as session:
            _row, token = agents.create_enrollment_token(
                session,
                Actor("test", "system"),
                now=created or datetime.now(UTC),
                hours=hours,
                max_uses=max_uses,
            )
        return token

    return make


class FakeRoot:
    """A Debian 12 tree with a dpkg status file the local collector reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "etc").mkdir(parents=True)
        (path / "etc/os-release").write_text(OS_RELEASE)
        (path / "etc/hostname").write_text("fake-host\n")
        (path / "var/lib/dpkg").mkdir(parents=True)
        self.packages = list(BASE_PACKAGES)
        self.write()

    def write(self) -> None:
        text = "".join(
            STANZA.format(name=name, source=source, version=version)
            for name, source, version in self.packages
        )
        (self.path / "var/lib/dpkg/status").write_text(text)

    def add(self, name: str, version: str) -> None:
        self.packages.append((name, name, version))
        self.write()

    def set_machine_id(self, machine_id: str) -> None:
        """Give the tree a systemd machine id (the agent sends it at enrollment)."""
        (self.path / "etc/machine-id").write_text(machine_id + "\n")


@pytest.fixture
def fake_root(tmp_path: Path) -> FakeRoot:
    return FakeRoot(tmp_path / "root")


@pytest.fixture
def agent_config(tmp_path: Path, fake_root: FakeRoot) -> Callable[..., AgentConfig]:
    """An agent configuration for ``server`` that reads ``fake_root``."""

    def make(server_url: str, **changes: object) -> AgentConfig:
        values: dict[str, object] = {
            "server_url": server_url,
            "state_dir": tmp_path / "agent-state",
            "collect_root": fake_root.path,
            "timeout": 10.0,
        }
        values.update(changes)
        return AgentConfig(**values)  # type: ignore[arg-type]

    return make


@dataclass
class Live:
    """Everything a test against the live server uses."""

    server: LiveServer
    database: Database
    token: TokenFactory
    config: Callable[..., AgentConfig]
    root: FakeRoot


@pytest.fixture
def live(
    server: LiveServer,
    database: Database,
    make_token: TokenFactory,
    agent_config: Callable[..., AgentConfig],
    fake_root: FakeRoot,
) -> Live:
    return Live(server, database, make_token, agent_config, fake_root)


def reports(database: Database) -> list[AgentReportRow]:
    """Every agent_report row, oldest first."""
    with database.session() as session:
        return list(session.scalars(select(AgentReportRow).order_by(AgentReportRow.id)))


def wait_processed(database: Database, count: int, timeout: float = 30) -> list[AgentReportRow]:
    """Wait until ``count`` reports exist and none is pending or processing."""
    deadline = time.monotonic() + timeout
    rows: list[AgentReportRow] = []
    while time.monotonic() < deadline:
        rows = reports(database)
        if len(rows) >= count and all(row.status not in ("pending", "processing") for row in rows):
            return rows
        time.sleep(0.1)
    raise AssertionError(f"reports not processed in time: {[(r.id, r.status) for r in rows]}")


def hours_ago(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)
