"""``apply_policy``, split into named steps, keeps exactly what the frozen pre-refactor copy keeps.

``legacy_retention`` is that copy (see its docstring). Given random backups on a coarse grid (ties,
shared buckets, DST days, times after ``now``, windows reaching before year 1) and random policies,
when both apply the policy, then every decision (key, time, keep, rules in our words and restic's)
is the same, in the same order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.prune.legacy_retention import apply_policy as legacy_apply_policy
from vpsbackup.prune.retention import RetentionPolicy, apply_policy

START = datetime(2024, 10, 27, 3, 0, tzinfo=UTC)  # a DST fall-back in Europe
ZONES = [ZoneInfo("UTC"), ZoneInfo("Europe/Madrid"), ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe")]


@st.composite
def policies(draw: st.DrawFn) -> RetentionPolicy:
    counts = {
        rule: draw(st.one_of(st.none(), st.integers(0, 5)))
        for rule in ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
    }
    within = draw(
        st.one_of(
            st.none(),
            st.integers(0, 24 * 90).map(lambda h: timedelta(hours=h)),
            st.just(timedelta(days=999_999)),  # reaches before year 1
        )
    )
    if not any(counts.values()) and not within:
        counts["keep_last"] = 1
    return RetentionPolicy(**counts, keep_within=within)


items = st.lists(
    st.tuples(
        st.integers(0, 50),
        st.one_of(st.integers(-24 * 40, 24 * 400), st.sampled_from([0, 1, 2, 24])).map(
            lambda h: START - timedelta(minutes=30 * h)
        ),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(
    walk=items,
    policy=policies(),
    tz=st.sampled_from(ZONES),
    now=st.one_of(st.none(), st.sampled_from([START, START - timedelta(days=3), START - timedelta(days=500)])),
)
def test_apply_policy_decides_as_before(
    walk: list[tuple[int, datetime]], policy: RetentionPolicy, tz: ZoneInfo, now: datetime | None
) -> None:
    new = apply_policy(walk, policy, tz, now=now)
    old = legacy_apply_policy(walk, policy, tz, now=now)

    assert new == old
    assert [(d.reasons, d.restic_matches) for d in new] == [(d.reasons, d.restic_matches) for d in old]


def test_apply_policy_refuses_a_naive_time_as_before() -> None:
    walk = [(1, START), (2, START.replace(tzinfo=None))]
    policy = RetentionPolicy(keep_last=1)

    messages = []
    for apply in (apply_policy, legacy_apply_policy):
        try:
            apply(walk, policy, UTC)
        except ValueError as error:
            messages.append(str(error))

    assert messages == ["time of 2 is naive; retention needs aware datetimes"] * 2
