"""Hypothesis strategies shared by the prune tests (policies, holds, times on the calendar's edges),
and the plan they run: the production engine (:func:`plan_fleet` over a compact listing), every
decision kept."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from vpsbackup.markers import make_marker
from vpsbackup.provider.models import Backup
from vpsbackup.prune.buckets import BucketCalendar, CompiledPolicy, MatchCache, micros, walk_policy
from vpsbackup.prune.compact import CompactListing, FleetPlan, plan_fleet
from vpsbackup.prune.plan import PlanInputs, Scope
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy, RuleMatch
from vpsbackup.records import Hold

NOW = datetime(2025, 3, 30, 12, 0, tzinfo=UTC)
ZONES: list[tzinfo] = [ZoneInfo("UTC"), ZoneInfo("Europe/Madrid"), ZoneInfo("America/New_York")]
# Zones with odd offsets and DST shifts of half an hour, a fixed offset, and datetime's own UTC.
EDGE_ZONES: list[tzinfo] = [
    *ZONES,
    ZoneInfo("Australia/Lord_Howe"),
    ZoneInfo("Asia/Kathmandu"),
    timezone(timedelta(hours=-3, minutes=-30)),
    UTC,
]
# Times a calendar gets wrong first: year ends (2020 and 2026 have an ISO week 53, 2024-12-30 is
# 2025-W01), a leap day, DST changes in Madrid, New York and Lord Howe (at :30 UTC).
ANCHORS = [
    NOW,
    datetime(2020, 12, 31, 23, 30, tzinfo=UTC),
    datetime(2021, 1, 3, 23, 59, tzinfo=UTC),
    datetime(2024, 12, 30, 0, 0, tzinfo=UTC),
    datetime(2026, 12, 31, 22, 0, tzinfo=UTC),
    datetime(2024, 2, 29, 12, 0, tzinfo=UTC),
    datetime(2025, 3, 30, 1, 0, tzinfo=UTC),
    datetime(2025, 10, 26, 1, 0, tzinfo=UTC),
    datetime(2025, 3, 9, 7, 0, tzinfo=UTC),
    datetime(2025, 4, 5, 15, 0, tzinfo=UTC),
    datetime(2025, 10, 4, 15, 30, tzinfo=UTC),
]
GRACE = timedelta(hours=24)
STATUSES = ["completed", "completed", "completed", "failed", "in_progress", "deleting"]
TYPES = ["manual", "manual", "manual", "automatic", "snapshot"]
KNOWN_TYPES = ["manual", "manual", "manual", "automatic"]
COUNT_RULES = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")


@st.composite
def policies(draw: st.DrawFn, max_count: int = 6) -> RetentionPolicy:
    """Any valid policy: each count rule unset or 0..``max_count``, a window of up to 60 days."""
    counts = {rule: draw(st.one_of(st.none(), st.integers(0, max_count))) for rule in COUNT_RULES}
    within = draw(st.one_of(st.none(), st.integers(0, 24 * 60).map(lambda h: timedelta(hours=h))))
    if not any(counts.values()) and not within:
        counts["keep_last"] = 1
    return RetentionPolicy(**counts, keep_within=within)


@st.composite
def holds_for(
    draw: st.DrawFn, listed: Sequence[Backup], *, max_size: int = 5, reasons: Sequence[str] = ("",), now: datetime = NOW
) -> dict[int, Hold]:
    """Holds on some of ``listed``, some expired (up to 48 hours either side of ``now``)."""
    held = draw(st.lists(st.sampled_from(listed), max_size=max_size)) if listed else []
    return {
        b.id: Hold(
            backup_id=b.id,
            server_id=b.server_id,
            until=now + timedelta(hours=draw(st.integers(-48, 48))),
            reason=draw(st.sampled_from(reasons)),
        )
        for b in held
    }


def hours_back(now: datetime = NOW) -> st.SearchStrategy[datetime]:
    """Whole hours back from ``now`` (a few in the future): ties and shared buckets happen."""
    hours = st.one_of(st.integers(-48, 24 * 400), st.sampled_from([0, 1, 24, 25, 168]))
    return hours.map(lambda h: now - timedelta(hours=h))


@st.composite
def backups(draw: st.DrawFn, backup_id: int, *, types: Sequence[str] = TYPES, minutes: Sequence[int] = (0,)) -> Backup:
    """One listed backup: any status and type (mostly completed manual ones), on server 1 to 3,
    whole hours back from :data:`NOW` (a few in the future) less some ``minutes``, marked or not."""
    return Backup.model_validate(
        {
            "id": backup_id,
            "server": {"id": draw(st.integers(1, 3))},
            "backup_type": draw(st.sampled_from(types)),
            "status": draw(st.sampled_from(STATUSES)),
            "created_at": draw(hours_back()) - timedelta(minutes=draw(st.sampled_from(minutes))),
            "description": make_marker(f"d{backup_id}") if draw(st.booleans()) else "by hand",
        }
    )


@st.composite
def fleets(
    draw: st.DrawFn,
    *,
    max_size: int = 40,
    types: Sequence[str] = TYPES,
    minutes: Sequence[int] = (0,),
    copies: int = 0,
    redrawn: bool = False,
) -> list[Backup]:
    """Up to ``max_size`` backups on up to 3 servers, on a coarse time grid so that ties and shared
    buckets happen; then up to ``copies`` of them listed again, identically or (``redrawn``) as
    another backup under the same id (different data)."""
    ids = draw(st.lists(st.integers(1, 10_000), unique=True, max_size=max_size))
    listed = [draw(backups(backup_id, types=types, minutes=minutes)) for backup_id in ids]
    for copy in draw(st.lists(st.sampled_from(listed), max_size=copies)) if listed and copies else []:
        redraw = redrawn and draw(st.booleans())
        listed.append(draw(backups(copy.id, types=types, minutes=minutes)) if redraw else copy)
    return listed


def edge_times() -> st.SearchStrategy[datetime]:
    """Times near the calendar's edges (:data:`ANCHORS`), to the minute and now and then to the microsecond."""
    return st.builds(
        lambda anchor, minutes, micro: anchor + timedelta(minutes=minutes, microseconds=micro),
        st.sampled_from(ANCHORS),
        st.one_of(st.integers(-3 * 24 * 60, 3 * 24 * 60), st.sampled_from([0, 30, 60, -60, 24 * 60])),
        st.sampled_from([0, 0, 0, 1, -1]),
    )


