"""The simulator's fleet-scale features over real HTTP: page sizes, a rate limit, simulated time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from devtools.simulator import RateLimit, SimulatedClock, Simulator

pytestmark = pytest.mark.integration

TOKEN = "scale-token"
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _seed(sim: Simulator, servers: int, per_server: int) -> None:
    for server in range(servers):
        sim.add_server(100 + server, f"srv-{server}")
        for n in range(per_server):
            sim.add_backup(100 + server, created_at=T0 - timedelta(hours=n))


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5.0) as client:
        yield client


def _walk(http: httpx.Client, url: str) -> tuple[list[int], list[int]]:
    """(ids listed, size of each page) following next links."""
    ids: list[int] = []
    sizes: list[int] = []
    next_url: str | None = url
    while next_url is not None:
        page = http.get(next_url).json()
        ids += [b["id"] for b in page["results"]]
        sizes.append(len(page["results"]))
        next_url = page["next"]
    return ids, sizes


# -- page sizes ----------------------------------------------------------------------------------


def test_page_size_is_honoured_up_to_max_page_size_and_kept_in_next_links(http: httpx.Client) -> None:
    # Given 3 servers × 40 backups, a default page of 10 and a maximum of 50
    with Simulator(tokens={TOKEN}, page_size=10, max_page_size=50) as sim:
        _seed(sim, 3, 40)
        # When a client asks for pages of 25
        first = http.get(sim.base_url + "/backups/", params={"page_size": 25}).json()
        ids, sizes = _walk(http, sim.base_url + "/backups/?page_size=25")
        # Then it gets pages of 25, and the next link asks for 25 again
        assert parse_qs(urlsplit(first["next"]).query)["page_size"] == ["25"]
        assert sizes == [25, 25, 25, 25, 20]
        assert sorted(ids) == sorted(b["id"] for b in sim.backups)
        # ... and more than the maximum gets the maximum, as DRF's max_page_size does
        assert _walk(http, sim.base_url + "/backups/?page_size=1000")[1] == [50, 50, 20]


@pytest.mark.parametrize("raw", ["0", "-5", "abc", "", "2.5"])
def test_a_page_size_that_is_not_a_positive_integer_means_the_default(http: httpx.Client, raw: str) -> None:
    with Simulator(tokens={TOKEN}, page_size=10, max_page_size=50) as sim:
        _seed(sim, 1, 15)
        page = http.get(sim.base_url + "/backups/", params={"page_size": raw}).json()
        assert len(page["results"]) == 10
        assert page["count"] == 15


def test_without_max_page_size_the_default_page_size_is_the_maximum(http: httpx.Client) -> None:
    # Tests that seed a few backups to walk several pages keep doing so whatever a client asks for.
    with Simulator(tokens={TOKEN}, page_size=10) as sim:
        _seed(sim, 1, 25)
        assert _walk(http, sim.base_url + "/backups/?page_size=100")[1] == [10, 10, 5]


def test_the_cached_listing_order_follows_additions_and_deletions(http: httpx.Client) -> None:
    with Simulator(tokens={TOKEN}, page_size=10, max_page_size=100) as sim:
        _seed(sim, 2, 10)
        before, _ = _walk(http, sim.base_url + "/backups/?page_size=100")
        added = sim.add_backup(100, created_at=T0)["id"]
        assert http.delete(f"{sim.base_url}/backups/{before[0]}/").status_code == 204
        after, _ = _walk(http, sim.base_url + "/backups/?page_size=100")
        assert set(after) == (set(before) - {before[0]}) | {added}
        # ... and the per-server filter sees the same changes
        server_100 = _walk(http, sim.base_url + "/backups/?server_id=100&page_size=100")[0]
        assert set(server_100) == {b["id"] for b in sim.backups if b["server"]["id"] == 100}


# -- the rate limit --------------------------------------------------------------------------------


def test_the_rate_limit_serves_its_burst_then_answers_429_until_a_token_is_back(http: httpx.Client) -> None:
    # Given a limit of 2 requests per second with a burst of 3, on a simulated clock
    clock = SimulatedClock(start=T0)
    rule = RateLimit(limit=2, window=1.0, burst=3, headers="both")
    with Simulator(tokens={TOKEN}, clock=clock.now, sleep=clock.sleep, rate_limit=rule) as sim:
        url = sim.base_url + "/backups/"
        # When 4 requests arrive at the same instant
        answers = [http.get(url) for _ in range(4)]
        # Then the burst is served, counting down, and the 4th is throttled with Retry-After
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert [a.headers["RateLimit-Remaining"] for a in answers[:3]] == ["2", "1", "0"]
        assert answers[0].headers["RateLimit-Limit"] == answers[0].headers["X-RateLimit-Limit"] == "3"
        throttled = answers[3]
        assert throttled.headers["Retry-After"] == "1"
        assert throttled.json() == {"detail": "Request was throttled. Expected available in 1 seconds."}
        # ... the reset says when the bucket is full again: 1.5 s, in seconds and as a UNIX time
        # read against the simulator's own Date header
        assert throttled.headers["RateLimit-Reset"] == "2"
        date = parsedate_to_datetime(throttled.headers["Date"])
        assert date == T0
        assert int(throttled.headers["X-RateLimit-Reset"]) == int(T0.timestamp()) + 2
        # When half a second passes, one token is back: one request is served
        clock.advance(0.5)
        assert [http.get(url).status_code for _ in range(2)] == [200, 429]
        assert sim.rate_limit_counts == {"served": 4, "throttled": 2}
        # ... and every throttled request is in the request log, marked as such
        assert [r.fault for r in sim.requests if r.status == 429] == ["rate_limit", "rate_limit"]


@pytest.mark.parametrize(
    ("style", "present", "absent"),
    [
        ("ratelimit", "RateLimit-Remaining", "X-RateLimit-Remaining"),
        ("x-ratelimit", "X-RateLimit-Remaining", "RateLimit-Remaining"),
        ("none", None, "RateLimit-Remaining"),
    ],
)
def test_the_header_style_is_chosen(http: httpx.Client, style: str, present: str | None, absent: str) -> None:
    with Simulator(tokens={TOKEN}, rate_limit=RateLimit(5, headers=style)) as sim:  # type: ignore[arg-type]
        answer = http.get(sim.base_url + "/backups/")
        assert answer.status_code == 200
        assert absent not in answer.headers
        if present is not None:
            assert answer.headers[present] == "4"


def test_in_any_window_the_limit_serves_at_most_its_burst_plus_its_rate(http: httpx.Client) -> None:
    # Given 1 request/second with a burst of 5 and a client that sends 60 requests 0.25 s apart
    clock = SimulatedClock(start=T0)
    rule = RateLimit(limit=1, window=1.0, burst=5)
    with Simulator(tokens={TOKEN}, clock=clock.now, sleep=clock.sleep, rate_limit=rule) as sim:
        for _ in range(60):
            http.get(sim.base_url + "/backups/")
            clock.advance(0.25)
        served = [r.at for r in sim.requests if r.status == 200]
    # Then over the 15 s, 5 + 15 at most were served, and in every 4 s window at most 5 + 4
    assert 15 <= len(served) <= 20
    for start in served:
        assert sum(1 for t in served if start <= t < start + timedelta(seconds=4)) <= 9


def test_a_limit_can_be_set_and_lifted_while_running(http: httpx.Client) -> None:
    with Simulator(tokens={TOKEN}) as sim:
        sim.set_rate_limit(RateLimit(limit=1, window=60.0))
        assert [http.get(sim.base_url + "/backups/").status_code for _ in range(2)] == [200, 429]
        sim.set_rate_limit(None)
        assert http.get(sim.base_url + "/backups/").status_code == 200
        assert "RateLimit-Limit" not in http.get(sim.base_url + "/backups/").headers


@pytest.mark.parametrize(
    "kwargs", [{"limit": 0}, {"limit": 1, "window": 0}, {"limit": 1, "burst": 0}, {"limit": 1, "headers": "odd"}]
)
def test_a_bad_rate_limit_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(k for k in kwargs if k != "limit"), "limit")):
        RateLimit(**kwargs)  # type: ignore[arg-type]


# -- simulated time ----------------------------------------------------------------------------------


def test_latency_is_spent_on_the_simulated_clock(http: httpx.Client) -> None:
    # Given 20 ms of latency per request, on a simulated clock
    clock = SimulatedClock(start=T0)
    with Simulator(tokens={TOKEN}, clock=clock.now, sleep=clock.sleep, latency=0.02) as sim:
        # When 50 requests are made
        for _ in range(50):
            http.get(sim.base_url + "/backups/")
    # Then one simulated second passed, and the requests were logged at the simulated times
    assert clock.monotonic() == pytest.approx(1.0)
    assert clock.sleeps == 50


def test_the_simulated_clock_only_moves_forward() -> None:
    clock = SimulatedClock(start=T0)
    clock.sleep(-3)
    clock.advance(1.5)
    assert clock.now() == T0 + timedelta(seconds=1.5)
    assert clock.time() == T0.timestamp() + 1.5
    assert clock.monotonic() == 1.5
