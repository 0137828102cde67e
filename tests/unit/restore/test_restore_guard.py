"""The restore guardrails in StateTable (moto): cooldown per server, a sliding hourly window across
the fleet, duplicates, release and outcome-unknown semantics, and atomicity under threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import AwsEnv
from vpsbackup.aws.state import PK, SK, TTL_ATTRIBUTE, StateTable, epoch, server_pk, utc_key_time
from vpsbackup.restore.guard import (
    COOLDOWN_NOTICE_SK_PREFIX,
    IN_FLIGHT,
    INCIDENT_NOTICE_SK_PREFIX,
    LOCK_SK,
    RESTORES_PK,
    GuardRefusal,
    LockHolder,
    RestoreClaim,
    RestoreGuard,
    lock_pk,
    override_refused_until,
    slot_sk,
)

T0 = datetime(2025, 1, 16, 16, 5, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_guard(aws: AwsEnv, clock: Clock) -> Callable[..., RestoreGuard]:
    def make(cooldown: timedelta = timedelta(hours=6), max_per_hour: int = 3) -> RestoreGuard:
        return RestoreGuard(
            StateTable.from_name(aws.table_name), cooldown=cooldown, max_per_hour=max_per_hour, clock=clock
        )

    return make


def claim(guard: RestoreGuard, server: int = 12345, transition: str = "t1", backup: int = 501) -> Any:
    return guard.claim(server_id=server, backup_id=backup, transition_key=transition, alarm_name=f"alarm-{transition}")


def test_a_first_claim_is_granted_and_locks_the_server_for_the_cooldown(
    make_guard: Callable[..., RestoreGuard], clock: Clock
) -> None:
    guard = make_guard()
    granted = claim(guard)
    assert isinstance(granted, RestoreClaim)
    assert granted.locked_until == T0 + timedelta(hours=6)
    holder = guard.lock_holder(12345)
    assert holder is not None
    assert (holder.transition_key, holder.backup_id, holder.state) == ("t1", 501, "claimed")


def test_another_alarm_on_the_same_server_inside_the_cooldown_is_refused(
    make_guard: Callable[..., RestoreGuard], clock: Clock
) -> None:
    # Given a restore of server 12345 at T0
    guard = make_guard()
    first = claim(guard)
    assert isinstance(first, RestoreClaim)
    guard.mark_restored(first)
    # When another alarm change for it comes 2 hours later
    clock.advance(hours=2)
    refused = claim(guard, transition="t2")
    # Then it is refused as cooldown, saying until when
    assert isinstance(refused, GuardRefusal)
    assert refused.kind == "cooldown"
    assert refused.not_before == T0 + timedelta(hours=6)
    assert "was restored from backup 501" in refused.reason
    assert "RESTORE_COOLDOWN" in refused.reason
    # And after the cooldown it is granted
    clock.advance(hours=4)
    assert isinstance(claim(guard, transition="t3"), RestoreClaim)


def test_the_same_transition_again_is_a_duplicate(make_guard: Callable[..., RestoreGuard]) -> None:
    guard = make_guard()
    assert isinstance(claim(guard), RestoreClaim)
    refused = claim(guard)
    assert isinstance(refused, GuardRefusal)
    assert refused.kind == "duplicate"


def test_the_cooldown_is_per_server(make_guard: Callable[..., RestoreGuard]) -> None:
    guard = make_guard()
    assert isinstance(claim(guard, 12345, "a"), RestoreClaim)
    assert isinstance(claim(guard, 12346, "b"), RestoreClaim)


def test_the_fleet_window_slides(make_guard: Callable[..., RestoreGuard], clock: Clock) -> None:
    # Given 3 restores at T0, T0+20m, T0+40m on three servers (limit 3 per hour)
    guard = make_guard(max_per_hour=3)
    for i in range(3):
        assert isinstance(claim(guard, 20000 + i, f"t{i}"), RestoreClaim)
        clock.advance(minutes=20)
    # When a 4th comes at T0+60m - 1s
    clock.now = T0 + timedelta(minutes=59, seconds=59)
    refused = claim(guard, 20010, "t10")
    # Then it is refused until the oldest leaves the window
    assert isinstance(refused, GuardRefusal)
    assert refused.kind == "rate_limit"
    assert refused.not_before == T0 + timedelta(hours=1)
    assert "MAX_RESTORES_PER_HOUR" in refused.reason
    # And a refused claim took no lock: the same server can be claimed once the window frees a slot
    assert guard.lock_holder(20010) is None
    clock.now = T0 + timedelta(hours=1)
    assert isinstance(claim(guard, 20010, "t11"), RestoreClaim)
    # But only one: the next two slots are still within their hour
    assert isinstance(claim(guard, 20011, "t12"), GuardRefusal)


def test_a_clock_hour_boundary_does_not_reset_the_window(make_guard: Callable[..., RestoreGuard], clock: Clock) -> None:
    # Given 2 restores at 10:59 (limit 2)
    guard = make_guard(max_per_hour=2)
    clock.now = datetime(2025, 1, 16, 10, 59, tzinfo=UTC)
    assert isinstance(claim(guard, 1, "a"), RestoreClaim)
    assert isinstance(claim(guard, 2, "b"), RestoreClaim)
    # When the clock passes 11:00 (a fixed window would reset here)
    clock.now = datetime(2025, 1, 16, 11, 1, tzinfo=UTC)
    # Then no more restores until 11:59
    assert isinstance(claim(guard, 3, "c"), GuardRefusal)


def test_zero_per_hour_switches_restores_off(make_guard: Callable[..., RestoreGuard]) -> None:
    refused = claim(make_guard(max_per_hour=0))
    assert isinstance(refused, GuardRefusal)
    assert refused.kind == "rate_limit"
    assert "switched off" in refused.reason


def test_a_released_claim_frees_the_slot_and_lets_a_new_alarm_try_but_not_a_redelivery(
    make_guard: Callable[..., RestoreGuard],
) -> None:
    # Given a claim whose restore the API refused (released), with a limit of 1 per hour
    guard = make_guard(max_per_hour=1)
    first = claim(guard, transition="t1")
    assert isinstance(first, RestoreClaim)
    guard.release(first, "HTTP 409")
    assert guard.slot_times() == {}
    # When the same alarm change is redelivered: still a duplicate (no retry loop)
    again = claim(guard, transition="t1")
    assert isinstance(again, GuardRefusal)
    assert again.kind == "duplicate"
    # When a new alarm change comes for the same server: it may try (lock released, slot free)
    assert isinstance(claim(guard, transition="t2"), RestoreClaim)


def test_an_unknown_outcome_keeps_the_lock_and_the_slot(make_guard: Callable[..., RestoreGuard]) -> None:
    guard = make_guard(max_per_hour=1)
    first = claim(guard, transition="t1")
    assert isinstance(first, RestoreClaim)
    guard.mark_outcome_unknown(first, "POST timed out")
    holder = guard.lock_holder(12345)
    assert holder is not None
    assert holder.state == "outcome_unknown"
    refused = claim(guard, transition="t2")
    assert isinstance(refused, GuardRefusal)
    assert refused.kind == "cooldown"
    assert "outcome unknown" in refused.reason
    assert isinstance(claim(guard, 999, "t3"), GuardRefusal)  # the fleet slot is still used


def test_check_is_read_only(make_guard: Callable[..., RestoreGuard]) -> None:
    guard = make_guard(max_per_hour=1)
    assert guard.check(server_id=12345, transition_key="t1") is None
    assert guard.check(server_id=12345, transition_key="t1") is None
    assert guard.lock_holder(12345) is None
    assert guard.slot_times() == {}
    assert isinstance(claim(guard), RestoreClaim)
    refusal = guard.check(server_id=12346, transition_key="t9")
    assert refusal is not None
    assert refusal.kind == "rate_limit"


@pytest.mark.usefixtures("atomic_moto")
def test_ten_concurrent_claims_on_one_server_grant_one(make_guard: Callable[..., RestoreGuard]) -> None:
    # Given 10 different alarm changes for server 12345 racing
    guard = make_guard(max_per_hour=10)
    results: list[Any] = []
    barrier = threading.Barrier(10)

    def race(i: int) -> None:
        barrier.wait()
        results.append(claim(guard, 12345, f"t{i}"))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one is granted and one fleet slot is used
    assert sum(isinstance(r, RestoreClaim) for r in results) == 1
    assert all(r.kind == "cooldown" for r in results if isinstance(r, GuardRefusal))
    assert len(guard.slot_times()) == 1


@pytest.mark.usefixtures("atomic_moto")
def test_a_flapping_alarm_inside_one_cooldown_is_told_once_even_by_concurrent_invocations(
    make_guard: Callable[..., RestoreGuard], clock: Clock, aws: AwsEnv
) -> None:
    # Given a restore of server 12345 at T0 (its cooldown running) and ten flaps refused inside it
    first = claim(make_guard())
    assert isinstance(first, RestoreClaim)
    make_guard().mark_restored(first)
    clock.advance(minutes=5)
    refusals = [claim(make_guard(), transition=f"flap{i}") for i in range(10)]
    holders = [r.holder for r in refusals if isinstance(r, GuardRefusal) and r.kind == "cooldown"]
    assert len(holders) == 10 and all(h is not None for h in holders)
    # When ten invocations (each its own guard) ask at once whether to tell people
    told: list[bool] = []
    barrier = threading.Barrier(10)

    def ask(holder: LockHolder) -> None:
        barrier.wait()
        told.append(make_guard().first_cooldown_notice(holder))

    threads = [threading.Thread(target=ask, args=(h,)) for h in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one tells, and one notice item sits beside the lock, expiring with the cooldown
    assert sorted(told) == [False] * 9 + [True]
    notices = [i for i in aws.table().scan()["Items"] if str(i[SK]).startswith(COOLDOWN_NOTICE_SK_PREFIX)]
    assert [(n[PK], n[SK]) for n in notices] == [(lock_pk(12345), f"{COOLDOWN_NOTICE_SK_PREFIX}t1")]
    assert int(notices[0][TTL_ATTRIBUTE]) == epoch(T0 + timedelta(hours=6) + timedelta(days=1))
    # When the next cooldown starts (a new restore after this one), its first refusal is told again
    clock.advance(hours=6)
    second = claim(make_guard(), transition="t2")
    assert isinstance(second, RestoreClaim)
    make_guard().mark_restored(second)
    again = claim(make_guard(), transition="flap-after")
    assert isinstance(again, GuardRefusal) and again.holder is not None
    assert make_guard().first_cooldown_notice(again.holder)
    assert not make_guard().first_cooldown_notice(again.holder)


def test_a_cooldown_notice_that_cannot_be_written_tells_people_anyway(
    make_guard: Callable[..., RestoreGuard], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a refusal inside the cooldown, and a table that refuses the notice's write for another reason
    guard = make_guard()
    first = claim(guard)
    assert isinstance(first, RestoreClaim)
    refusal = claim(guard, transition="t2")
    assert isinstance(refusal, GuardRefusal) and refusal.holder is not None

    def throttled(**_: Any) -> None:
        raise RuntimeError("ProvisionedThroughputExceededException")

    monkeypatch.setattr(guard.state.table, "put_item", throttled)
    # Then people are told (twice rather than never), each time the write fails
    assert guard.first_cooldown_notice(refusal.holder)
    assert guard.first_cooldown_notice(refusal.holder)


@pytest.mark.usefixtures("atomic_moto")
def test_concurrent_claims_across_the_fleet_never_exceed_the_limit(make_guard: Callable[..., RestoreGuard]) -> None:
    # Given 8 servers alarming at once with a limit of 3 per hour
    guard = make_guard(max_per_hour=3)
    results: list[Any] = []
    barrier = threading.Barrier(8)

    def race(i: int) -> None:
        barrier.wait()
        results.append(claim(guard, 30000 + i, f"t{i}"))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly 3 are granted, each on its own slot, and 5 refused by the rate limit
    granted = [r for r in results if isinstance(r, RestoreClaim)]
    assert len(granted) == 3
    assert sorted(r.slot for r in granted) == [0, 1, 2]
    assert [r.kind for r in results if isinstance(r, GuardRefusal)] == ["rate_limit"] * 5


def test_a_cooldown_override_takes_the_lock_inside_the_cooldown_but_not_the_fleet_cap(
    make_guard: Callable[..., RestoreGuard], clock: Clock
) -> None:
    guard = make_guard(max_per_hour=2)
    first = claim(guard, transition="alarm-1")
    assert isinstance(first, RestoreClaim)
    guard.mark_restored(first)
    clock.advance(minutes=10)
    refused = claim(guard, transition="manual#a")
    assert isinstance(refused, GuardRefusal) and refused.kind == "cooldown"
    overridden = guard.claim(
        server_id=12345, backup_id=502, transition_key="manual#b", alarm_name="alice", override_cooldown=True
    )
    assert isinstance(overridden, RestoreClaim)
    assert overridden.overridden is not None and overridden.overridden.transition_key == "alarm-1"
    guard.mark_restored(overridden)
    # The fleet cap (2 per hour) still holds for an override (once that restore is past IN_FLIGHT).
    clock.advance(minutes=10)
    capped = guard.claim(
        server_id=12345, backup_id=503, transition_key="manual#c", alarm_name="alice", override_cooldown=True
    )
    assert isinstance(capped, GuardRefusal) and capped.kind == "rate_limit"


def test_a_cooldown_override_never_takes_over_a_restore_that_may_be_running(
    make_guard: Callable[..., RestoreGuard], clock: Clock
) -> None:
    guard = make_guard()
    assert isinstance(claim(guard, transition="alarm-1"), RestoreClaim)  # claimed, not reported back
    clock.advance(minutes=2)
    running = guard.claim(
        server_id=12345, backup_id=502, transition_key="manual#b", alarm_name="alice", override_cooldown=True
    )
    assert isinstance(running, GuardRefusal)
    assert "may be running right now" in running.reason
    clock.advance(minutes=4)  # past IN_FLIGHT: a crashed run's lock can be overridden
    later = guard.claim(
        server_id=12345, backup_id=502, transition_key="manual#c", alarm_name="alice", override_cooldown=True
    )
    assert isinstance(later, RestoreClaim)


def override(guard: RestoreGuard, transition: str, backup: int = 502) -> RestoreClaim | GuardRefusal:
    return guard.claim(
        server_id=12345, backup_id=backup, transition_key=transition, alarm_name="alice", override_cooldown=True
    )


@pytest.mark.parametrize("report", ["claimed", "outcome_unknown", "restored"])
def test_an_override_is_refused_at_4_minutes_and_granted_at_6_in_every_state_that_may_be_running(
    make_guard: Callable[..., RestoreGuard], clock: Clock, report: str
) -> None:
    # Given an alarm's restore claimed at T0 and reported back (or not) at once
    guard = make_guard()
    first = claim(guard, transition="alarm-1")
    assert isinstance(first, RestoreClaim)
    if report == "outcome_unknown":
        guard.mark_outcome_unknown(first, "connection dropped after sending")
    elif report == "restored":
        guard.mark_restored(first)
    # When a person overrides the cooldown 4 minutes later: refused, until T0 + 5 minutes
    clock.advance(minutes=4)
    refused = override(guard, "manual#a")
    assert isinstance(refused, GuardRefusal) and refused.kind == "cooldown"
    assert refused.not_before == T0 + IN_FLIGHT
    assert "may be running right now" in refused.reason
    holder = guard.lock_holder(12345)
    assert holder is not None and (holder.transition_key, holder.state) == ("alarm-1", report)
    # And 6 minutes after the claim it is granted, naming the lock it took over
    clock.advance(minutes=2)
    granted = override(guard, "manual#b")
    assert isinstance(granted, RestoreClaim)
    assert granted.overridden is not None and granted.overridden.transition_key == "alarm-1"


def test_the_in_flight_window_runs_from_the_report_when_the_restore_was_accepted_later(
    make_guard: Callable[..., RestoreGuard], clock: Clock
) -> None:
    # Given a restore claimed at T0 and accepted by the API at T0 + 3 minutes
    guard = make_guard()
    first = claim(guard, transition="alarm-1")
    assert isinstance(first, RestoreClaim)
    clock.advance(minutes=3)
    guard.mark_restored(first)
    holder = guard.lock_holder(12345)
    assert holder is not None and holder.reported_at == T0 + timedelta(minutes=3)
    # When a person overrides at T0 + 6 minutes (3 minutes after it was accepted): refused
    clock.advance(minutes=3)
    refused = override(guard, "manual#a")
    assert isinstance(refused, GuardRefusal)
    assert refused.not_before == T0 + timedelta(minutes=8)
    # And at T0 + 8 minutes it is granted
    clock.now = T0 + timedelta(minutes=8)
    assert isinstance(override(guard, "manual#b"), RestoreClaim)


def test_an_override_over_a_released_lock_is_granted_at_once(
    make_guard: Callable[..., RestoreGuard], clock: Clock
) -> None:
    guard = make_guard()
    first = claim(guard, transition="alarm-1")
    assert isinstance(first, RestoreClaim)
    guard.release(first, "HTTP 409")
    clock.advance(seconds=10)
    assert isinstance(override(guard, "manual#a"), RestoreClaim)


@pytest.mark.parametrize(
    ("state", "claimed_ago", "reported_ago", "refused_for"),
    [
        ("claimed", timedelta(minutes=4), None, timedelta(minutes=1)),
        ("claimed", IN_FLIGHT, None, None),
        ("claimed", timedelta(minutes=6), None, None),
        ("outcome_unknown", timedelta(minutes=4, seconds=59), timedelta(minutes=4), timedelta(minutes=1)),
        ("outcome_unknown", timedelta(minutes=7), timedelta(minutes=6), None),
        ("restored", timedelta(seconds=5), timedelta(seconds=1), timedelta(minutes=4, seconds=59)),
        ("restored", timedelta(minutes=9), timedelta(minutes=5), None),
        ("released", timedelta(seconds=1), timedelta(seconds=1), None),
    ],
)
def test_override_refused_until_covers_every_state_that_may_be_running(
    state: str, claimed_ago: timedelta, reported_ago: timedelta | None, refused_for: timedelta | None
) -> None:
    holder = LockHolder(
        server_id=1,
        transition_key="alarm-1",
        alarm_name="a",
        backup_id=5,
        claimed_at=T0 - claimed_ago,
        locked_until=T0 + timedelta(hours=6),
        state=state,
        reported_at=T0 - reported_ago if reported_ago is not None else None,
    )
    expected = T0 + refused_for if refused_for is not None else None
    assert override_refused_until(holder, T0) == expected


@pytest.mark.parametrize(
    ("state", "minutes_ago", "granted"),
    [
        ("claimed", 4, False),
        ("outcome_unknown", 4, False),
        ("restored", 4, False),
        ("claimed", 6, True),
        ("outcome_unknown", 6, True),
        ("restored", 6, True),
        ("released", 1, True),
    ],
)
def test_the_override_transaction_condition_itself_refuses_a_restore_that_may_be_running(
    make_guard: Callable[..., RestoreGuard], clock: Clock, state: str, minutes_ago: int, granted: bool
) -> None:
    # The read before the transaction is only for the words: the condition is the guarantee (a
    # concurrent writer may change the lock between the two). Write the lock, then call the
    # transaction alone.
    guard = make_guard()
    first = claim(guard, transition="alarm-1")
    assert isinstance(first, RestoreClaim)
    {
        "outcome_unknown": lambda: guard.mark_outcome_unknown(first, "dropped"),
        "restored": lambda: guard.mark_restored(first),
        "released": lambda: guard.release(first, "HTTP 409"),
        "claimed": lambda: None,
    }[state]()
    now = T0 + timedelta(minutes=minutes_ago)
    outcome = guard._transact_claim(
        server_id=12345,
        backup_id=502,
        transition_key="manual#x",
        alarm_name="alice",
        now=now,
        locked_until=now + timedelta(hours=6),
        slot=2,
        override_cooldown=True,
    )
    assert outcome == ("granted" if granted else "lock_taken")


def test_a_transaction_conflict_is_tried_again_on_the_same_slot(
    make_guard: Callable[..., RestoreGuard], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given DynamoDB cancelling the first two transactions for a conflict (another transaction on
    # the same item at the same moment)
    guard = make_guard(max_per_hour=3)
    real = guard._client
    calls: list[str] = []

    class Conflicting:
        exceptions = real.exceptions

        def transact_write_items(self, **kwargs: Any) -> Any:
            slot = kwargs["TransactItems"][1]["Put"]["Item"]["sk"]
            calls.append(slot)
            if len(calls) <= 2:
                raise real.exceptions.TransactionCanceledException(
                    {
                        "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                        "CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}],
                    },
                    "TransactWriteItems",
                )
            return real.transact_write_items(**kwargs)

    monkeypatch.setattr(RestoreGuard, "_client", property(lambda self: Conflicting()))
    monkeypatch.setattr("vpsbackup.restore.guard.time.sleep", lambda _s: None)
    # When a claim is made: it is tried again on the same slot, and granted on the third attempt
    granted = claim(guard)
    assert isinstance(granted, RestoreClaim)
    assert calls == ["slot#000"] * 3
    assert granted.slot == 0


def test_a_claim_whose_every_attempt_conflicts_is_refused_by_the_fleet_cap_not_granted(
    make_guard: Callable[..., RestoreGuard], monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = make_guard(max_per_hour=1)
    real = guard._client
    attempts: list[int] = []

    class AlwaysConflicting:
        exceptions = real.exceptions

        def transact_write_items(self, **kwargs: Any) -> Any:
            attempts.append(1)
            raise real.exceptions.TransactionCanceledException(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                    "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}],
                },
                "TransactWriteItems",
            )

    monkeypatch.setattr(RestoreGuard, "_client", property(lambda self: AlwaysConflicting()))
    monkeypatch.setattr("vpsbackup.restore.guard.time.sleep", lambda _s: None)
    refused = claim(guard)
    assert isinstance(refused, GuardRefusal) and refused.kind == "rate_limit"
    assert len(attempts) == 3  # conflict_attempts
    monkeypatch.undo()
    assert guard.lock_holder(12345) is None


def test_the_lock_and_the_slot_expire_a_day_after_they_stop_counting(
    make_guard: Callable[..., RestoreGuard], aws: AwsEnv
) -> None:
    # moto never expires an item: the TTLs DynamoDB acts on are asserted by value, in the future
    granted = claim(make_guard(cooldown=timedelta(hours=6)))
    assert isinstance(granted, RestoreClaim)
    table = aws.table()
    lock = table.get_item(Key={PK: lock_pk(12345), SK: LOCK_SK})["Item"]
    slot = table.get_item(Key={PK: RESTORES_PK, SK: slot_sk(0)})["Item"]
    assert int(lock[TTL_ATTRIBUTE]) == epoch(T0 + timedelta(hours=6) + timedelta(days=1))
    assert int(slot[TTL_ATTRIBUTE]) == epoch(T0 + timedelta(hours=1) + timedelta(days=1))
    assert lock["locked_until"] == "2025-01-16T22:05:00.000000Z"


def test_a_lock_from_before_locks_had_their_own_prefix_still_holds_its_cooldown(
    make_guard: Callable[..., RestoreGuard], aws: AwsEnv, clock: Clock
) -> None:
    # Given a restore claimed before the upgrade: its lock under server#<id>, where locks used to be
    guard = make_guard()
    first = claim(guard)
    assert isinstance(first, RestoreClaim)
    guard.mark_restored(first)
    table = StateTable.from_name(aws.table_name).table
    item = table.get_item(Key={PK: lock_pk(12345), SK: LOCK_SK})["Item"]
    table.delete_item(Key={PK: lock_pk(12345), SK: LOCK_SK})
    table.put_item(Item={**item, PK: server_pk(12345)})
    # When another alarm change, and a redelivery of the first, come inside the cooldown
    clock.advance(hours=2)
    # Then both are refused (the legacy lock is read and checked), and nothing is written under server#
    assert isinstance(claim(guard, transition="t2"), GuardRefusal)
    assert isinstance(claim(guard), GuardRefusal)
    holder = guard.lock_holder(12345)
    assert holder is not None and holder.transition_key == "t1"
    assert "Item" not in table.get_item(Key={PK: lock_pk(12345), SK: LOCK_SK})
    # ... and after the cooldown a new alarm change takes the lock under restore-lock#
    clock.advance(hours=5)
    assert isinstance(claim(guard, transition="t3"), RestoreClaim)
    assert table.get_item(Key={PK: lock_pk(12345), SK: LOCK_SK})["Item"]["transition"] == "t3"


def test_a_cooldown_shorter_than_the_in_flight_window_is_refused_naming_the_setting() -> None:
    """The normal claim takes the server once the cooldown is over, whatever the last restore's
    state: a cooldown shorter than IN_FLIGHT could restore over a restore still running."""
    from vpsbackup.errors import ConfigurationError
    from vpsbackup.restore.guard import IN_FLIGHT
    from vpsbackup.restore.settings import MIN_RESTORE_COOLDOWN, RestoreOnAlarmSettings
    from vpsbackup.settings import load_settings

    assert MIN_RESTORE_COOLDOWN >= IN_FLIGHT
    base = {"VPS_API_TOKEN_SECRET": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:t", "STATE_TABLE_NAME": "t"}
    with pytest.raises(ConfigurationError, match="RESTORE_COOLDOWN"):
        load_settings(RestoreOnAlarmSettings, {**base, "RESTORE_COOLDOWN": "4m59s"})
    five = load_settings(RestoreOnAlarmSettings, {**base, "RESTORE_COOLDOWN": "5m"})
    assert five.restore_cooldown == MIN_RESTORE_COOLDOWN


# -- the incident (restore.recovery) -------------------------------------------------------------


def restored_automatically(guard: RestoreGuard) -> LockHolder:
    """Server 12345 restored on an alarm at T0, its incident open; the lock as it then reads."""
    first = claim(guard)
    assert isinstance(first, RestoreClaim)
    guard.mark_restored(first, incident=True)
    holder = guard.lock_holder(12345)
    assert holder is not None
    return holder


@pytest.mark.parametrize(
    ("incident", "says"),
    [("open", "has not been seen in OK since"), ("not_cleared", "did not clear the alarm")],
)
def test_an_open_incident_refuses_every_automatic_claim_after_the_cooldown_but_not_a_person(
    make_guard: Callable[..., RestoreGuard], clock: Clock, incident: str, says: str
) -> None:
    # Given an automatic restore of server 12345 at T0, its incident open (or found not cleared)
    guard = make_guard()
    holder = restored_automatically(guard)
    assert holder.incident == "open" and holder.restored_at == T0
    if incident == "not_cleared":
        assert guard.settle_incident(holder, "not_cleared", at=T0 + timedelta(minutes=30))
    # When another alarm change (the same alarm, or another one of the server) comes after the cooldown
    clock.advance(hours=7)
    refused = claim(guard, transition="t2")
    other = guard.claim(server_id=12345, backup_id=501, transition_key="t3", alarm_name="another-alarm")

    # Then both are refused for the incident, with a clear cause; a person's restore is not
    for answer in (refused, other):
        assert isinstance(answer, GuardRefusal)
        assert answer.kind == "incident_open"
        assert says in answer.reason
    assert isinstance(claim(guard, transition="manual#abc"), RestoreClaim)


def test_the_transaction_itself_refuses_an_automatic_claim_over_an_open_incident(
    make_guard: Callable[..., RestoreGuard], clock: Clock
) -> None:
    # Given an open incident on server 12345, its cooldown over
    guard = make_guard()
    restored_automatically(guard)
    clock.advance(hours=7)
    # When a claim gets past the read (a race with the restore's follow-up), Then the condition holds
    at = clock()
    common: dict[str, Any] = {"server_id": 12345, "backup_id": 501, "alarm_name": "a", "now": at, "slot": 1}
    assert guard._transact_claim(transition_key="t2", locked_until=at + timedelta(hours=6), **common) == "lock_taken"
    assert guard._transact_claim(transition_key="manual#x", locked_until=at + timedelta(hours=6), **common) == "granted"


def test_an_incident_is_settled_once_and_a_recovery_ends_it(
    make_guard: Callable[..., RestoreGuard], clock: Clock, aws: AwsEnv
) -> None:
    guard = make_guard()
    holder = restored_automatically(guard)
    # not cleared: once, and the lock loses its expiry
    assert guard.settle_incident(holder, "not_cleared", at=T0 + timedelta(minutes=30))
    assert not guard.settle_incident(holder, "not_cleared", at=T0 + timedelta(minutes=31))
    item = aws.table().get_item(Key={PK: lock_pk(12345), SK: LOCK_SK})["Item"]
    assert TTL_ATTRIBUTE not in item
    # recovered later: once, the expiry back, and the next automatic claim (after the cooldown) granted
    assert guard.settle_incident(holder, "recovered", at=T0 + timedelta(hours=8))
    assert not guard.settle_incident(holder, "recovered", at=T0 + timedelta(hours=9))
    item = aws.table().get_item(Key={PK: lock_pk(12345), SK: LOCK_SK})["Item"]
    assert (item["incident"], TTL_ATTRIBUTE in item) == ("recovered", True)
    clock.advance(hours=8)
    assert isinstance(claim(guard, transition="t2"), RestoreClaim)


def test_a_restore_without_follow_ups_opens_no_incident(make_guard: Callable[..., RestoreGuard], clock: Clock) -> None:
    guard = make_guard()
    first = claim(guard)
    assert isinstance(first, RestoreClaim)
    guard.mark_restored(first)
    holder = guard.lock_holder(12345)
    assert holder is not None and holder.incident is None
    clock.advance(hours=7)
    assert isinstance(claim(guard, transition="t2"), RestoreClaim)


def test_inside_the_cooldown_an_open_incident_is_the_cooldowns_refusal_and_its_notice_is_its_own(
    make_guard: Callable[..., RestoreGuard], clock: Clock
) -> None:
    # Given an automatic restore at T0, its incident open
    guard = make_guard()
    first = claim(guard)
    assert isinstance(first, RestoreClaim)
    guard.mark_restored(first, incident=True)
    # When the alarm changes again inside the cooldown: the cooldown's refusal, naming the incident
    clock.advance(hours=1)
    inside = claim(guard, transition="t2")
    assert isinstance(inside, GuardRefusal) and inside.kind == "cooldown"
    assert "its incident is open" in inside.reason
    # ... and after it: the incident's
    clock.advance(hours=6)
    after = claim(guard, transition="t3")
    assert isinstance(after, GuardRefusal) and after.kind == "incident_open"
    # The cooldown's notice and the incident's are told once each, apart
    assert inside.holder is not None and after.holder is not None
    assert guard.first_cooldown_notice(inside.holder) and not guard.first_cooldown_notice(inside.holder)
    assert guard.first_incident_notice(after.holder) and not guard.first_incident_notice(after.holder)
    # ... and the incident found not cleared is told again, once
    assert guard.settle_incident(after.holder, "not_cleared", at=clock())
    cleared = guard.lock_holder(12345)
    assert cleared is not None and guard.first_incident_notice(cleared) and not guard.first_incident_notice(cleared)


def _holder(transition_key: str, backup_id: int | None, *, incident: str | None = None) -> LockHolder:
    return LockHolder(
        server_id=7,
        transition_key=transition_key,
        alarm_name="web-7-down",
        backup_id=backup_id,
        claimed_at=T0,
        locked_until=T0 + timedelta(hours=6),
        state="restored",
        incident=incident,
        restored_at=T0 + timedelta(minutes=2),
    )


def test_a_lock_taken_by_an_alarm_is_automatic_and_one_taken_by_hand_is_not() -> None:
    assert _holder("alarm#web-7-down#2025-01-16T16:05:00", 5).automatic
    assert not _holder("manual#ops@example.com#1", 5).automatic


def test_a_lock_as_an_incident_carries_its_server_alarm_transition_backup_restore_time_and_state() -> None:
    incident = _holder("alarm#web-7-down#1", 5, incident="open").as_incident()
    assert (incident.server_id, incident.alarm_name, incident.transition, incident.backup_id) == (
        7,
        "web-7-down",
        "alarm#web-7-down#1",
        5,
    )
    assert (incident.restored_at, incident.state) == (T0 + timedelta(minutes=2), "open")


def test_a_lock_is_described_with_its_backup_when_it_names_one_and_without_when_not() -> None:
    assert _holder("alarm#a#1", 5).describe() == (
        "server 7 was restored from backup 5 at 2025-01-16 16:05:00 UTC for alarm 'web-7-down'"
    )
    assert _holder("manual#ops#1", None).describe() == (
        "server 7 was restored at 2025-01-16 16:05:00 UTC by hand (web-7-down)"
    )


def test_a_limit_of_one_restore_an_hour_refuses_the_second_as_the_limit_not_as_switched_off(
    make_guard: Callable[..., RestoreGuard],
) -> None:
    guard = make_guard(max_per_hour=1)
    assert isinstance(claim(guard, server=1, transition="t1"), RestoreClaim)
    refused = claim(guard, server=2, transition="t2")
    assert isinstance(refused, GuardRefusal) and refused.kind == "rate_limit"
    assert "switched off" not in refused.reason
    assert "1 restore(s) already in the last hour" in refused.reason and "the limit is 1 per hour" in refused.reason


def test_check_reads_the_lock_itself_and_refuses_as_claim_would(make_guard: Callable[..., RestoreGuard]) -> None:
    guard = make_guard()
    assert guard.check(server_id=12345, transition_key="t1") is None
    assert isinstance(claim(guard, transition="t1"), RestoreClaim)
    again = guard.check(server_id=12345, transition_key="t1")
    inside = guard.check(server_id=12345, transition_key="t2")
    assert again is not None and again.kind == "duplicate"
    assert inside is not None and inside.kind == "cooldown"
    assert guard.check(server_id=999, transition_key="t2") is None  # another server: only the fleet cap


def _put_slot(aws: AwsEnv, index: int, taken_at: datetime) -> None:
    aws.table().put_item(
        Item={
            PK: RESTORES_PK,
            SK: slot_sk(index),
            "taken_at": utc_key_time(taken_at),
            "server_id": 1,
            "transition": "x",
        }
    )


def test_the_fleet_cap_counts_the_slots_within_the_limit_taken_inside_the_last_hour(
    make_guard: Callable[..., RestoreGuard], aws: AwsEnv
) -> None:
    # Given a limit lowered to 1 an hour: slot 0 taken 30 minutes ago, slot 1 (beyond the limit now)
    # 20 minutes ago, slot 2 two hours ago
    _put_slot(aws, 0, T0 - timedelta(minutes=30))
    _put_slot(aws, 1, T0 - timedelta(minutes=20))
    _put_slot(aws, 2, T0 - timedelta(hours=2))
    refused = claim(make_guard(max_per_hour=1))
    # Then the refusal counts slot 0 alone, and names when it frees
    assert isinstance(refused, GuardRefusal) and refused.kind == "rate_limit"
    assert refused.reason.startswith(
        "1 restore(s) already in the last hour across the fleet (at 2025-01-16 15:35:00 UTC)"
    )
    assert refused.not_before == T0 + timedelta(minutes=30)


def test_a_slot_taken_exactly_an_hour_ago_no_longer_counts_against_the_fleet_cap(
    make_guard: Callable[..., RestoreGuard], aws: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    _put_slot(aws, 0, T0 - timedelta(hours=1))
    guard = make_guard(max_per_hour=1)
    assert guard.check(server_id=12345, transition_key="t1") is None  # the slot is free again
    # Even when every attempt to take it conflicts, the refusal does not count it
    monkeypatch.setattr(RestoreGuard, "_transact_claim", lambda self, **kwargs: "conflict")
    monkeypatch.setattr("vpsbackup.restore.guard.time.sleep", lambda _s: None)
    refused = claim(guard)
    assert isinstance(refused, GuardRefusal) and refused.kind == "rate_limit"
    assert refused.reason.startswith("0 restore(s) already in the last hour") and refused.not_before == T0


def test_an_incident_notice_expires_a_day_after_the_lock_or_a_day_after_now_whichever_is_later(
    make_guard: Callable[..., RestoreGuard], clock: Clock, aws: AwsEnv
) -> None:
    # moto never expires an item: the notice's TTL is asserted by value
    guard = make_guard()
    inside = _holder("alarm#a#1", 5, incident="open")  # locked until T0 + 6 h
    assert guard.first_incident_notice(inside)
    sk = f"{INCIDENT_NOTICE_SK_PREFIX}open#alarm#a#1"
    stored = aws.table().get_item(Key={PK: lock_pk(7), SK: sk})["Item"]
    assert int(stored[TTL_ATTRIBUTE]) == epoch(T0 + timedelta(hours=6) + timedelta(days=1))
    # Long after the lock ran out, the notice still lasts a day from now
    clock.advance(hours=30)
    later = _holder("alarm#a#2", 5, incident="not_cleared")
    assert guard.first_incident_notice(later)
    stored = aws.table().get_item(Key={PK: lock_pk(7), SK: f"{INCIDENT_NOTICE_SK_PREFIX}not_cleared#alarm#a#2"})["Item"]
    assert int(stored[TTL_ATTRIBUTE]) == epoch(T0 + timedelta(hours=30) + timedelta(days=1))


def _lock_item(aws: AwsEnv, server: int = 12345) -> dict[str, Any]:
    found: dict[str, Any] = aws.table().get_item(Key={PK: lock_pk(server), SK: LOCK_SK}, ConsistentRead=True)["Item"]
    return found


def _restored_with_incident_open(make_guard: Callable[..., RestoreGuard]) -> tuple[RestoreGuard, LockHolder]:
    """An automatic restore of server 12345 at T0 (locked for 6 hours), its incident open."""
    guard = make_guard()
    first = claim(guard)
    assert isinstance(first, RestoreClaim)
    guard.mark_restored(first, incident=True)
    holder = guard.lock_holder(12345)
    assert holder is not None
    return guard, holder


def test_a_recovered_incident_gives_the_lock_back_its_expiry_a_day_after_the_lock_or_the_recovery(
    make_guard: Callable[..., RestoreGuard], clock: Clock, aws: AwsEnv
) -> None:
    guard, holder = _restored_with_incident_open(make_guard)
    # When it recovers inside the lock: the TTL is a day after the lock's end
    assert guard.settle_incident(holder, "recovered", at=T0 + timedelta(hours=1)) is True
    assert int(_lock_item(aws)[TTL_ATTRIBUTE]) == epoch(T0 + timedelta(hours=6) + timedelta(days=1))
    # ... and a second settle of the same incident is refused (False, not just falsy)
    assert guard.settle_incident(holder, "recovered", at=T0 + timedelta(hours=2)) is False


def test_a_not_cleared_incident_that_recovers_after_the_lock_expires_a_day_after_the_recovery(
    make_guard: Callable[..., RestoreGuard], aws: AwsEnv
) -> None:
    guard, holder = _restored_with_incident_open(make_guard)
    assert guard.settle_incident(holder, "not_cleared", at=T0 + timedelta(minutes=30))
    assert TTL_ATTRIBUTE not in _lock_item(aws)  # kept past its expiry while not cleared
    assert guard.settle_incident(holder, "recovered", at=T0 + timedelta(hours=30))
    assert int(_lock_item(aws)[TTL_ATTRIBUTE]) == epoch(T0 + timedelta(hours=30) + timedelta(days=1))


@pytest.mark.parametrize("ending", ["release", "unknown"])
def test_the_lock_keeps_the_first_500_characters_of_why(
    make_guard: Callable[..., RestoreGuard], aws: AwsEnv, ending: str
) -> None:
    guard = make_guard()
    granted = claim(guard)
    assert isinstance(granted, RestoreClaim)
    why = "x" * 499 + "yz" + "tail"
    if ending == "release":
        guard.release(granted, why)
    else:
        guard.mark_outcome_unknown(granted, why)
    assert _lock_item(aws)["note"] == "x" * 499 + "y"


def test_a_slot_a_concurrent_claim_took_is_tried_once_then_the_next_free_one(
    make_guard: Callable[..., RestoreGuard], aws: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given slot 0 taken 10 minutes ago by a claim the cheap read did not see (it raced it)
    _put_slot(aws, 0, T0 - timedelta(minutes=10))
    guard = make_guard(max_per_hour=2)
    monkeypatch.setattr(RestoreGuard, "slot_times", lambda self: {})
    tried: list[int] = []
    real = RestoreGuard._transact_claim

    def recording(self: RestoreGuard, **kwargs: Any) -> Any:
        tried.append(kwargs["slot"])
        return real(self, **kwargs)

    monkeypatch.setattr(RestoreGuard, "_transact_claim", recording)
    monkeypatch.setattr("vpsbackup.restore.guard.time.sleep", lambda _s: pytest.fail("a taken slot is not a conflict"))
    granted = claim(guard)
    # Then slot 0's transaction fails once, and slot 1 is taken
    assert isinstance(granted, RestoreClaim) and granted.slot == 1
    assert tried == [0, 1]


def test_conflicting_attempts_wait_longer_each_time(
    make_guard: Callable[..., RestoreGuard], monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(RestoreGuard, "_transact_claim", lambda self, **kwargs: "conflict")
    monkeypatch.setattr("vpsbackup.restore.guard.time.sleep", waits.append)
    refused = claim(make_guard(max_per_hour=1))
    assert isinstance(refused, GuardRefusal)
    assert waits == pytest.approx([0.02, 0.04, 0.06])


@pytest.mark.parametrize("lock_there", [True, False])
def test_a_lock_taken_at_the_same_moment_is_refused_with_the_lock_or_in_words(
    make_guard: Callable[..., RestoreGuard], monkeypatch: pytest.MonkeyPatch, lock_there: bool
) -> None:
    guard = make_guard()
    if lock_there:  # another alarm's claim won the race
        assert isinstance(claim(guard, transition="other"), RestoreClaim)
    precheck = RestoreGuard._precheck
    monkeypatch.setattr(RestoreGuard, "_precheck", lambda self, *a, **k: [0] if lock_there else precheck(self, *a, **k))
    monkeypatch.setattr(RestoreGuard, "_transact_claim", lambda self, **kwargs: "lock_taken")
    refused = claim(guard, transition="t1")
    assert isinstance(refused, GuardRefusal) and refused.kind == "cooldown"
    if lock_there:
        assert refused.holder is not None and refused.holder.transition_key == "other"
    else:
        assert refused.reason == "another restore of server 12345 was claimed at the same moment"


def test_an_override_at_the_instant_the_lock_ends_overrides_nothing(
    make_guard: Callable[..., RestoreGuard], clock: Clock
) -> None:
    guard = make_guard(cooldown=timedelta(hours=6))
    assert isinstance(claim(guard, transition="t1"), RestoreClaim)
    clock.advance(hours=6)
    granted = guard.claim(
        server_id=12345, backup_id=501, transition_key="manual#ops#1", alarm_name="by hand", override_cooldown=True
    )
    assert isinstance(granted, RestoreClaim) and granted.overridden is None
