"""The prune plan, split into named steps, decides exactly as the frozen pre-refactor copy does.

``legacy_plan`` is that copy (see its docstring). Given random fleets (duplicates and conflicting
copies, every status and type, future dates, holds, per-server policies, scopes, server filters and
valve sizes), when both plan, then every decision, reason, order, deferral and total is the same.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.prune.legacy_plan import plan_prune as legacy_plan_prune
from tests.unit.prune.strategies import NOW, ZONES, fleets, holds_for, policies
from vpsbackup.prune.plan import plan_prune
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_plan_prune_decides_as_before(data: st.DataObject) -> None:
    # Up to 40 backups on up to 3 servers; some listed twice, identically or with different data
    fleet = data.draw(fleets(minutes=(0, 0, 30), copies=4, redrawn=True))
    listed = data.draw(st.permutations(fleet))
    policy_for = RetentionPolicies(
        default=data.draw(policies()),
        overrides=data.draw(st.dictionaries(st.integers(1, 3), policies(), max_size=2)),
    )
    kwargs = {
        "policy_for": policy_for,
        "tz": data.draw(st.sampled_from(ZONES)),
        "now": NOW,
        "scope": data.draw(st.sampled_from(["managed", "manual"])),
        "holds": data.draw(holds_for(listed, reasons=("", "restored server 1"))),
        "failed_grace": timedelta(hours=data.draw(st.sampled_from([0, 24, 72]))),
        "max_deletions": data.draw(st.integers(0, 12)),
        "server_ids": data.draw(st.one_of(st.none(), st.frozensets(st.integers(1, 4), max_size=3))),
    }

    new = plan_prune(listed, **kwargs)  # type: ignore[arg-type]
    old = legacy_plan_prune(listed, **kwargs)  # type: ignore[arg-type]

    assert new.to_dict() == old.to_dict()
    assert new == old


@settings(max_examples=50, deadline=None)
@given(
    now=st.sampled_from([NOW, NOW.replace(tzinfo=None)]),
    scope=st.sampled_from(["managed", "manual", "all"]),
    max_deletions=st.integers(-2, 2),
    grace_hours=st.integers(-2, 2),
)
def test_plan_prune_refuses_bad_arguments_as_before(
    now: datetime, scope: str, max_deletions: int, grace_hours: int
) -> None:
    kwargs = {
        "policy_for": RetentionPolicies(default=RetentionPolicy(keep_last=1)),
        "tz": ZONES[0],
        "now": now,
        "scope": scope,
        "holds": {},
        "failed_grace": timedelta(hours=grace_hours),
        "max_deletions": max_deletions,
    }

    def outcome(plan: object) -> object:
        try:
            return plan([], **kwargs)  # type: ignore[operator]
        except ValueError as error:
            return f"ValueError: {error}"

    assert outcome(plan_prune) == outcome(legacy_plan_prune)
