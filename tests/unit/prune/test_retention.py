"""Known-answer tests of retention: policies, buckets in a time zone, edges of restic's walk (the
prune plan's :func:`~vpsbackup.prune.buckets.walk_policy`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from tests.unit.prune.strategies import walked
from vpsbackup.prune.retention import (
    RetentionPolicies,
    RetentionPolicy,
    format_within,
    parse_retention_overrides,
    parse_retention_policy,
)

MADRID = ZoneInfo("Europe/Madrid")
ZONE_UTC = ZoneInfo("UTC")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def kept(items: list[tuple[str, datetime]], policy: RetentionPolicy, tz: ZoneInfo = ZONE_UTC) -> list[str]:
    return [d.key for d in walked(items, policy, tz) if d.keep]


# -- the policy model -------------------------------------------------------------------------


def test_policy_accepts_every_rule_and_durations() -> None:
    policy = parse_retention_policy(
        '{"keep_last": 1, "keep_hourly": 2, "keep_daily": 7, "keep_weekly": 4, '
        '"keep_monthly": 6, "keep_yearly": 3, "keep_within": "2w"}'
    )
    assert policy.keep_within == timedelta(days=14)
    assert policy.describe() == "last 1, hourly 2, daily 7, weekly 4, monthly 6, yearly 3, within 14d"


@pytest.mark.parametrize("text", ["", "{}", '{"keep_daily": 0}', '{"keep_within": "0s"}', '{"keep_last": null}'])
def test_empty_policy_is_an_error(text: str) -> None:
    with pytest.raises(ValueError, match="empty retention policy"):
        parse_retention_policy(text)


def test_misspelt_rule_is_an_error_naming_it() -> None:
    with pytest.raises(ValidationError, match="keep_dialy"):
        parse_retention_policy('{"keep_dialy": 7}')


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"keep_daily": -1}', "keep_daily"),
        ('{"keep_daily": "7"}', "keep_daily"),
        ('{"keep_daily": 7.5}', "keep_daily"),
        ('{"keep_weekly": true}', "keep_weekly"),
        ('{"keep_within": "14 days"}', "keep_within"),
    ],
)
def test_bad_values_are_errors_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        parse_retention_policy(text)


def test_policy_is_immutable() -> None:
    policy = RetentionPolicy(keep_last=1)
    with pytest.raises(ValidationError):
        policy.keep_last = 2  # type: ignore[misc]


def test_overrides_parse_to_policies_by_server_id() -> None:
    overrides = parse_retention_overrides('{"12345": {"keep_last": 3}, "7": {"keep_within": "36h"}}')
    assert overrides == {12345: RetentionPolicy(keep_last=3), 7: RetentionPolicy(keep_within=timedelta(hours=36))}


@pytest.mark.parametrize("text", [None, "", "  ", "{}"])
def test_no_overrides(text: str | None) -> None:
    assert parse_retention_overrides(text) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"web": {"keep_last": 1}}', "'web' is not a server id"),
        ('{"0123": {"keep_last": 1}}', "'0123' is not a server id"),
        ('{"-5": {"keep_last": 1}}', "'-5' is not a server id"),
        ('{"12345": {}}', "empty retention policy"),
        ('{"12345": {"keep_dialy": 1}}', "keep_dialy"),
        ("[1, 2]", "must be a JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_overrides_are_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_retention_overrides(text)


def test_an_override_replaces_the_default_policy() -> None:
    default = RetentionPolicy(keep_daily=7, keep_weekly=4)
    policies = RetentionPolicies(default, {12345: RetentionPolicy(keep_last=3)})
    assert policies(12345) == RetentionPolicy(keep_last=3)  # not merged with the default's rules
    assert policies(99) is default


def test_within_is_printed_as_restic_does() -> None:
    assert format_within(timedelta(days=13, hours=23)) == "13d23h"
    assert format_within(timedelta(weeks=2)) == "14d"
    assert format_within(timedelta(hours=36)) == "1d12h"
    assert format_within(timedelta(minutes=90)) == "1h30m"


# -- the walk ---------------------------------------------------------------------------------


def test_no_items_no_decisions() -> None:
    assert walked([], RetentionPolicy(keep_last=1), ZONE_UTC) == []


def test_decisions_come_newest_first_with_reasons_in_our_words_and_restics() -> None:
    items = [("jan", at("2025-01-14T10:30:00+00:00")), ("dec", at("2024-12-02T08:00:00+00:00"))]
    decisions = walked(items, RetentionPolicy(keep_hourly=1, keep_monthly=5, keep_yearly=5), ZONE_UTC)
    assert [d.key for d in decisions] == ["jan", "dec"]
    assert decisions[0].reasons == ("hourly 2025-01-14 10:00", "monthly 2025-01", "yearly 2025")
    assert decisions[0].restic_matches == ("hourly snapshot", "monthly snapshot", "yearly snapshot")
    assert decisions[1].reasons == ("monthly 2024-12", "yearly 2024")


def test_daily_buckets_follow_the_local_day_across_dst_in_madrid() -> None:
    # Given three backups around the night of the 2025-10-26 fall-back (CEST -> CET)
    items = [
        ("sat-23:00", at("2025-10-25T21:00:00+00:00")),  # 23:00 CEST, Saturday 25th in Madrid
        ("sun-00:30", at("2025-10-25T22:30:00+00:00")),  # 00:30 CEST, already Sunday 26th in Madrid
        ("sun-02:30", at("2025-10-26T01:30:00+00:00")),  # 02:30 CET (the second 02:30)
    ]
    policy = RetentionPolicy(keep_daily=2)
    # When buckets are local days, both Sunday backups share a bucket and Saturday's is kept
    decisions = walked(items, policy, MADRID)
    assert [(d.key, d.reasons) for d in decisions if d.keep] == [
        ("sun-02:30", ("daily 2025-10-26",)),
        ("sat-23:00", ("daily 2025-10-25",)),
    ]
    # Then in UTC the same backups fall on other days
    assert kept(items, policy, ZONE_UTC) == ["sun-02:30", "sun-00:30"]


def test_hourly_buckets_follow_the_local_wall_clock_so_the_repeated_hour_is_one_bucket() -> None:
    items = [
        ("01:30 CEST", at("2025-10-25T23:30:00+00:00")),
        ("02:30 CEST", at("2025-10-26T00:30:00+00:00")),
        ("02:30 CET", at("2025-10-26T01:30:00+00:00")),
        ("earlier", at("2025-10-25T20:00:00+00:00")),
    ]
    decisions = walked(items, RetentionPolicy(keep_hourly=2), MADRID)
    assert [(d.key, d.reasons) for d in decisions if d.keep] == [
        ("02:30 CET", ("hourly 2025-10-26 02:00",)),
        ("01:30 CEST", ("hourly 2025-10-26 01:00",)),
    ]
    assert kept(items, RetentionPolicy(keep_hourly=2), ZONE_UTC) == ["02:30 CET", "02:30 CEST"]


def test_iso_week_year_boundary() -> None:
    # 2024-12-30 (Monday) is in ISO week 2025-W01, together with 2025-01-03; 2024-12-29 is 2024-W52.
    items = [
        ("fri", at("2025-01-03T12:00:00+00:00")),
        ("mon", at("2024-12-30T12:00:00+00:00")),
        ("sun", at("2024-12-29T12:00:00+00:00")),
        ("older", at("2024-12-20T12:00:00+00:00")),
    ]
    decisions = walked(items, RetentionPolicy(keep_weekly=2), ZONE_UTC)
    assert [(d.key, d.reasons) for d in decisions if d.keep] == [
        ("fri", ("weekly 2025-W01",)),
        ("sun", ("weekly 2024-W52",)),
    ]


def test_keep_within_counts_back_from_the_newest_backup_not_from_now() -> None:
    # Backups from years ago: a window counted from now would keep none of them.
    items = [
        ("a", at("2020-01-10T00:00:00+00:00")),
        ("b", at("2020-01-05T00:00:00+00:00")),
        ("c", at("2020-01-03T00:00:00+00:00")),  # exactly 7d before the newest: outside (strict)
        ("d", at("2020-01-01T00:00:00+00:00")),
    ]
    decisions = walked(items, RetentionPolicy(keep_within=timedelta(days=7)), ZONE_UTC)
    assert [(d.key, d.reasons) for d in decisions if d.keep] == [("a", ("within 7d",)), ("b", ("within 7d",))]


def test_keep_within_ignores_future_backups_when_choosing_the_newest() -> None:
    now = at("2025-06-01T00:00:00+00:00")
    items = [
        ("future", now + timedelta(days=30)),
        ("yesterday", now - timedelta(days=1)),
        ("last-week", now - timedelta(days=7)),
        ("old", now - timedelta(days=10)),
    ]
    policy = RetentionPolicy(keep_within=timedelta(days=7))
    assert [d.key for d in walked(items, policy, ZONE_UTC, now=now) if d.keep] == [
        "future",
        "yesterday",
        "last-week",
    ]
    # Without ``now`` the future backup is the newest, and the window moves with it.
    assert kept(items, policy) == ["future"]
    # Everything in the future: restic counts back from the zero time, keeping all.
    assert len([d for d in walked(items[:1], policy, ZONE_UTC, now=now - timedelta(days=60)) if d.keep]) == 1


def test_oldest_backup_is_kept_by_a_rule_with_budget_left() -> None:
    items = [
        ("d2-10", at("2025-01-02T10:00:00+00:00")),
        ("d2-09", at("2025-01-02T09:00:00+00:00")),
        ("d1-10", at("2025-01-01T10:00:00+00:00")),
        ("d1-09", at("2025-01-01T09:00:00+00:00")),
    ]
    decisions = walked(items, RetentionPolicy(keep_daily=3), ZONE_UTC)
    assert [(d.key, d.reasons, d.restic_matches) for d in decisions if d.keep] == [
        ("d2-10", ("daily 2025-01-02",), ("daily snapshot",)),
        ("d1-10", ("daily 2025-01-01",), ("daily snapshot",)),
        ("d1-09", ("oldest daily 2025-01-01",), ("oldest daily snapshot",)),
    ]
    # With the budget spent before the oldest, it goes.
    assert kept(items, RetentionPolicy(keep_daily=2)) == ["d2-10", "d1-10"]


def test_times_in_any_offset_are_compared_as_instants() -> None:
    items = [("tokyo", at("2025-01-01T08:00:00+09:00")), ("utc", datetime(2024, 12, 31, 23, 30, tzinfo=UTC))]
    # 08:00+09:00 is 23:00 UTC the day before: "utc" is newer.
    assert kept(items, RetentionPolicy(keep_last=1)) == ["utc"]
