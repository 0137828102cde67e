"""The plan's rules that read "now" (prune/compact_rules.py) name every instant from which the plan
may change: between two of them, the same backups and holds get the same plan. This is what lets
an incremental run leave a settled server unlisted until its ``stable_until``."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.prune.strategies import GRACE, KNOWN_TYPES, NOW, fleets, holds_for, plan_with, policies
from vpsbackup.provider.models import Backup
from vpsbackup.prune.compact_rules import time_changes
from vpsbackup.prune.incremental import ListedBackup
from vpsbackup.prune.plan import Scope
from vpsbackup.prune.retention import RetentionPolicy
from vpsbackup.records import Hold


@settings(max_examples=300, deadline=None)
@given(
    backups=fleets(max_size=25, types=KNOWN_TYPES, minutes=(0, 1, 59)),
    policy=policies(),
    scope=st.sampled_from(["managed", "manual"]),
    data=st.data(),
)
def test_the_plan_does_not_change_before_the_next_time_change(
    backups: list[Backup], policy: RetentionPolicy, scope: Scope, data: st.DataObject
) -> None:
    # Given any backups, holds (some expired), a policy and a scope
    holds = data.draw(holds_for(backups))
    listed = [ListedBackup.of(b) for b in backups]
    candidates = [b for b in listed if b.backup_type == "manual" and (scope == "manual" or b.managed)]
    # When the rules that read the clock say when they next decide otherwise
    changes = time_changes(candidates, listed, holds.values(), now=NOW, failed_grace=GRACE)
    upcoming = [moment for moment, _ in changes if moment > NOW]
    following = min(upcoming, default=NOW + timedelta(days=3650))
    later = data.draw(st.sampled_from([NOW + (following - NOW) / 2, following - timedelta(microseconds=1)]))
    # Then planned at any instant before that one, the plan is the same as now, reason for reason
    at_now = plan_with(backups, policy, scope=scope, holds=holds)
    at_later = plan_with(backups, policy, scope=scope, holds=holds, now=later)
    assert at_later.decisions == at_now.decisions


def test_each_rule_that_reads_the_clock_names_its_instant() -> None:
    # Given a failed candidate, a backup dated in the future, one dated exactly now, and a hold in force
    failed = ListedBackup(1, "manual", "failed", NOW - timedelta(hours=2), True)
    future = ListedBackup(2, "manual", "completed", NOW + timedelta(days=3), True)
    exactly_now = ListedBackup(3, "manual", "completed", NOW, True)
    # (and, naming none: a completed backup dated in the past, a failed one dated in the future)
    past = ListedBackup(6, "manual", "completed", NOW - timedelta(days=1), True)
    failed_future = ListedBackup(7, "manual", "failed", NOW + timedelta(days=1), True)
    hold = Hold(backup_id=4, server_id=1, until=NOW + timedelta(hours=5))
    expired = Hold(backup_id=5, server_id=1, until=NOW)
    # When asked, Then each names the first instant from which it decides otherwise
    got = time_changes(
        [failed], [failed, future, exactly_now, past, failed_future], [hold, expired], now=NOW, failed_grace=GRACE
    )
    assert sorted(got) == sorted(
        [
            (NOW - timedelta(hours=2) + GRACE + timedelta(microseconds=1), "failed backup 1 leaves its grace"),
            (NOW + timedelta(days=3), "backup 2 is dated in the future"),
            (NOW + timedelta(microseconds=1), "backup 3 is dated in the future"),
            (NOW + timedelta(hours=5), "the hold on backup 4 ends"),
        ]
    )
