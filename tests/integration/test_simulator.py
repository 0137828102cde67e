"""The local simulator of the provider's Backups API, exercised over real HTTP with raw httpx."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from devtools.simulator import CREATE_MESSAGE, Fault, LoggedRequest, Simulator, format_timestamp
from devtools.simulator.pytest_plugin import SIM_TOKEN, simulator  # noqa: F401

pytestmark = pytest.mark.integration

T0 = datetime(2025, 1, 16, 15, 45, tzinfo=UTC)

DOC_EXAMPLES: list[dict[str, Any]] = [
    {
        "id": 501,
        "server": {"id": 12345, "name": "web-server-01"},
        "backup_type": "automatic",
        "status": "completed",
        "size_mb": 4523,
        "created_at": "2025-01-16T03:00:00Z",
        "expires_at": "2025-02-16T03:00:00Z",
        "description": "Automatic daily backup",
    },
    {
        "id": 499,
        "server": {"id": 12345, "name": "web-server-01"},
        "backup_type": "manual",
        "status": "completed",
        "size_mb": 4456,
        "created_at": "2025-01-14T10:30:00Z",
        "expires_at": None,
        "description": "Pre-update backup",
    },
    {
        "id": 495,
        "server": {"id": 12345, "name": "web-server-01"},
        "backup_type": "automatic",
        "status": "completed",
        "size_mb": 4389,
        "created_at": "2025-01-15T03:00:00Z",
        "expires_at": "2025-02-15T03:00:00Z",
        "description": "Automatic daily backup",
    },
]


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def client(simulator: Simulator) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(
        base_url=simulator.base_url, headers={"Authorization": f"Bearer {SIM_TOKEN}"}, timeout=5.0
    ) as http:
        yield http


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timed(clock: FakeClock) -> Iterator[tuple[Simulator, httpx.Client]]:
    """A simulator on a fake clock, backups taking 60 s."""
    with Simulator(tokens={SIM_TOKEN}, page_size=10, completion_delay=60, clock=clock) as sim:
        sim.add_server(12345, "web-server-01")
        sim.add_server(12346, "web-server-02")
        with httpx.Client(base_url=sim.base_url, headers={"Authorization": f"Bearer {SIM_TOKEN}"}, timeout=5.0) as http:
            yield sim, http


def _walk(http: httpx.Client, params: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], list[Any]]:
    response = http.get("/backups/", params=params)
    assert response.status_code == 200, response.text
    page = response.json()
    items: list[dict[str, Any]] = list(page["results"])
    nexts = [page["next"]]
    while page["next"]:
        response = http.get(page["next"])
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["results"])
        nexts.append(page["next"])
    return items, nexts


def _create(http: httpx.Client, server_id: Any = 12345, **extra: Any) -> httpx.Response:
    return http.post("/backups/", json={"server_id": server_id, **extra})


# --------------------------------------------------------------------------- shapes and listing


def test_doc_examples_round_trip(simulator: Simulator, client: httpx.Client) -> None:  # noqa: F811
    for example in DOC_EXAMPLES:
        simulator.add_backup(
            example["server"]["id"],
            backup_type=example["backup_type"],
            status=example["status"],
            created_at=_dt(example["created_at"]),
            description=example["description"],
            size_mb=example["size_mb"],
            expires_at=_dt(example["expires_at"]) if example["expires_at"] else None,
            id=example["id"],
        )
    response = client.get("/backups/", params={"server_id": 12345})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 3
    assert body["next"] is None
    assert body["previous"] is None
    by_id = {item["id"]: item for item in body["results"]}
    for example in DOC_EXAMPLES:
        got = by_id[example["id"]]
        assert list(got) == list(example)
        for key, value in example.items():
            assert got[key] == value, key


def test_add_backup_defaults(simulator: Simulator) -> None:  # noqa: F811
    created = datetime(2025, 1, 16, 3, 0, tzinfo=UTC)
    automatic = simulator.add_backup(12345, backup_type="automatic", created_at=created)
    manual = simulator.add_backup(12345, created_at=created + timedelta(microseconds=250))
    assert automatic["expires_at"] == "2025-02-15T03:00:00Z"
    assert manual["expires_at"] is None
    assert manual["created_at"] == "2025-01-16T03:00:00.000250Z"
    assert isinstance(automatic["size_mb"], int)
    assert manual["id"] == automatic["id"] + 1
    extra = simulator.add_backup(12346, status="deleting", extra={"region": "eu-1"})
    assert extra["status"] == "deleting"
    assert extra["region"] == "eu-1"
    assert extra["size_mb"] is None
    assert simulator.get_backup(extra["id"]) == extra
    assert simulator.get_backup(99999) is None
    assert [b["id"] for b in simulator.backups] == [automatic["id"], manual["id"], extra["id"]]
    with pytest.raises(KeyError):
        simulator.add_backup(99999)
    assert format_timestamp(datetime(2025, 1, 1)) == "2025-01-01T00:00:00Z"


def test_pagination_absolute_next_urls_every_item_once_unsorted(
    simulator: Simulator,  # noqa: F811
    client: httpx.Client,
) -> None:
    base = datetime(2025, 1, 1, 3, tzinfo=UTC)
    for day in range(25):
        simulator.add_backup(12345, backup_type="automatic", created_at=base + timedelta(days=day))
    first = client.get("/backups/", params={"server_id": 12345}).json()
    assert first["count"] == 25
    assert len(first["results"]) == 10
    assert first["previous"] is None
    assert first["next"] == f"{simulator.base_url}/backups/?page=2&server_id=12345"
    second = client.get(first["next"]).json()
    assert second["previous"] == f"{simulator.base_url}/backups/?server_id=12345"
    third = client.get(second["next"]).json()
    assert third["next"] is None
    assert third["previous"] == f"{simulator.base_url}/backups/?page=2&server_id=12345"
    assert len(third["results"]) == 5

    items, nexts = _walk(client, {"server_id": 12345})
    ids = [item["id"] for item in items]
    assert len(ids) == 25
    assert sorted(ids) == sorted(b["id"] for b in simulator.backups)
    assert len(set(nexts)) == len(nexts)
    created = [item["created_at"] for item in items]
    assert created != sorted(created)
    assert created != sorted(created, reverse=True)
    assert ids != sorted(ids)
    assert ids != sorted(ids, reverse=True)
    # Deterministic: the same walk gives the same order.
    assert [item["id"] for item in _walk(client, {"server_id": 12345})[0]] == ids

    assert client.get("/backups/", params={"page": 4}).json() == {"detail": "Invalid page."}
    assert client.get("/backups/", params={"page": 4}).status_code == 404
    assert client.get("/backups/", params={"page": 0}).status_code == 404
    assert client.get("/backups/", params={"page": "x"}).status_code == 404
    assert client.get("/backups/", params={"page": "last"}).json()["results"] == third["results"]


def test_listing_order_is_seeded(clock: FakeClock) -> None:
    orders = []
    for seed in (0, 0, 1):
        with Simulator(tokens={"t"}, seed=seed, clock=clock) as sim:
            sim.add_server(1, "a")
            for _ in range(10):
                sim.add_backup(1)
            body = httpx.get(sim.base_url + "/backups/", headers={"Authorization": "Bearer t"}).json()
            orders.append([item["id"] for item in body["results"]])
    assert orders[0] == orders[1]
    assert orders[0] != orders[2]


def test_empty_listing(client: httpx.Client) -> None:
    body = client.get("/backups/").json()
    assert body == {"count": 0, "next": None, "previous": None, "results": []}
    assert client.get("/backups/", params={"page": 2}).status_code == 404


def test_filters(simulator: Simulator, client: httpx.Client) -> None:  # noqa: F811
    for index in range(12):
        simulator.add_backup(12345, backup_type="automatic" if index % 2 else "manual")
    for _ in range(3):
        simulator.add_backup(12346, backup_type="automatic")
    assert client.get("/backups/").json()["count"] == 15
    assert client.get("/backups/", params={"server_id": 12346}).json()["count"] == 3
    assert client.get("/backups/", params={"server_id": 99999}).json()["count"] == 0
    assert client.get("/backups/", params={"server_id": ""}).json()["count"] == 15
    items, _ = _walk(client, {"server_id": 12345, "backup_type": "automatic"})
    assert len(items) == 6
    assert {(i["server"]["id"], i["backup_type"]) for i in items} == {(12345, "automatic")}
    first = client.get("/backups/", params={"backup_type": "automatic"}).json()
    assert first["count"] == 9
    assert first["next"] is None
    manual, nexts = _walk(client, {"backup_type": "manual"})
    assert len(manual) == 6
    assert nexts == [None]

    bad = client.get("/backups/", params={"server_id": "abc", "backup_type": "weekly"})
    assert bad.status_code == 400
    assert bad.json() == {
        "server_id": ["Enter a whole number."],
        "backup_type": ["Select a valid choice. weekly is not one of the available choices."],
    }


def test_next_url_keeps_filters(simulator: Simulator, client: httpx.Client) -> None:  # noqa: F811
    for _ in range(11):
        simulator.add_backup(12345, backup_type="automatic")
    simulator.add_backup(12346, backup_type="automatic")
    body = client.get("/backups/", params={"server_id": 12345, "backup_type": "automatic"}).json()
    assert body["next"] == f"{simulator.base_url}/backups/?backup_type=automatic&page=2&server_id=12345"
    assert httpx.URL(body["next"]).host == "127.0.0.1"


# --------------------------------------------------------------------------- create, complete, delete


def test_create_in_progress_then_completed_after_delay(timed: tuple[Simulator, httpx.Client], clock: FakeClock) -> None:
    sim, http = timed
    response = _create(http, description="Pre-deployment backup")
    assert response.status_code == 201
    body = response.json()
    assert list(body) == [
        "id",
        "server",
        "backup_type",
        "status",
        "size_mb",
        "created_at",
        "expires_at",
        "description",
        "message",
    ]
    assert body["server"] == {"id": 12345, "name": "web-server-01"}
    assert body["backup_type"] == "manual"
    assert body["status"] == "in_progress"
    assert body["size_mb"] is None
    assert body["created_at"] == "2025-01-16T15:45:00Z"
    assert body["expires_at"] is None
    assert body["description"] == "Pre-deployment backup"
    assert body["message"] == CREATE_MESSAGE

    clock.advance(59)
    assert sim.get_backup(body["id"])["status"] == "in_progress"  # type: ignore[index]
    assert _create(http).status_code == 409
    clock.advance(1)
    listed = http.get("/backups/", params={"server_id": 12345}).json()["results"]
    assert listed[0]["status"] == "completed"
    assert isinstance(listed[0]["size_mb"], int)
    assert listed[0]["size_mb"] > 0
    assert "message" not in listed[0]
    assert _create(http).status_code == 201


def test_zero_delay_completes_at_next_read(simulator: Simulator, client: httpx.Client) -> None:  # noqa: F811
    created = _create(client).json()
    assert created["status"] == "in_progress"
    assert client.get("/backups/").json()["results"][0]["status"] == "completed"


def test_failing_server_and_complete_all(timed: tuple[Simulator, httpx.Client], clock: FakeClock) -> None:
    sim, http = timed
    sim.fail_backups_for(12346, True)
    failing = _create(http, 12346).json()
    fine = _create(http, 12345).json()
    sim.complete_all()
    assert sim.get_backup(failing["id"])["status"] == "failed"  # type: ignore[index]
    assert sim.get_backup(failing["id"])["size_mb"] is None  # type: ignore[index]
    assert sim.get_backup(fine["id"])["status"] == "completed"  # type: ignore[index]
    sim.fail_backups_for(12346, False)
    sim.set_completion_delay(0)
    again = _create(http, 12346).json()
    assert sim.get_backup(again["id"])["status"] == "completed"  # type: ignore[index]
    # An added in_progress backup stays so until complete_all().
    stuck = sim.add_backup(12345, status="in_progress")
    clock.advance(3600)
    assert sim.get_backup(stuck["id"])["status"] == "in_progress"  # type: ignore[index]
    sim.complete_all()
    assert sim.get_backup(stuck["id"])["status"] == "completed"  # type: ignore[index]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({}, {"server_id": ["This field is required."]}),
        ({"server_id": "abc"}, {"server_id": ["A valid integer is required."]}),
        ({"server_id": True}, {"server_id": ["A valid integer is required."]}),
        ({"server_id": 1.5}, {"server_id": ["A valid integer is required."]}),
        ({"server_id": None}, {"server_id": ["This field may not be null."]}),
        ({"server_id": 12345, "description": ["x"]}, {"description": ["Not a valid string."]}),
        ([1, 2], {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
    ],
)
def test_create_validation_errors(simulator: Simulator, client: httpx.Client, payload: Any, expected: Any) -> None:  # noqa: F811
    response = client.post("/backups/", json=payload)
    assert response.status_code == 400
    assert response.json() == expected
    assert simulator.backups == []


def test_create_accepts_numeric_string(client: httpx.Client) -> None:
    response = _create(client, "12345")
    assert response.status_code == 201
    assert response.json()["server"]["id"] == 12345


def test_create_malformed_json_unknown_server_and_media_type(simulator: Simulator, client: httpx.Client) -> None:  # noqa: F811
    response = client.post("/backups/", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error - ")
    response = _create(client, 99999)
    assert response.status_code == 404
    assert response.json() == {"detail": "Server not found."}
    response = client.post("/backups/", content=b"server_id=12345", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert simulator.backups == []


def test_delete(timed: tuple[Simulator, httpx.Client]) -> None:
    sim, http = timed
    done = sim.add_backup(12345)
    response = http.delete(f"/backups/{done['id']}/")
    assert response.status_code == 204
    assert response.content == b""
    assert "content-length" not in response.headers
    assert sim.get_backup(done["id"]) is None
    missing = http.delete(f"/backups/{done['id']}/")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not found."}
    running = _create(http).json()
    conflict = http.delete(f"/backups/{running['id']}/")
    assert conflict.status_code == 409
    assert "detail" in conflict.json()
    assert sim.get_backup(running["id"]) is not None


# --------------------------------------------------------------------------- restore


def test_restore(simulator: Simulator, client: httpx.Client) -> None:  # noqa: F811
    backup = simulator.add_backup(12345)
    response = client.post("/servers/12345/restore/", json={"backup_id": backup["id"]})
    assert response.status_code == 202
    assert response.json() == {"detail": "Restore started.", "server_id": 12345, "backup_id": backup["id"]}
    server = simulator.servers[12345]
    assert server["restored_from"] == backup["id"]
    assert server["restore_count"] == 1
    assert simulator.servers[12346]["restore_count"] == 0
    assert client.post("/servers/12345/restore/", json={"backup_id": backup["id"]}).status_code == 202
    assert simulator.servers[12345]["restore_count"] == 2


def test_restore_errors(timed: tuple[Simulator, httpx.Client]) -> None:
    sim, http = timed
    mine = sim.add_backup(12345)
    other = sim.add_backup(12346)
    failed = sim.add_backup(12345, status="failed")

    def restore(server_id: int, payload: Any) -> httpx.Response:
        return http.post(f"/servers/{server_id}/restore/", json=payload)

    assert restore(99999, {"backup_id": mine["id"]}).status_code == 404
    missing = restore(12345, {"backup_id": 99999})
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Backup not found."}
    assert restore(12345, {}).json() == {"backup_id": ["This field is required."]}
    assert restore(12345, {"backup_id": "x"}).status_code == 400
    wrong_server = restore(12345, {"backup_id": other["id"]})
    assert wrong_server.status_code == 400
    assert list(wrong_server.json()) == ["backup_id"]
    not_completed = restore(12345, {"backup_id": failed["id"]})
    assert not_completed.status_code == 400
    assert list(not_completed.json()) == ["backup_id"]
    running = _create(http).json()
    busy = restore(12345, {"backup_id": mine["id"]})
    assert busy.status_code == 409
    assert "detail" in busy.json()
    assert restore(12345, {"backup_id": running["id"]}).status_code == 409
    assert sim.servers[12345]["restore_count"] == 0
    assert sim.servers[12345]["restored_from"] is None


def test_restore_duration_blocks_work(clock: FakeClock) -> None:
    with Simulator(tokens={"t"}, clock=clock, restore_duration=30) as sim:
        sim.add_server(1, "a")
        backup = sim.add_backup(1)
        with httpx.Client(base_url=sim.base_url, headers={"Authorization": "Bearer t"}) as http:
            assert http.post("/servers/1/restore/", json={"backup_id": backup["id"]}).status_code == 202
            assert http.post("/servers/1/restore/", json={"backup_id": backup["id"]}).status_code == 409
            assert http.post("/backups/", json={"server_id": 1}).status_code == 409
            clock.advance(30)
            assert http.post("/backups/", json={"server_id": 1}).status_code == 201


# --------------------------------------------------------------------------- auth and routing


def test_auth_and_token_rotation(simulator: Simulator) -> None:  # noqa: F811
    url = simulator.base_url + "/backups/"
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.json() == {"detail": "Authentication credentials were not provided."}
    wrong = httpx.get(url, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "Invalid token."}
    assert httpx.get(url, headers={"Authorization": f"Bearer {SIM_TOKEN}"}).status_code == 200
    simulator.set_tokens({"rotated"})
    assert httpx.get(url, headers={"Authorization": f"Bearer {SIM_TOKEN}"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer rotated"}).status_code == 200
    assert httpx.post(url, json={"server_id": 12345}, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert simulator.backups == []
    assert all("rotated" not in repr(entry) for entry in simulator.requests)


def test_unknown_paths_and_methods(client: httpx.Client) -> None:
    for path in ("/backups", "/nope/", "/backups/abc/", "/servers/12345/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "Not found."}
    outside = client.get(str(client.base_url).rsplit("/api/v1", 1)[0] + "/other/")
    assert outside.status_code == 404
    response = client.put("/backups/", json={})
    assert response.status_code == 405
    assert response.json() == {"detail": 'Method "PUT" not allowed.'}


def test_keep_alive_reuses_one_connection(simulator: Simulator, client: httpx.Client) -> None:  # noqa: F811
    for _ in range(5):
        assert client.get("/backups/").status_code == 200
        assert client.delete("/backups/1/").status_code == 404
    assert len(simulator._connections) == 1


# --------------------------------------------------------------------------- faults


def test_fault_429_with_retry_after_is_not_applied(simulator: Simulator, client: httpx.Client) -> None:  # noqa: F811
    simulator.inject(Fault("status", status=429, retry_after=7, method="POST"))
    response = _create(client)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert "detail" in response.json()
    assert simulator.backups == []
    assert _create(client).status_code == 201  # times=1 by default
    when = datetime(2030, 1, 1, 12, tzinfo=UTC)
    simulator.inject(Fault("status", status=429, retry_after=when))
    response = client.get("/backups/")
    assert parsedate_to_datetime(response.headers["Retry-After"]) == when
    simulator.inject(Fault("status", status=429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"))
    assert client.get("/backups/").headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_fault_5xx(simulator: Simulator, client: httpx.Client, status: int) -> None:  # noqa: F811
    simulator.inject(Fault("status", status=status, path_prefix="/backups/", times=2))
    assert _create(client).status_code == status
    assert client.get("/backups/").status_code == status
    assert client.get("/backups/").status_code == 200
    assert simulator.backups == []
    assert [r.status for r in simulator.requests] == [status, status, 200]
    assert [r.fault for r in simulator.requests] == ["status", "status", None]


def test_fault_filters(simulator: Simulator, client: httpx.Client) -> None:  # noqa: F811
    backup = simulator.add_backup(12345)
    simulator.inject(Fault("status", status=503, method="DELETE", times=None))
    simulator.inject(Fault("status", status=502, path_prefix="/servers/", times=None))
    assert client.get("/backups/").status_code == 200
    assert client.delete(f"/backups/{backup['id']}/").status_code == 503
    assert client.delete(f"/backups/{backup['id']}/").status_code == 503
    assert client.post("/servers/12345/restore/", json={"backup_id": backup["id"]}).status_code == 502
    simulator.clear_faults()
    assert client.delete(f"/backups/{backup['id']}/").status_code == 204


def test_fault_drop_before_applies_nothing(simulator: Simulator, client: httpx.Client) -> None:  # noqa: F811
    simulator.inject(Fault("drop_before", method="POST"))
    with pytest.raises(httpx.TransportError):
        _create(client)
    assert simulator.backups == []
    assert simulator.requests[-1].status is None
    assert simulator.requests[-1].fault == "drop_before"
    assert _create(client).status_code == 201


def test_fault_drop_after_applies_once(simulator: Simulator, client: httpx.Client) -> None:  # noqa: F811
    simulator.inject(Fault("drop_after", method="POST", path_prefix="/backups/"))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        _create(client, description="deploy 42")
    backups = simulator.backups
    assert len(backups) == 1
    assert backups[0]["description"] == "deploy 42"
    entry = simulator.requests[-1]
    assert entry == LoggedRequest(
        "POST", "/api/v1/backups/", {}, None, "drop_after", {"server_id": 12345, "description": "deploy 42"}
    )
    # The connection is gone but the client recovers on a fresh one.
    assert len(client.get("/backups/").json()["results"]) == 1


def test_fault_drop_after_delete(simulator: Simulator, client: httpx.Client) -> None:  # noqa: F811
    backup = simulator.add_backup(12345)
    simulator.inject(Fault("drop_after", method="DELETE"))
    with pytest.raises(httpx.TransportError):
        client.delete(f"/backups/{backup['id']}/")
    assert simulator.get_backup(backup["id"]) is None
    assert client.delete(f"/backups/{backup['id']}/").status_code == 404


def test_fault_latency(simulator: Simulator, client: httpx.Client) -> None:  # noqa: F811
    simulator.inject(Fault("latency", delay=0.15))
    started = time.monotonic()
    assert client.get("/backups/").status_code == 200
    assert time.monotonic() - started >= 0.15
    assert simulator.requests[-1].fault == "latency"
    simulator.inject(Fault("latency", delay=0.2))
    with pytest.raises(httpx.ReadTimeout):
        client.get("/backups/", timeout=0.05)
    started = time.monotonic()
    assert client.get("/backups/").status_code == 200
    assert time.monotonic() - started < 0.15


def test_fault_probability_is_reproducible() -> None:
    def run() -> list[int]:
        with Simulator(tokens={"t"}, seed=3) as sim:
            sim.inject(Fault("status", status=503, probability=0.5, times=None))
            with httpx.Client(base_url=sim.base_url, headers={"Authorization": "Bearer t"}) as http:
                return [http.get("/backups/").status_code for _ in range(20)]

    first = run()
    assert first == run()
    assert set(first) == {200, 503}


def test_inject_flaky(simulator: Simulator, client: httpx.Client) -> None:  # noqa: F811
    simulator.inject_flaky(rate=0.5, kinds=("429", "503", "drop_before"), seed=1)
    outcomes: list[str] = []
    for _ in range(40):
        try:
            outcomes.append(str(client.get("/backups/").status_code))
        except httpx.TransportError:
            outcomes.append("drop")
    assert set(outcomes) == {"200", "429", "503", "drop"}
    assert [r.fault for r in simulator.requests].count(None) == outcomes.count("200")
    rng = random.Random(1)
    expected = [rng.random() < 0.5 and rng.choice(("429", "503", "drop_before")) for _ in range(40)]
    assert [o != "200" for o in outcomes] == [bool(e) for e in expected]


# --------------------------------------------------------------------------- request log


def test_request_log(simulator: Simulator, client: httpx.Client) -> None:  # noqa: F811
    client.get("/backups/", params={"server_id": "12345", "page": "1"})
    client.post("/backups/", json={"server_id": 12346})
    client.get("/backups/", headers={"Authorization": "Bearer wrong"})
    log = simulator.requests
    assert [(r.method, r.path, r.status, r.fault) for r in log] == [
        ("GET", "/api/v1/backups/", 200, None),
        ("POST", "/api/v1/backups/", 201, None),
        ("GET", "/api/v1/backups/", 401, None),
    ]
    assert log[0].query == {"server_id": "12345", "page": "1"}
    assert log[0].body is None
    assert log[1].body == {"server_id": 12346}
    simulator.clear_requests()
    assert simulator.requests == []


def test_cli_parses_and_demo_fleet() -> None:
    from devtools.simulator import seed_demo_fleet

    with Simulator(tokens={"t"}) as sim:
        seed_demo_fleet(sim, now=T0)
        assert set(sim.servers) == {12345, 12346, 12347}
        backups = sim.backups
        automatic = [b for b in backups if b["backup_type"] == "automatic"]
        assert len(automatic) == 90
        assert all(b["status"] == "completed" for b in backups)
        assert any(b["backup_type"] == "manual" for b in backups)
        assert max(b["created_at"] for b in backups) <= format_timestamp(T0)


def test_concurrent_creates_one_wins(timed: tuple[Simulator, httpx.Client]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    sim, _ = timed

    def create(_: int) -> int:
        with httpx.Client(base_url=sim.base_url, headers={"Authorization": f"Bearer {SIM_TOKEN}"}) as http:
            return _create(http).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(create, range(16)))
    assert sorted(codes) == [201] + [409] * 15
    assert len(sim.backups) == 1
    assert len(sim.requests) == 16


def test_iter_backups_gives_what_backups_gives_one_at_a_time() -> None:
    from devtools.simulator import seed_demo_fleet

    sim = Simulator(tokens={"t"}, clock=lambda: T0)
    seed_demo_fleet(sim, now=T0)
    sim.add_backup(12345, created_at=T0, description="extra", extra={"labels": {"a": "b"}})
    gone = sim.backups[3]["id"]
    sim.remove_backup(gone)

    shown = sim.iter_backups()

    assert not isinstance(shown, list)
    listed = list(shown)
    assert listed == sim.backups and len(listed) > 90
    assert gone not in {b["id"] for b in listed}
    assert listed[-1]["labels"] == {"a": "b"} and listed[-1]["server"]["name"]
