"""The provider client over httpx.MockTransport: retries, outcome-unknown POSTs, pagination, errors."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest

from vpsbackup.errors import ConfigurationError
from vpsbackup.observability import metrics
from vpsbackup.provider.client import (
    API_ERRORS_METRIC,
    API_THROTTLED_METRIC,
    NO_WAIT,
    RetryPolicy,
    VpsClient,
    parse_retry_after,
)
from vpsbackup.provider.errors import (
    ApiConnectionError,
    AuthenticationError,
    BackupAlreadyGoneError,
    BadRequestError,
    ConflictError,
    ListingIncompleteError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    ServerError,
    VpsApiError,
)
from vpsbackup.provider.models import BackupPage, InvalidItem
from vpsbackup.provider.quota import QuotaParams
from vpsbackup.provider.shared_quota import InMemoryQuotaStore, SharedQuota

BASE = "https://api.test/api/v1"
SECRET_TOKEN = "tok-SUPERSECRET-123"


def backup_json(backup_id: int, server_id: int = 12345, **extra: object) -> dict[str, object]:
    return {
        "id": backup_id,
        "server": {"id": server_id, "name": f"srv-{server_id}"},
        "backup_type": "manual",
        "status": "completed",
        "size_mb": 10,
        "created_at": "2025-01-16T03:00:00Z",
        "expires_at": None,
        "description": "x",
        **extra,
    }


@dataclass
class Tokens:
    """A token provider whose secret can be 'rotated'; counts forced re-reads."""

    current: str = SECRET_TOKEN
    refreshes: int = 0
    next_value: str | None = None

    def get_token(self, *, force_refresh: bool = False) -> str:
        if force_refresh:
            self.refreshes += 1
            if self.next_value is not None:
                self.current = self.next_value
        return self.current


@dataclass
class Recorder:
    sleeps: list[float] = field(default_factory=list)

    def policy(self, **kw: object) -> RetryPolicy:
        return RetryPolicy(sleep=self.sleeps.append, random=lambda: 0.5, **kw)  # type: ignore[arg-type]


def make_client(
    handler: Callable[[httpx.Request], httpx.Response], *, tokens: Tokens | None = None, retry: RetryPolicy = NO_WAIT
) -> tuple[VpsClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = VpsClient(BASE, tokens or Tokens(), retry=retry, transport=httpx.MockTransport(record))
    return client, seen


def sequence(*steps: httpx.Response | Exception) -> Callable[[httpx.Request], httpx.Response]:
    """A handler answering each request with the next step (an exception is raised)."""
    remaining = list(steps)

    def handler(request: httpx.Request) -> httpx.Response:
        step = remaining.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    return handler


# -- pagination -----------------------------------------------------------------------------


def test_listing_follows_next_links_and_keeps_filters_on_the_first_request() -> None:
    page2 = f"{BASE}/backups/?page=2&server_id=12345"
    client, seen = make_client(
        sequence(
            httpx.Response(200, json={"count": 3, "next": page2, "results": [backup_json(3)]}),
            httpx.Response(200, json={"count": 3, "next": None, "results": [backup_json(1), backup_json(2)]}),
        )
    )
    backups = client.list_backups(server_id=12345, backup_type="manual")
    assert [b.id for b in backups] == [3, 1, 2]
    assert dict(seen[0].url.params) == {"server_id": "12345", "backup_type": "manual"}
    assert str(seen[1].url) == page2  # the next link is followed as given, filters included


def test_a_repeated_next_link_is_an_incomplete_listing_never_a_loop() -> None:
    looping = {"count": 1, "next": f"{BASE}/backups/?page=2", "results": [backup_json(1)]}
    client, seen = make_client(lambda _r: httpx.Response(200, json=looping))
    with pytest.raises(ListingIncompleteError, match="repeats a page already read") as raised:
        client.list_backups()
    assert len(seen) == 2  # page 1, then page 2 once; its next (page 2 again) is not followed
    assert raised.value.pages == 2


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.example/api/v1/backups/?page=2",  # another host (a proxy's internal name)
        "http://api.test/api/v1/backups/?page=2",  # same host, plain http: the token would travel in clear
        "https://api.test:8443/api/v1/backups/?page=2",  # same host, another port
        "ftp://api.test/api/v1/backups/?page=2",
        "https://api.test:notaport/api/v1/backups/?page=2",
        "/api/v1/backups/?page=2",  # no origin at all
    ],
)
def test_a_next_link_off_the_base_urls_origin_is_an_incomplete_listing_and_gets_no_request(link: str) -> None:
    page = {"count": 2, "next": link, "results": [backup_json(1)]}
    client, seen = make_client(lambda _r: httpx.Response(200, json=page))
    with pytest.raises(ListingIncompleteError, match="not the base URL's origin"):
        client.list_backups()
    assert len(seen) == 1  # the link was never requested: no token went to it


@pytest.mark.parametrize(
    "link", ["https://API.test/api/v1/backups/?page=2", "https://api.test:443/api/v1/backups/?page=2"]
)
def test_a_next_link_on_the_same_origin_written_differently_is_followed(link: str) -> None:
    client, seen = make_client(
        sequence(
            httpx.Response(200, json={"next": link, "results": [backup_json(1)]}),
            httpx.Response(200, json={"next": None, "results": [backup_json(2)]}),
        )
    )
    assert [b.id for b in client.list_backups()] == [1, 2]
    assert len(seen) == 2


@pytest.mark.parametrize(
    ("item", "backup_id", "server_id", "field"),
    [
        (backup_json(7, created_at=None), 7, 12345, "created_at"),
        (backup_json(7, created_at="yesterday"), 7, 12345, "created_at"),
        (backup_json(7, server=None), 7, None, "server"),
        (backup_json(7, status=None), 7, 12345, "status"),
        ({"id": "x"}, None, None, "id"),
        ("not an object", None, None, ""),
    ],
)
def test_an_invalid_item_ends_a_strict_listing_naming_it(
    item: object, backup_id: int | None, server_id: int | None, field: str
) -> None:
    client, _ = make_client(lambda _r: httpx.Response(200, json={"next": None, "results": [backup_json(1), item]}))
    with pytest.raises(ListingIncompleteError, match=f"is not valid: {field}"):
        client.list_backups()
    # With on_invalid the item is handed over, skipped, and the walk goes on
    skipped: list[InvalidItem] = []
    assert [b.id for b in client.iter_backups(on_invalid=skipped.append)] == [1]
    [invalid] = skipped
    assert (invalid.backup_id, invalid.server_id) == (backup_id, server_id)
    assert invalid.reason.startswith(field)


def test_on_invalid_sees_every_invalid_item_of_every_page() -> None:
    client, _ = make_client(
        sequence(
            httpx.Response(200, json={"next": f"{BASE}/backups/?page=2", "results": [backup_json(1, created_at=None)]}),
            httpx.Response(200, json={"next": None, "results": [backup_json(2), backup_json(3, server=None)]}),
        )
    )
    skipped: list[InvalidItem] = []
    pages: list[BackupPage] = []
    assert [b.id for b in client.iter_backups(on_invalid=skipped.append, on_page=pages.append)] == [2]
    assert [i.backup_id for i in skipped] == [1, 3]
    assert [len(p.invalid) for p in pages] == [1, 1]


def test_a_backup_seen_on_two_pages_is_returned_once() -> None:
    client, _ = make_client(
        sequence(
            httpx.Response(200, json={"next": f"{BASE}/backups/?page=2", "results": [backup_json(1), backup_json(2)]}),
            httpx.Response(200, json={"next": None, "results": [backup_json(2), backup_json(3)]}),
        )
    )
    assert [b.id for b in client.list_backups()] == [1, 2, 3]


@pytest.mark.parametrize("body", [[{"id": 1}], {"results": {"id": 1}}, {"next": 3, "results": []}, "text"])
def test_a_body_that_is_not_a_page_is_a_clear_error(body: object) -> None:
    client, _ = make_client(lambda _r: httpx.Response(200, json=body))
    with pytest.raises(VpsApiError, match="not a valid PageEnvelope"):
        client.list_backups()


# -- retries --------------------------------------------------------------------------------


def test_get_is_retried_on_transient_statuses_honouring_retry_after() -> None:
    rec = Recorder()
    client, seen = make_client(
        sequence(
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.Response(503),
            httpx.Response(502),
            httpx.ConnectError("refused"),
            httpx.Response(200, json={"results": [backup_json(1)]}),
        ),
        retry=rec.policy(max_attempts=5),
    )
    assert len(client.list_backups()) == 1
    assert len(seen) == 5
    assert rec.sleeps[0] == 3.0  # Retry-After wins over a shorter backoff
    assert len(rec.sleeps) == 4


def test_retries_are_bounded_by_attempts() -> None:
    client, seen = make_client(lambda _r: httpx.Response(503, json={"detail": "busy"}), retry=NO_WAIT)
    with pytest.raises(ServerError) as info:
        client.list_backups()
    assert info.value.status_code == 503
    assert info.value.api_message == "busy"
    assert len(seen) == NO_WAIT.max_attempts


def test_a_429_after_the_budget_is_a_rate_limited_error() -> None:
    client, _ = make_client(lambda _r: httpx.Response(429, headers={"Retry-After": "1"}))
    with pytest.raises(RateLimitedError) as info:
        client.list_backups()
    assert info.value.retry_after == 1.0


def test_retries_stop_at_the_deadline() -> None:
    rec = Recorder()
    now = [1000.0]
    client = VpsClient(
        BASE,
        Tokens(),
        retry=rec.policy(max_attempts=50, base_delay=1.0),
        transport=httpx.MockTransport(lambda _r: httpx.Response(503)),
        clock=lambda: now[0],
    )
    client.set_deadline(3.0)

    def advance(seconds: float) -> None:
        now[0] += seconds

    object.__setattr__(client.retry, "sleep", lambda s: (rec.sleeps.append(s), advance(s)))
    with pytest.raises(ServerError):
        client.list_backups()
    assert sum(rec.sleeps) < 3.0
    assert len(rec.sleeps) < 5


def test_a_retry_after_longer_than_allowed_is_not_waited_for() -> None:
    rec = Recorder()
    client, seen = make_client(lambda _r: httpx.Response(429, headers={"Retry-After": "3600"}), retry=rec.policy())
    with pytest.raises(RateLimitedError):
        client.list_backups()
    assert len(seen) == 1
    assert rec.sleeps == []


def test_backoff_is_capped_exponential_full_jitter() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0, random=lambda: 1.0)
    assert [policy.backoff(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert RetryPolicy(random=lambda: 0.0).backoff(3) == 0.0


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2025, 1, 16, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after("Thu, 16 Jan 2025 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 16 Jan 2025 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


# -- POST: never re-sent when it may have been applied ------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset"),
        httpx.Response(502),
        httpx.Response(504),
    ],
    ids=["read-timeout", "dropped", "reset", "502", "504"],
)
def test_an_ambiguous_create_raises_outcome_unknown_after_one_request(failure: httpx.Response | Exception) -> None:
    client, seen = make_client(sequence(failure, httpx.Response(201, json=backup_json(9))))
    with pytest.raises(OutcomeUnknownError, match="may have been applied"):
        client.create_backup(12345, "d")
    assert len(seen) == 1


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(429), httpx.Response(503), httpx.ConnectError("refused"), httpx.ConnectTimeout("slow")],
    ids=["429", "503", "connect-error", "connect-timeout"],
)
def test_a_create_the_api_did_not_apply_is_retried(failure: httpx.Response | Exception) -> None:
    client, seen = make_client(sequence(failure, httpx.Response(201, json={**backup_json(9), "message": "started"})))
    created = client.create_backup(12345, "Release 2.3")
    assert created.id == 9
    assert created.message == "started"
    assert len(seen) == 2
    assert json.loads(seen[1].content) == {"server_id": 12345, "description": "Release 2.3"}


def test_an_ambiguous_restore_raises_outcome_unknown() -> None:
    client, seen = make_client(sequence(httpx.ReadTimeout("t"), httpx.Response(202)))
    with pytest.raises(OutcomeUnknownError):
        client.restore_server(12345, 501)
    assert len(seen) == 1


def test_restore_accepts_any_2xx_with_or_without_a_body() -> None:
    client, seen = make_client(
        sequence(httpx.Response(202, json={"detail": "Restore started."}), httpx.Response(200), httpx.Response(201))
    )
    first = client.restore_server(12345, 501)
    assert first.status_code == 202
    assert first.body == {"detail": "Restore started."}
    assert client.restore_server(12345, 501).body is None
    assert client.restore_server(12345, 501).status_code == 201
    assert seen[0].url.path == "/api/v1/servers/12345/restore/"
    assert json.loads(seen[0].content) == {"backup_id": 501}


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (400, {"server_id": ["This field is required."]}, BadRequestError, "server_id: This field is required."),
        (404, {"detail": "Server not found."}, NotFoundError, "Server not found."),
        (409, {"detail": "A backup is already running."}, ConflictError, "A backup is already running."),
    ],
)
def test_errors_carry_status_and_the_api_message(
    status: int, body: dict[str, object], error: type[Exception], message: str
) -> None:
    client, seen = make_client(lambda _r: httpx.Response(status, json=body))
    with pytest.raises(error) as info:
        client.create_backup(12345)
    assert info.value.status_code == status  # type: ignore[attr-defined]
    assert info.value.api_message == message  # type: ignore[attr-defined]
    assert message in str(info.value)
    assert len(seen) == 1  # never retried


def test_delete_answers_204_and_a_404_is_a_distinct_catchable_outcome() -> None:
    client, seen = make_client(sequence(httpx.Response(204), httpx.Response(404, json={"detail": "Not found."})))
    client.delete_backup(7)
    with pytest.raises(BackupAlreadyGoneError):
        client.delete_backup(7)
    assert [r.method for r in seen] == ["DELETE", "DELETE"]
    assert seen[0].url.path == "/api/v1/backups/7/"


def test_delete_is_retried_after_a_dropped_connection() -> None:
    client, seen = make_client(sequence(httpx.RemoteProtocolError("dropped"), httpx.Response(404)))
    with pytest.raises(BackupAlreadyGoneError):
        client.delete_backup(7)
    assert len(seen) == 2


def test_connection_errors_after_the_budget() -> None:
    client, seen = make_client(sequence(*[httpx.ConnectError("refused")] * 5))
    with pytest.raises(ApiConnectionError, match="ConnectError after 5 attempt"):
        client.list_backups()
    assert len(seen) == 5


# -- token ----------------------------------------------------------------------------------


def test_a_rotated_token_is_re_read_once_after_a_401() -> None:
    tokens = Tokens(current="old", next_value="new")

    def handler(request: httpx.Request) -> httpx.Response:
        ok = request.headers["Authorization"] == "Bearer new"
        return (
            httpx.Response(200, json={"results": []}) if ok else httpx.Response(401, json={"detail": "Invalid token."})
        )

    client, seen = make_client(handler, tokens=tokens)
    assert client.list_backups() == []
    assert tokens.refreshes == 1
    assert len(seen) == 2


def test_a_wrong_token_fails_after_one_re_read_not_a_retry_storm() -> None:
    tokens = Tokens()
    client, seen = make_client(lambda _r: httpx.Response(401, json={"detail": "Invalid token."}), tokens=tokens)
    with pytest.raises(AuthenticationError, match="after re-reading the token secret"):
        client.create_backup(12345)
    assert tokens.refreshes == 1
    assert len(seen) == 2


def test_the_token_never_leaks(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    client, seen = make_client(
        sequence(
            httpx.Response(503),
            httpx.Response(401, json={"detail": "Invalid token."}),
            httpx.Response(401, json={"detail": "Invalid token."}),
        ),
        retry=NO_WAIT,
    )
    with pytest.raises(AuthenticationError) as info:
        client.list_backups()
    assert seen[0].headers["Authorization"] == f"Bearer {SECRET_TOKEN}"  # it is sent...
    captured = capsys.readouterr()
    texts = [
        str(info.value),
        repr(info.value),
        repr(client),
        captured.out,
        captured.err,
        caplog.text,
        str(vars(info.value)),
    ]
    for text in texts:  # ...and never shown
        assert SECRET_TOKEN not in text


# -- metrics --------------------------------------------------------------------------------


@pytest.fixture
def counted() -> Iterator[Callable[[], dict[str, float]]]:
    """The Count metrics the client adds during a test: {name: total}."""
    metrics.clear_metrics()

    def totals() -> dict[str, float]:
        return {name: sum(m["Value"]) for name, m in metrics.metric_set.items()}

    yield totals
    metrics.clear_metrics()


def test_every_429_answer_is_counted_as_a_throttle_and_a_recovered_request_is_no_error(
    counted: Callable[[], dict[str, float]],
) -> None:
    client, _ = make_client(
        sequence(httpx.Response(429), httpx.Response(429), httpx.Response(200, json={"results": []})),
        retry=Recorder().policy(max_attempts=5),
    )
    client.list_backups()
    assert counted() == {API_THROTTLED_METRIC: 2}


@pytest.mark.parametrize(
    ("steps", "call", "error"),
    [
        ([httpx.Response(503)] * NO_WAIT.max_attempts, lambda c: c.list_backups(), ServerError),
        ([httpx.Response(429)] * NO_WAIT.max_attempts, lambda c: c.list_backups(), RateLimitedError),
        ([httpx.ConnectError("refused")] * NO_WAIT.max_attempts, lambda c: c.list_backups(), ApiConnectionError),
        ([httpx.ReadTimeout("slow")], lambda c: c.create_backup(12345), OutcomeUnknownError),
        ([httpx.Response(504)], lambda c: c.create_backup(12345), OutcomeUnknownError),
        ([httpx.Response(409, json={"detail": "busy"})], lambda c: c.restore_server(12345, 7), ConflictError),
        ([httpx.Response(404)], lambda c: c.create_backup(99), NotFoundError),
    ],
)
def test_a_request_that_ends_in_an_error_is_counted_once(
    counted: Callable[[], dict[str, float]],
    steps: list[httpx.Response | Exception],
    call: Callable[[VpsClient], object],
    error: type[Exception],
) -> None:
    client, _ = make_client(sequence(*steps))
    with pytest.raises(error):
        call(client)
    assert counted().get(API_ERRORS_METRIC) == 1


def test_a_delete_of_a_backup_already_gone_is_no_api_error(counted: Callable[[], dict[str, float]]) -> None:
    client, _ = make_client(sequence(httpx.Response(404)))
    with pytest.raises(BackupAlreadyGoneError):
        client.delete_backup(7)
    assert API_ERRORS_METRIC not in counted()


@pytest.mark.parametrize("base", ["http://api.test/api/v1", "http://10.1.2.3/api/v1", "ftp://api.test/api/v1"])
def test_a_client_refuses_a_base_url_the_token_would_leave_in_clear(base: str) -> None:
    with pytest.raises(ConfigurationError, match="VPS_API_BASE_URL"):
        VpsClient(base, Tokens())


def test_a_loopback_http_base_url_is_accepted_and_its_links_must_stay_on_it() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"next": "https://127.0.0.1:8080/api/v1/backups/?page=2", "results": []})

    client = VpsClient("http://127.0.0.1:8080/api/v1", Tokens(), retry=NO_WAIT, transport=httpx.MockTransport(answer))
    with pytest.raises(ListingIncompleteError, match="not the base URL's origin"):
        client.list_backups()
    assert len(seen) == 1


def test_a_spent_window_holds_every_function_for_one_requests_refill_not_until_the_bucket_is_full() -> None:
    # Given a client in a shared quota, and a provider whose bucket (60 requests, one a second)
    # the other functions just emptied: full again in 60 s, its next request let through in 1 s
    store = InMemoryQuotaStore()
    client, _ = make_client(
        lambda _r: httpx.Response(
            204,
            headers={"RateLimit-Limit": "60", "RateLimit-Remaining": "0", "RateLimit-Reset": "60"},
        )
    )
    client.quota = SharedQuota(store, QuotaParams(1.0), "prune")
    before = time.time()
    # When it is answered so
    client.delete_backup(7)
    # Then every function is held for about a second (the store's shared hold), not a minute
    assert before + 0.9 <= store.state.not_before <= time.time() + 1.1
