"""A prune run in chunks (the state machine's invocations), driven here one chunk at a time: the
real handler over the simulator and moto, chunks small enough that every phase takes several.
The state machine itself runs the same chunks in tests/integration/test_prune_state_machine.py."""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import prune_backups
from devtools.simulator import Fault, Simulator
from tests.conftest import AwsEnv, FakeLambdaContext
from tests.integration.test_prune_backups import expected_plan, prune_env, remaining_ids, seed_fleet
from vpsbackup.aws.journal import Journal
from vpsbackup.markers import describe_with_marker
from vpsbackup.provider.client import VpsClient
from vpsbackup.provider.errors import ApiTimeoutError
from vpsbackup.prune import chunks
from vpsbackup.prune.cursor import plan_from_dict
from vpsbackup.prune.job import PruneReport
from vpsbackup.prune.run_store import PruneRunStore
from vpsbackup.records import Hold

pytestmark = pytest.mark.integration
__all__ = ["prune_env"]

EXECUTION = "arn:aws:states:eu-west-1:123456789012:execution:prune:run-1"


class Killed(BaseException):
    """The invocation died here (timeout, out of memory, a crash): nothing in the code catches it."""


@pytest.fixture
def chunk_env(prune_env: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsEnv]:
    monkeypatch.setenv("PRUNE_CHUNK_PAGES", "4")
    monkeypatch.setenv("PRUNE_CHUNK_DELETIONS", "40")
    monkeypatch.setenv("MAX_DELETIONS_PER_DAY", "10000")
    prune_backups.settings.cache_clear()
    yield prune_env
    prune_backups.settings.cache_clear()


def small_fleet(sim: Simulator, days: int = 30) -> None:
    """2 servers × ``days`` daily backups of this project's: a few pages, some 30 deletions."""
    today = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0) - timedelta(days=1)
    for server in (501, 502):
        sim.add_server(server, f"web-{server}")
        for day in range(days):
            description = describe_with_marker(f"Release {day}", f"gh-{server}-{day}")
            sim.add_backup(server, "manual", "completed", today - timedelta(days=day), description)


def start_event(request: dict[str, Any], execution: str = EXECUTION) -> dict[str, Any]:
    return {"prune_chunk": {"step": "start", "request": request, "execution": execution}}


def drive(
    request: dict[str, Any], context: FakeLambdaContext, execution: str = EXECUTION, attempts: int = 3
) -> list[dict[str, Any]]:
    """The state machine's loop, by hand: every chunk until done; a chunk that dies is retried with
    the same input (as the definition's Retry does). The cursors, in order."""
    event = start_event(request, execution)
    cursors: list[dict[str, Any]] = []
    while True:
        for attempt in range(attempts):
            try:
                cursor: dict[str, Any] = prune_backups.handler(event, context)
                break
            except Killed:
                if attempt == attempts - 1:
                    raise
        cursors.append(cursor)
        if cursor["done"]:
            return cursors
        event = {"prune_chunk": {"step": "next", "cursor": cursor, "execution": execution}}


def delete_counts(sim: Simulator) -> Counter[str]:
    return Counter(r.path for r in sim.requests if r.method == "DELETE" and r.status is not None and r.status < 300)


def in_parts(monkeypatch: pytest.MonkeyPatch, backups: int | None) -> None:
    """Plan (and write back) a listing of more than ``backups`` backups a part of its servers at a
    time (None: the default, well above these fleets)."""
    if backups is not None:
        monkeypatch.setattr(chunks, "PLAN_PART_BACKUPS", backups)


