"""The prune plan, split into named steps, decides exactly as the frozen pre-refactor copy does.

``legacy_plan`` is that copy (see its docstring). Given random fleets (duplicates and conflicting
copies, every status and type, future dates, holds, per-server policies, scopes, server filters and
valve sizes), when both plan, then every decision, reason, order, deferral and total is the same.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.prune.legacy_plan import plan_prune as legacy_plan_prune
from vpsbackup.markers import make_marker
from vpsbackup.provider.models import Backup
from vpsbackup.prune.plan import plan_prune
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy
from vpsbackup.records import Hold

NOW = datetime(2025, 3, 30, 12, 0, tzinfo=UTC)
ZONES = [ZoneInfo("UTC"), ZoneInfo("Europe/Madrid"), ZoneInfo("America/New_York")]
STATUSES = ["completed", "completed", "completed", "failed", "in_progress", "deleting"]
TYPES = ["manual", "manual", "manual", "automatic", "snapshot"]


@st.composite
def backups(draw: st.DrawFn, backup_id: int) -> Backup:
    hours = draw(st.one_of(st.integers(-48, 24 * 400), st.sampled_from([0, 1, 24, 25, 168])))
    return Backup.model_validate(
        {
            "id": backup_id,
            "server": {"id": draw(st.integers(1, 3))},
            "backup_type": draw(st.sampled_from(TYPES)),
            "status": draw(st.sampled_from(STATUSES)),
            "created_at": NOW - timedelta(hours=hours, minutes=draw(st.sampled_from([0, 0, 30]))),
            "description": make_marker(f"d{backup_id}") if draw(st.booleans()) else "by hand",
        }
    )


@st.composite
def listings(draw: st.DrawFn) -> list[Backup]:
    """Up to 40 backups on up to 3 servers; some listed twice, identically or with different data."""
    ids = draw(st.lists(st.integers(1, 10_000), unique=True, max_size=40))
    listed = [draw(backups(backup_id)) for backup_id in ids]
    for backup in draw(st.lists(st.sampled_from(listed), max_size=4)) if listed else []:
        listed.append(backup if draw(st.booleans()) else draw(backups(backup.id)))
    return draw(st.permutations(listed))


@st.composite
def policies(draw: st.DrawFn) -> RetentionPolicy:
    counts = {
        rule: draw(st.one_of(st.none(), st.integers(0, 6)))
        for rule in ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
    }
    within = draw(st.one_of(st.none(), st.integers(0, 24 * 60).map(lambda h: timedelta(hours=h))))
    if not any(counts.values()) and not within:
        counts["keep_last"] = 1
    return RetentionPolicy(**counts, keep_within=within)


@st.composite
def holds_for(draw: st.DrawFn, listed: list[Backup]) -> dict[int, Hold]:
    held = draw(st.lists(st.sampled_from(listed), max_size=5)) if listed else []
    return {
        b.id: Hold(
            backup_id=b.id,
            server_id=b.server_id,
            until=NOW + timedelta(hours=draw(st.integers(-48, 48))),
            reason=draw(st.sampled_from(["", "restored server 1"])),
        )
        for b in held
    }


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_plan_prune_decides_as_before(data: st.DataObject) -> None:
    listed = data.draw(listings())
    policy_for = RetentionPolicies(
        default=data.draw(policies()),
        overrides=data.draw(st.dictionaries(st.integers(1, 3), policies(), max_size=2)),
    )
    kwargs = {
        "policy_for": policy_for,
        "tz": data.draw(st.sampled_from(ZONES)),
        "now": NOW,
        "scope": data.draw(st.sampled_from(["managed", "manual"])),
        "holds": data.draw(holds_for(listed)),
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
