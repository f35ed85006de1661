"""The real agent's memory and CPU per cycle (part of benchmark A).

The agent archive is built with ``patchwarden.agent.build.build_pyz`` and run exactly as
the systemd unit runs it, ``python3 -I -S patchwarden-agent.pyz run --once``, against a
real server. Two host roots:

* ``synthetic``: a Debian 12 tree (``etc/os-release``, ``var/lib/dpkg/status``) holding
  one ``bench.synth`` host's packages (``--packages``, 1,500 by default), collected from
  the status file as the agent does under a ``collect_root``; drift rewrites the file
  with ``bench.synth.redrift``;
* ``this machine``: ``collect_root = /`` (``dpkg-query`` on this host's real packages),
  what ``tests/agent/test_pyz.py`` and docs/agent.md measure.

Per cycle: wall time, the agent's own VmRSS and VmHWM read from ``/proc/self/status``
when it exits (through a two-line wrapper, as the test does), and user + system CPU
and ``ru_maxrss`` from ``wait4`` (they include children such as ``dpkg-query``).
"""

from __future__ import annotations

import json
import os
import pstats
import subprocess
import tempfile
import time
import zipapp
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support import MEMORY_PROBE

from bench.common import median
from bench.synth import Fleet, redrift
from patchwarden.agent.build import build_pyz
from patchwarden.core.model import Inventory
from patchwarden.server.services.agents import create_enrollment_token
from patchwarden.store.audit import Actor
from patchwarden.store.db import Database

#: Runs the archive under cProfile and writes the stats to the path in argv[1].
_PROFILER = """
import cProfile, runpy, sys
out = sys.argv[1]
sys.argv = sys.argv[2:]
profile = cProfile.Profile()
code = 0
profile.enable()
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    code = exc.code
profile.disable()
profile.dump_stats(out)
sys.exit(code)
"""

_OS_RELEASE = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"""


def dpkg_status(inventory: Inventory) -> str:
    """A ``var/lib/dpkg/status`` file listing the inventory's packages."""
    stanzas = []
    for package in inventory.packages:
        lines = [
            f"Package: {package.name}",
            "Status: install ok installed",
            "Priority: optional",
            f"Architecture: {package.arch or 'amd64'}",
        ]
        source = package.source_name or package.name
        source_version = package.source_version or package.version
        if source != package.name or source_version != package.version:
            extra = f" ({source_version})" if source_version != package.version else ""
            lines.append(f"Source: {source}{extra}")
        lines += [f"Version: {package.version}", f"Description: {package.name} (bench)"]
        stanzas.append("\n".join(lines))
    return "\n\n".join(stanzas) + "\n"


def _write_root(root: Path, inventory: Inventory) -> None:
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "os-release").write_text(_OS_RELEASE)
    (root / "etc" / "machine-id").write_text("5e" * 16 + "\n")
    status = root / "var" / "lib" / "dpkg" / "status"
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_text(dpkg_status(inventory))


def _config(path: Path, server_url: str, state: Path, collect_root: Path) -> Path:
    path.write_text(
        "[agent]\n"
        f"server_url = {server_url}\n"
        f"state_dir = {state}\n"
        f"collect_root = {collect_root}\n"
        "interval = 300\n"
        "log_level = warning\n"
    )
    return path


def run_cycle(python: str, pyz: Path, config: Path, label: str) -> dict[str, Any]:
    """One ``run --once --json`` cycle; its result, memory and CPU."""
    command = [python, "-I", "-S", "-c", MEMORY_PROBE, str(pyz), "--config", str(config)]
    command += ["run", "--once", "--json"]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Read the pipes first, then reap the child ourselves to get its resource usage.
    stdout, stderr = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    text = stderr.decode(errors="replace")
    memory = [line for line in text.splitlines() if line.startswith("MEMORY ")]
    if process.returncode != 0 or not memory:
        raise RuntimeError(f"agent cycle {label} failed ({process.returncode}): {text[-2000:]}")
    rss, hwm = (int(v) for v in memory[-1].split()[1:3])
    result = json.loads(stdout)
    return {
        "cycle": label,
        "checked_in": result.get("checked_in"),
        "uploaded": result.get("uploaded"),
        "wall_s": wall,
        "cpu_user_s": usage.ru_utime,
        "cpu_system_s": usage.ru_stime,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "vmrss_kib": rss,
        "vmhwm_kib": hwm,
        "ru_maxrss_kib": usage.ru_maxrss,
    }


def profile_cycle(python: str, pyz: Path, config: Path, output: Path) -> dict[str, Any]:
    """One ``run --once`` cycle under cProfile (slower); the top functions."""
    command = [python, "-I", "-S", "-c", _PROFILER, str(output), str(pyz)]
    command += ["--config", str(config), "run", "--once", "--json"]
    done = subprocess.run(command, capture_output=True, check=False, timeout=300)
    if done.returncode != 0 or not output.exists():
        return {"error": done.stderr.decode(errors="replace")[-1000:]}
    stats = pstats.Stats(str(output))
    total = stats.total_tt  # type: ignore[attr-defined]
    entries: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows: list[tuple[float, float, int, str]] = []
    for (filename, line, function), (_cc, calls, own, cumulative, _callers) in entries.items():
        rows.append((cumulative, own, calls, f"{function} ({Path(filename).name}:{line})"))

    def top(key: int) -> list[tuple[str, float, int]]:
        """(function, milliseconds, calls) of the 15 highest rows by column ``key``."""
        ranked = sorted(rows, key=lambda row: row[key], reverse=True)[:15]
        return [(row[3], round(row[key] * 1000, 1), row[2]) for row in ranked]

    return {
        "total_ms": round(total * 1000, 1),
        "top_cumulative_ms": top(0),
        "top_own_ms": top(1),
    }


