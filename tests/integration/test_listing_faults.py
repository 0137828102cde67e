"""A listing that cannot be read whole never drives a delete or a restore (over the simulator and moto).

The simulator breaks the listing the ways a provider behind a proxy does: a ``next`` link that
repeats a page, one that names another host (a proxy's internal name), one that says ``http://`` on
the same host (a TLS-terminating proxy), and an item that does not validate (``created_at`` null, a
deleted server's ``server`` null). Every caller that decides something irreversible either sees the
whole listing or decides nothing: the restore on alarm (``failed``, ``list_incomplete``, journaled,
notified), a person's restore, prune (a broken walk plans nothing; an invalid item leaves its own
server alone and the others are pruned), and the deploy's "was the backup created?" resolution.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import backup_on_deploy
import prune_backups
from devtools.simulator import Fault, Simulator
from devtools.simulator.pytest_plugin import SIM_TOKEN
from tests.conftest import AwsEnv, FakeLambdaContext, load_event
from tests.integration.test_restore_on_alarm import eventbridge, outcome_of, restore_posts
from vpsbackup.aws import runtime
from vpsbackup.aws.journal import Journal
from vpsbackup.aws.state import StateTable
from vpsbackup.deploy.job import DeploymentBackupFailedError
from vpsbackup.markers import describe_with_marker
from vpsbackup.provider.client import RetryPolicy, VpsClient
from vpsbackup.provider.errors import VpsApiError
from vpsbackup.provider.token import StaticTokenProvider

pytestmark = pytest.mark.integration

WEB, API = 12345, 12346
FAST = RetryPolicy(max_attempts=3, sleep=lambda _s: None, random=lambda: 0.0)
BROKEN_LINKS = ("repeat", "other_host")


def listing_requests(sim: Simulator) -> list[Any]:
    return [r for r in sim.requests if r.method == "GET" and r.path == "/api/v1/backups/"]


def thirteen_recent_backups(sim: Simulator, server: int = WEB, *, managed: bool = False) -> list[dict[str, Any]]:
    """13 completed backups, one every 20 minutes, the newest 40 minutes old: any of them is usable."""
    now = datetime.now(UTC)
    return [
        sim.add_backup(
            server,
            backup_type="manual" if managed else "automatic",
            created_at=now - timedelta(minutes=40 + 20 * n),
            description=describe_with_marker(f"Release {n}", f"gh-{n}") if managed else None,
        )
        for n in range(13)
    ]


# -- the client ------------------------------------------------------------------------------------


class TlsTerminated(httpx.BaseTransport):
    """Carries ``https://`` requests to the plain-HTTP simulator, as a TLS-terminating proxy in
    front of it would, and records every URL the client asked for (scheme included)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.urls: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        if request.url.scheme == "https":
            request.url = request.url.copy_with(scheme="http")
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("fault", BROKEN_LINKS)
def test_a_walk_whose_next_link_cannot_be_followed_is_an_incomplete_listing(simulator: Simulator, fault: Any) -> None:
    # Given 13 backups over pages of 2, and page 2's next link repeating page 1 or naming another host
    thirteen_recent_backups(simulator)
    simulator.set_next_link(fault, on_page=2)
    # When the server's backups are listed, Then the listing is incomplete: an error, not 4 of 13
    with (
        VpsClient(simulator.base_url, StaticTokenProvider(SIM_TOKEN), retry=FAST, page_size=2) as client,
        pytest.raises(VpsApiError, match="listing incomplete"),
    ):
        client.list_backups(server_id=WEB)
    # And no request went anywhere but the provider's own pages
    assert all(r.path == "/api/v1/backups/" for r in simulator.requests)


def test_an_http_next_link_on_the_same_host_ends_the_listing_and_sends_no_token() -> None:
    # Given a provider behind TLS whose page 2 links to page 3 over plain http:// on the same host
    sim = Simulator(tokens={SIM_TOKEN}, page_size=2, scheme="https")
    sim.add_server(WEB, "web-server-01")
    with sim:
        thirteen_recent_backups(sim)
        sim.set_next_link("http", on_page=2)
        transport = TlsTerminated()
        base = "https" + sim.base_url[len("http") :]
        # When the backups are listed
        with (
            VpsClient(base, StaticTokenProvider(SIM_TOKEN), retry=FAST, transport=transport) as client,
            pytest.raises(VpsApiError, match="listing incomplete"),
        ):
            client.list_backups(server_id=WEB)
        # Then pages 1 and 2 were read over https, and nothing (no token) went to the http:// link
        assert len(transport.urls) == 2
        assert all(url.startswith("https://") for url in transport.urls)
        assert len(listing_requests(sim)) == 2


