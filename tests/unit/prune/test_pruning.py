"""Example-based tests of the prune plan (plan_fleet): scope, statuses, failed grace, holds, valve, overrides."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.unit.prune.strategies import plan_backups
from vpsbackup.markers import make_marker
from vpsbackup.provider.models import Backup
from vpsbackup.prune.compact import FleetPlan
from vpsbackup.prune.plan import PlanInputs, Scope
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy
from vpsbackup.records import Hold

NOW = datetime(2025, 1, 20, 12, 0, tzinfo=UTC)
ZONE = ZoneInfo("UTC")
KEEP_ONE = RetentionPolicy(keep_last=1)


def backup(
    backup_id: int,
    *,
    server: int = 1,
    age: timedelta = timedelta(days=1),
    status: str = "completed",
    backup_type: str = "manual",
    managed: bool = True,
) -> Backup:
    description = f"Release {make_marker(f'dep-{backup_id}')}" if managed else "Before the upgrade, by hand"
    return Backup.model_validate(
        {
            "id": backup_id,
            "server": {"id": server, "name": f"srv-{server}"},
            "backup_type": backup_type,
            "status": status,
            "created_at": (NOW - age).isoformat(),
            "description": description,
        }
    )


def plan(
    backups: list[Backup],
    *,
    policy: RetentionPolicy | RetentionPolicies = KEEP_ONE,
    scope: Scope = "managed",
    holds: dict[int, Hold] | None = None,
    max_deletions: int = 50,
    server_ids: set[int] | None = None,
) -> FleetPlan:
    policies = policy if isinstance(policy, RetentionPolicies) else RetentionPolicies(policy)
    return plan_backups(
        backups,
        policy_for=policies,
        tz=ZONE,
        now=NOW,
        scope=scope,
        holds=holds or {},
        failed_grace=timedelta(hours=24),
        max_deletions=max_deletions,
        server_ids=server_ids,
    )


def actions(result: FleetPlan) -> dict[int, str]:
    return {d.backup_id: d.action for d in result.decisions}


def reasons(result: FleetPlan, backup_id: int) -> tuple[str, ...]:
    return next(d.reasons for d in result.decisions if d.backup_id == backup_id)


def test_retention_deletes_what_no_rule_keeps() -> None:
    # Given three managed completed backups and keep_last=1
    result = plan([backup(1, age=timedelta(days=3)), backup(2, age=timedelta(days=2)), backup(3)])
    # Then the newest is kept and the others are deleted, oldest first
    assert actions(result) == {3: "keep", 2: "delete", 1: "delete"}
    assert [d.backup_id for d in result.to_delete] == [1, 2]
    assert reasons(result, 3) == ("newest completed", "last snapshot")
    assert reasons(result, 1) == ("no retention rule keeps it (last 1)",)
    assert dict(result.totals) == {"delete": 2, "keep": 1, "skip": 0, "defer": 0}
    assert not result.valve_tripped


def test_failed_backups_go_after_the_grace_and_count_for_no_rule() -> None:
    result = plan(
        [
            backup(1, age=timedelta(hours=1), status="failed"),  # newest, but failed: not "last"
            backup(2, age=timedelta(hours=25), status="failed"),
            backup(3, age=timedelta(hours=2)),
            backup(4, age=timedelta(hours=3)),
        ]
    )
    assert actions(result) == {1: "keep", 2: "delete", 3: "keep", 4: "delete"}
    assert reasons(result, 1) == ("failed, within grace (1 day)",)
    assert reasons(result, 2) == ("failed, older than 1 day",)


def test_failed_exactly_at_the_grace_is_still_kept() -> None:
    result = plan([backup(1, age=timedelta(hours=24), status="failed"), backup(2)])
    assert actions(result)[1] == "keep"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"backup_type": "automatic"}, "automatic backups expire by themselves"),
        ({"backup_type": "snapshot"}, "backup type 'snapshot' is never pruned"),
        ({"managed": False}, "not made by this project"),
        ({"status": "in_progress"}, "in progress"),
        ({"status": "deleting"}, "unknown status 'deleting'"),
    ],
)
def test_non_candidates_are_skipped_with_their_reason(kwargs: dict[str, Any], reason: str) -> None:
    # Old enough and outnumbered: a candidate in its place would be deleted.
    result = plan([backup(1, age=timedelta(days=30), **kwargs), backup(2), backup(3, age=timedelta(hours=1))])
    assert actions(result)[1] == "skip"
    assert reasons(result, 1) == (reason,)


def test_scope_manual_adds_peoples_manual_backups() -> None:
    backups = [backup(1, age=timedelta(days=5), managed=False), backup(2)]
    assert actions(plan(backups, scope="managed"))[1] == "skip"
    assert actions(plan(backups, scope="manual"))[1] == "delete"


def test_a_future_dated_backup_neither_shifts_the_window_nor_loses_its_protection() -> None:
    # keep_within counts back from the newest backup dated before now (restic's guard), so a
    # clock-skewed backup 30 days ahead does not push the window past the ordinary ones.
    result = plan(
        [backup(1, age=-timedelta(days=30)), backup(2, age=timedelta(hours=2)), backup(3, age=timedelta(days=2))],
        policy=RetentionPolicy(keep_within=timedelta(days=1)),
    )
    assert actions(result) == {1: "keep", 2: "keep", 3: "delete"}
    assert reasons(result, 1) == ("newest completed", "within 1d")


def test_newest_completed_over_all_backups_and_the_newest_candidate_both_stay() -> None:
    # An automatic backup is the server's newest completed; the newest managed one stays as well.
    result = plan(
        [
            backup(1, backup_type="automatic", age=timedelta(hours=1)),
            backup(2, age=timedelta(hours=5)),
            backup(3, age=timedelta(hours=6)),
        ],
        policy=RetentionPolicy(keep_within=timedelta(hours=10)),
    )
    assert actions(result) == {1: "skip", 2: "keep", 3: "keep"}
    assert reasons(result, 2)[0] == "newest completed in scope"
    assert reasons(result, 1) == ("automatic backups expire by themselves",)


def test_a_held_backup_is_never_deleted_and_an_expired_hold_is_ignored() -> None:
    holds = {
        1: Hold(backup_id=1, server_id=1, until=NOW + timedelta(days=2), reason="restore after alarm api-5xx"),
        2: Hold(backup_id=2, server_id=1, until=NOW - timedelta(seconds=1), reason="old restore"),
        4: Hold(backup_id=4, server_id=1, until=NOW + timedelta(days=2)),
    }
    result = plan(
        [
            backup(1, age=timedelta(days=9)),
            backup(2, age=timedelta(days=8)),
            backup(3),
            backup(4, age=timedelta(days=3), status="failed"),
        ],
        holds=holds,
    )
    assert actions(result) == {1: "keep", 2: "delete", 3: "keep", 4: "keep"}
    assert reasons(result, 1) == ("hold until 2025-01-22T12:00:00+00:00: restore after alarm api-5xx",)
    assert reasons(result, 4) == ("hold until 2025-01-22T12:00:00+00:00", "failed, older than 1 day")


def test_valve_deletes_the_oldest_across_the_fleet_and_defers_the_rest() -> None:
    backups = [
        backup(10, server=1, age=timedelta(days=10)),
        backup(11, server=1, age=timedelta(days=7)),
        backup(12, server=1),
        backup(20, server=2, age=timedelta(days=9)),
        backup(21, server=2, age=timedelta(days=3)),
        backup(22, server=2),
    ]
    result = plan(backups, max_deletions=2)
    assert [d.backup_id for d in result.to_delete] == [10, 20]
    assert [d.backup_id for d in result.deferred] == [11, 21]
    assert result.valve_tripped
    assert reasons(result, 11)[-1] == "deferred (valve): at most 2 deletions per run"
    assert dict(result.totals) == {"delete": 2, "keep": 2, "skip": 0, "defer": 2}


def test_valve_exactly_at_the_limit_does_not_trip_and_zero_defers_everything() -> None:
    backups = [backup(1, age=timedelta(days=2)), backup(2)]
    assert not plan(backups, max_deletions=1).valve_tripped
    zero = plan(backups, max_deletions=0)
    assert zero.valve_tripped
    assert zero.to_delete == ()
    assert actions(zero) == {1: "defer", 2: "keep"}


def test_overrides_replace_the_default_policy_per_server() -> None:
    policies = RetentionPolicies(KEEP_ONE, {2: RetentionPolicy(keep_last=3)})
    backups = [backup(i + 10 * s, server=s, age=timedelta(days=i)) for s in (1, 2) for i in range(3)]
    result = plan(backups, policy=policies)
    assert {d.backup_id for d in result.to_delete} == {11, 12}


def test_server_ids_limit_the_plan() -> None:
    backups = [
        backup(1, server=1, age=timedelta(days=2)),
        backup(2, server=1),
        backup(3, server=2, age=timedelta(days=2)),
        backup(4, server=2),
    ]
    result = plan(backups, server_ids={2})
    assert set(actions(result)) == {3, 4}
    assert [d.backup_id for d in result.to_delete] == [3]


def test_the_same_backup_listed_twice() -> None:
    # Identical copies (a page boundary shifted) collapse to one; copies that disagree are left alone.
    old, new = backup(1, age=timedelta(days=2)), backup(2)
    changed = backup(1, age=timedelta(days=2), status="in_progress")
    assert actions(plan([old, new, old])) == {1: "delete", 2: "keep"}
    result = plan([old, new, changed])
    assert actions(result) == {1: "skip", 2: "keep"}
    assert reasons(result, 1) == ("listed more than once with different data",)
    assert plan([changed, new, old]) == result


def test_a_decision_is_json_with_iso_times() -> None:
    result = plan([backup(1, age=timedelta(days=2)), backup(2)])
    assert [d.backup_id for d in result.to_delete] == [1]
    assert result.totals == {"delete": 1, "keep": 1, "skip": 0, "defer": 0}
    assert result.decisions is not None
    data = json.loads(json.dumps([d.to_dict() for d in result.decisions]))
    assert data[1] == {
        "backup_id": 1,
        "server_id": 1,
        "created_at": "2025-01-18T12:00:00+00:00",
        "status": "completed",
        "backup_type": "manual",
        "action": "delete",
        "reasons": ["no retention rule keeps it (last 1)"],
    }


def test_decisions_are_ordered_by_server_then_newest_first() -> None:
    backups = [backup(3, server=2), backup(1, server=1, age=timedelta(days=2)), backup(2, server=1)]
    assert [d.backup_id for d in plan(backups).decisions] == [2, 1, 3]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_deletions": -1}, "max_deletions"),
        ({"scope": "everything"}, "scope"),
        ({"now": datetime(2025, 1, 1)}, "aware"),
        ({"failed_grace": timedelta(hours=-1)}, "failed_grace"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "policy_for": RetentionPolicies(KEEP_ONE),
        "tz": ZONE,
        "now": NOW,
        "scope": "managed",
        "holds": {},
        "failed_grace": timedelta(hours=24),
        "max_deletions": 5,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        PlanInputs(**arguments)
