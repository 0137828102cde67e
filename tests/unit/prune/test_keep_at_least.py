"""KEEP_AT_LEAST: a floor under retention. Whatever the policy, the newest N completed backups in
scope stay on each server, with the reason ``keep at least N``; ``1`` adds nothing to the newest
completed backup's own protection."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.prune.strategies import KNOWN_TYPES, NOW, fleets, holds_for, plan_with, policies
from vpsbackup.markers import make_marker
from vpsbackup.provider.models import Backup
from vpsbackup.prune.compact import FleetPlan
from vpsbackup.prune.plan import Scope
from vpsbackup.prune.retention import RetentionPolicy
from vpsbackup.records import Hold


def backup(
    backup_id: int,
    days_ago: float,
    *,
    status: str = "completed",
    kind: str = "manual",
    managed: bool = True,
    server: int = 1,
) -> Backup:
    return Backup.model_validate(
        {
            "id": backup_id,
            "server": {"id": server},
            "backup_type": kind,
            "status": status,
            "created_at": NOW - timedelta(days=days_ago),
            "description": make_marker(f"d{backup_id}") if managed else "by hand",
        }
    )


plan = plan_with


def actions(result: FleetPlan) -> dict[int, str]:
    return {d.backup_id: d.action for d in result.decisions}


def reasons(result: FleetPlan) -> dict[int, tuple[str, ...]]:
    return {d.backup_id: d.reasons for d in result.decisions}


KEEP_LAST_1 = RetentionPolicy(keep_last=1)


def test_keep_at_least_3_keeps_three_under_keep_last_1() -> None:
    # Given six completed managed backups, one a day, and {"keep_last": 1}
    fleet = [backup(100 + day, day) for day in range(6)]
    # When the plan has KEEP_AT_LEAST=3
    result = plan(fleet, KEEP_LAST_1, keep_at_least=3)
    # Then the three newest are kept, the two after the newest because of the floor
    assert actions(result) == {100: "keep", 101: "keep", 102: "keep", 103: "delete", 104: "delete", 105: "delete"}
    assert "keep at least 3" not in reasons(result)[100]  # kept as the newest already
    assert reasons(result)[101][0] == "keep at least 3"
    assert reasons(result)[102][0] == "keep at least 3"
    assert not any(r.startswith("no retention rule keeps it") for r in reasons(result)[101])


def test_only_completed_backups_in_scope_count_toward_the_floor() -> None:
    # Given, newest first: an automatic backup, people's manual one, an in-progress one, a failed one,
    # then four completed managed ones
    fleet = [
        backup(1, 0.1, kind="automatic"),
        backup(2, 0.2, managed=False),
        backup(3, 0.3, status="in_progress"),
        backup(4, 0.4, status="failed"),
        *(backup(10 + i, 1 + i) for i in range(4)),
    ]
    # When KEEP_AT_LEAST=3 under keep_last 1
    result = plan(fleet, KEEP_LAST_1, keep_at_least=3)
    # Then the three newest managed completed ones are kept; none of the others counted
    assert [actions(result)[10 + i] for i in range(4)] == ["keep", "keep", "keep", "delete"]
    assert "keep at least 3" in reasons(result)[11]
    assert "keep at least 3" in reasons(result)[12]


def test_a_floor_above_what_exists_keeps_everything_and_is_not_an_error() -> None:
    fleet = [backup(100 + day, day) for day in range(3)]
    assert set(actions(plan(fleet, KEEP_LAST_1, keep_at_least=10)).values()) == {"keep"}


def test_the_floor_is_per_server() -> None:
    fleet = [backup(100 + day, day, server=1) for day in range(4)] + [backup(200 + d, d, server=2) for d in range(4)]
    result = actions(plan(fleet, KEEP_LAST_1, keep_at_least=2))
    assert [result[100 + d] for d in range(4)] == ["keep", "keep", "delete", "delete"]
    assert [result[200 + d] for d in range(4)] == ["keep", "keep", "delete", "delete"]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_a_bad_floor_is_refused_naming_it(bad: object) -> None:
    with pytest.raises(ValueError, match="keep_at_least"):
        plan([backup(1, 1)], KEEP_LAST_1, keep_at_least=bad)  # type: ignore[arg-type]


# -- properties ------------------------------------------------------------------------------------


def draw_case(data: st.DataObject) -> tuple[list[Backup], RetentionPolicy, Scope, dict[int, Hold]]:
    """Any fleet, policy, scope and holds, drawn in this order."""
    # Up to 30 backups on up to 3 servers, some listed twice identically
    listed = data.draw(fleets(max_size=30, types=KNOWN_TYPES, copies=3))
    policy = data.draw(policies(max_count=5))
    scope: Scope = data.draw(st.sampled_from(["managed", "manual"]))
    return listed, policy, scope, data.draw(holds_for(listed, max_size=4))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_keep_at_least_1_protects_nothing_more_than_the_newest(data: st.DataObject) -> None:
    # Given any fleet, policy, scope, holds and valve
    listed, policy, scope, holds = draw_case(data)
    max_deletions = data.draw(st.integers(0, 40))
    # When planned with KEEP_AT_LEAST=1
    result = plan(listed, policy, keep_at_least=1, scope=scope, holds=holds, max_deletions=max_deletions)
    # Then no backup is kept by the floor, and the plan is the one made without naming it
    assert result.decisions is not None
    assert not [d for d in result.decisions if any(r.startswith("keep at least") for r in d.reasons)]
    assert result == plan(listed, policy, scope=scope, holds=holds, max_deletions=max_deletions)


def in_scope_completed_newest_first(result: FleetPlan, listed: list[Backup], scope: Scope, server: int) -> list[int]:
    from vpsbackup.markers import is_managed

    by_id = {d.backup_id: d for d in result.decisions}
    conflicting = {d.backup_id for d in result.decisions if "listed more than once with different data" in d.reasons}
    pool = {
        b.id: b
        for b in listed
        if b.server_id == server
        and b.backup_type == "manual"
        and b.status == "completed"
        and b.id not in conflicting
        and (scope == "manual" or is_managed(b.description))
        and b.id in by_id
    }
    return [b.id for b in sorted(pool.values(), key=lambda b: (b.created_at, b.id), reverse=True)]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_floor_keeps_the_newest_n_and_changes_nothing_else(data: st.DataObject) -> None:
    # Given any fleet, policy, scope and holds, and a floor N
    listed, policy, scope, holds = draw_case(data)
    n = data.draw(st.integers(1, 8))
    # When planned with and without the floor (valve open, so deferrals do not interfere)
    floor = plan(listed, policy, keep_at_least=n, scope=scope, holds=holds)
    base = plan(listed, policy, keep_at_least=1, scope=scope, holds=holds)
    floor_actions, base_actions = actions(floor), actions(base)
    floor_reasons = reasons(floor)
    for server in {b.server_id for b in listed}:
        newest = in_scope_completed_newest_first(floor, listed, scope, server)
        # Then each server keeps at least min(N, its completed backups in scope), the newest ones
        assert all(floor_actions[i] == "keep" for i in newest[:n])
        assert sum(1 for i in newest if floor_actions[i] != "delete") >= min(n, len(newest))
        # the ones after the newest carry the reason
        assert all(f"keep at least {n}" in floor_reasons[i] for i in newest[1:n])
    # And nothing else changes: every other backup is decided as without the floor
    lifted = {i for i in floor_actions if floor_actions[i] != base_actions[i]}
    assert all(base_actions[i] == "delete" and floor_actions[i] == "keep" for i in lifted)
    assert all(f"keep at least {n}" in floor_reasons[i] for i in lifted)