def pyz_with_bytecode(python: str, pyz: Path, output: Path) -> Path:
    """An experiment, not the shipped archive: a copy of ``pyz`` whose modules also
    carry unchecked-hash ``.pyc`` files compiled by ``python`` (zipimport uses them
    instead of compiling every module's source at each start)."""
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "src"
        with zipfile.ZipFile(pyz) as archive:
            archive.extractall(source)
        subprocess.run(
            [
                python,
                "-I",
                "-S",
                "-c",
                "import compileall, py_compile, sys; compileall.compile_dir(sys.argv[1], "
                "quiet=1, legacy=True, "
                "invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)",
                str(source),
            ],
            check=True,
        )
        zipapp.create_archive(source, output, interpreter="/usr/bin/env python3")
    return output


def _enroll(python: str, pyz: Path, config: Path, token: str, hostname: str) -> None:
    done = subprocess.run(
        [
            python,
            "-I",
            "-S",
            str(pyz),
            "--config",
            str(config),
            "enroll",
            "-",
            "--hostname",
            hostname,
        ],
        input=token + "\n",
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"agent enrollment failed: {done.stderr[-2000:]}")


def _settle(seconds: float = 2.0) -> None:
    """Let the server process the last upload before the next (idle) cycle."""
    time.sleep(seconds)


def measure_agent(
    *,
    database: Database,
    server_url: str,
    fleet: Fleet,
    python: str,
    workdir: Path,
    log: Callable[[str], None] = print,
    idle_cycles: int = 5,
    drift_cycles: int = 3,
) -> dict[str, Any]:
    """Build the pyz, enroll two agents (synthetic root, this machine), run cycles."""
    workdir.mkdir(parents=True, exist_ok=True)
    pyz = build_pyz(workdir / "patchwarden-agent.pyz")
    with database.session() as session:
        _row, token = create_enrollment_token(
            session, Actor("bench", "system"), now=datetime.now(UTC), max_uses=2
        )
    version = subprocess.run(
        [python, "-I", "-S", "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    cycles: list[dict[str, Any]] = []
    host = fleet.hosts[0]  # a Debian host (the fleet starts with them)
    root = workdir / "synthetic-root"
    _write_root(root, host.inventory)
    synthetic = _config(workdir / "synthetic.conf", server_url, workdir / "state-syn", root)
    _enroll(python, pyz, synthetic, token, "bench-agent-synthetic")
    cycles.append(run_cycle(python, pyz, synthetic, "synthetic: first upload"))
    for n in range(idle_cycles):
        _settle()
        cycles.append(run_cycle(python, pyz, synthetic, f"synthetic: idle {n + 1}"))
    for n in range(drift_cycles):
        _write_root(root, redrift(fleet, host, salt=50 + n))
        cycles.append(run_cycle(python, pyz, synthetic, f"synthetic: drift upload {n + 1}"))
        _settle()

    _settle()
    profiles = {
        "synthetic idle": profile_cycle(python, pyz, synthetic, workdir / "idle.prof"),
    }
    _write_root(root, redrift(fleet, host, salt=60))
    profiles["synthetic drift upload"] = profile_cycle(
        python, pyz, synthetic, workdir / "upload.prof"
    )

    compiled = pyz_with_bytecode(python, pyz, workdir / "agent-with-pyc.pyz")
    _settle()
    for n in range(idle_cycles):
        cycles.append(run_cycle(python, compiled, synthetic, f"experiment pyc: idle {n + 1}"))

    real = _config(workdir / "real.conf", server_url, workdir / "state-real", Path("/"))
    _enroll(python, pyz, real, token, "bench-agent-this-machine")
    cycles.append(run_cycle(python, pyz, real, "this machine: first upload"))
    for n in range(idle_cycles):
        _settle()
        cycles.append(run_cycle(python, pyz, real, f"this machine: idle {n + 1}"))
    for cycle in cycles:
        log(
            f"  {cycle['cycle']}: uploaded={cycle['uploaded']} VmHWM "
            f"{cycle['vmhwm_kib'] / 1024:.1f} MiB, CPU {cycle['cpu_s'] * 1000:.0f} ms, "
            f"wall {cycle['wall_s'] * 1000:.0f} ms"
        )

    def group(prefix: str, uploaded: bool) -> dict[str, float]:
        chosen = [
            c for c in cycles if c["cycle"].startswith(prefix) and bool(c["uploaded"]) == uploaded
        ]
        if not chosen:
            return {}
        return {
            "cycles": len(chosen),
            "vmhwm_mib_median": median([c["vmhwm_kib"] / 1024 for c in chosen]),
            "vmhwm_mib_max": max(c["vmhwm_kib"] / 1024 for c in chosen),
            "vmrss_mib_median": median([c["vmrss_kib"] / 1024 for c in chosen]),
            "cpu_ms_median": median([c["cpu_s"] * 1000 for c in chosen]),
            "wall_ms_median": median([c["wall_s"] * 1000 for c in chosen]),
        }

    return {
        "python": f"{python} {version}",
        "pyz_bytes": pyz.stat().st_size,
        "synthetic_packages": len(host.inventory.packages),
        "summary": {
            "synthetic upload": group("synthetic", True),
            "synthetic idle": group("synthetic", False),
            "this machine upload": group("this machine", True),
            "this machine idle": group("this machine", False),
            "experiment pyc idle (synthetic)": group("experiment pyc", False),
        },
        "cycles": cycles,
        "profiles": profiles,
    }
