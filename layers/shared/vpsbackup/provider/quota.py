"""One provider quota shared by every function: the rules (pure).

The provider counts requests per API token, whichever function sends them. The three jobs share
one budget of ``VPS_API_RATE_LIMIT`` requests per second, kept in ``StateTable`` as the state of a
GCRA token bucket (its *theoretical arrival time*, ``tat``: the bucket is full when ``tat <= now``
and each request moves it on by one interval). :mod:`vpsbackup.provider.shared_quota` reads and
writes that state through a store; everything here is arithmetic over it:

- **Slots, taken in batches.** A caller takes up to ``batch`` request slots with one conditional
  write: start times, the first one now, the others spaced as the bucket allows but none later
  than :data:`LEASE_AHEAD_S` after the write (a deploy's or prune's batch never promises away the
  slots a restore arriving a moment later will need). A slot is used at its time or, at the latest,
  :data:`SLOT_GRACE_INTERVALS` intervals after it (then it is dropped, never used late): the
  provider sees at most ``burst + rate * grace`` requests in any instant, and ``rate`` per second
  on average.
- **Restore first.** Each job may empty the bucket only down to its own floor: restores to zero,
  deploys to ``reserve`` slots (the share kept for restores), prunes to ``reserve + batch`` (one
  deploy batch more): a restore's first requests never wait behind theirs, a deploy's never behind
  prune's.
- **A waiting restore is served first.** A restore (or a deploy) that finds no slot for it writes
  a *waiter* into the shared state: its ticket, its job and a lease (the time it was told to come
  back, plus the grace). While a live waiter of a job ranking above it stands (restore, then
  deploy, then prune), no job gets a slot; the waiter's own grant removes it, and an invocation
  that dies while waiting leaves a lease that ends on its own. So once a restore waits, every
  slot that frees goes to a restore until none waits; then to a waiting deploy; then to prune.
- **Per minute too.** Providers also count requests per minute (DigitalOcean 250, Linode 200):
  a burst on top of a minute at the full rate would pass that. So the state keeps the start times
  of the slots that still count (the limit's minute: ``window_slots`` = ``rate`` ×
  :data:`WINDOW_S`), and a job is granted slots only while fewer than ``window_slots`` less its
  small window floor (restores 0, deploys 1, prunes 2: the minute never fills up in front of a
  restore) started after :data:`WINDOW_S` plus the grace before the decision, later ones
  included. Used within their grace, the slots' requests number at most ``window_slots`` in any
  :data:`WINDOW_S` seconds. A steady stream runs at ``window_slots`` per
  ``WINDOW_S + grace`` seconds: at 1 request/second, 60 every 62 s, about 3 % under the limit.
- **The provider's word for everybody.** A ``429``'s ``Retry-After`` or a spent ``RateLimit``
  window becomes ``not_before`` in the shared state: no job starts before it.

What :func:`take` guarantees, over any order of decisions applied to the state one at a time
(the store's conditional writes make them so):

1. *The limit.* The slots granted in any ``w`` seconds number at most ``burst + rate * w``;
   used within their grace, they never find empty a provider bucket of the same rate that holds
   ``burst + rate * grace``.
2. *Priority.* No slot is granted to a job while the state holds a live waiter of a job ranking
   above it: from the write that registers a restore waiting until the write of its grant (or
   its lease's end), deploys and prunes are granted nothing, whenever they asked.
3. *Per minute.* Used within their grace, the slots' requests in any :data:`WINDOW_S` seconds
   number at most ``window_slots`` (when it is at least 3: from 3 requests a minute up to
   :data:`MAX_WINDOW_SLOTS`; above, the first guarantee alone holds).
4. *Bounded promises.* Every slot of a deploy's or prune's batch starts at most
   :data:`LEASE_AHEAD_S` after the decision that granted it: a restore that starts waiting at
   ``t`` waits behind no deploy or prune slot starting after ``t + LEASE_AHEAD_S``.

Times are UNIX seconds (every function's clock). Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

Job = Literal["restore", "deploy", "prune"]
JOBS: tuple[Job, ...] = ("restore", "deploy", "prune")
# Who is served first when several wait (lower first).
RANK: dict[Job, int] = {"restore": 0, "deploy": 1, "prune": 2}
# Jobs that write a waiter when they find no slot (some job ranks below them).
WAITERS: frozenset[Job] = frozenset({"restore", "deploy"})

# The bucket holds this many seconds of the rate (at least MIN_BURST slots): a quiet bucket lets
# a short burst through, and the provider's own bucket must hold at least this plus the grace.
BURST_SECONDS = 10.0
MIN_BURST = 3
# Slots per conditional write, at most (deploy and prune; a restore takes one at a time).
MAX_BATCH = 10
# A deploy's or prune's batch holds no slot starting later than this after the write that took it.
LEASE_AHEAD_S = 1.0
# A slot not used within this many intervals of its time is dropped, not used late.
SLOT_GRACE_INTERVALS = 2.0
MIN_SLOT_GRACE_S = 1.0
# The provider's counting window, and the most slots the state remembers for it (a DynamoDB item
# holds them; a faster limit keeps the burst bound alone).
WINDOW_S = 60.0
MAX_WINDOW_SLOTS = 1000
# Slots of the window a job must leave to the jobs ranking above it.
WINDOW_FLOOR: dict[Job, int] = {"restore": 0, "deploy": 1, "prune": 2}
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

    @property
    def window_slots(self) -> int:
        """Slots in any :data:`WINDOW_S` (plus the grace) at most: the limit's minute (0: not kept)."""
        slots = math.floor(self.rate * WINDOW_S + EPSILON_S)
        return slots if 3 <= slots <= MAX_WINDOW_SLOTS else 0

    def tolerance(self, job: Job) -> float:
        """GCRA's tolerance for ``job``: how far ahead of now the bucket's ``tat`` may be when it starts."""
        return (self.burst - 1 - self.floor(job)) * self.interval


