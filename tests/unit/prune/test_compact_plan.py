"""The prune plan over a compact listing (plan_fleet): the same plan whether every decision is kept
or only counted, whatever the listing order; conflicting copies; the memory it keeps."""

from __future__ import annotations

import dataclasses
import tracemalloc
from collections import Counter
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.prune.strategies import ANCHORS, EDGE_ZONES, NOW, edge_times, hours_back, policies
from vpsbackup.markers import make_marker
from vpsbackup.provider.models import Backup
from vpsbackup.prune.compact import (
    DEFERRED_SAMPLE,
    CompactListing,
    FleetPlan,
    backup_fingerprint,
    deletions_by_server,
    listing_part,
    merge_plans,
    plan_fleet,
    plan_part,
    reason_kind,
    server_part,
)
from vpsbackup.prune.plan import PlanInputs
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy
from vpsbackup.records import Hold

GRACE = timedelta(hours=24)
# A plan's inputs but the valve: keep the last backup, UTC, no holds.
KEEP_LAST_1: dict[str, Any] = {
    "policy_for": RetentionPolicies(RetentionPolicy(keep_last=1)),
    "tz": EDGE_ZONES[0],
    "now": NOW,
    "scope": "managed",
    "holds": {},
    "failed_grace": GRACE,
}
STATUSES = ["completed", "completed", "completed", "failed", "in_progress", "deleting"]
TYPES = ["manual", "manual", "manual", "automatic", "snapshot"]


def backup(
    backup_id: int,
    server_id: int,
    hours: int | None = None,
    *,
    status: str,
    backup_type: str,
    managed: bool,
    created_at: datetime | None = None,
) -> Backup:
    return Backup.model_validate(
        {
            "id": backup_id,
            "server": {"id": server_id, "name": f"srv-{server_id}"},
            "backup_type": backup_type,
            "status": status,
            "size_mb": 1000 + backup_id,
            "created_at": created_at or NOW - timedelta(hours=hours or 0),
            "description": (f"deploy {backup_id} " + make_marker(f"d{backup_id}")) if managed else "by hand",
        }
    )


@st.composite
def listings(draw: st.DrawFn, now: datetime = NOW) -> list[Backup]:
    """Up to 60 listed copies on up to 4 servers: ties (equal times), shared buckets, future dates,
    times on the calendar's edges, and backups listed twice — the same copy again, another status
    (changed while the pages were read), or under another server."""
    ids = draw(st.lists(st.integers(1, 10_000), unique=True, max_size=45))
    times = st.one_of(hours_back(now), edge_times())
    listed: list[Backup] = []
    for backup_id in ids:
        item = backup(
            backup_id,
            draw(st.integers(1, 4)),
            status=draw(st.sampled_from(STATUSES)),
            backup_type=draw(st.sampled_from(TYPES)),
            managed=draw(st.booleans()),
            created_at=draw(st.one_of(times, st.sampled_from([b.created_at for b in listed] or [now]))),
        )
        listed.append(item)
        again = draw(st.sampled_from(["no", "no", "no", "same", "changed", "moved"]))
        if again == "same":
            listed.append(item)
        elif again == "changed":
            listed.append(item.model_copy(update={"status": draw(st.sampled_from(STATUSES)), "size_mb": None}))
        elif again == "moved":
            listed.append(backup_copy_on(item, draw(st.integers(1, 4))))
    return draw(st.permutations(listed))


def backup_copy_on(item: Backup, server_id: int) -> Backup:
    return Backup.model_validate({**item.model_dump(), "server": {"id": server_id, "name": f"srv-{server_id}"}})


def planned(listed: list[Backup], *, keep_decisions: bool, server_ids: frozenset[int] | None, **args: Any) -> FleetPlan:
    compact = CompactListing()
    compact.extend(listed)
    return plan_fleet(compact, PlanInputs(**args), server_ids=server_ids, keep_decisions=keep_decisions)


