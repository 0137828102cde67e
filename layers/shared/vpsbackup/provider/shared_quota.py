"""One provider quota shared by every function and invocation: taking slots through a store.

:class:`SharedQuota` is what a client waits on before each request (after its own
``VPS_API_MAX_RPS`` budget): it spends the slots of its last batch, and takes the next batch from
the shared state with one compare-and-swap write (the rules: :mod:`vpsbackup.provider.quota`).
Where the state lives is behind :class:`QuotaStore`, three hooks (read, compare-and-swap, hold):
``StateTable`` in the functions (:mod:`vpsbackup.aws.quota_store`), memory in tests and benchmarks.

Fail safe: when the store cannot be read or written (DynamoDB throttling, an outage), no request
starts without a slot: the caller waits and tries the store again (backing off up to
:data:`STORE_RETRY_MAX_S`), until its deadline. The jobs get slower, never faster than the limit.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from vpsbackup.observability import count, logger
from vpsbackup.provider.quota import Grant, Job, QuotaParams, QuotaState, Wait, hold, take, usable
from vpsbackup.provider.ratelimit import BudgetExhaustedError

QUOTA_STORE_ERRORS_METRIC = "quota_store_errors"
# Slots of the shared quota taken, by the function's service (the dashboard's quota in use).
QUOTA_SLOTS_TAKEN_METRIC = "quota_slots_taken"
STORE_RETRY_FIRST_S = 0.2
STORE_RETRY_MAX_S = 5.0


class QuotaStore(Protocol):
    """Where the shared state lives (any exception means "not now": the caller waits and retries)."""

    def read(self) -> QuotaState:
        """The current state (the initial one when nothing was written yet)."""
        ...

    def swap(self, new: QuotaState, *, expected_version: int) -> bool:
        """Write ``new`` if the stored version is still ``expected_version``; False if it moved on."""
        ...

    def hold_until(self, until: float) -> None:
        """Nobody starts before ``until`` (a later hold already stored stays)."""
        ...


class InMemoryQuotaStore:
    """A store in this process (tests, benchmarks, several clients sharing one quota)."""

    def __init__(self, state: QuotaState | None = None) -> None:
        self.state = state or QuotaState()
        self.writes = 0
        self._lock = threading.Lock()

    def read(self) -> QuotaState:
        with self._lock:
            return self.state

    def swap(self, new: QuotaState, *, expected_version: int) -> bool:
        with self._lock:
            if self.state.version != expected_version:
                return False
            self.state = new
            self.writes += 1
            return True

    def hold_until(self, until: float) -> None:
        with self._lock:
            held = hold(self.state, until)
            if held is not None:
                self.state = held
                self.writes += 1


@dataclass
class QuotaStats:
    """What this quota object did (logged, counted; read by tests)."""

    slots_taken: int = 0
    slots_used: int = 0
    slots_dropped: int = 0
    writes: int = 0
    conflicts: int = 0
    # Writes that registered this caller as waiting (or extended its lease): restores, deploys.
    registrations: int = 0
    store_errors: int = 0
    waited: float = 0.0
    # What each request slept for its slot, in order: 0.0 when it went at once (the first one
    # tells whether a job waited behind the others).
    waits: list[float] | None = None


class SharedQuota:
    """Slots of the shared quota for one job (``restore``, ``deploy``, ``prune``); thread-safe.

    ``clock`` is UNIX seconds (the functions share it); ``sleep`` waits (both injectable).
    """

    def __init__(
        self,
        store: QuotaStore,
        params: QuotaParams,
        job: Job,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        record_waits: bool = False,
    ) -> None:
        self.store = store
        self.params = params
        self.job = job
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._slots: deque[float] = deque()
        self._seen: QuotaState | None = None
        self._store_retry = STORE_RETRY_FIRST_S
        # This caller's name in the shared state's waiters (one per quota object: its threads share it).
        self.ticket = uuid.uuid4().hex[:16]
        self.stats = QuotaStats(waits=[] if record_waits else None)

    def __repr__(self) -> str:
        return f"SharedQuota(job={self.job!r}, rate={self.params.rate!r})"

    def acquire(self, *, max_wait: float | None = None) -> float:
        """Wait for this job's next slot; the seconds waited. Raises :class:`BudgetExhaustedError`
        (having sent nothing) when the slot would come more than ``max_wait`` seconds from now."""
        started = self._clock()
        slept = 0.0
        while True:
            now = self._clock()
            found = self._next(now)
            if isinstance(found, Wait):
                slept += self._wait(found.until - now, started, max_wait)
                continue
            try:
                slept += self._wait(found - now, started, max_wait)
            except BudgetExhaustedError:
                with self._lock:  # not used: the next request may have it
                    self._slots.appendleft(found)
                    self.stats.slots_used -= 1
                raise
            return self._done(slept)

    def _next(self, now: float) -> float | Wait:
        """A slot of ours (its start time), or when to look again (a store error, an empty bucket)."""
        with self._lock:
            while self._slots:
                slot = self._slots.popleft()
                if usable(slot, now, self.params):
                    self.stats.slots_used += 1
                    return slot
                self.stats.slots_dropped += 1
            try:
                return self._take(now)
            except Exception as exc:  # any store failure: no slot, wait and retry
                return self._store_failed(now, exc)

    def _take(self, now: float) -> float | Wait:
        """Take a batch (one conditional write) and return its first slot, or when to try again."""
        seen = self._seen if self._seen is not None else self.store.read()
        self._seen = seen
        decision = take(seen, now, self.job, self.params, ticket=self.ticket)
        if isinstance(decision, Wait):
            return self._waiting(seen, decision, now)
        if not self._write(seen, decision):
            self.stats.conflicts += 1
            self._seen = self.store.read()
            return Wait(now)
        self._store_retry = STORE_RETRY_FIRST_S
        first, *rest = decision.slots
        self._slots.extend(rest)
        self.stats.slots_taken += len(decision.slots)
        count(QUOTA_SLOTS_TAKEN_METRIC, len(decision.slots))
        self.stats.slots_used += 1
        return first

    def _waiting(self, seen: QuotaState, decision: Wait, now: float) -> Wait:
        """Register as waiting when the rules say so (one conditional write), then wait. Whoever
        ranks lower is held back from now on; a conflict means: read again and decide again."""
        if decision.state is None:
            if seen.live(now):  # someone waits: read their grant or their leaving back next time
                self._seen = None
            return decision
        self.stats.registrations += 1
        if not self._write(seen, decision.state):
            self.stats.conflicts += 1
            self._seen = self.store.read()
            return Wait(now)
        return decision

    def _write(self, seen: QuotaState, decision: Grant | QuotaState) -> bool:
        new = decision.state if isinstance(decision, Grant) else decision
        self.stats.writes += 1
        if self.store.swap(new, expected_version=seen.version):
            self._seen = new
            return True
        return False

    def _store_failed(self, now: float, exc: Exception) -> Wait:
        self.stats.store_errors += 1
        self._seen = None
        delay, self._store_retry = self._store_retry, min(STORE_RETRY_MAX_S, self._store_retry * 2)
        count(QUOTA_STORE_ERRORS_METRIC)
        logger.warning(
            "the shared request quota cannot be read or written: waiting, no request starts without a slot",
            extra={"job": self.job, "error": type(exc).__name__, "retry_in_s": delay},
        )
        return Wait(now + delay)

    def _wait(self, seconds: float, started: float, max_wait: float | None) -> float:
        """Sleep ``seconds`` unless that passes ``max_wait`` since ``started`` (then raise); the seconds slept."""
        if seconds <= 0:
            return 0.0
        total = self._clock() + seconds - started
        if max_wait is not None and total > max_wait:
            raise BudgetExhaustedError(total)
        self._sleep(seconds)
        return seconds

    def _done(self, waited: float) -> float:
        """Count what this request waited for the quota (its sleeps: 0.0 when it went at once)."""
        with self._lock:
            self.stats.waited += waited
            if self.stats.waits is not None:
                self.stats.waits.append(waited)
        return waited

    def hold_until(self, until: float) -> None:
        """The provider said stop until ``until`` (UNIX seconds): tell every function. A store
        error is logged; this client's own budget holds it anyway."""
        try:
            self.store.hold_until(until)
        except Exception as exc:  # the hold is best effort beyond this invocation
            count(QUOTA_STORE_ERRORS_METRIC)
            logger.warning("could not share the provider's hold", extra={"job": self.job, "error": type(exc).__name__})
        with self._lock:
            self._seen = None  # read the hold back before the next batch