@dataclass(frozen=True, slots=True)
class Waiter:
    """A request of ``job`` that found no slot: ``ticket`` names its caller, ``until`` ends the lease."""

    ticket: str
    job: Job
    until: float


@dataclass(frozen=True, slots=True)
class QuotaState:
    """The shared state: the bucket's theoretical arrival time, the provider's hold, the requests
    waiting for a slot, and a version that every write moves on (the compare-and-swap)."""

    tat: float = 0.0
    not_before: float = 0.0
    version: int = 0
    waiting: tuple[Waiter, ...] = ()
    # The start times of the last slots granted (ascending; at most ``window_slots`` of them).
    recent: tuple[float, ...] = ()

    def live(self, now: float) -> tuple[Waiter, ...]:
        """The waiters whose lease has not ended at ``now``."""
        return tuple(w for w in self.waiting if w.until > now)


@dataclass(frozen=True, slots=True)
class Grant:
    """Slots taken: their start times (ascending), and the state to write for them."""

    slots: tuple[float, ...]
    state: QuotaState


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing can be taken now: try again at ``until``. ``state``: the state to write first (the
    caller's waiter registered or its lease extended), None when nothing needs writing."""

    until: float
    state: QuotaState | None = None


def take(
    state: QuotaState, now: float, job: Job, params: QuotaParams, want: int | None = None, *, ticket: str | None = None
) -> Grant | Wait:
    """``want`` slots (default: the job's batch) for ``job`` at ``now``, or when to try again.

    ``ticket`` names the caller: when a restore or a deploy must wait, its waiter is written with
    that ticket (see the module's docstring), and its grant removes it. The first slot is always
    ``now``; the batch's others follow at the pace the job's tolerance allows, none later than
    :data:`LEASE_AHEAD_S` from now (a restore takes one at a time).
    """
    live = state.live(now)
    above = [w.until for w in live if RANK[w.job] < RANK[job]]
    tolerance = params.tolerance(job)
    room, opens = _window_room(state.recent, now, job, params)
    first = max(state.tat - tolerance, state.not_before, opens)
    if above:  # someone ranking higher waits: look again soon, or when its lease ends
        first = max(first, min(now + params.interval, min(above)))
    if above or first > now + EPSILON_S:  # a waiter's lease covers its return, and its grace
        return Wait(first, _registered(state, live, job, ticket, first + params.grace))
    count = params.batch(job) if want is None else max(1, min(want, params.batch(job)))
    horizon = now + (0.0 if job == "restore" else LEASE_AHEAD_S)
    slots: list[float] = []
    tat = state.tat
    for _ in range(min(count, room)):
        start = max(now, tat - tolerance)
        start = now if start <= now + EPSILON_S else start
        if slots and start > horizon + EPSILON_S:
            break
        slots.append(start)
        tat = max(tat, start) + params.interval
    waiting = tuple(w for w in live if w.ticket != ticket)
    recent = _in_window([*state.recent, *slots], now, params) if params.window_slots else ()
    return Grant(tuple(slots), replace(state, tat=tat, version=state.version + 1, waiting=waiting, recent=recent))


def _in_window(recent: Iterable[float], now: float, params: QuotaParams) -> tuple[float, ...]:
    """The slots that count in a window that holds ``now`` (ascending)."""
    edge = now - (WINDOW_S + params.grace) + EPSILON_S
    return tuple(sorted(t for t in recent if t > edge))


def _window_room(recent: tuple[float, ...], now: float, job: Job, params: QuotaParams) -> tuple[int, float]:
    """Slots ``job`` may take at ``now`` for the minute's count, and when it may take one (``now``,
    or when enough of the slots that count age out): every slot counts from ``WINDOW_S`` plus the
    grace before its decision, later ones included (see the module)."""
    if not params.window_slots:
        return MAX_BATCH, now
    counted = _in_window(recent, now, params)
    room = params.window_slots - WINDOW_FLOOR[job] - len(counted)
    if room > 0:
        return room, now
    return 0, counted[-room] + WINDOW_S + params.grace


def _registered(
    state: QuotaState, live: tuple[Waiter, ...], job: Job, ticket: str | None, lease: float
) -> QuotaState | None:
    """The state with ``ticket``'s waiter (lease to ``lease``), expired ones dropped; None when
    ``job`` registers no waiter or its lease already reaches that far."""
    if ticket is None or job not in WAITERS:
        return None
    mine = next((w for w in live if w.ticket == ticket), None)
    if mine is not None and mine.until >= lease - EPSILON_S:
        return None
    others = tuple(w for w in live if w.ticket != ticket)
    return replace(state, version=state.version + 1, waiting=(*others, Waiter(ticket, job, lease)))


def hold(state: QuotaState, until: float) -> QuotaState | None:
    """The state with nobody starting before ``until``; None if a hold at least as long stands."""
    if until <= state.not_before:
        return None
    return replace(state, not_before=until, version=state.version + 1)


def usable(slot: float, now: float, params: QuotaParams) -> bool:
    """Whether a slot taken earlier may still be used at ``now`` (not after its grace)."""
    return now <= slot + params.grace


def free_slots(state: QuotaState, now: float, params: QuotaParams) -> float:
    """Slots the bucket holds at ``now`` (for the dashboard and the tests): ``burst`` when full."""
    used = max(0.0, state.tat - now) / params.interval
    return max(0.0, params.burst - used)
