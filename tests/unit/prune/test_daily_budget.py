"""MAX_DELETIONS_PER_DAY: the rolling 24-hour deletion budget (prune/daily_budget.py) and how a run
sends its deletions within it (prune/job.py ``delete_within_budget``)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import AwsEnv
from vpsbackup.aws.state import StateTable
from vpsbackup.prune.daily_budget import (
    WINDOW,
    BudgetReport,
    BudgetState,
    DailyDeletionBudget,
    give_back,
    stamp,
    take,
)
from vpsbackup.prune.job import DeletionResult, delete_within_budget
from vpsbackup.prune.plan import BackupDecision
from vpsbackup.prune.state_store import DeletionBudgetStore

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


class MemoryStore:
    """A BudgetStore in memory, with a lock: the compare-and-swap DynamoDB's condition does."""

    def __init__(self, state: BudgetState | None = None) -> None:
        self.state = state or BudgetState()
        self.lock = threading.Lock()
        self.swaps = 0
        self.fail: Exception | None = None

    def read(self) -> BudgetState:
        if self.fail is not None:
            raise self.fail
        with self.lock:
            return self.state

    def swap(self, new: BudgetState, *, expected_version: int) -> bool:
        with self.lock:
            if self.state.version != expected_version:
                return False
            self.state = new
            self.swaps += 1
            return True


def at(hours: float) -> float:
    return stamp(NOW - timedelta(hours=hours))


# -- the pure rule -------------------------------------------------------------------------------


def test_an_empty_budget_grants_up_to_its_limit_and_records_each_slot() -> None:
    taken = take(BudgetState(), asked=5, limit=3, now=NOW)
    assert (taken.asked, taken.granted) == (5, 3)
    assert taken.state.sent == (stamp(NOW),) * 3
    assert taken.state.version == 1
    # the next slot frees 24 hours after the oldest of the three
    assert taken.frees_at == NOW + WINDOW


def test_a_deletion_sent_exactly_24_hours_ago_no_longer_counts() -> None:
    state = BudgetState((at(24), at(23.99)), version=7)
    taken = take(state, asked=2, limit=2, now=NOW)
    assert taken.granted == 1
    assert taken.state.sent == (at(23.99), stamp(NOW))  # the one 24 h old is dropped from the state
    assert taken.frees_at == datetime.fromtimestamp(at(23.99), UTC) + WINDOW


def test_a_full_budget_grants_nothing_and_says_when_the_oldest_slot_frees() -> None:
    state = BudgetState((at(20), at(5), at(1)), version=2)
    taken = take(state, asked=4, limit=3, now=NOW)
    assert taken.granted == 0
    assert taken.frees_at == NOW - timedelta(hours=20) + WINDOW


def test_a_budget_lowered_below_what_was_sent_frees_when_enough_have_left_the_window() -> None:
    # 3 sent in the window, the limit is now 2: a slot frees when the two oldest have left
    state = BudgetState((at(20), at(10), at(1)))
    taken = take(state, asked=1, limit=2, now=NOW)
    assert taken.granted == 0
    assert taken.frees_at == NOW - timedelta(hours=10) + WINDOW


def test_a_limit_of_zero_grants_nothing_and_never_frees() -> None:
    taken = take(BudgetState(), asked=3, limit=0, now=NOW)
    assert (taken.granted, taken.frees_at) == (0, None)


def test_asking_for_what_fits_says_no_free_time() -> None:
    taken = take(BudgetState((at(3),)), asked=2, limit=3, now=NOW)
    assert (taken.granted, taken.frees_at) == (2, None)


@pytest.mark.parametrize(("asked", "limit"), [(-1, 3), (3, -1)])
def test_negative_numbers_are_refused(asked: int, limit: int) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        take(BudgetState(), asked=asked, limit=limit, now=NOW)


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        take(BudgetState(), asked=1, limit=1, now=NOW.replace(tzinfo=None))


