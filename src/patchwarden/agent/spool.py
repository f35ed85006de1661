"""Reports waiting for the server, kept on disk until it has them.

Every report the agent sends goes through the spool: it is written here first
(atomically), sent, and deleted once the server acknowledged it. So a report survives a
dead server, a dead network and a restart of the agent, and is sent oldest first on the
next contact. A report the server refuses as bad (4xx) is moved to ``rejected/`` next to
a ``.json`` file holding the server's message, and never sent again.

One file per report, named ``<nanoseconds>-<counter>-<kind>.report`` so that name order
is age order::

    PWSPOOL1\\n
    {"kind": ..., "method": ..., "path": ..., "content_type": ..., ...}\\n
    <body bytes>

The spool is bounded (``max_reports``, ``max_bytes``): when full, the oldest reports are
dropped, each with a warning. An inventory is a complete snapshot, so a new one
*supersedes* older undelivered inventories (``supersede=True``). A job result is never
superseded; its ``content_hash`` is ``<job_id>:<attempt>``, the key the server keeps
results idempotent on, so delivering it twice is harmless.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patchwarden.agent.state import DIR_MODE, sync_directory, utc_now, write_atomic

log = logging.getLogger("patchwarden.agent")

MAGIC = b"PWSPOOL1\n"
SUFFIX = ".report"
MAX_REJECTED = 20
_counter = itertools.count()


@dataclass(frozen=True)
class Report:
    """One spooled request: where it goes and what it carries."""

    name: str
    kind: str
    method: str
    path: str
    body: bytes
    content_type: str = "application/json"
    content_encoding: str = ""
    content_hash: str = ""
    created_at: str = ""

    def header(self) -> dict[str, str]:
        """The metadata stored in front of the body."""
        return {
            "kind": self.kind,
            "method": self.method,
            "path": self.path,
            "content_type": self.content_type,
            "content_encoding": self.content_encoding,
            "content_hash": self.content_hash,
            "created_at": self.created_at,
        }


class SpoolCorrupt(Exception):
    """A spool file cannot be read back (it is moved to rejected/)."""


class Spool:
    """The spool folder ``path`` with its bounds."""

    def __init__(self, path: Path, *, max_reports: int = 100, max_bytes: int = 64 << 20) -> None:
        self.path = Path(path)
        self.rejected_path = self.path / "rejected"
        self.max_reports = max_reports
        self.max_bytes = max_bytes

    def _ensure(self) -> None:
        self.path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        self.rejected_path.mkdir(mode=DIR_MODE, exist_ok=True)

    def add(
        self,
        kind: str,
        method: str,
        path: str,
        body: bytes,
        *,
        content_type: str = "application/json",
        content_encoding: str = "",
        content_hash: str = "",
        supersede: bool = False,
    ) -> Report:
        """Write a report durably; with ``supersede`` drop older reports of this kind."""
        self._ensure()
        name = f"{time.time_ns():020d}-{next(_counter) % 1000000:06d}-{kind}{SUFFIX}"
        report = Report(
            name=name,
            kind=kind,
            method=method,
            path=path,
            body=body,
            content_type=content_type,
            content_encoding=content_encoding,
            content_hash=content_hash,
            created_at=utc_now().isoformat(),
        )
        header = json.dumps(report.header(), sort_keys=True).encode("utf-8")
        write_atomic(self.path / name, MAGIC + header + b"\n" + body)
        if supersede:
            for older in self.pending(kind):
                if older != name:
                    log.info("spool: %s superseded by a newer %s report; dropped", older, kind)
                    self.remove(older)
        self._enforce_bounds()
        return report

    def pending(self, kind: str | None = None) -> list[str]:
        """Names of the waiting reports (of ``kind``, when given), oldest first."""
        suffix = SUFFIX if kind is None else f"-{kind}{SUFFIX}"
        try:
            names = [
                entry.name
                for entry in os.scandir(self.path)
                if entry.name.endswith(suffix) and not entry.name.startswith(".")
            ]
        except FileNotFoundError:
            return []
        return sorted(names)

    def read(self, name: str) -> Report:
        """Read one report back; ``SpoolCorrupt`` when the file is damaged."""
        data = (self.path / name).read_bytes()
        if not data.startswith(MAGIC):
            raise SpoolCorrupt(f"{name}: not a spool file")
        header_line, newline, body = data[len(MAGIC) :].partition(b"\n")
        try:
            header = json.loads(header_line) if newline else None
        except ValueError:
            header = None
        if not isinstance(header, dict) or not all(
            isinstance(header.get(key), str) for key in ("kind", "method", "path")
        ):
            raise SpoolCorrupt(f"{name}: unreadable header")
        text = {key: str(value) for key, value in header.items() if key in _HEADER_KEYS}
        return Report(name=name, body=body, **text)

    def holds(self, kind: str, content_hash: str) -> bool:
        """Whether a waiting report of ``kind`` carries ``content_hash``."""
        for name in self.pending(kind):
            try:
                with open(self.path / name, "rb") as handle:
                    handle.readline()
                    header = json.loads(handle.readline())
            except (OSError, ValueError):
                continue
            if isinstance(header, dict) and header.get("content_hash") == content_hash:
                return True
        return False

    def remove(self, name: str) -> None:
        """Forget a report (delivered, superseded or dropped)."""
        with contextlib.suppress(FileNotFoundError):
            (self.path / name).unlink()

    def reject(self, name: str, reason: dict[str, Any]) -> Path:
        """Move a report to ``rejected/`` with ``reason`` next to it; returns its new path."""
        self._ensure()
        target = self.rejected_path / name
        document = {"rejected_at": utc_now().isoformat(), **reason}
        write_atomic(
            target.with_suffix(".json"),
            json.dumps(document, indent=2, sort_keys=True).encode("utf-8") + b"\n",
        )
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path / name, target)
        sync_directory(self.path)
        self._trim_rejected()
        return target

    def rejected(self) -> list[str]:
        """Names of the rejected reports kept, oldest first."""
        try:
            return sorted(p.name for p in self.rejected_path.glob(f"*{SUFFIX}"))
        except FileNotFoundError:
            return []

    def size(self) -> int:
        """Bytes held by waiting reports."""
        total = 0
        for name in self.pending():
            with contextlib.suppress(FileNotFoundError):
                total += (self.path / name).stat().st_size
        return total

    def _enforce_bounds(self) -> None:
        names = self.pending()
        sizes = {}
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                sizes[name] = (self.path / name).stat().st_size
        total = sum(sizes.values())
        while names and (len(names) > self.max_reports or total > self.max_bytes):
            oldest = names.pop(0)
            total -= sizes.get(oldest, 0)
            log.warning(
                "spool full (%d reports, %d bytes allowed): dropping the oldest report %s",
                self.max_reports,
                self.max_bytes,
                oldest,
            )
            self.remove(oldest)

    def _trim_rejected(self) -> None:
        kept = self.rejected()
        for name in kept[: max(0, len(kept) - MAX_REJECTED)]:
            for path in (
                self.rejected_path / name,
                (self.rejected_path / name).with_suffix(".json"),
            ):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


_HEADER_KEYS = frozenset(
    ("kind", "method", "path", "content_type", "content_encoding", "content_hash", "created_at")
)
