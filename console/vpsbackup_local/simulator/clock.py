"""Simulated time for the simulator, the client and the benchmarks.

A run against a provider limited to 1 request per second takes an hour of real time per 3,600
requests. With a :class:`SimulatedClock`, every wait (the client's backoff and request budget, the
simulator's latency) advances a shared virtual clock instead of sleeping, so the run takes as long
as its real work (HTTP on 127.0.0.1) while every component agrees on how much time has passed.

Wire it everywhere time is read or spent: ``Simulator(clock=c.now, sleep=c.sleep)``,
``VpsClient(clock=c.monotonic, retry=RetryPolicy(sleep=c.sleep), sleep=c.sleep)`` and, for a
handler, a Lambda context whose remaining time is read from ``c.monotonic``. Concurrent sleepers
each advance the clock by their own wait (the waits add up instead of overlapping): virtual time is
an upper bound of the real time of the same run, exact when requests are serialised (as a request
budget of 1/s does).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass
class SimulatedClock:
    """A monotonic virtual clock, starting at ``start`` (wall time) and 0.0 (monotonic)."""

    start: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    _elapsed: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    slept: float = 0.0
    sleeps: int = 0

    def monotonic(self) -> float:
        """Seconds since the clock started (for deadlines and budgets)."""
        with self._lock:
            return self._elapsed

    def now(self) -> datetime:
        """The virtual wall-clock time (aware, UTC)."""
        with self._lock:
            return self.start + timedelta(seconds=self._elapsed)

    def time(self) -> float:
        """The virtual wall-clock time as a UNIX timestamp."""
        return self.now().timestamp()

    def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` (negative waits are no waits) without waiting."""
        if seconds <= 0:
            return
        with self._lock:
            self._elapsed += seconds
            self.slept += seconds
            self.sleeps += 1

    def advance(self, seconds: float) -> None:
        """Move time forward (e.g. a day between two scheduled runs)."""
        self.sleep(seconds)