def test_giving_back_removes_only_the_runs_own_slots_and_no_more_than_it_holds() -> None:
    mine = stamp(NOW)
    state = BudgetState((at(5), mine, mine), version=3)
    assert give_back(state, at=mine, count=1).sent == (at(5), mine)
    assert give_back(state, at=mine, count=5).sent == (at(5),)
    assert give_back(state, at=mine, count=1).version == 4
    with pytest.raises(ValueError, match="count must be >= 0"):
        give_back(state, at=mine, count=-1)


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(min_value=0, max_value=6),
    runs=st.lists(
        st.tuples(st.integers(min_value=0, max_value=72 * 60), st.integers(min_value=0, max_value=8)),
        min_size=1,
        max_size=25,
    ),
)
def test_no_24_hours_ever_see_more_deletions_than_the_limit(limit: int, runs: list[tuple[int, int]]) -> None:
    # Runs at arbitrary minutes over three days, each asking for some deletions
    state = BudgetState()
    sent: list[datetime] = []
    for minute, asked in sorted(runs):
        now = NOW + timedelta(minutes=minute)
        taken = take(state, asked=asked, limit=limit, now=now)
        assert 0 <= taken.granted <= asked
        state = taken.state
        sent += [now] * taken.granted
        # while the budget falls short, it names a time in the next 24 hours when a slot frees
        if taken.granted < asked and limit:
            assert taken.frees_at is not None and now < taken.frees_at <= now + WINDOW
    # Then every 24-hour window holds at most `limit` deletions
    for start in sent:
        assert sum(1 for t in sent if start <= t < start + WINDOW) <= limit


# -- the budget over a store ---------------------------------------------------------------------


def test_two_runs_at_once_never_get_more_than_the_budget_between_them() -> None:
    store = MemoryStore()
    budget = DailyDeletionBudget(store, 10, clock=lambda: NOW)
    granted: list[int] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        granted.append(budget.reserve(6).granted)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 10
    assert len(store.state.sent) == 10


def test_a_store_that_keeps_moving_or_fails_gives_no_slot() -> None:
    class Moving(MemoryStore):
        def swap(self, new: BudgetState, *, expected_version: int) -> bool:
            return False

    from vpsbackup.prune.daily_budget import BudgetUnavailableError

    with pytest.raises(BudgetUnavailableError, match="kept changing"):
        DailyDeletionBudget(Moving(), 5, clock=lambda: NOW).reserve(1)
    broken = MemoryStore()
    broken.fail = RuntimeError("throttled")
    with pytest.raises(BudgetUnavailableError, match="RuntimeError: throttled"):
        DailyDeletionBudget(broken, 5, clock=lambda: NOW).reserve(1)


def test_release_gives_back_unsent_slots_and_is_harmless_when_the_store_fails() -> None:
    store = MemoryStore()
    budget = DailyDeletionBudget(store, 5, clock=lambda: NOW)
    reservation = budget.reserve(4)
    assert budget.release(reservation, 3) is True
    assert len(store.state.sent) == 1
    assert budget.release(reservation, 0) is True
    store.fail = RuntimeError("down")
    assert budget.release(reservation, 1) is False
    with pytest.raises(ValueError, match="limit must be >= 0"):
        DailyDeletionBudget(store, -1)


# -- a run's deletions within the budget ---------------------------------------------------------


def decisions(n: int) -> list[BackupDecision]:
    return [
        BackupDecision(
            backup_id=100 + i,
            server_id=7,
            created_at=NOW - timedelta(days=30 - i),
            status="completed",
            backup_type="manual",
            action="delete",
            reasons=("no retention rule keeps it",),
        )
        for i in range(n)
    ]