def test_an_invalid_item_makes_a_strict_listing_incomplete_naming_the_item(simulator: Simulator) -> None:
    # Given one backup whose created_at is null among good ones
    thirteen_recent_backups(simulator)
    bad = simulator.add_backup(WEB, extra={"created_at": None})
    # When the server's backups are listed, Then the listing fails naming the item and the reason
    with (
        VpsClient(simulator.base_url, StaticTokenProvider(SIM_TOKEN), retry=FAST) as client,
        pytest.raises(VpsApiError, match=f"backup {bad['id']}.*created_at"),
    ):
        client.list_backups(server_id=WEB)


# -- restore on alarm -------------------------------------------------------------------------------


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPS_API_PAGE_SIZE", "2")


def journaled(aws: AwsEnv, server_id: int) -> list[Any]:
    return Journal(StateTable.from_name(aws.table_name), source="tests").for_server(server_id)


@pytest.mark.parametrize("fault", BROKEN_LINKS)
def test_an_alarm_on_a_listing_cut_short_restores_nothing_and_says_so(
    restore_env: AwsEnv, simulator: Simulator, small_pages: None, fault: Any
) -> None:
    # Given 13 usable backups over 7 pages, and page 2's next link broken
    thirteen_recent_backups(simulator)
    simulator.set_next_link(fault, on_page=2)
    # When the server's alarm enters ALARM
    outcome = outcome_of(eventbridge())
    # Then nothing is restored from part of the listing: failed, list_incomplete
    assert restore_posts(simulator) == []
    assert (outcome["outcome"], outcome["cause"], outcome["backup_id"]) == ("failed", "list_incomplete", None)
    # And people are told, and the refusal is journaled
    [note] = restore_env.notifications()
    assert "NOT restored" in note["Message"] and "incomplete" in note["Message"]
    assert [(e.act, e.outcome) for e in journaled(restore_env, WEB)] == [("restore_refused", "list_incomplete")]


@pytest.mark.parametrize("bad", [{"created_at": None}, {"created_at": "yesterday"}, {"server": None}])
def test_an_alarm_whose_listing_has_an_invalid_item_of_the_server_restores_nothing(
    restore_env: AwsEnv, simulator: Simulator, bad: dict[str, Any]
) -> None:
    # Given usable backups and one item of the server's listing that does not validate
    thirteen_recent_backups(simulator)
    simulator.add_backup(WEB, extra=bad)
    # When the server's alarm enters ALARM
    outcome = outcome_of(eventbridge())
    # Then no restore from a listing that misses one of the server's items: failed, list_incomplete
    assert restore_posts(simulator) == []
    assert (outcome["outcome"], outcome["cause"]) == ("failed", "list_incomplete")
    assert len(restore_env.notifications()) == 1
    assert [e.outcome for e in journaled(restore_env, WEB)] == ["list_incomplete"]


# -- prune -----------------------------------------------------------------------------------------


@pytest.fixture
def prune_env(monkeypatch: pytest.MonkeyPatch, shared_env: AwsEnv, simulator: Simulator) -> Iterator[AwsEnv]:
    """Prune keeping the last 2 of each server's managed backups, the valve open, a fast client."""
    monkeypatch.setenv("RETENTION_POLICY", json.dumps({"keep_last": 2}))
    monkeypatch.setenv("MAX_DELETIONS_PER_RUN", "1000")
    monkeypatch.setenv("MAX_DELETIONS_PER_DAY", "10000")
    prune_backups.settings.cache_clear()
    runtime.api_client(simulator.base_url, shared_env.secret_id).retry = FAST
    yield shared_env
    prune_backups.settings.cache_clear()


def deletes(sim: Simulator) -> list[Any]:
    return [r for r in sim.requests if r.method == "DELETE"]


@pytest.mark.parametrize("event", ["prune-scheduler.json", None], ids=["scheduled", "manual-for-web"])
@pytest.mark.parametrize("fault", BROKEN_LINKS)
def test_prune_on_a_walk_cut_short_deletes_nothing_and_tells_people(
    prune_env: AwsEnv, simulator: Simulator, small_pages: None, fault: Any, event: str | None
) -> None:
    # Given 13 managed backups of which the policy keeps 2, and page 2's next link broken
    thirteen_recent_backups(simulator, managed=True)
    simulator.set_next_link(fault, on_page=2)
    # When prune runs (the schedule's fleet sweep, or a run for that server)
    trigger = load_event(event) if event else {"server_ids": [WEB]}
    report = prune_backups.handler(trigger, FakeLambdaContext())
    # Then nothing is planned or deleted on part of the listing, and people are told it is incomplete
    assert deletes(simulator) == []
    assert report["listing_complete"] is False
    assert report["totals"]["to_delete"] == 0
    [note] = prune_env.notifications()
    assert "incomplete" in note["Message"]


