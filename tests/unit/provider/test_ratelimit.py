"""The client's request budget: our own rate, the provider's headers, a 429's Retry-After."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpsbackup.provider.ratelimit import (
    BudgetExhaustedError,
    ProviderLimit,
    RequestBudget,
    parse_rate_limit_headers,
)
from vpsbackup_local.simulator.clock import SimulatedClock


def budget(max_rps: float | None, burst: int | None = None) -> tuple[RequestBudget, SimulatedClock]:
    clock = SimulatedClock()
    return RequestBudget(max_rps, burst=burst, clock=clock.monotonic, sleep=clock.sleep), clock


def starts(b: RequestBudget, clock: SimulatedClock, n: int) -> list[float]:
    out = []
    for _ in range(n):
        b.acquire()
        out.append(round(clock.monotonic(), 6))
    return out


# -- our own budget ------------------------------------------------------------------------------------


def test_after_the_burst_requests_start_one_interval_apart() -> None:
    b, clock = budget(2.0, burst=3)
    assert starts(b, clock, 6) == [0.0, 0.0, 0.0, 0.5, 1.0, 1.5]


def test_a_quiet_spell_refills_the_burst_but_never_beyond_it() -> None:
    b, clock = budget(1.0, burst=2)
    starts(b, clock, 2)
    clock.advance(100)
    assert starts(b, clock, 3) == [100.0, 100.0, 101.0]


def test_the_default_burst_is_one_seconds_worth() -> None:
    assert RequestBudget(2.0).burst == 2
    assert RequestBudget(0.2).burst == 1
    assert RequestBudget(None).burst == 1


@given(
    rps=st.floats(min_value=0.1, max_value=50),
    burst=st.integers(min_value=1, max_value=20),
    gaps=st.lists(st.floats(min_value=0, max_value=3), min_size=1, max_size=80),
)
@settings(max_examples=100, deadline=None)
def test_in_any_window_at_most_burst_plus_rate_times_length_start(rps: float, burst: int, gaps: list[float]) -> None:
    # Whatever the callers' own pauses, the starts never exceed the token bucket's envelope.
    b, clock = budget(rps, burst=burst)
    times = []
    for gap in gaps:
        clock.advance(gap)
        b.acquire()
        times.append(clock.monotonic())
    for i, first in enumerate(times):
        for j in range(i, len(times)):
            assert j - i + 1 <= burst + (times[j] - first) * rps + 1e-6


def test_threads_share_one_budget() -> None:
    # Given a budget of 1,000/s without a burst, used by 4 threads at once (real time, tiny waits)
    b = RequestBudget(1000.0, burst=1)
    starts_at: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(25):
            b.acquire()
            with lock:
                starts_at.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then all 100 requests came from one schedule: they could not all start in less than 99 intervals
    assert b.requests == 100
    assert max(starts_at) - min(starts_at) >= 99 * 0.001 - 1e-4


def test_a_wait_past_the_deadline_reserves_nothing() -> None:
    b, _ = budget(1.0, burst=1)
    b.acquire()
    with pytest.raises(BudgetExhaustedError) as raised:
        b.acquire(max_wait=0.5)
    assert raised.value.wait == pytest.approx(1.0)
    assert b.requests == 1
    assert b.acquire(max_wait=1.0) == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan")])
def test_a_budget_that_is_not_a_positive_rate_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="max_rps"):
        RequestBudget(bad)


# -- the provider's word -----------------------------------------------------------------------------------


def test_a_429_retry_after_holds_back_every_request() -> None:
    b, clock = budget(None)
    b.acquire()
    b.observe({}, status=429, retry_after=7.0)
    assert starts(b, clock, 2) == [7.0, 7.0]


def test_what_is_left_is_spread_over_the_time_to_the_reset() -> None:
    # The provider says 4 requests are left for the next 10 s: one every 2.5 s, not 4 at once.
    b, clock = budget(100.0, burst=100)
    b.observe({"RateLimit-Remaining": "4", "RateLimit-Reset": "10"}, status=200, retry_after=None)
    assert starts(b, clock, 3) == [2.5, 5.0, 7.5]


def test_an_unpaced_budget_a_restores_ignores_what_is_left_but_not_a_spent_window_or_retry_after() -> None:
    b, clock = budget(100.0, burst=100)
    b.paced = False
    b.observe({"RateLimit-Remaining": "4", "RateLimit-Reset": "10"}, status=200, retry_after=None)
    assert starts(b, clock, 3) == [0.0, 0.0, 0.0]
    b.observe({"RateLimit-Remaining": "0", "RateLimit-Reset": "5"}, status=200, retry_after=None)
    assert starts(b, clock, 1) == [5.0]
    b.observe({}, status=429, retry_after=7.0)
    assert starts(b, clock, 1) == [12.0]


def test_nothing_left_means_nobody_starts_before_the_reset() -> None:
    b, clock = budget(None)
    b.observe({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}, status=200, retry_after=None)
    assert starts(b, clock, 1) == [30.0]


def test_an_empty_bucket_holds_everybody_for_one_requests_refill_not_until_it_is_full_again() -> None:
    # Given a Hetzner-like provider: 3,600 requests an hour, refilled one a second; its bucket just
    # emptied, so it is full again in an hour (RateLimit-Reset) but lets a request through in 1 s
    b, clock = budget(None)
    b.observe(
        {"RateLimit-Limit": "3600", "RateLimit-Remaining": "0", "RateLimit-Reset": "3600"}, status=200, retry_after=None
    )
    # Then the next request waits one second, not an hour
    assert starts(b, clock, 1) == [1.0]
    assert ProviderLimit(0, 60.0, 60).hold_s == 1.0
    assert ProviderLimit(0, 30.0, 200).hold_s == 0.15  # a window provider: a 429's Retry-After holds after that
    assert ProviderLimit(0, 30.0).hold_s == 30.0  # no limit sent: the reset


def test_little_left_in_a_bucket_whose_limit_is_known_is_spread_at_its_refill_not_over_the_whole_reset() -> None:
    # Given a Hetzner-like provider with one request left of 3,600, full again in 3,599 s: it lets
    # a request through every second meanwhile
    b, clock = budget(None)
    b.observe(
        {"RateLimit-Limit": "3600", "RateLimit-Remaining": "1", "RateLimit-Reset": "3599"}, status=200, retry_after=None
    )
    # Then requests are a second apart, not an hour (3,599 s over the one left)
    assert starts(b, clock, 2) == pytest.approx([3599 / 3600, 2 * 3599 / 3600])
    # and without the limit, what is left is spread over the reset, as before
    assert ProviderLimit(4, 10.0).pace_s == 2.5
    assert ProviderLimit(0, 10.0).pace_s == 10.0


def test_plenty_left_does_not_slow_down_our_own_budget() -> None:
    b, clock = budget(1.0, burst=1)
    b.observe({"RateLimit-Remaining": "1000", "RateLimit-Reset": "60"}, status=200, retry_after=None)
    assert starts(b, clock, 3) == [0.06, 1.06, 2.06]


NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"RateLimit-Remaining": "5", "RateLimit-Reset": "12"}, ProviderLimit(5, 12.0)),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "3"}, ProviderLimit(0, 3.0)),
        # a UNIX time, read against the response's Date
        (
            {
                "X-RateLimit-Remaining": "9",
                "X-RateLimit-Reset": str(int(NOW.timestamp()) + 40),
                "Date": format_datetime(NOW, usegmt=True),
            },
            ProviderLimit(9, 40.0),
        ),
        # the IETF draft's single field, in its two spellings
        ({"RateLimit": '"default";r=50;t=30'}, ProviderLimit(50, 30.0)),
        ({"RateLimit": "limit=100, remaining=7, reset=5"}, ProviderLimit(7, 5.0, 100)),
        # the window's limit, when sent (a limit that is not a whole number >= 1 counts as absent)
        (
            {"RateLimit-Limit": "3600", "RateLimit-Remaining": "0", "RateLimit-Reset": "3600"},
            ProviderLimit(0, 3600.0, 3600),
        ),
        (
            {"X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "30"},
            ProviderLimit(3, 30.0, 200),
        ),
        ({"RateLimit-Limit": "0", "RateLimit-Remaining": "0", "RateLimit-Reset": "9"}, ProviderLimit(0, 9.0)),
        ({"RateLimit-Limit": "2.5", "RateLimit-Remaining": "0", "RateLimit-Reset": "9"}, ProviderLimit(0, 9.0)),
        ({"RateLimit-Limit": "many", "RateLimit-Remaining": "0", "RateLimit-Reset": "9"}, ProviderLimit(0, 9.0)),
        # a reset absurdly far away is capped
        ({"RateLimit-Remaining": "1", "RateLimit-Reset": "99999999"}, ProviderLimit(1, 3600.0)),
        ({"RateLimit-Remaining": "x", "RateLimit-Reset": "3"}, None),
        ({"RateLimit-Remaining": "-1", "RateLimit-Reset": "3"}, None),
        ({"RateLimit-Limit": "100"}, None),
        ({}, None),
    ],
)
def test_rate_limit_headers_are_read(headers: dict[str, str], expected: ProviderLimit | None) -> None:
    assert parse_rate_limit_headers(headers, now=NOW.timestamp()) == expected


def test_an_absolute_reset_without_date_is_read_against_now() -> None:
    headers = {"RateLimit-Remaining": "2", "RateLimit-Reset": str(int(NOW.timestamp()) + 15)}
    assert parse_rate_limit_headers(headers, now=NOW.timestamp()) == ProviderLimit(2, 15.0)
