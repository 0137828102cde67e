"""The client's request budget: how fast this invocation may call the provider, and when to wait.

One :class:`RequestBudget` per client, shared by every thread that uses it (the listing and the
concurrent deletions of a prune run alike). Every attempt of every request — retries included —
reserves a start time from it first. Three things push that start time back:

- **our own budget**, ``VPS_API_MAX_RPS``: a token bucket (GCRA) that starts full with a burst of
  ``burst`` requests and then lets at most ``max_rps`` requests per second through, on average;
- **the provider's word**, when it sends rate-limit headers (``RateLimit-*``, ``X-RateLimit-*``, or
  the IETF draft's single ``RateLimit`` field): the requests it says are left until its reset are
  spread evenly over the time to that reset, so the run slows down *before* it meets a wall of
  ``429`` (with its limit sent, the reset is read as a token bucket's: :attr:`ProviderLimit.pace_s`);
  with nothing left, nobody starts for one request's share of the reset (the reset itself when
  the provider sends no limit: :attr:`ProviderLimit.hold_s`);
- **a 429's ``Retry-After``**: nobody starts before it, not only the request that got it.

A restore's client is not paced (``paced`` False): what the provider says is left was spent by
every function together, and the shared quota already spaces them all at the provider's rate with
the restores first; spreading it again would put a restore behind the others' requests. A spent
window and a ``Retry-After`` still hold it.

Nothing here reads the environment or does I/O; time and sleep are injected (tests and benchmarks
use a simulated clock).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

# A reset larger than this is a UNIX time (Hetzner, GitHub), not a number of seconds (IETF draft):
# no provider's window is 30 years long.
_EPOCH_THRESHOLD = 1_000_000_000.0
# A provider's reset further away than this is not believed (a clock gone wrong): capped.
MAX_PROVIDER_WAIT_S = 3600.0
_DRAFT_PARAM = re.compile(r"(?:^|[;,\s])(r|remaining|t|reset|limit)\s*=\s*\"?([0-9]+(?:\.[0-9]+)?)")


@dataclass(frozen=True, slots=True)
class ProviderLimit:
    """What the provider's headers said: requests left, seconds until its window resets, and its
    limit (the requests a whole window holds) when it sent one."""

    remaining: int
    reset_s: float
    limit: int | None = None

    @property
    def hold_s(self) -> float:
        """With nothing left: how long nobody may start.

        ``reset_s`` is when the provider's window is whole again: the end of a fixed window, or a
        token bucket full again. An empty bucket lets the next request through long before that
        (Hetzner's, refilled one request a second, is full again an hour after it was emptied):
        with the limit known, the hold is one request's share of the reset, a bucket's refill of
        one request. A window provider answers a request sent before its reset with a ``429``,
        whose ``Retry-After`` then holds everybody. Without the limit: the reset."""
        return self.reset_s / self.limit if self.limit else self.reset_s

    @property
    def pace_s(self) -> float:
        """With some left: the spacing that spreads it over the time to the reset. With the limit
        known, the reset is read as a bucket's (above): what is left plus what refills before the
        reset, the limit in all, over the reset (Hetzner: a second apart, however little is left);
        without it, what is left over the reset."""
        return self.reset_s / (self.limit or max(self.remaining, 1))


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def parse_rate_limit_headers(headers: Mapping[str, str], *, now: float | None = None) -> ProviderLimit | None:
    """The provider's remaining requests and reset from a response's headers; None if it sent none.

    Understood: ``RateLimit-Remaining`` + ``RateLimit-Reset`` and the same with ``X-`` (a reset is
    seconds, or a UNIX time when it is that large, read against the response's ``Date`` when there
    is one, else against ``now``); the IETF draft's ``RateLimit: r=…;t=…`` (or
    ``remaining=…, reset=…``). Malformed values count as absent.
    """
    lower = {key.lower(): value for key, value in headers.items()}
    for prefix in ("ratelimit-", "x-ratelimit-"):
        remaining = _number(lower.get(prefix + "remaining"))
        reset = _number(lower.get(prefix + "reset"))
        if remaining is not None and reset is not None:
            if reset > _EPOCH_THRESHOLD:
                reset = max(0.0, reset - _response_time(lower.get("date"), now))
            return ProviderLimit(int(remaining), min(reset, MAX_PROVIDER_WAIT_S), _limit(lower.get(prefix + "limit")))
    field = lower.get("ratelimit")
    if field:
        found = {name: float(value) for name, value in _DRAFT_PARAM.findall(field)}
        remaining_f = found.get("r", found.get("remaining"))
        reset_f = found.get("t", found.get("reset"))
        if remaining_f is not None and reset_f is not None:
            return ProviderLimit(int(remaining_f), min(reset_f, MAX_PROVIDER_WAIT_S), _limit(found.get("limit")))
    return None


def _limit(value: str | float | None) -> int | None:
    """A window's limit: a whole number of requests, at least 1; anything else counts as absent."""
    number = _number(value) if isinstance(value, str) else value
    return int(number) if number is not None and number >= 1 and number == int(number) else None