def test_an_invalid_item_leaves_its_server_alone_and_the_others_are_pruned(
    prune_env: AwsEnv, simulator: Simulator
) -> None:
    # Given two servers with 13 managed backups each, and one item of WEB that does not validate,
    # and one of a deleted server (server null)
    web = thirteen_recent_backups(simulator, WEB, managed=True)
    api = thirteen_recent_backups(simulator, API, managed=True)
    bad = simulator.add_backup(WEB, extra={"created_at": None})
    orphan = simulator.add_backup(API, description=describe_with_marker("gone", "gh-x"), extra={"server": None})
    # When the scheduled prune runs
    report = prune_backups.handler(load_event("prune-scheduler.json"), FakeLambdaContext())
    # Then API is pruned to its last 2, WEB (missing an item) is left alone, the invalid items stay
    deleted = {int(r.path.rstrip("/").rsplit("/", 1)[1]) for r in deletes(simulator)}
    newest_first = sorted(api, key=lambda b: b["created_at"], reverse=True)
    assert deleted == {b["id"] for b in newest_first[2:]}
    assert not deleted & ({b["id"] for b in web} | {bad["id"], orphan["id"]})
    # And the report says which items were skipped, why, and which server was left alone
    skipped = report["invalid_items"]
    assert skipped["count"] == 2
    assert {i["backup_id"] for i in skipped["items"]} == {bad["id"], orphan["id"]}
    assert any("created_at" in i["reason"] for i in skipped["items"])
    assert skipped["servers_left_alone"] == [WEB]
    # And people are told
    [note] = prune_env.notifications()
    assert str(bad["id"]) in note["Message"] and str(WEB) in note["Message"]


@pytest.mark.parametrize(
    ("server", "left_alone"),
    [
        pytest.param(WEB, [WEB], id="a bare id"),
        pytest.param(str(WEB), [WEB], id="a bare id as text"),
        pytest.param({"id": "web"}, None, id="no readable id"),
        pytest.param("?", None, id="not an object"),
    ],
)
def test_an_invalid_item_whose_server_is_not_null_never_lets_its_server_be_planned(
    prune_env: AwsEnv, simulator: Simulator, server: Any, left_alone: list[int] | None
) -> None:
    # Given two servers with 13 managed backups each, and one item whose server field does not
    # validate but is not null (so it is some live server's backup)
    web = thirteen_recent_backups(simulator, WEB, managed=True)
    thirteen_recent_backups(simulator, API, managed=True)
    simulator.add_backup(WEB, extra={"server": server})
    # When the scheduled fleet sweep runs
    report = prune_backups.handler(load_event("prune-scheduler.json"), FakeLambdaContext())
    deleted = {int(r.path.rstrip("/").rsplit("/", 1)[1]) for r in deletes(simulator)}
    # Then WEB's backups are never deleted on a listing that misses one of them: WEB is left alone
    # when the item's server can be read, and nothing is planned at all when it cannot
    assert not deleted & {b["id"] for b in web}
    if left_alone is None:
        assert deleted == set()
        assert report["listing_complete"] is False
    else:
        assert report["invalid_items"]["servers_left_alone"] == left_alone


# -- backup on deploy ------------------------------------------------------------------------------


@pytest.fixture
def deploy_env(shared_env: AwsEnv, fast_api_client: Callable[[Any], None]) -> Iterator[AwsEnv]:
    fast_api_client(FAST)
    backup_on_deploy.settings.cache_clear()
    yield shared_env
    backup_on_deploy.settings.cache_clear()


@pytest.mark.parametrize("fault", BROKEN_LINKS)
def test_a_lost_create_answer_is_never_resolved_as_not_created_from_a_cut_short_listing(
    deploy_env: AwsEnv, simulator: Simulator, small_pages: None, fault: Any
) -> None:
    # Given 13 earlier backups of WEB over pages of 2, page 2's next link broken, and a create the
    # provider applies but whose answer is lost
    thirteen_recent_backups(simulator, managed=True)
    simulator.set_next_link(fault, on_page=2)
    simulator.inject(Fault("drop_after", method="POST", path_prefix="/backups/"))
    event = load_event("deploy-eventbridge.json")
    event["detail"] = {"deployment_id": "gh-77-1", "server_ids": [WEB], "actor": "alice", "commit": "abc"}
    # When the deploy runs, then runs again (EventBridge's retry of a failed invocation)
    for _ in range(2):
        with pytest.raises(DeploymentBackupFailedError, match="listing incomplete"):
            backup_on_deploy.handler(event, FakeLambdaContext())
    # Then exactly one backup was created: the incomplete listing never said "not created"
    posts = [r for r in simulator.requests if r.method == "POST"]
    assert len(posts) == 1
