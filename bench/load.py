"""An asyncio load driver: closed-loop (fixed concurrency) and open-loop (fixed rate).

An *operation* is a coroutine ``op(slot, intended)`` that makes one or more requests and
records each in the ``Window`` with ``window.record(name, started, seconds, outcome)``.
Only requests that *start* inside the measurement window (after the warm-up) count;
rates are those counts divided by the window's length. Latencies are client-side wall
times, so they include the simulator's own scheduling delay on a shared machine.

* ``closed_loop``: ``concurrency`` workers, each starting its next operation as soon as
  the previous one finished — the throughput the server sustains at that concurrency.
* ``open_loop``: operations start at a fixed offered rate whatever the answers; the
  latency is measured from the *intended* start, so a server (or simulator) that falls
  behind shows it in the percentiles instead of silently lowering the offered load
  (no coordinated omission). At most ``max_in_flight`` operations run at once; starts
  beyond that are counted as ``not_sent``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

#: ``op(slot, intended_start)``; a closed-loop worker stops when it returns False.
Operation = Callable[[int, float], Awaitable[bool | None]]


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of already sorted values, nearest rank."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Series:
    """Latencies and outcomes of one kind of request."""

    latencies: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)

    def summary(self, window_s: float) -> dict[str, Any]:
        """Count, rate and latency percentiles (milliseconds)."""
        ordered = sorted(self.latencies)
        ok = self.outcomes.get("ok", 0)
        return {
            "count": len(ordered),
            "ok": ok,
            "rate_per_s": len(ordered) / window_s if window_s else 0.0,
            "ok_per_s": ok / window_s if window_s else 0.0,
            "p50_ms": percentile(ordered, 50) * 1000,
            "p90_ms": percentile(ordered, 90) * 1000,
            "p99_ms": percentile(ordered, 99) * 1000,
            "max_ms": (ordered[-1] * 1000) if ordered else math.nan,
            "outcomes": dict(sorted(self.outcomes.items())),
        }


@dataclass
class Window:
    """The measurement window of one load level."""

    warmup_s: float
    duration_s: float
    start: float = 0.0
    series: dict[str, Series] = field(default_factory=dict)
    not_sent: int = 0

    def open(self) -> None:
        """Start the clock: the window begins after the warm-up (once)."""
        if not self.start:
            self.start = time.perf_counter() + self.warmup_s

    @property
    def end(self) -> float:
        """When the window closes (perf_counter time)."""
        return self.start + self.duration_s

    def counts(self, started: float) -> bool:
        """Whether a request started at ``started`` belongs to the window."""
        return self.start <= started < self.end

    def record(self, name: str, started: float, seconds: float, outcome: str) -> None:
        """Record one request (ignored outside the window)."""
        if not self.counts(started):
            return
        series = self.series.setdefault(name, Series())
        series.latencies.append(seconds)
        series.outcomes[outcome] = series.outcomes.get(outcome, 0) + 1

    def summary(self) -> dict[str, Any]:
        """Every series' summary."""
        return {
            name: series.summary(self.duration_s) for name, series in sorted(self.series.items())
        }


async def closed_loop(concurrency: int, window: Window, op: Operation) -> None:
    """Run ``concurrency`` workers back to back until the window closes."""
    window.open()

    async def worker(slot: int) -> None:
        while True:
            now = time.perf_counter()
            if now >= window.end or await op(slot, now) is False:
                return

    await asyncio.gather(*(worker(slot) for slot in range(concurrency)))


async def open_loop(rate: float, window: Window, op: Operation, *, max_in_flight: int) -> None:
    """Start operations at ``rate`` per second until the window closes."""
    window.open()
    begin = time.perf_counter()
    in_flight: set[asyncio.Task[None]] = set()
    i = 0
    while True:
        intended = begin + i / rate
        if intended >= window.end:
            break
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= max_in_flight:
            if window.counts(intended):
                window.not_sent += 1
        else:
            task = asyncio.create_task(op(i, intended))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        i += 1
    if in_flight:
        await asyncio.gather(*in_flight)


def outcome_of(exc: BaseException) -> str:
    """A short label for a failed request."""
    return f"error:{type(exc).__name__}"
