"""Bucket keys of the prune plan's retention walk (prune/buckets.py) on the calendar's edges.

Every bucket of every instant around year ends, ISO week 53, leap days, DST changes and half-hour
offsets, in several zones, is the calendar bucket the instant's local time names; and a zone's
local hours are the wall clock whatever order the instants come in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

import pytest

from tests.unit.prune.strategies import ANCHORS, EDGE_ZONES
from vpsbackup.prune.buckets import (
    COUNT_RULES,
    BucketCalendar,
    bucket_text,
    micros,
)


def local_bucket(rule: str, local: datetime) -> str:
    """The rule's bucket of a local time, named as a reason names it, from datetime's own calendar."""
    iso_year, iso_week, _ = local.isocalendar()
    return {
        "hourly": local.strftime("%Y-%m-%d %H:00"),
        "daily": local.strftime("%Y-%m-%d"),
        "weekly": f"{iso_year:04d}-W{iso_week:02d}",
        "monthly": local.strftime("%Y-%m"),
        "yearly": f"{local.year:04d}",
    }[rule]


def test_every_bucket_around_the_calendar_edges_is_the_local_calendars() -> None:
    # Given every 20 minutes for two days around each edge (and a microsecond either side of each
    # hour), in every zone
    instants = sorted(
        {
            anchor + timedelta(minutes=20 * step, microseconds=micro)
            for anchor in ANCHORS
            for step in range(-72, 72)
            for micro in ((0, 1, -1) if step % 3 == 0 else (0,))
        }
    )
    for tz in EDGE_ZONES:
        calendar = BucketCalendar(tz)
        hours = calendar.hours([micros(t) for t in instants])
        days = [hour // 24 for hour in hours]
        for index, rule in enumerate(COUNT_RULES[1:], start=1):
            keys = calendar.keys(index, hours, days)
            # Then the key's text is the local calendar's bucket, and keys are equal exactly when buckets are
            texts = [local_bucket(rule, t.astimezone(tz)) for t in instants]
            assert [bucket_text(index, key) for key in keys] == texts, (tz, rule)
            assert len(set(keys)) == len(set(texts))


@pytest.mark.parametrize("tz", EDGE_ZONES, ids=str)
def test_local_hours_are_the_wall_clock_whichever_instant_of_a_day_comes_first(tz: tzinfo) -> None:
    # Given every 7 minutes across DST days (Madrid's, then Lord Howe's half-hour shift), seen in
    # time order by one calendar and in reverse by another
    day = [
        anchor + timedelta(minutes=minutes) for anchor in (ANCHORS[6], ANCHORS[10]) for minutes in range(-120, 1500, 7)
    ]
    forwards, backwards = BucketCalendar(tz), BucketCalendar(tz)
    seen = forwards.hours([micros(t) for t in day])
    # Then both give each instant's wall-clock hour in the zone
    assert seen == list(reversed(backwards.hours([micros(t) for t in reversed(day)])))
    assert seen == [(t.astimezone(tz).replace(tzinfo=None) - _LOCAL_EPOCH) // timedelta(hours=1) for t in day]


_LOCAL_EPOCH = datetime(1970, 1, 1)


def _within(instants_newest_first: list[int], now: int | None, within: timedelta) -> dict[int, object]:
    from zoneinfo import ZoneInfo

    from vpsbackup.prune.buckets import CompiledPolicy, MatchCache, walk_policy
    from vpsbackup.prune.retention import RetentionPolicy

    policy = CompiledPolicy.of(RetentionPolicy(keep_within=within))
    return dict(walk_policy(instants_newest_first, policy, BucketCalendar(ZoneInfo("UTC")), MatchCache(), now=now))


def test_keep_within_keeps_every_backup_when_none_is_dated_before_now() -> None:
    # restic counts the window back from year 1 when no snapshot is older than now: all are kept
    now = micros(datetime.fromisoformat("2026-01-10T00:00:00+00:00"))
    future = [now + 3 * 3_600_000_000, now + 2 * 3_600_000_000, now]
    kept = _within(future, now, timedelta(hours=1))
    assert sorted(kept) == [0, 1, 2]


def test_keep_within_reaching_before_year_one_keeps_a_backup_at_its_first_instant() -> None:
    first = micros(datetime.min.replace(tzinfo=UTC))
    newest = first + 10 * 3_600_000_000
    # The window reaches exactly to year 1's first instant, and then a microsecond before it
    assert sorted(_within([newest, first + 1, first], None, timedelta(hours=10))) == [0, 1]
    assert sorted(_within([newest, first + 1, first], None, timedelta(hours=10, microseconds=1))) == [0, 1, 2]
