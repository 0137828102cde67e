"""Which servers an incremental run lists (pure), prune's StateTable items (moto), the new setting
and the new request option."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import AwsEnv
from tests.unit.prune.test_incremental_against_sweeps import Holds, Made, MemoryStore, World, options, simulate
from vpsbackup.aws.state import StateTable
from vpsbackup.errors import ConfigurationError
from vpsbackup.provider.models import Backup, InvalidItem
from vpsbackup.prune import report_render
from vpsbackup.prune.compact import CompactListing
from vpsbackup.prune.incremental import ListedBackup, RunHistory, ServerState, select_servers, settle_server
from vpsbackup.prune.incremental_run import listed_from, run_incremental_prune
from vpsbackup.prune.job import ListingProgress
from vpsbackup.prune.request import InvalidPruneRequestError, PruneRequest, parse_prune_request
from vpsbackup.prune.retention import RetentionPolicy
from vpsbackup.prune.settings import PruneSettings
from vpsbackup.prune.state_store import PruneStateStore
from vpsbackup.records import Hold
from vpsbackup.settings import load_settings

NOW = datetime(2025, 6, 1, 3, 30, tzinfo=UTC)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)


def settled(server_id: int, listed: timedelta, backups: int = 30) -> ServerState:
    return ServerState(server_id=server_id, listed_at=NOW - listed, settled=True, policy="p", backups=backups)


def choose(states: dict[int, ServerState], **kwargs: object) -> object:
    arguments: dict[str, object] = {
        "now": NOW,
        "policy_for": lambda _: "p",
        "holds_for": lambda _: "",
        "verify_every": WEEK,
        "history": RunHistory(last_sweep_complete=True),
        "page_size": 100,
        **kwargs,
    }
    return select_servers(states, **arguments)  # type: ignore[arg-type]


def test_a_quiet_fleet_lists_its_share_of_one_interval_the_ones_listed_longest_ago() -> None:
    # 700 settled servers, listed 1 to 6 days ago: a seventh of them, the oldest, is re-verified
    states = {sid: settled(sid, DAY + timedelta(hours=sid % 120)) for sid in range(1, 701)}
    selection = choose(states)
    assert selection.mode == "per-server"  # type: ignore[attr-defined]
    assert selection.counts == {"verify": 100}  # type: ignore[attr-defined]
    oldest = sorted(states, key=lambda sid: (states[sid].listed_at, sid))[:100]
    assert list(selection.servers) == oldest  # type: ignore[attr-defined]


def test_a_server_that_would_be_older_than_verify_every_at_the_next_run_is_listed_now() -> None:
    states = {sid: settled(sid, timedelta(hours=1)) for sid in range(1, 8)}
    states[99] = settled(99, WEEK - timedelta(hours=1))
    selection = choose(states)
    assert states[99].server_id in selection.servers  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("state", "trigger"),
    [
        (ServerState(server_id=5), "never_listed"),
        (
            ServerState(server_id=5, listed_at=NOW - DAY, settled=True, policy="p", recorded_at=NOW - DAY),
            "backup_recorded",
        ),
        (ServerState(server_id=5, listed_at=NOW - DAY, settled=False, policy="p"), "unsettled"),
        (ServerState(server_id=5, listed_at=NOW - DAY, settled=True, policy="p", stable_until=NOW), "stable_until"),
        (ServerState(server_id=5, listed_at=NOW - DAY, settled=True, policy="p", holds="h"), "holds"),
        (ServerState(server_id=5, listed_at=NOW - DAY, settled=True, policy="old"), "policy"),
    ],
)
def test_each_trigger_lists_the_server(state: ServerState, trigger: str) -> None:
    quiet = {sid: settled(sid, timedelta(hours=1)) for sid in range(10, 80)}
    selection = choose({**quiet, 5: state})
    assert selection.triggers[5] == trigger  # type: ignore[attr-defined]
    assert selection.servers[0] == 5  # type: ignore[attr-defined]


def test_the_sweep_is_chosen_when_no_server_is_known_when_asked_and_when_it_is_cheaper() -> None:
    assert choose({}).mode == "fleet"  # type: ignore[attr-defined]
    few = {sid: settled(sid, timedelta(hours=1)) for sid in range(1, 100)}
    # servers recorded by the deploy job, but no sweep ever: the first one finds the older servers too
    assert choose(few, history=RunHistory()).mode == "fleet"  # type: ignore[attr-defined]
    assert choose(few, sweep=True).mode == "fleet"  # type: ignore[attr-defined]
    # 99 servers of 30 backups, every one's policy changed: 99 requests one by one, 30 for a sweep
    changed = choose(few, policy_for=lambda _: "new")
    assert (changed.mode, changed.sweep_requests, changed.per_server_requests) == ("fleet", 30, 99)  # type: ignore[attr-defined]
    # ... unless the last sweep did not finish: then one by one, as far as the time goes
    after_cut = choose(few, policy_for=lambda _: "new", history=RunHistory(last_sweep_complete=False))
    assert after_cut.mode == "per-server"  # type: ignore[attr-defined]


def test_a_settled_server_is_stable_until_its_first_time_relative_change() -> None:
    failed = ListedBackup.of(Made(1, 7, NOW - timedelta(hours=2), NOW - timedelta(hours=2), "failed").at(NOW))
    future = ListedBackup.of(Made(2, 7, NOW + timedelta(hours=30), NOW, "completed").at(NOW))
    done = ListedBackup.of(Made(3, 7, NOW - DAY, NOW - DAY, "completed").at(NOW))
    hold = Hold(backup_id=3, server_id=7, until=NOW + timedelta(hours=10))
    grace = timedelta(hours=24)
    got = settle_server([failed, future, done], holds=[hold], now=NOW, scope="managed", failed_grace=grace)
    assert got.settled and got.stable_until == NOW + timedelta(hours=10)
    got = settle_server([failed, future, done], now=NOW, scope="managed", failed_grace=grace)
    assert got.stable_until == NOW - timedelta(hours=2) + grace + timedelta(microseconds=1)
    running = ListedBackup.of(Made(4, 7, NOW, NOW + DAY, "completed").at(NOW))
    assert not settle_server([done, running], now=NOW, scope="managed", failed_grace=grace).settled
    assert not settle_server([done], pending=1, now=NOW, scope="managed", failed_grace=grace).settled


def test_a_run_short_of_time_plans_only_the_servers_it_listed_and_the_rest_wait() -> None:
    # Given a fleet prune has swept once (keep_last 5), and whose policy then changes (keep_last 1)
    _, world, _ = simulate([[] for _ in range(3)], 0, 0, 99)
    store = MemoryStore()
    request = PruneRequest(trigger="schedule")
    run_incremental_prune(
        request, options(RetentionPolicy(keep_last=5), 1), client=world, holds=Holds(), store=store, now=world.now
    )
    store.history = RunHistory(last_sweep_complete=False)  # so the servers are listed one by one
    before = len(world.filtered)
    # When the next run has time to list one server only (then 40 s: less than 20 s + time for a deletion)
    report = run_incremental_prune(
        request,
        replace(options(RetentionPolicy(keep_last=1), 1), max_deletions=1),
        client=world,
        holds=Holds(),
        store=store,
        now=world.now + DAY,
        time_left=lambda: 500.0 if len(world.filtered) == before else 40.0,
        seconds_per_request=30.0,  # room for 1 deletion (the valve's count), at 30 s a request at least
    )
    # Then it planned and pruned that one server, on its whole listing
    assert report.selection is not None
    assert (report.selection["servers_listed"], report.selection["servers_not_reached"]) == (1, 2)
    assert report.selection["cut_short"].endswith("s left: the rest wait for the next run")
    listed = world.filtered[before:]
    assert len(listed) == 1 and report.listing_complete
    assert report.plan.to_delete and {d.server_id for d in report.plan.to_delete} == set(listed)
    # ... and the two it did not reach still carry the old policy's fingerprint: the next run lists them
    states, _ = store.load()
    assert len({states[sid].policy for sid in states if sid not in listed}) == 1
    assert states[listed[0]].policy != states[next(sid for sid in states if sid not in listed)].policy


def test_prune_state_round_trips_and_a_later_deploy_record_survives_forgetting(aws: AwsEnv) -> None:
    table = StateTable.from_name(aws.table_name)
    store = PruneStateStore(table)
    table.note_backup_recorded(7, NOW - DAY)
    table.note_backup_recorded(7, NOW - 2 * DAY)  # older: ignored
    table.note_backup_recorded(8, NOW - DAY)
    state = ServerState(
        server_id=7, listed_at=NOW, settled=True, stable_until=NOW + DAY, policy="p", holds="h", backups=3, note="n"
    )
    history = RunHistory(last_scheduled_at=NOW, gaps_s=(86400.0,), last_sweep_complete=True)
    store.save([state], history=history)
    states, got_history = store.load()
    assert states[7] == ServerState(
        server_id=7,
        listed_at=NOW,
        settled=True,
        stable_until=NOW + DAY,
        policy="p",
        holds="h",
        backups=3,
        recorded_at=NOW - DAY,
        note="n",
    )
    assert states[8] == ServerState(server_id=8, recorded_at=NOW - DAY)
    assert got_history == history
    # Forgetting 7 (listed at NOW, recorded before) drops both items; 8, recorded after its listing, stays
    store.save([], forget=[(7, NOW), (8, NOW - 2 * DAY)])
    states, _ = store.load()
    assert 7 not in states
    assert states[8] == ServerState(server_id=8, recorded_at=NOW - DAY)


@pytest.mark.parametrize(
    ("value", "words"),
    [("-1d", "PRUNE_VERIFY_EVERY"), ("400d", "PRUNE_VERIFY_EVERY: .*at most 366d"), ("soon", "PRUNE_VERIFY_EVERY")],
)
def test_a_bad_verify_every_fails_naming_it(value: str, words: str) -> None:
    base = {"VPS_API_TOKEN_SECRET": "arn:aws:secretsmanager:eu-west-1:1:secret:t", "STATE_TABLE_NAME": "t"}
    with pytest.raises(ConfigurationError, match=words):
        load_settings(PruneSettings, {**base, "RETENTION_POLICY": '{"keep_last": 1}', "PRUNE_VERIFY_EVERY": value})
    ok = load_settings(PruneSettings, {**base, "RETENTION_POLICY": '{"keep_last": 1}', "PRUNE_VERIFY_EVERY": "0s"})
    assert ok.prune_verify_every == timedelta(0)


def test_sweep_is_a_fleet_wide_option() -> None:
    assert parse_prune_request({"sweep": True}).sweep
    with pytest.raises(InvalidPruneRequestError, match="sweep"):
        parse_prune_request({"sweep": True, "server_ids": [1]})
    with pytest.raises(InvalidPruneRequestError, match="sweep"):
        parse_prune_request({"sweep": "yes"})


@pytest.mark.parametrize("decisions_kept", [True, False])
def test_servers_whose_deletions_the_valve_deferred_stay_open_and_are_listed_next(
    decisions_kept: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vpsbackup.prune import job

    if not decisions_kept:  # a large run: the report keeps counts, the servers are planned again
        monkeypatch.setattr(job, "FULL_PLAN_LIMIT", 0)
    _, world, _ = simulate([[] for _ in range(2)], 0, 0, 99)
    store = MemoryStore()
    request = PruneRequest(trigger="schedule")
    tight = replace(options(RetentionPolicy(keep_last=1), 1), max_deletions=1)
    report = run_incremental_prune(request, tight, client=world, holds=Holds(), store=store, now=world.now)
    assert report.plan.valve_tripped and len(report.plan.to_delete) == 1
    states, _ = store.load()
    deleted_from = report.plan.to_delete[0].server_id
    assert all(not s.settled for s in states.values()), "each server still has deletions waiting"
    assert "planned deletion(s) not done" in states[deleted_from].note
    # The next run lists them all again (unsettled), and goes on deleting one per run
    again = run_incremental_prune(request, tight, client=world, holds=Holds(), store=store, now=world.now + DAY)
    assert again.selection is not None and again.selection["by_trigger"] == {"unsettled": 3}


@pytest.mark.parametrize(
    ("first", "left", "pages", "expected"),
    [
        (900.0, 800.0, 100, 50.0),  # the provider's own pace, 1 s a request, slower than the budget
        (900.0, 890.0, 100, 25.0),  # faster than the budget: the budget's 0.5 s a request
        (90.0, 80.0, 1, 30.0),  # never more than a third of the time there was
        (None, None, 0, 0.0),  # no deadline: nothing to keep
    ],
)
def test_the_time_kept_for_the_deletions_follows_the_listings_pace(
    first: float | None, left: float | None, pages: int, expected: float
) -> None:
    from vpsbackup.prune.incremental_run import _reserve

    assert _reserve(first, left, pages, 50, 0.5) == pytest.approx(expected)


@dataclass
class WorldWithInvalid(World):
    """The fake provider, whose listings also show items that do not validate (handed to on_invalid)."""

    invalid: list[InvalidItem] = field(default_factory=list)

    def iter_backups(self, *, server_id: int | None = None, on_invalid: Any = None, **rest: Any) -> Iterator[Backup]:
        for item in self.invalid:
            if server_id in (None, item.server_id):
                on_invalid(item)
        yield from super().iter_backups(server_id=server_id, on_invalid=on_invalid, **rest)


def world_of_three(invalid: list[InvalidItem]) -> WorldWithInvalid:
    """Servers 11, 12 and 13 with six completed managed backups each, a day apart, before NOW."""
    world = WorldWithInvalid(now=NOW, invalid=invalid)
    for server_id in (11, 12, 13):
        for n in range(6):
            created = NOW - (n + 1) * DAY
            world.made[100 * server_id + n] = Made(100 * server_id + n, server_id, created, created, "completed")
    return world


def test_a_sweep_with_an_invalid_item_leaves_its_server_alone_unwritten_and_prunes_the_others() -> None:
    # Given a fleet whose sweep shows one item of server 11 that does not validate, and one of no server
    bad = InvalidItem(backup_id=9, server_id=11, reason="created_at: Input should be a valid datetime")
    orphan = InvalidItem(backup_id=10, server_id=None, reason="server: Input should be an object")
    world = world_of_three([bad, orphan])
    store = MemoryStore()
    # When the first run (a sweep) keeps the last backup of each server
    report = run_incremental_prune(
        PruneRequest(trigger="schedule"),
        options(RetentionPolicy(keep_last=1), 1),
        client=world,
        holds=Holds(),
        store=store,
        now=NOW,
    )
    # Then servers 12 and 13 are pruned, server 11 is left alone: nothing deleted, no state written
    assert report.selection is not None and report.selection["mode"] == "fleet"
    assert {d.server_id for d in report.plan.to_delete} == {12, 13}
    assert not [b for b in world.deleted_on if b // 100 == 11]
    states, _ = store.load()
    assert 11 not in states and {12, 13} <= set(states)
    # And the report names the items and the server left alone
    invalid = report_render.result_record(report)["invalid_items"]
    assert (invalid["count"], invalid["servers_left_alone"]) == (2, [11])
    assert [i["backup_id"] for i in invalid["items"]] == [9, 10]
    subject, text = report_render.notification(report) or ("", "")
    assert "2 listed items not valid, 1 server left alone" in subject
    assert "backup 9 of server 11: created_at" in text


def test_a_per_server_listing_with_an_invalid_item_leaves_that_server_for_the_next_run() -> None:
    # Given a fleet prune swept once (keep_last 5), whose policy then changes (keep_last 1): every
    # server is listed again, one by one, and server 11's listing now shows an item that does not validate
    world = world_of_three([])
    store = MemoryStore()
    request = PruneRequest(trigger="schedule")
    run_incremental_prune(
        request, options(RetentionPolicy(keep_last=5), 1), client=world, holds=Holds(), store=store, now=NOW
    )
    store.history = RunHistory(last_sweep_complete=False)
    old = store.load()[0][11].policy
    world.invalid = [InvalidItem(backup_id=9, server_id=11, reason="created_at: Input should be a valid datetime")]
    # When the next run lists each server
    report = run_incremental_prune(
        request, options(RetentionPolicy(keep_last=1), 1), client=world, holds=Holds(), store=store, now=NOW + DAY
    )
    # Then 12 and 13 are pruned to one backup, and 11 is untouched and still due (its old policy)
    assert report.selection is not None and report.selection["mode"] == "per-server"
    assert {d.server_id for d in report.plan.to_delete} == {12, 13}
    assert sorted(b // 100 for b in world.made) == [11] * 5 + [12, 13]  # 11 keeps the last 5 of the first run
    assert 11 in report.selection["listing_failed"]
    assert store.load()[0][11].policy == old


def test_a_chunked_runs_listing_leaves_out_the_servers_that_failed_or_missed_an_invalid_item() -> None:
    # Given the servers due 1, 2, 3: 2's listing failed, 3's had an item that did not validate
    progress = ListingProgress()
    progress.invalid.servers.add(3)
    listing = CompactListing()

    listed = listed_from(listing, progress, [1, 2, 3], {2: "HTTP 400"})

    # Then only 1 is listed whole (planned, written back); 2 and 3 wait for the next run, each with why
    assert listed.mode == "per-server" and listed.servers == [1]
    assert listed.failed == {2: "HTTP 400", 3: "an item of its listing did not validate (invalid_items)"}
    # ... and a fleet sweep leaves alone the servers of its invalid items
    swept = listed_from(listing, progress, None, {})
    assert swept.mode == "fleet" and swept.left_alone == frozenset({3}) and swept.complete