@pytest.mark.parametrize("part_backups", [None, 100, 40], ids=["whole", "in parts", "in more parts than servers"])
def test_a_sweep_in_chunks_deletes_exactly_what_a_single_pass_plans(
    chunk_env: AwsEnv,
    simulator: Simulator,
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
    part_backups: int | None,
) -> None:
    # Given a fleet listed in 30-odd pages of 10, 4 pages and 40 deletions a chunk (planned whole,
    # or a part of the servers at a time), and one of its backups listed under two servers
    seed_fleet(simulator, datetime.now(UTC))
    twin = dict(simulator.backups[5])
    twin["server"] = dict(simulator.backups[-1]["server"])
    simulator.backups.append(twin)
    in_parts(monkeypatch, part_backups)
    before = remaining_ids(simulator)
    expected = {d.backup_id for d in expected_plan(simulator).to_delete}

    # When a sweep runs in chunks
    cursors = drive({"sweep": True}, lambda_context)

    # Then it took several listing and deletion chunks, each cursor small
    phases = Counter(c["phase"] for c in cursors)
    assert phases["list"] >= 7 and phases["delete"] >= 5, phases
    if part_backups is None:
        assert all(c["parts"] == 0 for c in cursors)
    else:  # ... planned in parts, each a chunk
        parts = cursors[-1]["parts"]
        assert parts >= 3 and Counter(c["part"] for c in cursors if c["phase"] == "plan")[parts - 1] == 1
    assert twin["id"] not in expected
    assert all(len(str(c)) < 1000 for c in cursors)
    # ... and deleted exactly the single pass's plan, each backup once
    assert before - remaining_ids(simulator) == expected
    assert len(expected) > 200
    assert max(delete_counts(simulator).values()) == 1
    # ... with one report, and the lock free for the next run
    assert cursors[-1]["done"] and "deleted" in cursors[-1]["note"]
    assert PruneRunStore(prune_backups.runtime.state_table(chunk_env.table_name)).lock_holder() is None


def test_a_deletion_a_hold_stopped_in_a_later_chunk_is_journaled_as_refused(
    chunk_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext
) -> None:
    # Given a run in chunks, and a restore that holds the oldest planned deletion once the plan is
    # stored, before the chunk that deletes it
    small_fleet(simulator)
    state = prune_backups.runtime.state_table(chunk_env.table_name)
    event = start_event({"sweep": True})
    held = None
    while True:
        cursor: dict[str, Any] = prune_backups.handler(event, lambda_context)
        if held is None and cursor["phase"] == "delete":
            stored = PruneRunStore(state).plan(cursor["run"])
            assert stored is not None
            held = plan_from_dict(stored).to_delete[0]
            until = datetime.now(UTC) + timedelta(days=7)
            assert state.put_hold(Hold(backup_id=held.backup_id, server_id=held.server_id, until=until, reason="x"))
        if cursor["done"]:
            break
        event = {"prune_chunk": {"step": "next", "cursor": cursor, "execution": EXECUTION}}
    # Then it is not deleted, and the run's journal keeps it as a deletion the hold refused
    assert held is not None and held.backup_id in remaining_ids(simulator)
    acts = [(e.act, e.outcome) for e in Journal(state, source="tests").for_backup(held.backup_id)]
    assert acts == [("deletion_refused", "not_started")]


def test_a_run_limited_to_servers_lists_only_them_in_chunks(
    chunk_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext
) -> None:
    seed_fleet(simulator, datetime.now(UTC))
    expected = {d.backup_id for d in expected_plan(simulator).to_delete if d.server_id == 12346}
    before = remaining_ids(simulator)

    drive({"server_ids": [12346]}, lambda_context)

    assert before - remaining_ids(simulator) == expected
    listings = [r for r in simulator.requests if r.method == "GET" and r.path.endswith("/backups/")]
    assert all(r.query.get("server_id") in (None, "12346") for r in listings)


def test_a_dry_run_in_chunks_deletes_nothing(
    chunk_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext
) -> None:
    small_fleet(simulator)
    before = remaining_ids(simulator)

    cursors = drive({"sweep": True, "dry_run": True}, lambda_context)

    assert remaining_ids(simulator) == before
    assert "dry_run" in cursors[-1]["note"]


