"""Small helpers shared by the benchmarks: timing, memory, machine facts, data paths."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from patchwarden.store.audit import AuditKey

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def audit_key() -> AuditKey:
    """The audit key of this benchmark run (PATCHWARDEN_AUDIT_KEY, else a new one put
    there): the server processes a benchmark starts inherit it, so they continue the
    chain its own database connections write."""
    configured = os.environ.get("PATCHWARDEN_AUDIT_KEY", "")
    if configured:
        return AuditKey.from_text(configured, source="PATCHWARDEN_AUDIT_KEY")
    key = AuditKey.generate()
    os.environ["PATCHWARDEN_AUDIT_KEY"] = key.text()
    return key


def shared_data_dir() -> Path:
    """The shared real-data folder: ``PATCHWARDEN_TEST_DATA``, else ``../shared/data``."""
    configured = os.environ.get("PATCHWARDEN_TEST_DATA")
    root = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    if not root.is_dir():
        raise SystemExit(f"shared data folder {root} not found; set PATCHWARDEN_TEST_DATA to it")
    return root


def timed(func: Callable[[], T]) -> tuple[T, float]:
    """Run ``func`` once; return its result and the wall time in seconds."""
    start = time.perf_counter()
    result = func()
    return result, time.perf_counter() - start


def timed_cpu(func: Callable[[], T]) -> tuple[T, float, float]:
    """Run ``func`` once; return its result, the wall time and this process's CPU time.

    On a shared machine the CPU time shows how much of the wall time was our own work.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = func()
    return result, time.perf_counter() - wall, time.process_time() - cpu


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` leaves the elapsed seconds in ``t[0]``."""
    box = [0.0]
    start = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - start


def median(values: list[float]) -> float:
    """The median of a non-empty list."""
    return float(statistics.median(values))


def _status_kib(field: str) -> int:
    """A ``kB`` field of /proc/self/status (0 where /proc is unavailable)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def rss_mib() -> float:
    """Current resident set size of this process, MiB."""
    return _status_kib("VmRSS") / 1024


def peak_rss_mib() -> float:
    """Peak resident set size (VmHWM) of this process since start or the last reset, MiB."""
    return _status_kib("VmHWM") / 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` value 5); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def machine() -> dict[str, str]:
    """Facts about the machine the figures were measured on."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = "unknown"
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "memory": f"{mem_gib:.0f} GiB",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load_average_at_start": load,
    }


def new_report(args: argparse.Namespace) -> dict[str, Any]:
    """The start of a benchmark's JSON report: machine, arguments (no database URL)."""
    return {
        "machine": machine(),
        "arguments": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(args).items()
            if k != "postgres_url"
        },
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def finish_report(
    report: dict[str, Any], args: argparse.Namespace, targets: dict[str, Any]
) -> None:
    """Close the report, write it to ``args.json`` when given, print the targets."""
    report["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    report["machine"]["load_average_at_end"] = machine()["load_average_at_start"]
    report["targets"] = targets
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"figures written to {args.json}", flush=True)


def print_targets(report: dict[str, Any]) -> None:
    """One line per target of ``report``."""
    for name, target in report.get("targets", {}).items():
        print(f"target {name}: {target}")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--postgres-url`` (admin URL for a throwaway database) and ``--json``."""
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("PATCHWARDEN_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL),
        help="admin URL; a throwaway pw_bench_<hex> database is created "
        "and dropped (env PATCHWARDEN_BENCH_POSTGRES_URL)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")


def parse_sized(
    parser: argparse.ArgumentParser, full: dict[str, Any], quick: dict[str, Any]
) -> argparse.Namespace:
    """Parse; options left unset take the ``--quick`` or the full run's size."""
    args = parser.parse_args()
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    return args