@given(data=st.data())
@settings(max_examples=250, deadline=None)
def test_the_plan_is_the_same_kept_or_counted_and_in_any_listing_order(data: st.DataObject) -> None:
    # Given a random listing around a time near a calendar edge (duplicates, conflicting copies and
    # ids listed under two servers included), policies with an override for server 2, holds (some
    # expired) on listed and unlisted ids, a grace period, a valve and a floor, in any zone
    now: datetime = data.draw(st.sampled_from(ANCHORS))
    listed = data.draw(listings(now))
    ids = [b.id for b in listed]
    held = data.draw(st.lists(st.tuples(st.integers(1, 10_000), st.integers(-48, 48)), max_size=4))
    holds = {
        (ids[i % len(ids)] if ids and i % 2 else i): Hold(
            backup_id=i, server_id=1, until=now + timedelta(hours=h), reason="restore" if h % 2 else ""
        )
        for i, h in held
    }
    tz: tzinfo = data.draw(st.sampled_from(EDGE_ZONES))
    args: dict[str, Any] = {
        "policy_for": RetentionPolicies(data.draw(policies()), {2: data.draw(policies())}),
        "tz": tz,
        "now": now,
        "scope": data.draw(st.sampled_from(["managed", "manual"])),
        "holds": holds,
        "failed_grace": timedelta(hours=data.draw(st.sampled_from([0, 24, 72]))),
        "max_deletions": data.draw(st.integers(0, 12)),
        "server_ids": data.draw(st.one_of(st.none(), st.frozensets(st.integers(1, 4), min_size=1))),
        "keep_at_least": data.draw(st.integers(1, 5)),
    }
    # When it is planned keeping every decision, then only counting them, then listed in another order
    full = planned(listed, keep_decisions=True, **args)
    lean = planned(listed, keep_decisions=False, **args)
    shuffled = planned(data.draw(st.permutations(listed)), keep_decisions=True, **args)
    # Then the deletions are the same, in the same order, with the same reasons
    assert shuffled == full
    assert full.decisions is not None and lean.decisions is None
    assert lean.to_delete == full.to_delete
    assert set(full.to_delete) == {d for d in full.decisions if d.action == "delete"}
    assert list(full.to_delete) == sorted(full.to_delete, key=lambda d: (d.created_at, d.backup_id))
    assert lean.deferred_count == full.deferred_count == len(full.deferred)
    assert lean.deferred == full.deferred[:DEFERRED_SAMPLE]
    assert lean.valve_tripped == full.valve_tripped == bool(full.deferred)
    assert (
        dict(lean.totals) == dict(full.totals) == {a: sum(d.action == a for d in full.decisions) for a in full.totals}
    )
    # ... and the counts by reason are those of the decisions (by their first reason; a deferred
    # one by the valve's)
    expected: dict[tuple[str, str], int] = {}
    for d in full.decisions:
        key = (d.action, reason_kind(d.reasons[-1] if d.action == "defer" else d.reasons[0]))
        expected[key] = expected.get(key, 0) + 1
    assert dict(lean.by_reason) == dict(full.by_reason) == expected
    assert lean.servers == full.servers == len({d.server_id for d in full.decisions})
    # ... and the would-be deletions counted per server (no valve, no decision object) are the
    # deleted and deferred ones of each server
    compact = CompactListing()
    compact.extend(listed)
    inputs = PlanInputs(**{k: v for k, v in args.items() if k != "server_ids"})
    by_server = deletions_by_server(compact, inputs, server_ids=args["server_ids"])
    assert by_server == Counter(d.server_id for d in full.decisions if d.action in ("delete", "defer"))
    # ... and planned a part of the servers at a time (a run too large for one chunk), each part
    # from every listed copy, then merged under the valve, the plan is the same (conflicting
    # copies under servers of two parts included), and so are the would-be deletions per server
    parts = data.draw(st.integers(1, 5))
    pieces = [listing_part(lambda: listed, part, parts) for part in range(parts)]
    merged = merge_plans(
        [plan_part(piece, inputs, server_ids=args["server_ids"]) for piece in pieces],
        now=now,
        scope=args["scope"],
        max_deletions=args["max_deletions"],
    )
    assert merged == lean
    split: Counter[int] = Counter()
    for piece in pieces:
        split.update(deletions_by_server(piece, inputs, server_ids=args["server_ids"]))
    assert split == by_server