def plan_with(
    backups: list[Backup],
    policy: RetentionPolicy,
    *,
    tz: tzinfo = ZONES[0],
    scope: Scope = "managed",
    holds: dict[int, Hold] | None = None,
    max_deletions: int = 10_000,
    keep_at_least: int = 1,
    now: datetime = NOW,
) -> FleetPlan:
    """:func:`plan_backups` with one policy for every server, at ``now`` (:data:`NOW`), a grace of 24 hours."""
    return plan_backups(
        backups,
        policy_for=RetentionPolicies(policy),
        tz=tz,
        now=now,
        scope=scope,
        holds=holds or {},
        failed_grace=GRACE,
        max_deletions=max_deletions,
        keep_at_least=keep_at_least,
    )


def plan_backups(backups: Iterable[Backup], *, server_ids: Iterable[int] | None = None, **inputs: Any) -> FleetPlan:
    """The prune job's plan of ``backups`` (any order, duplicates allowed): a compact listing of
    them planned by :func:`plan_fleet`, every decision kept; ``inputs`` are :class:`PlanInputs`'."""
    listing = CompactListing()
    listing.extend(backups)
    selected = None if server_ids is None else frozenset(server_ids)
    return plan_fleet(listing, PlanInputs(**inputs), server_ids=selected, keep_decisions=True)


@dataclass(frozen=True, slots=True)
class Walked:
    """One item of :func:`walked`: its key and time, and every rule that keeps it (none: not kept)."""

    key: Any
    time: datetime
    matches: tuple[RuleMatch, ...]

    @property
    def keep(self) -> bool:
        return bool(self.matches)

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(m.text for m in self.matches)

    @property
    def restic_matches(self) -> tuple[str, ...]:
        return tuple(m.restic for m in self.matches)


def walked(
    items: Iterable[tuple[Any, datetime]], policy: RetentionPolicy, tz: tzinfo, *, now: datetime | None = None
) -> list[Walked]:
    """The prune plan's retention walk (:func:`walk_policy`) over ``(key, aware time)`` items, as
    the plan orders a server's backups: newest first, equal times by key highest first."""
    ordered = sorted(items, key=lambda item: (item[1], item[0]), reverse=True)
    kept = walk_policy(
        [micros(t) for _, t in ordered],
        CompiledPolicy.of(policy),
        BucketCalendar(tz),
        MatchCache(),
        now=None if now is None else micros(now),
    )
    return [Walked(key, time, tuple(kept.get(nr, ()))) for nr, (key, time) in enumerate(ordered)]
