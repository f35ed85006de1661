"""Sampling profiles of running server processes with py-spy, summarised as text.

``py-spy`` is not a patchwarden dependency: install it into the venv to use
``--profile-dir`` (``.venv/bin/pip install py-spy``). Only samples holding the GIL are kept
by default (see ``start_recording``), so the profile shows where the server spends
Python CPU, not where it waits.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

#: Where a frame's file lives, coarsest useful grouping first.
_AREAS: tuple[tuple[str, str], ...] = (
    ("patchwarden/store", "patchwarden.store"),
    ("patchwarden/server", "patchwarden.server"),
    ("patchwarden/core", "patchwarden.core"),
    ("patchwarden/collect", "patchwarden.collect"),
    ("patchwarden/", "patchwarden (other)"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("psycopg", "psycopg"),
    ("starlette/", "Starlette"),
    ("fastapi/", "FastAPI"),
    ("pydantic", "pydantic"),
    ("uvicorn/", "uvicorn"),
    ("h11/", "h11"),
    ("anyio/", "anyio"),
    ("asyncio/", "asyncio"),
    ("concurrent/", "threads"),
    ("threading.py", "threads"),
    ("json/", "json"),
    ("gzip.py", "gzip"),
    ("logging/", "logging"),
)

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter, or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def start_recording(
    pid: int, seconds: float, output: Path, rate: int = 100, *, gil: bool = True
) -> subprocess.Popen[bytes]:
    """Start ``py-spy record`` on ``pid`` (and its subprocesses) in the background.

    With ``gil`` (the default) only samples of the thread holding the GIL are kept: in
    a CPython server that is where the CPU goes (threads waiting for PostgreSQL, for a
    lock or for work do not hold it), and it is what limits one process's throughput.
    """
    executable = py_spy()
    if executable is None:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    output.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            executable,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--nonblocking",
            *(["--gil"] if gil else []),
            "--rate",
            str(rate),
            "--duration",
            str(max(1, round(seconds))),
            "--format",
            "raw",
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _parse(frame: str) -> tuple[str, str]:
    """(``function (file:line)`` without the line, file) of one collapsed frame."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    path = match["file"]
    short = path
    for marker in ("site-packages/", "/src/", "lib/python3.11/"):
        if marker in short:
            short = short.split(marker, 1)[1]
    return f"{match['func']} ({short})", path


def _area(path: str) -> str:
    for needle, name in _AREAS:
        if needle in path:
            return name
    return "other"


def summarize(raw: Path, top: int = 25) -> dict[str, Any]:
    """Self and inclusive shares per function, and self share per library, of a raw
    (collapsed stacks) py-spy profile."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        parsed = [_parse(f) for f in frames]
        own[parsed[-1][0]] += count
        areas[_area(parsed[-1][1])] += count
        for name in {name for name, _path in parsed}:
            inclusive[name] += count

    def shares(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(name, round(100 * c / total, 1)) for name, c in counter.most_common(n)]

    return {
        "samples": total,
        "self_percent": shares(own, top),
        "inclusive_percent": shares(inclusive, top * 2),
        "self_percent_by_library": shares(areas, len(areas)),
    }


def dump_stacks(pid: int, output: Path) -> None:
    """``py-spy dump`` of ``pid`` and its subprocesses (every thread's stack) to ``output``."""
    executable = py_spy()
    if executable is None:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    output.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [executable, "dump", "--pid", str(pid), "--subprocesses", "--nonblocking"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    output.write_text(done.stdout + done.stderr, encoding="utf-8")
