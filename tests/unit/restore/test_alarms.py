"""Alarm events (EventBridge, SNS, direct) -> AlarmTransition; which server; the rule's pattern."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto.events.models import EventPattern

from tests.conftest import load_event, load_template, resolve_refs
from vpsbackup.restore.alarm import (
    AlarmEventError,
    AlarmTransition,
    CurrentAlarm,
    Dimension,
    Home,
    as_confirmed,
    confirmation_problem,
    origin_problem,
    parse_alarm_event,
    resolve_server,
)

PREFIX = "vps-restore-"


def only(event: dict[str, Any]) -> AlarmTransition:
    [transition] = parse_alarm_event(event)
    return transition


def sns_message(event: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(event["Records"][0]["Sns"]["Message"]))


def with_sns_message(event: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["Records"][0]["Sns"]["Message"] = json.dumps(message)
    return event


# -- the rule's pattern, read from template.yaml ----------------------------------------------------


def rule_pattern() -> dict[str, Any]:
    template = load_template()
    events = template["Resources"]["RestoreOnAlarmFunction"]["Properties"]["Events"]
    return dict(resolve_refs(events["AlarmStateChange"]["Properties"]["Pattern"], template["Parameters"]))


def matches(event: dict[str, Any]) -> bool:
    return bool(EventPattern.load(json.dumps(rule_pattern())).matches_event(event))


def test_the_prefix_in_the_rule_is_the_default_alarm_name_prefix() -> None:
    assert rule_pattern()["detail"]["alarmName"] == [{"prefix": PREFIX}]


@pytest.mark.parametrize("name", ["alarm-eventbridge-alarm.json", "alarm-eventbridge-metric-math.json"])
def test_samples_that_should_trigger_match_the_rule(name: str) -> None:
    assert matches(load_event(name))


def test_the_insufficient_data_sample_does_not_match_the_rule_and_would_be_ignored() -> None:
    event = load_event("alarm-eventbridge-insufficient-data.json")
    assert not matches(event)
    assert only(event).ignore_reason(PREFIX) == "the new state is INSUFFICIENT_DATA, not ALARM"


def test_the_rule_does_not_match_alarm_to_alarm_or_other_prefixes() -> None:
    event = load_event("alarm-eventbridge-alarm.json")
    again = copy.deepcopy(event)
    again["detail"]["previousState"]["value"] = "ALARM"
    other = copy.deepcopy(event)
    other["detail"]["alarmName"] = "billing-too-high"
    assert not matches(again)
    assert not matches(other)


# -- parsing -----------------------------------------------------------------------------------------


def test_eventbridge_alarm_is_normalised() -> None:
    transition = only(load_event("alarm-eventbridge-alarm.json"))
    assert transition.alarm_name == "vps-restore-web-01-5xx"
    assert transition.alarm_arn == "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:vps-restore-web-01-5xx"
    assert (transition.previous_state, transition.new_state) == ("OK", "ALARM")
    assert transition.state_changed_at == datetime(2025, 1, 16, 16, 5, 0, 123000, tzinfo=UTC)
    assert transition.state_changed_at.tzinfo is not None
    assert transition.dimensions == (Dimension(name="ServerId", value="12345"),)
    assert transition.reason.startswith("Threshold Crossed")
    assert (transition.account, transition.region, transition.source) == ("123456789012", "eu-west-1", "eventbridge")
    assert transition.enters_alarm
    assert transition.ignore_reason(PREFIX) is None


def test_metric_math_dimensions_come_from_every_metric_stat() -> None:
    transition = only(load_event("alarm-eventbridge-metric-math.json"))
    assert transition.dimension_values("ServerId") == ["12346"]
    assert transition.dimension_values("Environment") == ["production"]
    assert len(transition.dimensions) == 4


def test_sns_classic_alarm_is_normalised_like_the_eventbridge_one() -> None:
    via_sns = only(load_event("alarm-sns.json"))
    via_eventbridge = only(load_event("alarm-eventbridge-alarm.json"))
    assert via_sns.source == "sns"
    assert via_sns.alarm_name == via_eventbridge.alarm_name
    assert via_sns.dimensions == via_eventbridge.dimensions
    assert (via_sns.account, via_sns.region) == ("123456789012", "eu-west-1")
    # The same alarm change delivered both ways has the same key: handled once
    assert via_sns.key == via_eventbridge.key


def test_sns_metric_math_alarm_dimensions_from_trigger_metrics() -> None:
    event = load_event("alarm-sns.json")
    message = sns_message(event)
    trigger = message["Trigger"]
    for key in ("MetricName", "Namespace", "Dimensions", "Statistic", "StatisticType", "Unit"):
        trigger.pop(key, None)
    trigger["Metrics"] = [
        {"Expression": "m1*100/m2", "Id": "e1", "Label": "Error rate", "ReturnData": True},
        {
            "Id": "m1",
            "MetricStat": {
                "Metric": {
                    "Dimensions": [{"value": "12345", "name": "ServerId"}],
                    "MetricName": "Http5xx",
                    "Namespace": "Shop",
                },
                "Period": 60,
                "Stat": "Sum",
            },
            "ReturnData": False,
        },
    ]
    transition = only(with_sns_message(event, message))
    assert transition.dimension_values("ServerId") == ["12345"]


def test_a_bare_classic_alarm_json_is_accepted_for_direct_invokes() -> None:
    message = sns_message(load_event("alarm-sns.json"))
    transition = only(message)
    assert transition.source == "direct"
    assert transition.enters_alarm


def test_unknown_fields_are_ignored() -> None:
    event = load_event("alarm-eventbridge-alarm.json")
    event["detail"]["brandNewField"] = {"x": 1}
    event["detail"]["state"]["actionsSuppressedBy"] = "None"
    assert only(event).alarm_name == "vps-restore-web-01-5xx"


def test_propagated_alarm_tags_are_kept() -> None:
    event = load_event("alarm-eventbridge-alarm.json")
    event["detail"]["alarmTags"] = {"vps:server-id": "12345", "team": "shop"}
    assert only(event).tags == {"vps:server-id": "12345", "team": "shop"}


def test_a_composite_alarm_has_no_dimensions() -> None:
    event = load_event("alarm-eventbridge-alarm.json")
    event["detail"]["configuration"] = {"alarmRule": "ALARM(a) OR ALARM(b)"}
    assert only(event).dimensions == ()


@pytest.mark.parametrize(
    "event",
    [
        {"hello": "world"},
        {"version": "0", "detail-type": "Deployment Started", "source": "ci.deploy"},
        [1, 2, 3],
    ],
)
def test_events_that_are_not_alarms_are_rejected_with_a_reason(event: Any) -> None:
    with pytest.raises(AlarmEventError):
        parse_alarm_event(event)


def test_another_eventbridge_event_is_not_an_alarm() -> None:
    event = load_event("alarm-eventbridge-alarm.json")
    event["detail-type"] = "EC2 Instance State-change Notification"
    with pytest.raises(AlarmEventError, match="not a CloudWatch alarm state change"):
        parse_alarm_event(event)


def test_an_sns_message_that_is_not_an_alarm_is_rejected() -> None:
    event = copy.deepcopy(load_event("alarm-sns.json"))
    event["Records"][0]["Sns"]["Message"] = "hello from a test publish"
    with pytest.raises(AlarmEventError, match="not a CloudWatch alarm notification"):
        parse_alarm_event(event)


# -- acting or ignoring ------------------------------------------------------------------------------


def test_only_a_transition_into_alarm_acts() -> None:
    base = only(load_event("alarm-eventbridge-alarm.json"))
    assert base.ignore_reason(PREFIX) is None
    assert base.model_copy(update={"new_state": "OK", "previous_state": "ALARM"}).ignore_reason(PREFIX) == (
        "the new state is OK, not ALARM"
    )
    assert "already in ALARM" in str(base.model_copy(update={"previous_state": "ALARM"}).ignore_reason(PREFIX))
    assert base.model_copy(update={"previous_state": None}).ignore_reason(PREFIX) is None
    assert "ALARM_NAME_PREFIX" in str(base.ignore_reason("other-"))
    assert base.ignore_reason("") is None


# -- which server ------------------------------------------------------------------------------------


def resolve(
    transition: AlarmTransition,
    tags: dict[str, str] | None = None,
    mapping: dict[str, int] | None = None,
    calls: list[int] | None = None,
) -> Any:
    def read_tags() -> dict[str, str] | None:
        if calls is not None:
            calls.append(1)
        return tags

    return resolve_server(transition, dimension="ServerId", alarm_server_map=mapping or {}, tags=read_tags)


def test_the_dimension_decides_first_without_reading_tags() -> None:
    calls: list[int] = []
    resolution = resolve(only(load_event("alarm-eventbridge-alarm.json")), {"vps:server-id": "999"}, calls=calls)
    assert resolution.server_id == 12345
    assert resolution.found_by == "metric dimension ServerId=12345"
    assert calls == []


def test_the_tag_decides_when_there_is_no_dimension() -> None:
    transition = only(load_event("alarm-eventbridge-alarm.json")).model_copy(update={"dimensions": ()})
    resolution = resolve(transition, {"vps:server-id": "12346"}, {"vps-restore-web-01-5xx": 1})
    assert resolution.server_id == 12346
    assert "tag" in resolution.found_by


def test_the_map_is_the_last_resort() -> None:
    transition = only(load_event("alarm-eventbridge-alarm.json")).model_copy(update={"dimensions": ()})
    resolution = resolve(transition, None, {"vps-restore-web-01-5xx": 12347})
    assert resolution.server_id == 12347
    assert "ALARM_SERVER_MAP" in resolution.found_by
    assert "could not be read" in resolution.explanation


def test_several_servers_in_the_dimensions_are_never_guessed() -> None:
    transition = only(load_event("alarm-eventbridge-alarm.json")).model_copy(
        update={"dimensions": (Dimension(name="ServerId", value="12345"), Dimension(name="ServerId", value="12346"))}
    )
    resolution = resolve(transition, {})
    assert resolution.server_id is None
    assert "several servers" in resolution.explanation
    assert "no vps:server-id tag" in resolution.explanation
    assert "ALARM_SERVER_MAP has no entry" in resolution.explanation


def test_a_dimension_or_tag_that_is_not_a_server_id_falls_through() -> None:
    transition = only(load_event("alarm-eventbridge-alarm.json")).model_copy(
        update={"dimensions": (Dimension(name="ServerId", value="web-01"),)}
    )
    resolution = resolve(transition, {"vps:server-id": "abc"}, {"vps-restore-web-01-5xx": 12345})
    assert resolution.server_id == 12345
    assert "'web-01' is not a server id" in resolution.explanation
    assert "'abc' is not a server id" in resolution.explanation


# -- is it real: the origin and the alarm as read now ---------------------------------------------

HOME = Home("123456789012", "eu-west-1")
SAMPLE_ARN = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:vps-restore-web-01-5xx"


@pytest.mark.parametrize(
    ("arn", "home"),
    [
        ("arn:aws:lambda:eu-west-1:123456789012:function:restore", Home("123456789012", "eu-west-1")),
        ("arn:aws:lambda:us-east-2:210987654321:function:restore:live", Home("210987654321", "us-east-2")),
        ("", Home(None, None)),
        ("arn:aws:sns:eu-west-1:123456789012:topic", Home(None, None)),
        ("not an arn", Home(None, None)),
    ],
)
def test_the_home_is_the_functions_own_account_and_region(arn: str, home: Home) -> None:
    assert Home.of_function(arn) == home


def test_an_sns_alarm_carries_the_topic_that_delivered_it() -> None:
    assert only(load_event("alarm-sns.json")).topic_arn == (
        "arn:aws:sns:eu-west-1:123456789012:vpsbackup-AlarmActionsTopic-1A2B3C4D5E6F"
    )
    assert only(load_event("alarm-eventbridge-alarm.json")).topic_arn is None


@pytest.mark.parametrize(
    "sample", ["alarm-eventbridge-alarm.json", "alarm-sns.json", "alarm-eventbridge-metric-math.json"]
)
def test_the_samples_are_from_home(sample: str) -> None:
    assert origin_problem(only(load_event(sample)), HOME) is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"account": "999999999999"},
            "the event is from account 999999999999, not this function's account 123456789012",
        ),
        ({"region": "us-east-1"}, "the event is from region us-east-1, not this function's region eu-west-1"),
        (
            {"alarm_arn": "arn:aws:cloudwatch:eu-west-1:999999999999:alarm:x"},
            "the alarm ARN arn:aws:cloudwatch:eu-west-1:999999999999:alarm:x is from account 999999999999",
        ),
        (
            {"alarm_arn": "arn:aws:cloudwatch:eu-central-1:123456789012:alarm:x"},
            "the alarm ARN arn:aws:cloudwatch:eu-central-1:123456789012:alarm:x is from region eu-central-1",
        ),
        (
            {"topic_arn": "arn:aws:sns:eu-west-1:999999999999:t"},
            "the SNS topic arn:aws:sns:eu-west-1:999999999999:t is from account 999999999999",
        ),
    ],
)
def test_an_event_from_another_account_or_region_is_not_from_home(change: dict[str, Any], problem: str) -> None:
    transition = only(load_event("alarm-eventbridge-alarm.json")).model_copy(update=change)
    found = origin_problem(transition, HOME)
    assert found is not None and found.startswith(problem)


def test_an_event_that_names_no_account_is_left_to_the_alarm_read_here() -> None:
    transition = only(load_event("alarm-eventbridge-alarm.json")).model_copy(
        update={"account": None, "region": None, "alarm_arn": None}
    )
    assert origin_problem(transition, HOME) is None


def test_without_a_known_home_nothing_is_from_home() -> None:
    problem = origin_problem(only(load_event("alarm-eventbridge-alarm.json")), Home(None, None))
    assert problem is not None and "own account and region are unknown" in problem


@pytest.mark.parametrize(
    ("current", "problem"),
    [
        (CurrentAlarm("vps-restore-web-01-5xx", SAMPLE_ARN, "ALARM"), None),
        (None, "no metric alarm named 'vps-restore-web-01-5xx' exists in account 123456789012, region eu-west-1"),
        (CurrentAlarm("vps-restore-web-01-5xx", SAMPLE_ARN, "OK"), "the alarm is in OK now, not ALARM"),
        (
            CurrentAlarm("vps-restore-web-01-5xx", SAMPLE_ARN, "INSUFFICIENT_DATA"),
            "the alarm is in INSUFFICIENT_DATA now, not ALARM",
        ),
        (
            CurrentAlarm("vps-restore-web-01-5xx", SAMPLE_ARN + "-other", "ALARM"),
            f"the event names the alarm {SAMPLE_ARN}, but the alarm named 'vps-restore-web-01-5xx' here is",
        ),
    ],
)
def test_only_the_alarm_the_event_names_in_alarm_now_confirms_it(
    current: CurrentAlarm | None, problem: str | None
) -> None:
    found = confirmation_problem(only(load_event("alarm-eventbridge-alarm.json")), current, HOME)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem)


def test_an_event_without_an_arn_is_confirmed_by_the_alarm_of_its_name() -> None:
    transition = only(load_event("alarm-eventbridge-alarm.json")).model_copy(update={"alarm_arn": None})
    current = CurrentAlarm("vps-restore-web-01-5xx", SAMPLE_ARN, "ALARM")
    assert confirmation_problem(transition, current, HOME) is None


# -- the template: this account's alarms, confirmed with a scoped grant -----------------------------


def test_the_rule_takes_only_this_accounts_alarms() -> None:
    assert rule_pattern()["account"] == ["123456789012"]
    other = load_event("alarm-eventbridge-alarm.json")
    other["account"] = "999999999999"
    assert not matches(other)


def test_the_function_may_describe_only_the_prefixs_alarms() -> None:
    props = load_template()["Resources"]["RestoreOnAlarmFunction"]["Properties"]
    statements = [s for policy in props["Policies"] for s in policy["Statement"]]
    describing = [s for s in statements if "cloudwatch:DescribeAlarms" in str(s["Action"])]
    assert describing == [
        {
            "Sid": "ConfirmRestoreAlarms",
            "Effect": "Allow",
            "Action": "cloudwatch:DescribeAlarms",
            "Resource": {
                "Sub": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:${AlarmNamePrefix}*"
            },
        }
    ]


def test_a_confirmed_transition_takes_the_alarms_own_arn_and_dimensions() -> None:
    transition = only(load_event("alarm-eventbridge-alarm.json")).model_copy(update={"alarm_arn": None})
    own = (Dimension(name="ServerId", value="7"), Dimension(name="Zone", value="a"))
    confirmed = as_confirmed(transition, CurrentAlarm(transition.alarm_name, SAMPLE_ARN, "ALARM", own))
    assert (confirmed.alarm_arn, confirmed.dimensions) == (SAMPLE_ARN, own)
    assert confirmed.dimension_values("ServerId") == ["7"]
    assert (confirmed.state_changed_at, confirmed.alarm_name) == (transition.state_changed_at, transition.alarm_name)


@pytest.mark.parametrize(
    ("after_the_alarm", "confirmed"),
    [(timedelta(0), True), (timedelta(seconds=60), True), (timedelta(seconds=61), False), (-timedelta(hours=1), True)],
)
def test_an_event_cannot_claim_a_state_change_after_the_alarms_own(after_the_alarm: timedelta, confirmed: bool) -> None:
    transition = only(load_event("alarm-eventbridge-alarm.json"))
    changed_at = transition.state_changed_at - after_the_alarm
    current = CurrentAlarm(transition.alarm_name, SAMPLE_ARN, "ALARM", changed_at=changed_at)
    problem = confirmation_problem(transition, current, HOME)
    assert (problem is None) == confirmed
    if not confirmed:
        assert problem is not None and "after the alarm's own last change" in problem
