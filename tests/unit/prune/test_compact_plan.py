"""The compact fleet path decides exactly what plan_prune decides, backup by backup, reasons included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpsbackup.markers import make_marker
from vpsbackup.provider.models import Backup
from vpsbackup.prune.compact import (
    DEFERRED_SAMPLE,
    CompactListing,
    FleetPlan,
    backup_fingerprint,
    plan_fleet,
    reason_kind,
)
from vpsbackup.prune.plan import PrunePlan, Scope, plan_prune
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy
from vpsbackup.records import Hold

NOW = datetime(2025, 3, 30, 12, 0, tzinfo=UTC)
ZONES = [ZoneInfo("UTC"), ZoneInfo("Europe/Madrid"), ZoneInfo("America/New_York")]
GRACE = timedelta(hours=24)
STATUSES = ["completed", "completed", "completed", "failed", "in_progress", "deleting"]
TYPES = ["manual", "manual", "manual", "automatic", "snapshot"]


def backup(backup_id: int, server_id: int, hours: int, *, status: str, backup_type: str, managed: bool) -> Backup:
    return Backup.model_validate(
        {
            "id": backup_id,
            "server": {"id": server_id, "name": f"srv-{server_id}"},
            "backup_type": backup_type,
            "status": status,
            "size_mb": 1000 + backup_id,
            "created_at": NOW - timedelta(hours=hours),
            "description": (f"deploy {backup_id} " + make_marker(f"d{backup_id}")) if managed else "by hand",
        }
    )


@st.composite
def listings(draw: st.DrawFn) -> list[Backup]:
    """Up to 60 listed copies on up to 4 servers: ties, shared buckets, future dates, and backups
    listed twice — the same copy again, or another status (changed while the pages were read)."""
    ids = draw(st.lists(st.integers(1, 10_000), unique=True, max_size=45))
    listed = []
    for backup_id in ids:
        hours = draw(st.one_of(st.integers(-48, 24 * 400), st.sampled_from([0, 1, 24, 25, 168])))
        item = backup(
            backup_id,
            draw(st.integers(1, 4)),
            hours,
            status=draw(st.sampled_from(STATUSES)),
            backup_type=draw(st.sampled_from(TYPES)),
            managed=draw(st.booleans()),
        )
        listed.append(item)
        again = draw(st.sampled_from(["no", "no", "no", "same", "changed"]))
        if again == "same":
            listed.append(item)
        elif again == "changed":
            listed.append(item.model_copy(update={"status": draw(st.sampled_from(STATUSES)), "size_mb": None}))
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


def both(
    listed: list[Backup],
    policies_: RetentionPolicies,
    *,
    tz: ZoneInfo,
    scope: Scope,
    holds: dict[int, Hold],
    max_deletions: int,
    server_ids: frozenset[int] | None,
    keep_decisions: bool,
    keep_at_least: int = 1,
) -> tuple[PrunePlan, FleetPlan]:
    args = {
        "policy_for": policies_,
        "tz": tz,
        "now": NOW,
        "scope": scope,
        "holds": holds,
        "failed_grace": GRACE,
        "max_deletions": max_deletions,
        "server_ids": server_ids,
        "keep_at_least": keep_at_least,
    }
    compact = CompactListing()
    compact.extend(listed)
    return plan_prune(listed, **args), plan_fleet(compact, keep_decisions=keep_decisions, **args)  # type: ignore[arg-type]


@given(
    listed=listings(),
    default=policies(),
    override=policies(),
    tz=st.sampled_from(ZONES),
    scope=st.sampled_from(["managed", "manual"]),
    max_deletions=st.integers(0, 12),
    held=st.lists(st.tuples(st.integers(1, 10_000), st.integers(-48, 48)), max_size=4),
    only=st.one_of(st.none(), st.frozensets(st.integers(1, 4), min_size=1)),
    keep_decisions=st.booleans(),
    keep_at_least=st.integers(1, 5),
)
@settings(max_examples=200, deadline=None)
def test_the_compact_path_decides_what_plan_prune_decides(
    listed: list[Backup],
    default: RetentionPolicy,
    override: RetentionPolicy,
    tz: ZoneInfo,
    scope: Scope,
    max_deletions: int,
    held: list[tuple[int, int]],
    only: frozenset[int] | None,
    keep_decisions: bool,
    keep_at_least: int,
) -> None:
    # Given a random listing (duplicates and conflicting copies included), policies with an
    # override for server 2, holds (some expired) on listed and unlisted ids, a valve and a floor
    ids = [b.id for b in listed]
    holds = {
        (ids[i % len(ids)] if ids and i % 2 else i): Hold(backup_id=i, server_id=1, until=NOW + timedelta(hours=h))
        for i, h in held
    }
    policies_ = RetentionPolicies(default, {2: override})
    # When both paths plan it
    engine, compact = both(
        listed,
        policies_,
        tz=tz,
        scope=scope,  # type: ignore[arg-type]
        holds=holds,
        max_deletions=max_deletions,
        server_ids=only,
        keep_decisions=keep_decisions,
        keep_at_least=keep_at_least,
    )
    # Then the deletions are the same, in the same order, with the same reasons
    assert compact.to_delete == engine.to_delete
    assert compact.deferred_count == len(engine.deferred)
    assert compact.valve_tripped == engine.valve_tripped
    assert dict(compact.totals) == dict(engine.totals)
    # ... every decision too, when they are kept (and only the oldest deferred ones when not)
    if keep_decisions:
        assert compact.decisions == engine.decisions
        assert compact.deferred == engine.deferred
    else:
        assert compact.decisions is None
        assert compact.deferred == engine.deferred[:DEFERRED_SAMPLE]
    # ... and the counts by reason are those of the engine's decisions (by their first reason; a
    # deferred one by the valve's)
    expected: dict[tuple[str, str], int] = {}
    for d in engine.decisions:
        key = (d.action, reason_kind(d.reasons[-1] if d.action == "defer" else d.reasons[0]))
        expected[key] = expected.get(key, 0) + 1
    assert dict(compact.by_reason) == expected
    assert compact.servers == len({d.server_id for d in engine.decisions})


def test_a_backup_listed_with_two_statuses_is_left_alone_and_reported_the_same_way() -> None:
    # Given a backup seen completed on one page and failed on the next (in either order)
    first = backup(7, 1, 500, status="completed", backup_type="manual", managed=True)
    second = first.model_copy(update={"status": "failed"})
    newest = backup(8, 1, 1, status="completed", backup_type="manual", managed=True)
    for listed in ([first, newest, second], [second, newest, first]):
        compact = CompactListing()
        compact.extend(listed)
        plan = plan_fleet(
            compact,
            policy_for=RetentionPolicies(RetentionPolicy(keep_last=1)),
            tz=ZONES[0],
            now=NOW,
            scope="managed",
            holds={},
            failed_grace=GRACE,
            max_deletions=10,
            keep_decisions=True,
        )
        assert plan.decisions is not None
        skipped = next(d for d in plan.decisions if d.backup_id == 7)
        # Then it is skipped, and the copy reported is plan_prune's: the least JSON, whatever the order
        assert (skipped.action, skipped.reasons) == ("skip", ("listed more than once with different data",))
        shown = min((first, second), key=lambda b: b.model_dump_json())
        assert skipped.status == shown.status
        assert plan.to_delete == ()


def test_fingerprints_are_equal_exactly_for_equal_copies() -> None:
    a = backup(1, 1, 5, status="completed", backup_type="manual", managed=True)
    same_instant = a.model_copy(update={"created_at": a.created_at.astimezone(ZoneInfo("Europe/Madrid"))})
    assert a == same_instant
    assert backup_fingerprint(a) == backup_fingerprint(same_instant)
    for change in ({"status": "failed"}, {"size_mb": None}, {"description": "x"}, {"expires_at": NOW}):
        other = a.model_copy(update=change)
        assert other != a
        assert backup_fingerprint(other) != backup_fingerprint(a)


def test_the_compact_listing_keeps_about_a_hundred_bytes_per_copy_at_most() -> None:
    compact = CompactListing()
    for n in range(5000):
        compact.add(backup(n + 1, n % 7, n, status="completed", backup_type="manual", managed=True))
    assert len(compact) == 5000
    assert compact.memory_bytes() < 5000 * 100


def test_a_conflict_across_compressed_chunks_reports_the_same_copy() -> None:
    # Given 3,000 backups listed, then one of the first listed again with another status (its
    # first copy is in a compressed chunk by then)
    listed = [backup(n + 1, 1, n + 2, status="completed", backup_type="manual", managed=True) for n in range(3000)]
    listed.append(listed[5].model_copy(update={"status": "failed"}))
    compact = CompactListing()
    compact.extend(listed)
    args: dict[str, object] = {
        "policy_for": RetentionPolicies(RetentionPolicy(keep_last=1)),
        "tz": ZONES[0],
        "now": NOW,
        "scope": "managed",
        "holds": {},
        "failed_grace": GRACE,
        "max_deletions": 10,
    }
    fleet = plan_fleet(compact, keep_decisions=True, **args)  # type: ignore[arg-type]
    engine = plan_prune(listed, **args)  # type: ignore[arg-type]
    # Then both paths report the same copy, and the same decisions
    assert fleet.decisions == engine.decisions


def test_a_negative_valve_is_refused() -> None:
    with pytest.raises(ValueError, match="max_deletions"):
        plan_fleet(
            CompactListing(),
            policy_for=RetentionPolicies(RetentionPolicy(keep_last=1)),
            tz=ZONES[0],
            now=NOW,
            scope="managed",
            holds={},
            failed_grace=GRACE,
            max_deletions=-1,
        )


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("daily 2025-01-14", "daily"),
        ("oldest monthly 2024-11", "oldest monthly"),
        ("last snapshot", "last snapshot"),
        ("within 7d", "within"),
        ("hold until 2026-01-01T00:00:00+00:00: restore of server 3", "hold"),
        ("no retention rule keeps it (last 3, daily 7)", "no retention rule keeps it"),
        ("failed, older than 1d", "failed, older than 1d"),
        ("deferred (valve): at most 50 deletions per run", "deferred (valve)"),
    ],
)
def test_reasons_are_counted_by_kind(reason: str, kind: str) -> None:
    assert reason_kind(reason) == kind