def test_a_backup_listed_under_servers_of_two_parts_is_kept_once_in_the_part_of_its_least_copy() -> None:
    # Given a backup listed under two servers that fall in different parts, and a backup of its own
    first = backup(7, 1, 30, status="completed", backup_type="manual", managed=True)
    moved = backup_copy_on(first, 2)
    assert server_part(1, 2) != server_part(2, 2)
    listed = [moved, first, backup(8, 1, 10, status="completed", backup_type="manual", managed=True)]
    # When each part is read from every copy, in either order
    for order in (listed, listed[::-1]):
        pieces = {part: listing_part(lambda order=order: order, part, 2) for part in range(2)}
        # Then the backup is one row, in the part of the server its least JSON names, left alone
        least = min(first, moved, key=lambda b: b.model_dump_json())
        kept = pieces[server_part(least.server_id, 2)]
        other = pieces[server_part(({1, 2} - {least.server_id}).pop(), 2)]
        assert [d.backup_id for d in kept_decisions(kept)].count(7) == 1
        assert 7 not in [d.backup_id for d in kept_decisions(other)]
        assert next(d for d in kept_decisions(kept) if d.backup_id == 7).action == "skip"


def kept_decisions(listing: CompactListing) -> list[Any]:
    plan = plan_fleet(listing, PlanInputs(**KEEP_LAST_1, max_deletions=5), keep_decisions=True)
    assert plan.decisions is not None
    return list(plan.decisions)


def test_a_backup_listed_with_two_statuses_is_left_alone_and_reported_the_same_way() -> None:
    # Given a backup seen completed on one page and failed on the next (in either order)
    first = backup(7, 1, 500, status="completed", backup_type="manual", managed=True)
    second = first.model_copy(update={"status": "failed"})
    newest = backup(8, 1, 1, status="completed", backup_type="manual", managed=True)
    for listed in ([first, newest, second], [second, newest, first]):
        compact = CompactListing()
        compact.extend(listed)
        plan = plan_fleet(compact, PlanInputs(**KEEP_LAST_1, max_deletions=10), keep_decisions=True)
        assert plan.decisions is not None
        skipped = next(d for d in plan.decisions if d.backup_id == 7)
        # Then it is skipped, and the copy reported is the least JSON, whatever the order
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
    # Given 5,000 listed copies (their models dropped as soon as each is added)
    compact = CompactListing()
    compact.add(backup(1, 1, 0, status="completed", backup_type="manual", managed=True))  # imports, caches
    tracemalloc.start()
    try:
        compact = CompactListing()
        for n in range(5000):
            compact.add(backup(n + 1, n % 7, n, status="completed", backup_type="manual", managed=True))
        # Then what stays allocated is about a hundred bytes a copy: its columns, its JSON compressed
        # 1,024 copies at a time (all but the last 904 copies' here)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(compact) == 5000
    assert held < 5000 * 120


def test_a_listing_tells_apart_at_most_65535_statuses_and_types() -> None:
    # Given a listing that has met 65,533 distinct statuses and types (the table is filled directly:
    # adding that many backups would take minutes)
    compact = CompactListing()
    compact._words.extend(f"word-{n}" for n in range(65_533))
    # When a backup brings two more (its status and its type), Then it is added
    compact.add(backup(1, 1, 0, status="status-a", backup_type="type-a", managed=True))
    assert len(compact) == 1
    # And one more distinct word is refused, by name, not stored in a column that cannot hold it
    with pytest.raises(ValueError, match="too many distinct statuses and types in one listing"):
        compact.add(backup(2, 1, 0, status="status-b", backup_type="type-a", managed=True))
    assert len(compact) == 1
    # while words already met are still taken, the refused copy in no column
    compact.add(backup(3, 1, 0, status="status-a", backup_type="word-7", managed=True))
    assert [
        d.backup_id
        for d in plan_fleet(compact, PlanInputs(**KEEP_LAST_1, max_deletions=5), keep_decisions=True).decisions or ()
    ] == [3, 1]


def test_a_conflict_across_compressed_chunks_reports_the_same_copy() -> None:
    # Given 3,000 backups listed, then one of the first listed again with another status (its
    # first copy is in a compressed chunk by then)
    listed = [backup(n + 1, 1, n + 2, status="completed", backup_type="manual", managed=True) for n in range(3000)]
    listed.append(listed[5].model_copy(update={"status": "failed"}))
    compact = CompactListing()
    compact.extend(listed)
    args: dict[str, Any] = {**KEEP_LAST_1, "max_deletions": 10}
    fleet = plan_fleet(compact, PlanInputs(**args), keep_decisions=True)
    # Then it is skipped, reported as its copy with the least JSON, and the rest is planned as usual
    assert fleet.decisions is not None
    skipped = next(d for d in fleet.decisions if d.backup_id == 6)
    shown = min((listed[5], listed[-1]), key=lambda b: b.model_dump_json())
    assert (skipped.action, skipped.status) == ("skip", shown.status)
    assert [d.backup_id for d in fleet.decisions if d.action == "keep"] == [1]
    assert fleet.totals == {"delete": 10, "keep": 1, "skip": 1, "defer": 3000 - 12}


