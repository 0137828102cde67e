"""Alarm samples made current: every time moves by the same amount, each keeps its spelling."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from devtools.samples import is_alarm_event, restamp_alarm_event, state_changed_at
from tests.conftest import EVENTS, load_event
from vpsbackup.restore.alarm import parse_alarm_event

NOW = datetime(2026, 12, 1, 22, 0, 0, 123456, tzinfo=UTC)
ALARM_SAMPLES = sorted(p.name for p in EVENTS.glob("alarm-*.json"))


def test_the_alarm_samples_are_recognised_and_no_other() -> None:
    assert ALARM_SAMPLES
    for path in EVENTS.glob("*.json"):
        assert is_alarm_event(json.loads(path.read_text(encoding="utf-8"))) == path.name.startswith("alarm-")


@pytest.mark.parametrize("name", ALARM_SAMPLES)
def test_a_restamped_sample_changed_state_age_ago_and_parses_the_same(name: str) -> None:
    # Given a recorded sample, When it is re-stamped for NOW
    event = load_event(name)
    fresh = restamp_alarm_event(event, NOW, age=timedelta(seconds=5))
    # Then the function reads the state change as 5 s before NOW, and nothing else changed
    (before,) = parse_alarm_event(event)
    (after,) = parse_alarm_event(fresh)
    assert (
        timedelta(0) <= (NOW - timedelta(seconds=5)) - after.state_changed_at < timedelta(milliseconds=1)
    )  # ms spelled
    assert (after.alarm_name, after.new_state, after.previous_state) == (
        before.alarm_name,
        before.new_state,
        before.previous_state,
    )
    assert state_changed_at(fresh) == after.state_changed_at
    # ... the sample itself is untouched
    assert event == load_event(name)


def test_every_time_moves_by_the_same_amount_in_its_own_spelling() -> None:
    event = load_event("alarm-eventbridge-alarm.json")
    fresh = restamp_alarm_event(event, NOW, age=timedelta(0))
    shift = NOW - state_changed_at(event)
    assert fresh["time"].endswith("Z") and len(fresh["time"]) == len(event["time"])
    for key in ("state", "previousState"):
        old, new = event["detail"][key]["timestamp"], fresh["detail"][key]["timestamp"]
        assert new.endswith("+0000") and len(new) == len(old)
        moved = datetime.strptime(new, "%Y-%m-%dT%H:%M:%S.%f%z") - datetime.strptime(old, "%Y-%m-%dT%H:%M:%S.%f%z")
        assert abs(moved - shift) < timedelta(milliseconds=1)


def test_the_sns_message_inside_the_record_is_moved_too() -> None:
    event = load_event("alarm-sns.json")
    fresh = restamp_alarm_event(event, NOW, age=timedelta(0))
    record = fresh["Records"][0]["Sns"]
    message = json.loads(record["Message"])
    assert message["StateChangeTime"].startswith("2026-12-01T22:00:00.123")
    assert record["Timestamp"].startswith("2026-12-01T22:00:00")  # delivered just after, as recorded