class Sender:
    def __init__(self, not_started: Sequence[int] = ()) -> None:
        self.sent: list[int] = []
        self.not_started = set(not_started)

    def __call__(self, to_delete: Sequence[BackupDecision]) -> tuple[DeletionResult, ...]:
        results = []
        for d in to_delete:
            if d.backup_id in self.not_started:
                results.append(DeletionResult(d.backup_id, "not_started", "time: next run"))
            else:
                self.sent.append(d.backup_id)
                results.append(DeletionResult(d.backup_id, "deleted"))
        return tuple(results)


def test_the_oldest_deletions_the_budget_grants_are_sent_and_the_rest_wait_marked_as_held() -> None:
    store = MemoryStore(BudgetState((at(23),)))
    send = Sender()
    results, report = delete_within_budget(decisions(5), DailyDeletionBudget(store, 3, clock=lambda: NOW), send)
    assert send.sent == [100, 101]  # the two oldest
    assert [r.outcome for r in results] == ["deleted", "deleted", "not_started", "not_started", "not_started"]
    assert [r.held_by_budget for r in results] == [False, False, True, True, True]
    assert report == BudgetReport(3, 5, 2, NOW - timedelta(hours=23) + WINDOW)
    assert report.held_back == 3
    assert "MAX_DELETIONS_PER_DAY" in results[-1].detail and "2026-12-05 13:00 UTC" in results[-1].detail


def test_slots_of_deletions_not_sent_are_given_back() -> None:
    store = MemoryStore()
    send = Sender(not_started=[101, 102])
    results, report = delete_within_budget(decisions(3), DailyDeletionBudget(store, 10, clock=lambda: NOW), send)
    assert report is not None and report.held_back == 0
    assert [r.held_by_budget for r in results] == [False, False, False]
    assert len(store.state.sent) == 1  # only the one sent still counts


def test_an_unreadable_budget_sends_nothing() -> None:
    store = MemoryStore()
    store.fail = RuntimeError("AccessDenied")
    send = Sender()
    results, report = delete_within_budget(decisions(2), DailyDeletionBudget(store, 10, clock=lambda: NOW), send)
    assert send.sent == []
    assert {r.outcome for r in results} == {"not_started"}
    assert all(r.held_by_budget for r in results)
    assert report is not None and report.error == "RuntimeError: AccessDenied"
    assert "unreadable" in results[0].detail


def test_no_budget_or_nothing_to_delete_takes_nothing() -> None:
    store = MemoryStore()
    send = Sender()
    assert delete_within_budget(decisions(2), None, send) == (
        (DeletionResult(100, "deleted"), DeletionResult(101, "deleted")),
        None,
    )
    assert delete_within_budget([], DailyDeletionBudget(store, 1, clock=lambda: NOW), send) == ((), None)
    assert store.swaps == 0


def test_the_reasons_people_read() -> None:
    frees = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
    assert BudgetReport(200, 5, 0, frees).reason() == (
        "daily deletion budget: 200 deletions in 24 hours reached (MAX_DELETIONS_PER_DAY); "
        "the next slot frees at 2026-12-06 09:30 UTC; a later run picks it up"
    )
    assert BudgetReport(0, 5, 0).reason() == "daily deletion budget: MAX_DELETIONS_PER_DAY is 0; not deleted"
    assert BudgetReport(9, 5, 0, error="E: x").reason().startswith("daily deletion budget unreadable (E: x)")
    assert BudgetReport(9, 5, 2, frees).to_dict() == {
        "limit": 9,
        "asked": 5,
        "granted": 2,
        "held_back": 3,
        "frees_at": "2026-12-06T09:30:00+00:00",
        "error": None,
    }


# -- the budget in StateTable (moto): the conditional write itself ---------------------------------


