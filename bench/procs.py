"""Real server processes and CPU accounting for the load benchmarks.

* ``ServerProcess`` starts patchwarden the way an operator does — ``patchwarden server
  --workers N`` — or, where a benchmark must time something inside the server, uvicorn
  on ``bench.serve:app_factory`` (the production factory with timing wrappers, see
  bench/serve.py). Either way the server is its own process tree, on its own cores.
* ``CpuSnapshot`` reads ``/proc`` (psutil is not installed): CPU seconds of the server's
  process tree, of every PostgreSQL process, of this process, and of the whole machine,
  so a window's figures say who used the two cores.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import REPO_ROOT

_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------- /proc


def _stat(pid: int) -> tuple[str, int, float, float] | None:
    """(command name, parent pid, user + system CPU s, system CPU s) of a process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            raw = handle.read()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15, ppid 4.
    user, system = int(fields[11]), int(fields[12])
    return name, int(fields[1]), (user + system) / _TICK, system / _TICK


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        stat = _stat(pid)
        if stat is not None:
            children.setdefault(stat[1], []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    with open("/proc/stat", encoding="ascii") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user .. steal (guest time is already in user)
    return (total - idle) / _TICK, total / _TICK


def rss_kib(pid: int) -> int:
    """Resident set size of a process, KiB (0 when gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


@dataclass
class CpuSnapshot:
    """CPU seconds per group of processes at one moment."""

    wall: float
    server: dict[int, float]
    server_system: dict[int, float]
    postgres: dict[int, float]
    own: float
    machine_busy: float
    machine_total: float

    @classmethod
    def take(cls, server_pid: int | None) -> CpuSnapshot:
        """Read the server's tree, every ``postgres`` process, this process, the machine."""
        server: dict[int, float] = {}
        system: dict[int, float] = {}
        if server_pid is not None:
            for pid in process_tree(server_pid):
                stat = _stat(pid)
                if stat is not None:
                    server[pid], system[pid] = stat[2], stat[3]
        postgres = {}
        for pid in _all_pids():
            stat = _stat(pid)
            if stat is not None and stat[0] == "postgres":
                postgres[pid] = stat[2]
        busy, total = machine_cpu()
        return cls(time.perf_counter(), server, system, postgres, time.process_time(), busy, total)


@dataclass
class CpuUse:
    """CPU used between two snapshots, in cores (CPU seconds per wall second)."""

    wall_s: float
    server: float
    server_system: float
    postgres: float
    simulator: float
    machine: float
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)

    @property
    def other(self) -> float:
        """Busy cores not accounted to the server, PostgreSQL or this process (the
        kernel's own work, e.g. interrupts and loopback networking, lands here too)."""
        return max(0.0, self.machine - self.server - self.postgres - self.simulator)

    def as_dict(self) -> dict[str, float]:
        """The figures, rounded, for reports."""
        return {
            "wall_s": round(self.wall_s, 2),
            "server_cores": round(self.server, 3),
            "server_system_cores": round(self.server_system, 3),
            "postgres_cores": round(self.postgres, 3),
            "simulator_cores": round(self.simulator, 3),
            "other_cores": round(self.other, 3),
            "machine_busy_cores": round(self.machine, 3),
            "machine_cores": self.cores,
        }


def cpu_between(before: CpuSnapshot, after: CpuSnapshot) -> CpuUse:
    """CPU used from ``before`` to ``after`` (processes born meanwhile count from 0)."""
    wall = max(1e-9, after.wall - before.wall)

    def delta(old: dict[int, float], new: dict[int, float]) -> float:
        return sum(seconds - old.get(pid, 0.0) for pid, seconds in new.items())

    busy = after.machine_busy - before.machine_busy
    total = after.machine_total - before.machine_total
    cores = os.cpu_count() or 1
    return CpuUse(
        wall_s=wall,
        server=delta(before.server, after.server) / wall,
        server_system=delta(before.server_system, after.server_system) / wall,
        postgres=delta(before.postgres, after.postgres) / wall,
        simulator=(after.own - before.own) / wall,
        machine=busy / total * cores if total > 0 else 0.0,
    )


# ------------------------------------------------------------------------ server


@dataclass
class ServerProcess:
    """One patchwarden server (uvicorn, ``workers`` processes) on ``database_url``.

    ``mode`` is ``cli`` (``patchwarden server``, exactly what operators run) or
    ``instrumented`` (uvicorn on ``bench.serve:app_factory``, which records the
    orchestrator's ticks and report processing into ``timing_dir``), or ``floor``
    (``bench.floor:floor_factory``, a database-free app for the framework floor).
    """

    database_url: str
    home: Path
    workers: int = 1
    mode: str = "cli"
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        """The server's combined stdout/stderr."""
        return self.home / f"server-{self.port}.log"

    @property
    def timing_dir(self) -> Path:
        """Where the instrumented server writes its timings (one file per process)."""
        return self.home / "timings"

    def command(self) -> list[str]:
        """The argv that starts the server."""
        common = ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        if self.mode == "cli":
            patchwarden = Path(sys.executable).with_name("patchwarden")
            return [str(patchwarden), "server", "--workers", str(self.workers), *common]
        factory = "floor:floor_factory" if self.mode == "floor" else "serve:app_factory"
        return [
            sys.executable,
            "-m",
            "uvicorn",
            f"bench.{factory}",
            "--factory",
            "--workers",
            str(self.workers),
            "--proxy-headers",
            *common,
        ]

    def start(self, timeout: float = 60.0) -> ServerProcess:
        """Start the server and wait until ``/healthz`` answers."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.timing_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PATCHWARDEN_HOME": str(self.home),
            "PATCHWARDEN_DATABASE_URL": self.database_url,
            "PATCHWARDEN_BENCH_TIMING_DIR": str(self.timing_dir),
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
            ),
            **self.env,
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT
            )
        deadline = time.monotonic() + timeout
        healthy = 0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    healthy += 1
                    # With several workers, a few answers in a row make it likely that
                    # every worker is up (each opens its own pool on first use).
                    if healthy >= 2 * self.workers:
                        return self
            except httpx.HTTPError:
                healthy = 0
            time.sleep(0.2)
        raise RuntimeError(f"server did not start:\n{self.log.read_text()[-3000:]}")

    @property
    def pid(self) -> int | None:
        """The main process id while running."""
        return self.process.pid if self.process is not None else None

    def worker_pids(self) -> list[int]:
        """Every process of the server's tree (main process first)."""
        return process_tree(self.pid) if self.pid is not None else []

    def stop(self) -> None:
        """Graceful stop (SIGTERM to the main process), falling back to SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
