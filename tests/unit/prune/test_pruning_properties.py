"""Property-based tests of the prune plan: the promises of docs/prune.md over random fleets."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.prune.strategies import GRACE, KNOWN_TYPES, NOW, ZONES, holds_for, plan_with, policies, walked
from tests.unit.prune.strategies import fleets as any_fleets
from vpsbackup.markers import is_managed
from vpsbackup.provider.models import Backup
from vpsbackup.prune.plan import Scope
from vpsbackup.prune.retention import RetentionPolicy

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


def fleets() -> st.SearchStrategy[list[Backup]]:
    """Up to 40 backups on up to 3 servers, manual and automatic ones (shared strategy)."""
    return any_fleets(types=KNOWN_TYPES)


run = plan_with


@PROPERTY_SETTINGS
@given(
    backups=fleets(),
    policy=policies(),
    tz=st.sampled_from(ZONES),
    scope=st.sampled_from(["managed", "manual"]),
    max_deletions=st.integers(0, 20),
    data=st.data(),
)
def test_plan_does_not_depend_on_input_order_or_repeats(
    backups: list[Backup], policy: RetentionPolicy, tz: ZoneInfo, scope: Scope, max_deletions: int, data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(backups))
    repeated = shuffled + data.draw(st.lists(st.sampled_from(backups), max_size=5)) if backups else shuffled
    first = run(backups, policy, tz=tz, scope=scope, max_deletions=max_deletions)
    second = run(repeated, policy, tz=tz, scope=scope, max_deletions=max_deletions)
    assert first == second


@PROPERTY_SETTINGS
@given(backups=fleets(), policy=policies(), scope=st.sampled_from(["managed", "manual"]), data=st.data())
def test_never_deletes_what_it_must_keep(
    backups: list[Backup], policy: RetentionPolicy, scope: Scope, data: st.DataObject
) -> None:
    holds = data.draw(holds_for(backups))
    result = run(backups, policy, scope=scope, holds=holds, max_deletions=data.draw(st.integers(0, 50)))
    by_id = {b.id: b for b in backups}
    newest_completed = {}
    for b in sorted(backups, key=lambda b: (b.created_at, b.id)):
        if b.status == "completed":
            newest_completed[b.server_id] = b.id

    assert sum(result.totals.values()) == len(backups) == len(result.decisions)
    for decision in result.decisions:
        b = by_id[decision.backup_id]
        out_of_scope = b.backup_type != "manual" or (scope == "managed" and not is_managed(b.description))
        if out_of_scope or b.status not in ("completed", "failed"):
            assert decision.action == "skip", decision
        if decision.action in ("delete", "defer"):
            assert b.backup_type == "manual"
            assert b.id != newest_completed.get(b.server_id)
            assert not (b.id in holds and holds[b.id].until > NOW)
            assert b.status == "completed" or NOW - b.created_at > GRACE
    for server_id, backup_id in newest_completed.items():
        assert backup_id not in {d.backup_id for d in result.to_delete}, server_id


@PROPERTY_SETTINGS
@given(backups=fleets(), policy=policies(), tz=st.sampled_from(ZONES), data=st.data())
def test_larger_policy_deletes_a_subset(
    backups: list[Backup], policy: RetentionPolicy, tz: ZoneInfo, data: st.DataObject
) -> None:
    def grow(value: int | None) -> int:
        return (value or 0) + data.draw(st.integers(0, 3))

    larger = RetentionPolicy(
        keep_last=grow(policy.keep_last),
        keep_hourly=grow(policy.keep_hourly),
        keep_daily=grow(policy.keep_daily),
        keep_weekly=grow(policy.keep_weekly),
        keep_monthly=grow(policy.keep_monthly),
        keep_yearly=grow(policy.keep_yearly),
        keep_within=(policy.keep_within or timedelta(0)) + timedelta(hours=data.draw(st.integers(0, 100))),
    )
    small = {d.backup_id for d in run(backups, policy, tz=tz, scope="manual").to_delete}
    large = {d.backup_id for d in run(backups, larger, tz=tz, scope="manual").to_delete}
    assert large <= small


@PROPERTY_SETTINGS
@given(backups=fleets(), policy=policies(), max_deletions=st.integers(0, 15))
def test_valve_lets_through_the_oldest_would_be_deletions(
    backups: list[Backup], policy: RetentionPolicy, max_deletions: int
) -> None:
    unlimited = run(backups, policy, scope="manual")
    limited = run(backups, policy, scope="manual", max_deletions=max_deletions)
    would = sorted(unlimited.to_delete, key=lambda d: (d.created_at, d.backup_id))
    assert [d.backup_id for d in limited.to_delete] == [d.backup_id for d in would[:max_deletions]]
    assert [d.backup_id for d in limited.deferred] == [d.backup_id for d in would[max_deletions:]]
    assert limited.valve_tripped == (len(would) > max_deletions)
    assert limited.totals["delete"] == len(limited.to_delete) <= max_deletions
    # Apart from the valve's choice, the two plans agree.
    assert {d.backup_id: d.action for d in limited.decisions if d.action not in ("delete", "defer")} == {
        d.backup_id: d.action for d in unlimited.decisions if d.action != "delete"
    }


@PROPERTY_SETTINGS
@given(
    times=st.lists(st.integers(-1000, 1000).map(lambda h: NOW + timedelta(hours=h)), min_size=1, max_size=30),
    policy=policies(),
    tz=st.sampled_from(ZONES),
    data=st.data(),
)
def test_retention_keeps_the_newest_and_each_rule_one_backup_per_bucket_within_its_budget(
    times: list[datetime], policy: RetentionPolicy, tz: ZoneInfo, data: st.DataObject
) -> None:
    # Given a server's backups (some at the same time) and a policy, When the plan's walk runs
    times = times + data.draw(st.lists(st.sampled_from(times), max_size=3))
    decisions = walked(enumerate(times), policy, tz, now=NOW)
    # Then the newest is kept
    assert decisions[0].keep
    # And each count rule keeps at most its budget, one backup per bucket but for the oldest one
    for rule, budget in policy.counts().items():
        matches = [(nr, m.text) for nr, d in enumerate(decisions) for m in d.matches if m.rule == rule]
        assert len(matches) <= budget
        plain = [text for _, text in matches if not text.startswith("oldest ")]
        assert rule == "last" or len(set(plain)) == len(plain)
        assert all(nr == len(decisions) - 1 for nr, text in matches if text.startswith("oldest "))
    # And keep_within keeps exactly what is newer than the newest backup dated before now, less the window
    past = [t for t in times if t < NOW]
    if policy.keep_within and past:
        cutoff = max(past) - policy.keep_within
        assert [any(m.rule == "within" for m in d.matches) for d in decisions] == [d.time > cutoff for d in decisions]