@pytest.mark.usefixtures("atomic_moto")
def test_runs_racing_over_state_table_never_get_more_than_the_budget_between_them(aws: AwsEnv) -> None:
    # Given four runs at once, each with its own store over StateTable, asking 6 of a budget of 10
    granted: list[int] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        budget = DailyDeletionBudget(DeletionBudgetStore(StateTable.from_name(aws.table_name)), 10, clock=lambda: NOW)
        barrier.wait()
        try:
            granted.append(budget.reserve(6).granted)
        except Exception as exc:  # a run that gives up deletes nothing: allowed, but counted here
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then the budget is shared out, never exceeded, and the one item says so
    assert errors == []
    assert sum(granted) == 10
    item = aws.table().get_item(Key={"pk": "prune-budget", "sk": "deletions"})["Item"]
    assert len(item["sent"]) == 10
    assert int(item["expiration"]) == int(stamp(NOW) + timedelta(days=2).total_seconds())


def test_the_store_writes_only_over_the_version_it_read(aws: AwsEnv) -> None:
    store = DeletionBudgetStore(StateTable.from_name(aws.table_name))
    assert store.read() == BudgetState()
    first = BudgetState((at(2),), 1)
    assert store.swap(first, expected_version=0) is True
    # A second writer that read the empty budget too: refused, the first write stands
    assert store.swap(BudgetState((at(1), at(1)), 1), expected_version=0) is False
    assert store.read() == first
    # A stale version refused, the current one taken
    assert store.swap(BudgetState((), 2), expected_version=5) is False
    assert store.swap(BudgetState((at(2), at(0)), 2), expected_version=1) is True
    assert store.read() == BudgetState((at(2), at(0)), 2)


# -- the edges mutation testing found untested (make mutate prune/daily_budget.py) ----------------


class Moving(MemoryStore):
    """A store whose every compare-and-swap loses (another run always wrote first)."""

    def swap(self, new: BudgetState, *, expected_version: int) -> bool:
        self.swaps += 1
        return False


def test_a_run_gives_up_after_exactly_swap_attempts_tries() -> None:
    from vpsbackup.prune.daily_budget import SWAP_ATTEMPTS, BudgetUnavailableError

    store = Moving()
    with pytest.raises(BudgetUnavailableError):
        DailyDeletionBudget(store, 5, clock=lambda: NOW).reserve(1)
    assert store.swaps == SWAP_ATTEMPTS == 8
    reservation = DailyDeletionBudget(MemoryStore(), 5, clock=lambda: NOW).reserve(2)
    assert DailyDeletionBudget(store, 5, clock=lambda: NOW).release(reservation, 1) is False
    assert store.swaps == 2 * SWAP_ATTEMPTS


def test_an_instant_is_kept_to_the_millisecond() -> None:
    assert stamp(datetime(2026, 12, 5, 12, 0, 0, 123456, tzinfo=UTC)) == NOW.timestamp() + 0.123


def test_giving_back_nothing_changes_no_slot() -> None:
    mine = stamp(NOW)
    assert give_back(BudgetState((mine,), version=1), at=mine, count=0).sent == (mine,)


def test_a_budget_of_zero_is_a_budget_that_grants_nothing() -> None:
    store = MemoryStore()
    reservation = DailyDeletionBudget(store, 0, clock=lambda: NOW).reserve(3)
    assert (reservation.granted, reservation.short, reservation.frees_at) == (0, True, None)


def test_asking_for_nothing_reads_and_writes_nothing() -> None:
    store = MemoryStore()
    store.fail = RuntimeError("must not be read")
    reservation = DailyDeletionBudget(store, 5, clock=lambda: NOW).reserve(0)
    assert (reservation.limit, reservation.asked, reservation.granted, reservation.short) == (5, 0, 0, False)
    assert reservation.at == stamp(NOW)


def test_a_full_budget_and_an_empty_give_back_write_nothing() -> None:
    store = MemoryStore(BudgetState((at(1), at(2)), version=4))
    budget = DailyDeletionBudget(store, 2, clock=lambda: NOW)
    reservation = budget.reserve(3)
    assert (reservation.granted, reservation.short) == (0, True)
    assert budget.release(reservation, 0) is True
    assert store.swaps == 0
    assert store.state.version == 4