def test_a_negative_valve_is_refused() -> None:
    with pytest.raises(ValueError, match="max_deletions"):
        plan_fleet(CompactListing(), PlanInputs(**KEEP_LAST_1, max_deletions=-1))


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
        ("oldest", "oldest"),
        ("", ""),
    ],
)
def test_reasons_are_counted_by_kind(reason: str, kind: str) -> None:
    assert reason_kind(reason) == kind


def test_a_fleet_with_thousands_of_deletions_keeps_only_the_oldest_and_counts_the_rest() -> None:
    # Given 9,000 backups on 30 servers under keep_last 1 (8,970 would-be deletions, so the fleet
    # path trims what it keeps twice) and a valve of 37
    listed = [
        backup(n + 1, n % 30, (n * 7919) % 9000, status="completed", backup_type="manual", managed=True)
        for n in range(9000)
    ]
    compact = CompactListing()
    compact.extend(listed)
    args: dict[str, Any] = {**KEEP_LAST_1, "max_deletions": 37}
    # When it is planned keeping no decisions, and keeping them all
    fleet = plan_fleet(compact, PlanInputs(**args))
    full = plan_fleet(compact, PlanInputs(**args), keep_decisions=True)
    # Then the deletions, the oldest deferred ones, the counts and the totals are the full plan's
    assert fleet.to_delete == full.to_delete
    oldest_first = sorted(listed, key=lambda b: (b.created_at, b.id))
    assert [d.backup_id for d in fleet.to_delete] == [b.id for b in oldest_first[:37]]
    assert fleet.deferred == full.deferred[:DEFERRED_SAMPLE]
    assert len(fleet.deferred) == DEFERRED_SAMPLE == 20  # the report names the 20 oldest
    assert fleet.deferred_count == len(full.deferred) == 9000 - 30 - 37
    assert dict(fleet.totals) == dict(full.totals)


def test_the_plan_of_a_listing_that_did_not_finish_is_empty() -> None:
    # When a run whose listing did not finish reports "no plan"
    empty = FleetPlan.empty(now=NOW, scope="manual", max_deletions=50)
    # Then it deletes, keeps, skips and defers nothing, has planned no server, and counts no reason
    assert (empty.now, empty.scope, empty.max_deletions) == (NOW, "manual", 50)
    assert dict(empty.totals) == {"delete": 0, "keep": 0, "skip": 0, "defer": 0}
    assert (empty.servers, empty.to_delete, empty.deferred, empty.deferred_count) == (0, (), (), 0)
    assert empty.decisions == ()
    assert not empty.valve_tripped
    assert empty.reason_counts() == []


def test_reason_counts_are_most_frequent_first_then_by_action_and_reason() -> None:
    # Given a plan's counts by (action, reason kind), two of them tied
    counts = {
        ("keep", "last"): 3,
        ("delete", "no retention rule keeps it"): 5,
        ("keep", "daily"): 3,
        ("skip", "automatic"): 1,
    }
    plan = dataclasses.replace(FleetPlan.empty(now=NOW, scope="managed", max_deletions=50), by_reason=counts)
    # Then the report's rows are the most frequent first, ties by action then reason
    assert plan.reason_counts() == [
        {"action": "delete", "reason": "no retention rule keeps it", "backups": 5},
        {"action": "keep", "reason": "daily", "backups": 3},
        {"action": "keep", "reason": "last", "backups": 3},
        {"action": "skip", "reason": "automatic", "backups": 1},
    ]


def test_the_valve_is_tripped_by_one_deferred_deletion() -> None:
    empty = FleetPlan.empty(now=NOW, scope="managed", max_deletions=0)
    assert dataclasses.replace(empty, deferred_count=1).valve_tripped
    assert not dataclasses.replace(empty, deferred_count=0).valve_tripped
