"""The fleet plan's retention walk (prune/buckets.py) decides exactly what ``apply_policy`` decides.

Item by item, reasons included (ours and restic's), over random times crowded on the calendar's
edges (year ends, ISO week 53, leap days, DST changes, half-hour offsets) in several zones, with
and without ``now`` (future-dated items); and every bucket of every instant around those edges is
the bucket ``apply_policy`` computes.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.prune.strategies import ANCHORS, EDGE_ZONES, edge_times, hours_back, policies
from vpsbackup.prune.buckets import (
    COUNT_RULES,
    BucketCalendar,
    CompiledPolicy,
    MatchCache,
    bucket_text,
    micros,
    walk_policy,
)
from vpsbackup.prune.retention import _BUCKETS, RetentionPolicy, RuleMatch, apply_policy


def walked(
    items: list[tuple[int, datetime]], policy: RetentionPolicy, tz: tzinfo, now: datetime | None
) -> list[tuple[int, tuple[RuleMatch, ...]]]:
    """``walk_policy`` over ``items`` in apply_policy's order (newest first, equal times by key highest first)."""
    ordered = sorted(items, key=lambda item: (item[1], item[0]), reverse=True)
    kept = walk_policy(
        [micros(t) for _, t in ordered],
        CompiledPolicy.of(policy),
        BucketCalendar(tz),
        MatchCache(),
        now=None if now is None else micros(now),
    )
    return [(key, tuple(kept.get(nr, ()))) for nr, (key, _) in enumerate(ordered)]


@given(
    times=st.lists(st.one_of(edge_times(), hours_back()), max_size=40),
    policy=policies(),
    tz=st.sampled_from(EDGE_ZONES),
    now=st.one_of(st.none(), st.sampled_from(ANCHORS)),
    data=st.data(),
)
@settings(max_examples=400, deadline=None)
def test_the_walk_keeps_what_apply_policy_keeps_for_the_same_reasons(
    times: list[datetime], policy: RetentionPolicy, tz: tzinfo, now: datetime | None, data: st.DataObject
) -> None:
    # Given times (some repeated exactly: identical timestamps), a policy, a zone and maybe a now
    times = times + data.draw(st.lists(st.sampled_from(times), max_size=5)) if times else times
    items = list(enumerate(times))
    # When both walk them
    expected = [(d.key, d.matches) for d in apply_policy(items, policy, tz, now=now)]
    # Then each item is kept by the same rules, in the same order, with the same words
    assert walked(items, policy, tz, now) == expected


def test_every_bucket_around_the_calendar_edges_is_apply_policys() -> None:
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
        for rule, bucket in _BUCKETS:
            index = COUNT_RULES.index(rule)
            keys = calendar.keys(index, hours, days)
            # Then the key's text is the bucket apply_policy names, and keys are equal exactly when buckets are
            texts = [bucket(t.astimezone(tz)) for t in instants]
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