def _response_time(date: str | None, now: float | None) -> float:
    if date:
        try:
            return parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError):
            pass
    return time.time() if now is None else now


class BudgetExhaustedError(Exception):
    """The next start time the budget can give is past the caller's deadline."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"the request budget would wait {wait:.1f} s")
        self.wait = wait


class RequestBudget:
    """A thread-safe schedule of request starts (see the module's docstring).

    ``max_rps`` None: no budget of our own (the provider's headers and ``Retry-After`` still apply).
    ``burst``: requests that may start at once after a quiet spell (default: one second's worth,
    at least 1). ``clock`` is monotonic seconds; ``sleep`` waits (both injectable).
    """

    def __init__(
        self,
        max_rps: float | None,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_rps is not None and not (max_rps > 0 and math.isfinite(max_rps)):
            raise ValueError(f"max_rps must be a positive number, got {max_rps!r}")
        if burst is not None and burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.max_rps = max_rps
        self.burst = burst if burst is not None else max(1, math.floor(max_rps or 1))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._interval = 0.0 if max_rps is None else 1.0 / max_rps
        self._tat = -math.inf  # GCRA's theoretical arrival time of the next request
        self._not_before = -math.inf  # nobody starts before this (a 429's Retry-After, a spent window)
        self._paced_until = -math.inf  # the provider's quota spread over its window: next start
        self._provider_interval = 0.0
        # Spread what the provider says is left over its window (off for a restore: see above).
        self.paced = True
        self.requests = 0
        self.waited = 0.0

    def __repr__(self) -> str:
        return f"RequestBudget(max_rps={self.max_rps!r}, burst={self.burst})"

    def acquire(self, *, max_wait: float | None = None, waited_out: float = -math.inf) -> float:
        """Reserve the next start, sleep until it, and return the seconds waited.

        Raises :class:`BudgetExhaustedError` (reserving nothing) when the wait would exceed
        ``max_wait`` — the caller's time left. ``waited_out``: a hold (see :meth:`hold`) the caller
        has already waited out with its own retry sleep; a later hold still applies.
        """
        with self._lock:
            now = self._clock()
            start = now
            if self._interval:
                tolerance = (self.burst - 1) * self._interval
                start = max(start, self._tat - tolerance)
            hold = self._not_before if self._not_before > waited_out else -math.inf
            start = max(start, hold, self._paced_until)
            wait = start - now
            if max_wait is not None and wait > max_wait:
                raise BudgetExhaustedError(wait)
            if self._interval:
                self._tat = max(self._tat, start) + self._interval
            if self._provider_interval:
                self._paced_until = start + self._provider_interval
            self.requests += 1
            self.waited += wait
        if wait > 0:
            self._sleep(wait)
        return wait

    def hold(self) -> float:
        """Until when (on ``clock``) nobody may start: the latest Retry-After or spent window."""
        with self._lock:
            return self._not_before

    def observe(self, headers: Mapping[str, str], *, status: int, retry_after: float | None) -> ProviderLimit | None:
        """Learn from a response: its rate-limit headers, and a 429's ``Retry-After``."""
        limit = parse_rate_limit_headers(headers)
        with self._lock:
            now = self._clock()
            if status == 429 and retry_after is not None:
                self._not_before = max(self._not_before, now + min(retry_after, MAX_PROVIDER_WAIT_S))
            if limit is not None:
                if limit.remaining <= 0:
                    self._not_before = max(self._not_before, now + limit.hold_s)
                    self._provider_interval = 0.0
                elif self.paced:
                    # Spread what is left over the time to the reset; more left than time: no pacing.
                    self._provider_interval = limit.pace_s
                    self._paced_until = max(self._paced_until, now + self._provider_interval)
        return limit
