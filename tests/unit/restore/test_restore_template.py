"""template.yaml, the follow-ups of a restore: the rule on the alarm back to OK, the check's schedule
group, its role (invoke the restore function, nothing else), and the function's scoped permissions."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from moto.events.models import EventPattern

from tests.conftest import load_event, load_template, resolve_refs


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def function(template: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = template["Resources"]["RestoreOnAlarmFunction"]["Properties"]
    return props


def statements(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for policy in function(template)["Policies"] for s in policy["Statement"]}


def ok_rule_matches(template: dict[str, Any], event: dict[str, Any]) -> bool:
    rule = function(template)["Events"]["AlarmBackToOk"]["Properties"]
    pattern = resolve_refs(rule["Pattern"], template["Parameters"])
    return bool(EventPattern.load(json.dumps(pattern)).matches_event(event))


def test_the_ok_rule_takes_this_accounts_prefixed_alarms_back_to_ok_only(template: dict[str, Any]) -> None:
    ok = load_event("alarm-eventbridge-ok.json")
    assert ok_rule_matches(template, ok)
    for change in (
        {"account": "210987654321"},
        {"detail": {**ok["detail"], "alarmName": "web-01-5xx"}},
        {"detail": {**ok["detail"], "state": {**ok["detail"]["state"], "value": "ALARM"}}},
    ):
        other = copy.deepcopy(ok) | change
        assert not ok_rule_matches(template, other), change
    assert not ok_rule_matches(template, load_event("alarm-eventbridge-alarm.json"))
    rule = function(template)["Events"]["AlarmBackToOk"]["Properties"]
    assert rule["DeadLetterConfig"] == {"Arn": {"GetAtt": "FailedInvocationsQueue.Arn"}}
    queue_policy = template["Resources"]["FailedInvocationsQueuePolicy"]["Properties"]["PolicyDocument"]
    sources = queue_policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert {"GetAtt": "RestoreOnAlarmFunctionAlarmBackToOk.Arn"} in sources


def test_the_function_is_told_the_checks_role_group_and_delay(template: dict[str, Any]) -> None:
    variables = function(template)["Environment"]["Variables"]
    assert variables["RESTORE_VERIFY_AFTER"] == {"Ref": "RestoreVerifyAfter"}
    assert variables["RESTORE_VERIFY_ROLE_ARN"] == {"GetAtt": "RestoreVerifySchedulerRole.Arn"}
    assert variables["RESTORE_VERIFY_SCHEDULE_GROUP"] == {"Ref": "RestoreVerifySchedules"}
    assert template["Parameters"]["RestoreVerifyAfter"]["Default"] == "30m"
    assert template["Resources"]["RestoreVerifySchedules"]["Type"] == "AWS::Scheduler::ScheduleGroup"


def test_the_function_may_create_schedules_in_its_group_and_pass_only_the_checks_role(
    template: dict[str, Any],
) -> None:
    found = statements(template)
    create = found["ScheduleRestoreChecks"]
    assert create["Action"] == "scheduler:CreateSchedule"
    assert "schedule/${RestoreVerifySchedules}/verify-*" in create["Resource"]["Sub"]
    passing = found["PassTheCheckRole"]
    assert passing["Action"] == "iam:PassRole"
    assert passing["Resource"] == {"GetAtt": "RestoreVerifySchedulerRole.Arn"}
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}
    describe = found["ConfirmRestoreAlarms"]  # the follow-ups read the alarm with this grant too
    assert describe["Action"] == "cloudwatch:DescribeAlarms"
    assert describe["Resource"]["Sub"].endswith(":alarm:${AlarmNamePrefix}*")


def test_the_checks_role_is_schedulers_and_may_only_invoke_the_restore_function(template: dict[str, Any]) -> None:
    role = template["Resources"]["RestoreVerifySchedulerRole"]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    # Only this account's schedules of the stack's own group may assume it (no confused deputy).
    assert trust["Condition"] == {
        "StringEquals": {
            "aws:SourceAccount": {"Ref": "AWS::AccountId"},
            "aws:SourceArn": {"GetAtt": "RestoreVerifySchedules.Arn"},
        }
    }
    assert "Policies" not in role
    policy = template["Resources"]["RestoreVerifySchedulerPolicy"]["Properties"]
    assert policy["Roles"] == [{"Ref": "RestoreVerifySchedulerRole"}]
    [invoke] = policy["PolicyDocument"]["Statement"]
    assert invoke["Action"] == "lambda:InvokeFunction"
    assert invoke["Resource"] == [
        {"GetAtt": "RestoreOnAlarmFunction.Arn"},
        {"Sub": "${RestoreOnAlarmFunction.Arn}:*"},
    ]
