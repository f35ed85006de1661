"""Applying acknowledged agent reports in processes of their own.

A report costs about ten times more CPU to apply than to acknowledge. Applied by a
thread inside the server processes, it competes with the request threads for the
process's GIL and the machine's cores, and under a burst of uploads both the
acknowledgements and the applying slow down. ``patchwarden server`` on PostgreSQL
therefore starts report workers: processes at a lower CPU priority (niceness 10 by
default) that poll the database for pending reports and apply them. The request
processes only store and acknowledge; the kernel gives the workers the cores the
requests leave idle, and the backlog of a burst is applied as soon as it ends.

Several workers split the reports by id (``share``); a report is claimed in its own
transaction, so two workers, or two servers' workers, never apply one report twice.
A worker that dies mid-report leaves it 'processing'; ``requeue_stale`` returns it
to 'pending' once its lease has run out.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from types import FrameType

from patchwarden.server.services.agents import pending_reports, process_report, requeue_stale
from patchwarden.store.db import Database

log = logging.getLogger(__name__)

#: Seconds between polls when nothing is pending (the delay an idle server adds
#: between an upload's 202 and the start of its processing).
IDLE_POLL = 0.2
#: Seconds between looks for reports left 'processing' by a dead process.
STALE_CHECK = 60.0


def serve_reports(
    database: Database,
    *,
    clock: Callable[[], datetime],
    stop: threading.Event,
    share: tuple[int, int] | None = None,
    idle: float = IDLE_POLL,
    batch: int = 100,
    on_idle: Callable[[], bool] | None = None,
) -> int:
    """Apply pending reports until ``stop`` is set; returns how many were processed.

    ``on_idle`` is called whenever nothing is pending; returning False stops the loop.
    """
    processed = 0
    next_stale_check = 0.0
    while not stop.is_set():
        try:
            if time.monotonic() >= next_stale_check:
                requeued = requeue_stale(database, now=clock())
                if requeued:
                    log.warning(
                        "%d agent report(s) left 'processing' by a dead process requeued", requeued
                    )
                next_stale_check = time.monotonic() + STALE_CHECK
            found = pending_reports(database, now=clock(), limit=batch, share=share)
        except Exception:  # the loop must survive a database blip
            log.exception("looking for pending agent reports failed")
            found = []
        for report_id in found:
            if stop.is_set():
                break
            try:
                if process_report(database, report_id, now=clock()) == "processed":
                    processed += 1
            except Exception:  # a bad report or a blip must not end the worker
                log.exception("processing agent report %s failed", report_id)
        if not found:
            if on_idle is not None and not on_idle():
                break
            stop.wait(idle)
    return processed


def run_worker(
    database: Database,
    *,
    clock: Callable[[], datetime],
    index: int = 0,
    count: int = 1,
    nice: int = 0,
    parent_pid: int | None = None,
) -> int:
    """The body of ``patchwarden report-worker``: lower this process's priority, stop on
    SIGTERM/SIGINT (after the report in hand), and — started by a server — stop once
    that server is gone and nothing is left pending (a backlog is finished first)."""
    if nice:
        os.nice(nice)
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    def parent_alive() -> bool:
        return parent_pid is None or os.getppid() == parent_pid

    return serve_reports(
        database,
        clock=clock,
        stop=stop,
        share=(index, count) if count > 1 else None,
        on_idle=parent_alive,
    )


class ReportWorkers:
    """The report worker processes of one ``patchwarden server``: started before
    uvicorn, restarted when one dies, stopped after uvicorn returns."""

    def __init__(self, count: int, *, nice: int) -> None:
        self.count = count
        self.nice = nice
        self._processes: list[subprocess.Popen[bytes] | None] = [None] * count
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="report-workers", daemon=True)

    def command(self, index: int) -> list[str]:
        """The command line of worker ``index``."""
        return [
            sys.executable,
            "-m",
            "patchwarden",
            "report-worker",
            "--index",
            str(index),
            "--count",
            str(self.count),
            "--nice",
            str(self.nice),
            "--parent-pid",
            str(os.getpid()),
        ]

    def start(self) -> None:
        """Start every worker and the thread that restarts the ones that die."""
        for index in range(self.count):
            self._spawn(index)
        self._watcher.start()

    def _spawn(self, index: int) -> None:
        self._processes[index] = subprocess.Popen(self.command(index))

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            for index, process in enumerate(self._processes):
                if process is not None and process.poll() is not None and not self._stop.is_set():
                    log.warning(
                        "report worker %d exited with %s; starting it again",
                        index,
                        process.returncode,
                    )
                    self._spawn(index)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every worker (each finishes its report in hand), then wait."""
        self._stop.set()
        if self._watcher.is_alive():
            self._watcher.join()
        running: Sequence[subprocess.Popen[bytes]] = [
            p for p in self._processes if p is not None and p.poll() is None
        ]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + timeout
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
