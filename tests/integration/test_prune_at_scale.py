"""PruneBackupsFunction against a rate-limited provider and out of time, in simulated time.

The simulator, the client and the Lambda context share one :class:`SimulatedClock`: the
simulator's latency, the client's request budget, its backoff and every ``Retry-After`` advance it
instead of sleeping, so a run of minutes at a few requests per second takes a few seconds here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import prune_backups
from devtools.simulator import RateLimit, SimulatedClock, Simulator
from tests.conftest import AwsEnv
from vpsbackup.aws import runtime
from vpsbackup.markers import describe_with_marker
from vpsbackup.provider.client import RetryPolicy, VpsClient
from vpsbackup.provider.token import SecretsManagerTokenProvider

pytestmark = pytest.mark.integration

TOKEN = "test-token"
SERVERS = (201, 202, 203)
DAYS = 40


class SimulatedContext:
    """A Lambda context whose remaining time runs on the simulated clock."""

    function_name = "prune-backups"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:prune-backups"
    aws_request_id = "simulated"

    def __init__(self, clock: SimulatedClock, timeout_s: float) -> None:
        self._clock = clock
        self._ends = clock.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - self._clock.monotonic()) * 1000))


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()


@pytest.fixture
def limited(
    clock: SimulatedClock, shared_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Simulator, AwsEnv]]:
    """A simulator on the simulated clock (20 ms latency, pages of 10), 3 servers × 40 daily managed
    backups; the handler's client on the same clock; the prune function's environment."""
    sim = Simulator(tokens={TOKEN}, page_size=10, max_page_size=10, clock=clock.now, sleep=clock.sleep, latency=0.02)
    now = clock.now()
    for server_id in SERVERS:
        sim.add_server(server_id, f"web-{server_id}")
        for day in range(DAYS):
            sim.add_backup(
                server_id,
                created_at=now - timedelta(days=day, minutes=server_id),
                description=describe_with_marker("Deploy", f"{server_id}-{day}"),
            )
    sim.start()
    clients: list[VpsClient] = []

    @functools.cache
    def api_client(base_url: str, token_secret_id: str) -> VpsClient:
        client = VpsClient(
            base_url,
            SecretsManagerTokenProvider(token_secret_id),
            retry=RetryPolicy(sleep=clock.sleep, max_retry_after=120.0),
            clock=clock.monotonic,
        )
        clients.append(client)
        return client

    monkeypatch.setattr(runtime, "api_client", api_client)
    monkeypatch.setenv("VPS_API_BASE_URL", sim.base_url)
    monkeypatch.setenv("RETENTION_POLICY", json.dumps({"keep_last": 3, "keep_daily": 7}))
    monkeypatch.setenv("MAX_DELETIONS_PER_RUN", "1000")
    monkeypatch.setenv("MAX_DELETIONS_PER_DAY", "10000")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "prune-backups")
    prune_backups.settings.cache_clear()
    try:
        yield sim, shared_env
    finally:
        sim.stop()
        for client in clients:
            client.close()
        prune_backups.settings.cache_clear()


def arrived_in_windows(sim: Simulator, seconds: float) -> int:
    """The most requests that reached the API (served or answered 429) in any window of ``seconds``."""
    arrived = sorted(r.at for r in sim.requests)
    return max(
        (sum(1 for t in arrived[i:] if t < start + timedelta(seconds=seconds)) for i, start in enumerate(arrived)),
        default=0,
    )


def manual_left(sim: Simulator) -> int:
    return sum(1 for b in sim.backups if b["backup_type"] == "manual")


def test_under_the_providers_limit_the_budget_meets_no_429_and_the_run_completes(
    limited: tuple[Simulator, AwsEnv], clock: SimulatedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a provider limited to 5 requests/second (burst 5) and a budget of 4/second
    sim, _ = limited
    sim.set_rate_limit(RateLimit(limit=5, window=1.0, burst=5, headers="none"))
    monkeypatch.setenv("VPS_API_MAX_RPS", "4")
    # When the scheduled run lists 120 backups (12 pages) and deletes what the policy does not keep
    result: dict[str, Any] = prune_backups.handler({}, SimulatedContext(clock, 900))
    # Then it completed: every planned deletion was made, after a listing that was complete
    assert result["listing_complete"] is True
    assert result["totals"]["deleted"] == result["totals"]["to_delete"] == 3 * (DAYS - 7)
    assert manual_left(sim) == 3 * 7
    # ... the API never had to say 429: what reached it never exceeded its limit (a burst of 5, then
    # 5 a second) in any window
    assert sim.rate_limit_counts["throttled"] == 0
    for seconds in (1.0, 5.0, 20.0):
        assert arrived_in_windows(sim, seconds) <= 5 + 5 * seconds
    # ... and the run took the time the budget says: 111 requests, a burst of 4 then 4 a second,
    # is about 27 s of simulated time
    assert len(sim.requests) == 12 + 3 * (DAYS - 7)
    assert 26 <= clock.monotonic() <= 40


def test_over_the_providers_limit_its_headers_slow_the_run_down_and_it_completes(
    limited: tuple[Simulator, AwsEnv], clock: SimulatedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a provider limited to 2 requests/second (burst 10) that says so in RateLimit headers,
    # and a client budget of 50/second, far above it
    sim, _ = limited
    sim.set_rate_limit(RateLimit(limit=2, window=1.0, burst=10, headers="ratelimit"))
    monkeypatch.setenv("VPS_API_MAX_RPS", "50")
    # When the scheduled run happens
    result: dict[str, Any] = prune_backups.handler({}, SimulatedContext(clock, 900))
    # Then it completed, every planned deletion made
    assert result["listing_complete"] is True
    assert result["totals"]["deleted"] == result["totals"]["to_delete"] == 3 * (DAYS - 7)
    assert result["totals"]["failed"] == 0
    # ... what reached the API stayed within its limit (a burst of 10, then 2 a second), 429s included
    for seconds in (5.0, 30.0):
        assert arrived_in_windows(sim, seconds) <= 10 + 2 * seconds + 3
    # ... and the client followed the headers: only a handful of requests met a 429
    requests = len(sim.requests)
    assert sim.rate_limit_counts["throttled"] <= max(3, requests // 20)


def test_a_listing_out_of_time_deletes_nothing_does_not_raise_reports_and_notifies(
    limited: tuple[Simulator, AwsEnv], clock: SimulatedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a provider allowing 1 request every 2 seconds, and an invocation with 30 s left: the
    # 12 pages of the listing need 24 s, past the client's deadline (30 s - its 10 s margin)
    sim, aws = limited
    sim.set_rate_limit(RateLimit(limit=1, window=2.0, burst=1, headers="both"))
    monkeypatch.setenv("VPS_API_MAX_RPS", "0.5")
    before = manual_left(sim)
    # When the scheduled run happens
    result: dict[str, Any] = prune_backups.handler({"trigger": "schedule"}, SimulatedContext(clock, 30))
    # Then it returned a report instead of raising: the listing stopped, nothing was planned
    assert result["listing_complete"] is False
    progress = result["progress"]
    assert 0 < progress["listed"] < progress["expected"] == 120
    assert progress["stopped"].endswith("past the deadline") or "deadline" in progress["stopped"]
    assert result["totals"]["to_delete"] == 0
    # ... nothing was deleted
    assert not [r for r in sim.requests if r.method == "DELETE"]
    assert manual_left(sim) == before
    # ... and people were told how far it got
    (note,) = aws.notifications()
    assert note["Subject"] == "VPS backup prune: out of time while listing, nothing deleted"
    assert f"It listed {progress['listed']} of 120 backups" in note["Message"]
