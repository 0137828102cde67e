"""One provider quota shared by every function: the rules (pure).

The provider counts requests per API token, whichever function sends them. The three jobs share
one budget of ``VPS_API_RATE_LIMIT`` requests per second, kept in ``StateTable`` as the state of a
GCRA token bucket (its *theoretical arrival time*, ``tat``: the bucket is full when ``tat <= now``
and each request moves it on by one interval). :mod:`vpsbackup.provider.shared_quota` reads and
writes that state through a store; everything here is arithmetic over it:

- **Slots, taken in batches.** A caller takes ``batch`` request slots with one conditional write:
  start times, the first one now, the others spaced as the bucket allows. A slot is used at its
  time or, at the latest, :data:`SLOT_GRACE_INTERVALS` intervals after it (then it is dropped, never
  used late): the provider sees at most ``burst + rate * grace`` requests in any instant, and
  ``rate`` per second on average.
- **Restore first.** Each job may empty the bucket only down to its own floor: restores to zero,
  deploys to ``reserve`` slots (the share kept for restores), prunes to ``reserve + batch`` (one
  deploy batch more). As long as ``reserve >= batch``, a deploy or prune batch never leaves fewer
  free slots than a restore needs to start now, and a prune batch never fewer than a deploy needs:
  a restore's first request never waits behind theirs, a deploy's never behind prune's. When the
  bucket is empty, the freed slot goes to whoever's floor it clears first, so restores win.
- **The provider's word for everybody.** A ``429``'s ``Retry-After`` or a spent ``RateLimit``
  window becomes ``not_before`` in the shared state: no job starts before it.

Times are UNIX seconds (every function's clock). Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Job = Literal["restore", "deploy", "prune"]
JOBS: tuple[Job, ...] = ("restore", "deploy", "prune")

# The bucket holds this many seconds of the rate (at least MIN_BURST slots): a quiet bucket lets
# a short burst through, and the provider's own bucket must hold at least this plus the grace.
BURST_SECONDS = 10.0
MIN_BURST = 3
# Slots per conditional write, at most (deploy and prune; a restore takes one at a time).
MAX_BATCH = 10
# A slot not used within this many intervals of its time is dropped, not used late.
SLOT_GRACE_INTERVALS = 2.0
MIN_SLOT_GRACE_S = 1.0
# Times closer than this are the same time (float sums of intervals; the store keeps microseconds).
EPSILON_S = 1e-5


@dataclass(frozen=True, slots=True)
class QuotaParams:
    """The shared budget's shape: ``rate`` requests/second for the token, ``restore_share`` of the
    burst kept for restores (see the module's docstring)."""

    rate: float
    restore_share: float = 0.3
    burst_seconds: float = BURST_SECONDS

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate must be a positive number, got {self.rate!r}")
        if not 0 < self.restore_share < 1:
            raise ValueError(f"restore_share must be within (0, 1), got {self.restore_share!r}")
        if not self.burst_seconds > 0:
            raise ValueError(f"burst_seconds must be > 0, got {self.burst_seconds!r}")

    @property
    def interval(self) -> float:
        return 1.0 / self.rate

    @property
    def burst(self) -> int:
        """Slots a full bucket holds."""
        return max(MIN_BURST, math.floor(self.rate * self.burst_seconds))

    @property
    def reserve(self) -> int:
        """Slots only restores may take (at least 1; deploys and prunes keep at least 1 of their own)."""
        return min(self.burst - 2, max(1, round(self.restore_share * self.burst)))

    @property
    def grace(self) -> float:
        """How late a slot may still be used."""
        return max(MIN_SLOT_GRACE_S, SLOT_GRACE_INTERVALS * self.interval)

    def batch(self, job: Job) -> int:
        """Slots one write takes: 1 for a restore (rare, and each alarm's restore must find the
        reserve), else up to :data:`MAX_BATCH`, never more than the reserve (a batch must not reach
        into it) nor than the slots above it (a prune batch must not reach into a deploy's)."""
        if job == "restore":
            return 1
        return max(1, min(MAX_BATCH, self.reserve, self.burst - 1 - self.reserve))

    def floor(self, job: Job) -> int:
        """Free slots a job must leave in the bucket (restore 0, deploy the reserve, prune one deploy batch more)."""
        if job == "restore":
            return 0
        if job == "deploy":
            return self.reserve
        return self.reserve + self.batch("deploy")

    def tolerance(self, job: Job) -> float:
        """GCRA's tolerance for ``job``: how far ahead of now the bucket's ``tat`` may be when it starts."""
        return (self.burst - 1 - self.floor(job)) * self.interval


@dataclass(frozen=True, slots=True)
class QuotaState:
    """The shared state: the bucket's theoretical arrival time, the provider's hold, and a version
    that every write moves on (the compare-and-swap)."""

    tat: float = 0.0
    not_before: float = 0.0
    version: int = 0


@dataclass(frozen=True, slots=True)
class Grant:
    """Slots taken: their start times (ascending), and the state to write for them."""

    slots: tuple[float, ...]
    state: QuotaState


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing can be taken now: try again at ``until``."""

    until: float


def take(state: QuotaState, now: float, job: Job, params: QuotaParams, want: int | None = None) -> Grant | Wait:
    """``want`` slots (default: the job's batch) for ``job`` at ``now``, or when to try again.

    The first slot is always ``now``; the batch's others follow at the pace the job's tolerance
    allows, so a batch never reaches further ahead than ``batch`` intervals past the job's floor.
    """
    count = params.batch(job) if want is None else max(1, min(want, params.batch(job)))
    tolerance = params.tolerance(job)
    first = max(state.tat - tolerance, state.not_before)
    if first > now + EPSILON_S:
        return Wait(first)
    slots = []
    tat = state.tat
    for _ in range(count):
        start = max(now, tat - tolerance)
        start = now if start <= now + EPSILON_S else start
        slots.append(start)
        tat = max(tat, start) + params.interval
    return Grant(tuple(slots), QuotaState(tat=tat, not_before=state.not_before, version=state.version + 1))


def hold(state: QuotaState, until: float) -> QuotaState | None:
    """The state with nobody starting before ``until``; None if a hold at least as long stands."""
    if until <= state.not_before:
        return None
    return QuotaState(tat=state.tat, not_before=until, version=state.version + 1)


def usable(slot: float, now: float, params: QuotaParams) -> bool:
    """Whether a slot taken earlier may still be used at ``now`` (not after its grace)."""
    return now <= slot + params.grace


def free_slots(state: QuotaState, now: float, params: QuotaParams) -> float:
    """Slots the bucket holds at ``now`` (for the dashboard and the tests): ``burst`` when full."""
    used = max(0.0, state.tat - now) / params.interval
    return max(0.0, params.burst - used)
