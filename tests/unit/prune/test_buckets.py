"""Bucket keys of the prune plan's retention walk (prune/buckets.py) on the calendar's edges.

Every bucket of every instant around year ends, ISO week 53, leap days, DST changes and half-hour
offsets, in several zones, is the calendar bucket the instant's local time names; and a zone's
local hours are the wall clock whatever order the instants come in.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

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
