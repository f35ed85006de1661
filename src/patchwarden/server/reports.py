"""Applying acknowledged agent reports, one at a time per server process.

An upload is acknowledged (202) once its raw report is stored; applying it (record the
inventory, refresh the host's findings, recompute groups) costs ten times more CPU.
Handing each report to its own thread-pool task made a burst of uploads run dozens of
applications at once, starving the acknowledgements and the check-ins that share the
process. One thread per process applies them in arrival order instead; the queue is
in memory only, so a report still queued when the process stops stays ``pending`` in
the database and the sweeper (any server process) hands it to a processor later.
"""

from __future__ import annotations

import logging
import queue
import threading

from patchwarden.server.context import AppContext
from patchwarden.server.services.agents import process_report

log = logging.getLogger(__name__)


class ReportProcessor:
    """A thread that applies the reports submitted to it, in order."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="report-processor", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def submit(self, report_id: int) -> None:
        """Queue an acknowledged report for processing."""
        self._queue.put(report_id)

    def backlog(self) -> int:
        """Reports queued and not yet started (approximate)."""
        return self._queue.qsize()

    def stop(self, timeout: float) -> None:
        """Finish the report in hand, then stop; queued ones stay pending in the database."""
        while not self._queue.empty():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            report_id = self._queue.get()
            if report_id is None:
                return
            try:
                process_report(self._ctx.db, report_id, now=self._ctx.now())
            except Exception:  # the thread must survive a bad report or a database blip
                log.exception("processing agent report %s failed", report_id)