def test_one_run_at_a_time_a_second_start_does_nothing_and_says_so(
    chunk_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext
) -> None:
    small_fleet(simulator)
    first = prune_backups.handler(start_event({"sweep": True}), lambda_context)
    assert not first["done"]

    # While the first run holds the lock, a second start (another execution) does nothing
    second = drive({"sweep": True}, lambda_context, execution=EXECUTION + "-2")
    assert len(second) == 1 and second[0]["done"]
    assert "in progress" in second[0]["note"] and first["run"] in second[0]["note"]
    assert not [r for r in simulator.requests if r.method == "DELETE"]

    # ... the first goes on to its end, and then a new run may start
    drive({"sweep": True}, lambda_context)
    third = drive({"sweep": True}, lambda_context, execution=EXECUTION + "-3")
    assert "in progress" not in third[-1]["note"]


KILLS = Counter[str]()


def _nth(n: int, then: Callable[..., Any] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A method that dies at its n-th call (``then``: after calling the real one); KILLS counts the deaths."""
    calls = Counter[str]()
    lock = threading.Lock()  # the deletions run on a thread pool: each call gets its own number

    def wrap(real: Callable[..., Any]) -> Callable[..., Any]:
        def method(*args: Any, **kwargs: Any) -> Any:
            with lock:
                calls["n"] += 1
                mine = calls["n"]
            if mine == n and then is None:
                KILLS["killed"] += 1
                raise Killed
            result = real(*args, **kwargs)
            if mine == n:
                KILLS["killed"] += 1
                raise Killed
            return result

        return method

    return wrap


# Where a chunk dies: (class, method, at which call, before or after the real call).
KILL_POINTS = {
    "start: before the request is stored": (PruneRunStore, "put_meta", 1, "before"),
    "listing: before a page is stored": (PruneRunStore, "put_page", 2, "before"),
    "listing: after a page is stored": (PruneRunStore, "put_page", 3, "after"),
    "planning: before the plan is stored": (PruneRunStore, "put_plan", 1, "before"),
    "planning: after the plan is stored": (PruneRunStore, "put_plan", 1, "after"),
    "deleting: before a deletion is marked": (PruneRunStore, "deletion_started", 5, "before"),
    "deleting: after a DELETE was made": (VpsClient, "delete_backup", 10, "after"),
    "deleting: before the outcomes are stored": (PruneRunStore, "put_outcomes", 2, "before"),
    "deleting: after the outcomes are stored": (PruneRunStore, "put_outcomes", 1, "after"),
    "reporting: before the lock is freed": (PruneRunStore, "release_lock", 1, "before"),
}


def kill_at(
    monkeypatch: pytest.MonkeyPatch, point: str, points: dict[str, tuple[Any, str, int, str]] | None = None
) -> None:
    owner, name, n, when = (points or KILL_POINTS)[point]
    real = getattr(owner, name)
    monkeypatch.setattr(owner, name, _nth(n, then=real if when == "after" else None)(real))


# Where a chunk of a listing planned in parts dies.
PART_KILL_POINTS = {
    "planning a part: before it is stored": (PruneRunStore, "put_part", 2, "before"),
    "planning a part: after it is stored": (PruneRunStore, "put_part", 3, "after"),
    "planning the last part: before the plan is stored": (PruneRunStore, "put_plan", 1, "before"),
}


@pytest.mark.parametrize(
    ("point", "part_backups"),
    [(point, None) for point in KILL_POINTS] + [(point, 20) for point in PART_KILL_POINTS],
)
def test_a_chunk_killed_anywhere_is_retried_no_deletion_twice_none_lost(
    chunk_env: AwsEnv,
    simulator: Simulator,
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
    point: str,
    part_backups: int | None,
) -> None:
    # Given a fleet and its single-pass plan (listed in 2-page chunks, 8 deletions a chunk;
    # planned whole, or a part of its servers at a time)
    small_fleet(simulator)
    in_parts(monkeypatch, part_backups)
    monkeypatch.setenv("PRUNE_CHUNK_PAGES", "2")
    monkeypatch.setenv("PRUNE_CHUNK_DELETIONS", "8")
    prune_backups.settings.cache_clear()
    before = remaining_ids(simulator)
    expected = {d.backup_id for d in expected_plan(simulator).to_delete}
    # ... and a chunk that dies at this point once
    kill_at(monkeypatch, point, {**KILL_POINTS, **PART_KILL_POINTS})
    killed = KILLS["killed"]

    # When the run is driven, the dead chunk retried
    cursors = drive({"sweep": True}, lambda_context)
    assert KILLS["killed"] == killed + 1  # it did die there

    # Then exactly the plan's backups are gone, none deleted twice, none left
    assert len(expected) > 16
    assert before - remaining_ids(simulator) == expected
    assert max(delete_counts(simulator).values()) == 1
    # ... the report counts every deletion as made (a re-sent one found gone: the first attempt's)
    note = cursors[-1]["note"]
    assert f"deleted {len(expected)}" in note, note
    assert "failed" not in note and "not_started" not in note


def test_a_run_in_chunks_the_daily_budget_stops_says_so_and_when_it_frees(
    chunk_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a budget of 50 deletions a day, a plan of more, and 40 deletions a chunk
    monkeypatch.setenv("MAX_DELETIONS_PER_DAY", "50")
    prune_backups.settings.cache_clear()
    seed_fleet(simulator, datetime.now(UTC))
    wanted = expected_plan(simulator).to_delete
    assert len(wanted) > 80
    before = remaining_ids(simulator)

    # When a sweep runs in chunks
    cursors = drive({"sweep": True}, lambda_context)

    # Then the 50 oldest are deleted, across chunks, and no more
    assert before - remaining_ids(simulator) == {d.backup_id for d in wanted[:50]}
    assert sum(delete_counts(simulator).values()) == 50
    assert "not_started" in cursors[-1]["note"]
    # ... and people hear that the daily budget held the rest back, and when it frees
    (note,) = chunk_env.notifications()
    held = len(wanted) - 50
    assert note["Subject"] == f"VPS backup prune: daily deletion budget held back {held} deletions"
    assert note["MessageAttributes"]["outcome"]["Value"] == "daily_budget"
    assert note["MessageAttributes"]["severity"]["Value"] == "warning"
    assert "MAX_DELETIONS_PER_DAY" in note["Message"] and "frees at" in note["Message"]


def test_a_report_chunk_killed_after_publishing_is_retried_and_people_hear_once(
    chunk_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a run that needs people (the daily budget holds deletions back), and a report chunk that
    # dies after publishing, before it frees the lock, once
    monkeypatch.setenv("MAX_DELETIONS_PER_DAY", "50")
    prune_backups.settings.cache_clear()
    seed_fleet(simulator, datetime.now(UTC))
    before = remaining_ids(simulator)
    kill_at(monkeypatch, "reporting: before the lock is freed")
    killed = KILLS["killed"]
    # When the run is driven, the dead chunk retried
    cursors = drive({"sweep": True}, lambda_context)
    assert KILLS["killed"] == killed + 1 and cursors[-1]["done"]
    # Then the run ended in one notification, not one per attempt of its report chunk
    (note,) = chunk_env.notifications()
    assert note["MessageAttributes"]["outcome"]["Value"] == "daily_budget"
    # ... and its journal has each deletion once (the retry wrote the same entries again)
    journal = Journal(prune_backups.runtime.state_table(chunk_env.table_name), source="tests")
    deleted = sorted(before - remaining_ids(simulator))
    assert len(deleted) == 50
    assert all([e.act for e in journal.for_backup(backup_id)] == ["backup_deleted"] for backup_id in deleted)


def test_a_report_published_but_not_recorded_as_such_ends_the_run_all_the_same_told_once(
    chunk_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a run that needs people, and StateTable refusing the write that records the report as
    # published
    monkeypatch.setenv("MAX_DELETIONS_PER_DAY", "50")
    prune_backups.settings.cache_clear()
    seed_fleet(simulator, datetime.now(UTC))

    def refused(self: PruneRunStore, run: str, now: datetime) -> None:
        raise RuntimeError("ProvisionedThroughputExceededException")

    monkeypatch.setattr(PruneRunStore, "put_reported", refused)
    # When the run is driven, Then its report chunk does not fail (a retry would publish again):
    # the run ends, the lock freed, people told once
    cursors = drive({"sweep": True}, lambda_context, attempts=1)
    assert cursors[-1]["done"]
    assert len(chunk_env.notifications()) == 1


def test_the_plan_and_the_report_read_the_stored_listing_a_page_at_a_time(
    chunk_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a sweep whose listing is stored in 30-odd pages, and the store's pages watched: when a
    # page is handed out, is the one handed out two before it still held by the reader?
    seed_fleet(simulator, datetime.now(UTC))
    expected = {d.backup_id for d in expected_plan(simulator).to_delete}
    before = remaining_ids(simulator)
    read = PruneRunStore.pages
    held: list[int] = []

    def watched(self: PruneRunStore, run: str, keep: Any = None) -> Iterator[Any]:
        handed: list[weakref.ref[Any]] = []
        for n, stored in enumerate(read(self, run, keep)):
            if n >= 2 and handed[n - 2]() is not None:
                held.append(n - 2)
            handed.append(weakref.ref(stored.page))
            yield stored

    monkeypatch.setattr(PruneRunStore, "pages", watched)

    # When the sweep runs in chunks
    cursors = drive({"sweep": True}, lambda_context)

    # Then the plan and the report each read the pages one at a time, holding none of those read
    # before (the listing of a fleet of millions of backups is never in memory as pages, only as
    # the plan's compact rows), and the run deleted what a single pass plans
    assert sum(1 for c in cursors if c["phase"] in ("delete", "report")) >= 2
    assert held == []
    assert before - remaining_ids(simulator) == expected


def test_a_stored_plan_rewritten_shorter_or_cut_short_never_reads_back_as_a_mix_of_two_writes(
    chunk_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given parts of 64 bytes, and a plan stored in several parts (a chunk's first attempt)
    import os

    from vpsbackup.prune import run_store

    monkeypatch.setattr(run_store, "_PART", 64)
    store = PruneRunStore(prune_backups.runtime.state_table(chunk_env.table_name))
    now = datetime.now(UTC)
    first = {"noise": os.urandom(300).hex()}
    store.put_plan("r", first, now)
    assert len(list(store._query("r", "plan#"))) > 4

    # When another attempt's write of another plan dies half-way through its parts
    real_put = store._put
    calls = Counter[str]()

    def dies_half_way(run: str, sk: str, when: datetime, **attributes: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise Killed
        real_put(run, sk, when, **attributes)

    monkeypatch.setattr(store, "_put", dies_half_way)
    with pytest.raises(Killed):
        store.put_plan("r", {"noise": os.urandom(300).hex()}, now)

    # Then what is read back is never a mix of the two: the first whole, or nothing (planned again)
    assert store.plan("r") in (first, None)
    # ... and a retry's shorter plan (one part) is read back whole
    monkeypatch.setattr(store, "_put", real_put)
    store.put_plan("r", {"noise": "x"}, now)
    assert store.plan("r") == {"noise": "x"}


def test_the_report_of_a_planned_run_reads_no_page_and_counts_the_listing_as_the_plan_saw_it(
    chunk_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vpsbackup.prune import chunks

    # Given a sweep of every manual backup (PRUNE_SCOPE=manual: no incremental write-back) listed in
    # 30-odd pages, and the store's page reads and the published report watched
    monkeypatch.setenv("PRUNE_SCOPE", "manual")
    prune_backups.settings.cache_clear()
    seed_fleet(simulator, datetime.now(UTC))
    manual = sum(1 for b in simulator.backups if b["backup_type"] == "manual")
    pages_read = PruneRunStore.pages
    reads: list[str] = []

    def counted(self: PruneRunStore, run: str, keep: Any = None) -> Iterator[Any]:
        reads.append(run)
        return pages_read(self, run, keep)

    reports: list[PruneReport] = []
    publish = chunks.publish_report

    def published(report: PruneReport, **kwargs: Any) -> Any:
        reports.append(report)
        return publish(report, **kwargs)

    monkeypatch.setattr(PruneRunStore, "pages", counted)
    monkeypatch.setattr(chunks, "publish_report", published)

    # When the sweep runs in chunks
    cursors = drive({"sweep": True}, lambda_context)

    # Then only the plan read the stored pages; the report counts what the plan chunk stored
    [report] = reports
    pages = max(c.get("pages", 0) for c in cursors)
    assert len(reads) == 1
    assert report.progress.pages == pages and report.listed == report.progress.listed == manual
    assert report.progress.complete and report.progress.expected == manual


def test_a_deletion_answered_429_is_sent_again_under_the_slot_it_took_never_past_the_daily_budget(
    chunk_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a budget of 5 deletions a day, a plan of more, and the run's first DELETE answered 429
    monkeypatch.setenv("MAX_DELETIONS_PER_DAY", "5")
    monkeypatch.setenv("PRUNE_CHUNK_DELETIONS", "8")
    prune_backups.settings.cache_clear()
    small_fleet(simulator)
    before = remaining_ids(simulator)
    simulator.inject(Fault("status", status=429, method="DELETE", path_prefix="/backups/", retry_after=90))
    # When the run is driven (its waits not waited)
    cursors = drive({"sweep": True}, lambda_context)
    # Then it waited the provider's 90 s once, and sent no more deletions than the budget allows:
    # the refused one went again under its own slot
    assert [c["wait_seconds"] for c in cursors if c["wait_seconds"]] == [90]
    assert len(before - remaining_ids(simulator)) == 5
    assert sum(delete_counts(simulator).values()) == 5


def test_a_deletion_that_keeps_timing_out_fails_and_the_run_ends(
    chunk_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a plan whose oldest deletion's DELETE always times out (the client's retries spent)
    small_fleet(simulator)
    wanted = expected_plan(simulator).to_delete
    victim = wanted[0].backup_id
    real = VpsClient.delete_backup

    def delete(self: VpsClient, backup_id: int, **kwargs: Any) -> None:
        if backup_id == victim:
            raise ApiTimeoutError(f"DELETE /backups/{backup_id}/: ReadTimeout after 4 attempt(s)")
        real(self, backup_id, **kwargs)

    monkeypatch.setattr(VpsClient, "delete_backup", delete)
    # When the run is driven
    cursors = drive({"sweep": True}, lambda_context)
    # Then it ends (that deletion failed, reported; the next run finds it), the others all made
    assert cursors[-1]["done"] and len(cursors) < 20
    assert "failed 1" in cursors[-1]["note"] and f"deleted {len(wanted) - 1}" in cursors[-1]["note"]


def test_a_retry_after_beyond_an_hour_is_waited_an_hour_and_the_run_goes_on(
    chunk_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext
) -> None:
    # Given a provider that answers the run's first DELETE 429 with a Retry-After of 100,000 s
    small_fleet(simulator)
    expected = {d.backup_id for d in expected_plan(simulator).to_delete}
    before = remaining_ids(simulator)
    simulator.inject(Fault("status", status=429, method="DELETE", path_prefix="/backups/", retry_after=100_000))
    # When the run is driven, an hour passing wherever it says to wait (the client of the next
    # chunk is a new one: its own hold over)
    event, cursors = start_event({"sweep": True}), []
    while not (cursors and cursors[-1]["done"]) and len(cursors) < 30:
        cursors.append(prune_backups.handler(event, lambda_context))
        if cursors[-1]["wait_seconds"]:
            prune_backups.runtime.api_client.cache_clear()
        event = {"prune_chunk": {"step": "next", "cursor": cursors[-1], "execution": EXECUTION}}
    # Then it waited an hour (a longer wait is not believed), not a day and more (which the next
    # chunk's input would refuse, failing the run without a report), and went on to the end
    assert [c["wait_seconds"] for c in cursors if c["wait_seconds"]] == [3600]
    assert cursors[-1]["done"]
    assert before - remaining_ids(simulator) == expected


def test_a_deletion_never_sent_in_a_chunk_killed_before_its_slot_is_given_back_never_passes_the_budget(
    chunk_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a budget of 5 a day, the oldest deletion never sent the first time (its turn in the
    # request budget after the deadline), and the chunk killed as it removes that deletion's mark
    monkeypatch.setenv("MAX_DELETIONS_PER_DAY", "5")
    monkeypatch.setenv("PRUNE_CHUNK_DELETIONS", "8")
    prune_backups.settings.cache_clear()
    small_fleet(simulator)
    before = remaining_ids(simulator)
    victim = expected_plan(simulator).to_delete[0].backup_id
    real_delete, real_forget = VpsClient.delete_backup, PruneRunStore.forget_started
    fired: list[int] = []

    def delete(self: VpsClient, backup_id: int, **kwargs: Any) -> None:
        if backup_id == victim and not fired:
            fired.append(backup_id)
            raise ApiTimeoutError("DELETE: not started, the request budget would wait", not_sent=True, wait=5.0)
        real_delete(self, backup_id, **kwargs)

    def forget(self: PruneRunStore, run: str, backup_ids: Any) -> None:
        if len(fired) == 1:
            fired.append(0)
            raise Killed
        real_forget(self, run, backup_ids)

    monkeypatch.setattr(VpsClient, "delete_backup", delete)
    monkeypatch.setattr(PruneRunStore, "forget_started", forget)
    # When the run is driven, the killed chunk retried
    drive({"sweep": True}, lambda_context)
    # Then no more than the budget's 5 deletions were sent (the killed chunk's slots were never
    # given back; the one in doubt went again under its own)
    assert fired == [victim, 0]
    assert sum(delete_counts(simulator).values()) == len(before - remaining_ids(simulator)) <= 5


@pytest.mark.parametrize("retry_after", [None, 0, 5])
def test_a_provider_that_refuses_every_deletion_ends_the_run_after_a_few_waits(
    chunk_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, retry_after: int | None
) -> None:
    # Given a provider that answers every DELETE 429 (with a Retry-After, or none)
    small_fleet(simulator)
    simulator.inject(
        Fault("status", status=429, method="DELETE", path_prefix="/backups/", retry_after=retry_after, times=None)
    )
    # When the run is driven
    cursors = drive({"sweep": True}, lambda_context)
    # Then it waits each time (a minute when the provider names no wait), and after five delete
    # chunks in a row that deleted nothing it ends, reporting the deletions not made
    waits = [c["wait_seconds"] for c in cursors if c["wait_seconds"]]
    assert waits == [{None: 60, 0: 1}.get(retry_after, retry_after)] * 4
    assert cursors[-1]["done"] and "deleted" not in cursors[-1]["note"]
    # ... every deletion not made failed, saying the run gave up, and people hear of it
    assert "failed" in cursors[-1]["note"]
    assert "not_started" not in cursors[-1]["note"]
    (note,) = chunk_env.notifications()
    assert "gave up after 5 delete chunks in a row" in note["Message"]
    # ... and only the first chunk's concurrent deletions were ever sent: the later chunks sent them
    # again first, told to wait, and held the fresh ones back
    assert len({r.path for r in simulator.requests if r.method == "DELETE"}) <= 4  # PRUNE_CONCURRENCY


def test_a_listing_page_that_times_out_after_every_retry_ends_the_run_with_nothing_planned(
    chunk_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a listing whose second page times out after every retry of the client
    small_fleet(simulator)
    before = remaining_ids(simulator)
    real = VpsClient.iter_backup_pages

    def pages(self: VpsClient, *, start: str | None = None, **kwargs: Any) -> Any:
        if start is not None:
            raise ApiTimeoutError("GET /backups/: ReadTimeout after 4 attempt(s)", exhausted=True)
        yield from real(self, start=start, **kwargs)

    monkeypatch.setattr(VpsClient, "iter_backup_pages", pages)
    # When the run is driven, Then it ends (it did not list the same page again for ever), nothing
    # planned nor deleted, the report saying why
    cursors = drive({"sweep": True}, lambda_context)
    assert cursors[-1]["done"] and len(cursors) < 5
    assert cursors[-2]["stopped"].startswith("GET /backups/: ReadTimeout")
    assert remaining_ids(simulator) == before


def test_a_listing_page_whose_retries_the_deadline_cut_short_is_read_again_by_the_next_chunk(
    chunk_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a listing whose second page times out once, its retries cut short by the deadline
    small_fleet(simulator)
    expected = {d.backup_id for d in expected_plan(simulator).to_delete}
    before = remaining_ids(simulator)
    real = VpsClient.iter_backup_pages
    fired: list[str] = []

    def pages(self: VpsClient, *, start: str | None = None, **kwargs: Any) -> Any:
        if start is not None and not fired:
            fired.append(start)
            raise ApiTimeoutError("GET /backups/: ReadTimeout after 1 attempt(s)")
        yield from real(self, start=start, **kwargs)

    monkeypatch.setattr(VpsClient, "iter_backup_pages", pages)
    # When the run is driven, Then the next chunk reads that page and the run deletes its plan
    cursors = drive({"sweep": True}, lambda_context)
    assert fired and all(c["stopped"] is None for c in cursors)
    assert before - remaining_ids(simulator) == expected


@pytest.mark.parametrize("retry_after", [None, 0, 120])
def test_a_listing_the_provider_refuses_chunk_after_chunk_ends_the_run_with_nothing_planned(
    chunk_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, retry_after: int | None
) -> None:
    # Given a provider that answers every listing request 429 (with a Retry-After, or none)
    small_fleet(simulator)
    before = remaining_ids(simulator)
    simulator.inject(
        Fault("status", status=429, method="GET", path_prefix="/backups/", retry_after=retry_after, times=None)
    )
    # When the run is driven, Then it waits each time (a minute when none is named), and after five
    # chunks in a row that read no page it ends, nothing planned nor deleted, the report saying why
    cursors = drive({"sweep": True}, lambda_context)
    expected_wait = {None: 60, 0: 1}.get(retry_after, retry_after)  # a Retry-After of 0 still waits a second
    assert [c["wait_seconds"] for c in cursors if c["wait_seconds"]] == [expected_wait] * 4
    assert cursors[-1]["done"] and "refused or held back 5 chunks in a row" in (cursors[-2]["stopped"] or "")
    assert remaining_ids(simulator) == before


def test_a_run_that_gave_up_fails_only_the_deletions_it_never_reached() -> None:
    from vpsbackup.prune.chunks import _given_up
    from vpsbackup.prune.job import DeletionResult
    from vpsbackup.prune.run_store import StoredOutcome

    # Given the results of a run that gave up: one deleted, one a hold stopped, one the daily budget
    # held back, one never reached
    held_by_hold = DeletionResult(2, "not_started", "held since the plan: restore", stopped_by_hold=True)
    results = (
        DeletionResult(1, "deleted"),
        held_by_hold,
        DeletionResult(3, "not_started", "daily budget", held_by_budget=True),
        DeletionResult(4, "not_started", "not reached by the run"),
    )
    known = {1: StoredOutcome("deleted", ""), 2: StoredOutcome("not_started", held_by_hold.detail, True)}
    # Then only the one never reached fails, saying the run gave up
    after = _given_up(results, known, 5)
    assert after[:3] == results[:3]
    assert after[3].outcome == "failed" and after[3].detail.startswith("not sent: the run gave up after 5")


def test_a_listing_stopped_mid_chunk_counts_the_backups_of_the_pages_it_stored(
    chunk_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a listing whose second page times out on every attempt (the walk cannot go on)
    small_fleet(simulator)
    real = VpsClient.iter_backup_pages
    seen: list[int] = []

    def pages(self: VpsClient, *, start: str | None = None, **kwargs: Any) -> Any:
        for page in real(self, start=start, **kwargs):
            seen.append(len(page.results))
            yield page
            raise ApiTimeoutError("GET /backups/: ReadTimeout after 4 attempt(s)", exhausted=True)

    monkeypatch.setattr(VpsClient, "iter_backup_pages", pages)
    # When the run is driven
    cursors = drive({"sweep": True}, lambda_context)
    # Then the cursor that stopped the listing counts the backups stored (what decides the report's parts)
    stopped = next(c for c in cursors if c["stopped"])
    assert stopped["pages"] == 1 and stopped["rows"] == sum(seen) > 0
