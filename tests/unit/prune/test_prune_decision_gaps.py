"""The prune decisions an outside mutation run found untested (issue "tests that catch a wrong
decision"), each pinned through the plan production makes: a compact listing planned by
:func:`plan_fleet`, every decision kept.

- the ``KEEP_AT_LEAST`` floor protects exactly N (not N - 1) completed backups in scope;
- the failed-backup grace is measured in the grace's own unit (a failed backup at 60 % of its
  grace is kept), and a failed backup exactly at its grace is still kept;
- a backup dated exactly now is not "in the future" (not protected as such, and ``keep_within``
  does not count from it), and when the newest is in the future the one dated exactly now is the
  newest not dated in the future.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vpsbackup.markers import make_marker
from vpsbackup.provider.models import Backup
from vpsbackup.prune.compact import CompactListing, FleetPlan, plan_fleet
from vpsbackup.prune.plan import REASON_NEWEST_NOT_FUTURE, PlanInputs
from vpsbackup.prune.retention import RetentionPolicy

NOW = datetime(2025, 3, 30, 12, 0, tzinfo=UTC)
GRACE = timedelta(hours=24)
KEEP_LAST_1 = RetentionPolicy(keep_last=1)


def backup(backup_id: int, created_at: datetime, *, status: str = "completed", server: int = 1) -> Backup:
    return Backup.model_validate(
        {
            "id": backup_id,
            "server": {"id": server},
            "backup_type": "manual",
            "status": status,
            "created_at": created_at,
            "description": make_marker(f"d{backup_id}"),
        }
    )


def planned(backups: list[Backup], policy: RetentionPolicy = KEEP_LAST_1, *, keep_at_least: int = 1) -> FleetPlan:
    listing = CompactListing()
    listing.extend(backups)
    inputs = PlanInputs(
        policy_for=lambda _: policy,
        tz=UTC,
        now=NOW,
        scope="managed",
        holds={},
        failed_grace=GRACE,
        max_deletions=10_000,
        keep_at_least=keep_at_least,
    )
    return plan_fleet(listing, inputs, keep_decisions=True)


def actions(plan: FleetPlan) -> dict[int, str]:
    assert plan.decisions is not None
    return {d.backup_id: d.action for d in plan.decisions}


def reasons(plan: FleetPlan) -> dict[int, tuple[str, ...]]:
    assert plan.decisions is not None
    return {d.backup_id: d.reasons for d in plan.decisions}


@pytest.mark.parametrize("floor", [2, 3, 5])
def test_the_fleet_plans_keep_at_least_floor_keeps_exactly_that_many_completed_backups(floor: int) -> None:
    # Given seven completed managed backups, one a day, and {"keep_last": 1}
    fleet = [backup(100 + day, NOW - timedelta(days=day, hours=1)) for day in range(7)]
    # When the fleet plan has KEEP_AT_LEAST=floor
    plan = planned(fleet, keep_at_least=floor)
    # Then the newest `floor` are kept, every one after the newest by the floor, and no more
    assert actions(plan) == {100 + day: "keep" if day < floor else "delete" for day in range(7)}
    assert [reasons(plan)[100 + day][0] for day in range(1, floor)] == [f"keep at least {floor}"] * (floor - 1)
    assert f"keep at least {floor}" not in reasons(plan)[100]  # kept as the newest already
    assert plan.totals["delete"] == 7 - floor


def test_a_failed_backup_is_kept_through_its_whole_grace_not_half_of_it() -> None:
    # Given a newest completed backup and failed backups at 40 %, 60 % and 99 % of the 24-hour grace
    fleet = [
        backup(1, NOW - timedelta(minutes=30)),
        backup(2, NOW - GRACE * 0.4, status="failed"),
        backup(3, NOW - GRACE * 0.6, status="failed"),
        backup(4, NOW - GRACE * 0.99, status="failed"),
    ]
    # When the fleet plan runs
    plan = planned(fleet)
    # Then every failed backup is kept, as still within its grace
    assert actions(plan) == {1: "keep", 2: "keep", 3: "keep", 4: "keep"}
    assert all("grace" in reasons(plan)[backup_id][0] for backup_id in (2, 3, 4))


def test_a_failed_backup_exactly_at_its_grace_is_kept_and_deleted_a_microsecond_later() -> None:
    # Given a newest completed backup, a failed backup dated exactly one grace ago and one a
    # microsecond older
    fleet = [
        backup(1, NOW - timedelta(minutes=30)),
        backup(2, NOW - GRACE, status="failed"),
        backup(3, NOW - GRACE - timedelta(microseconds=1), status="failed"),
    ]
    # When the fleet plan runs
    plan = planned(fleet)
    # Then the one exactly at its grace is kept, the older one deleted
    assert actions(plan) == {1: "keep", 2: "keep", 3: "delete"}


def test_a_backup_dated_exactly_now_is_not_in_the_future() -> None:
    # Given the newest completed backup dated exactly now, and two older ones
    fleet = [backup(1, NOW), backup(2, NOW - timedelta(days=1)), backup(3, NOW - timedelta(days=2))]
    # When the fleet plan runs with {"keep_last": 1}
    plan = planned(fleet)
    # Then the newest is kept as the newest, none "not dated in the future", the older ones deleted
    assert actions(plan) == {1: "keep", 2: "delete", 3: "delete"}
    assert not any(REASON_NEWEST_NOT_FUTURE in why for why in reasons(plan).values())


def test_when_the_newest_is_in_the_future_the_one_dated_exactly_now_is_the_newest_not_in_the_future() -> None:
    # Given, newest first: a backup dated an hour after now, one dated exactly now, one a day old
    fleet = [backup(1, NOW + timedelta(hours=1)), backup(2, NOW), backup(3, NOW - timedelta(days=1))]
    # When the fleet plan runs with {"keep_last": 1}
    plan = planned(fleet)
    # Then the one dated exactly now is kept as the newest not dated in the future; the older one goes
    assert actions(plan) == {1: "keep", 2: "keep", 3: "delete"}
    assert REASON_NEWEST_NOT_FUTURE in reasons(plan)[2]
    assert REASON_NEWEST_NOT_FUTURE not in reasons(plan)[3]


def test_keep_within_counts_back_from_the_newest_backup_before_now_not_from_one_dated_exactly_now() -> None:
    # Given backups dated exactly now, 36, 72 and 100 hours ago, and {"keep_within": "2d"}
    fleet = [backup(1, NOW), *(backup(n, NOW - timedelta(hours=hours)) for n, hours in ((2, 36), (3, 72), (4, 100)))]
    # When the fleet plan runs
    plan = planned(fleet, RetentionPolicy(keep_within=timedelta(days=2)))
    # Then the window runs two days back from the 36-hour-old one (the newest dated before now):
    # the 72-hour-old one is inside it too, the 100-hour-old one is not
    assert actions(plan) == {1: "keep", 2: "keep", 3: "keep", 4: "delete"}
    assert reasons(plan)[3] == ("within 2d",)


def test_a_server_with_failed_backups_only_has_no_newest_completed_to_protect() -> None:
    # Given a listing with no completed backup at all: failed ones, all past their grace but one
    fleet = [
        backup(301, NOW - GRACE - timedelta(hours=1), status="failed"),
        backup(302, NOW - GRACE - timedelta(days=3), status="failed"),
        backup(303, NOW - timedelta(hours=2), status="failed"),
    ]
    plan = planned(fleet)
    # Then no failed backup is protected as "the newest completed": those past their grace go, the
    # young one is kept by its grace
    assert actions(plan) == {301: "delete", 302: "delete", 303: "keep"}
    fleet_past_grace = [backup(301, NOW - GRACE - timedelta(hours=1), status="failed")]
    assert actions(planned(fleet_past_grace)) == {301: "delete"}


def test_a_backup_listed_twice_with_different_data_is_not_the_newest_completed_of_its_server() -> None:
    # Given a server's newest backup listed twice, under two servers (its data disagree), and two
    # older completed backups
    twice = backup(401, NOW - timedelta(hours=1))
    elsewhere = backup(401, NOW - timedelta(hours=1), server=2)
    fleet = [twice, elsewhere, backup(402, NOW - timedelta(days=1)), backup(403, NOW - timedelta(days=2))]
    # When the fleet plan runs with {"keep_last": 1}
    plan = planned(fleet)
    # Then the doubtful copy is left alone, and the newest completed backup the plan protects is the
    # next one: kept as "newest completed", not merely as the newest in scope
    assert actions(plan) == {401: "skip", 402: "keep", 403: "delete"}
    assert reasons(plan)[401] == ("listed more than once with different data",)
    assert reasons(plan)[402][0] == "newest completed"
