"""template.yaml, prune part: every setting wired, the schedule, least privilege, logs, alarm."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.conftest import ROOT, load_template
from vpsbackup.errors import ConfigurationError
from vpsbackup.prune.job import _METRICS as PRUNE_METRICS
from vpsbackup.prune.request import parse_prune_request
from vpsbackup.prune.settings import PruneSettings
from vpsbackup.settings import SharedSettings, env_name, load_settings


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


def function(template: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = resources(template)["PruneBackupsFunction"]["Properties"]
    return props


def test_the_function_is_wired_to_its_handler(template: dict[str, Any]) -> None:
    props = function(template)
    assert props["CodeUri"] == "functions/prune_backups/"
    assert props["Handler"] == "prune_backups.handler"
    assert props["Timeout"] >= 300
    assert props["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "prune-backups"


def test_every_prune_setting_comes_from_a_parameter(template: dict[str, Any]) -> None:
    variables = function(template)["Environment"]["Variables"]
    own = {env_name(f) for f in PruneSettings.model_fields} - {env_name(f) for f in SharedSettings.model_fields}
    assert own <= set(variables)
    for name in own:
        ref = variables[name]["Ref"]
        assert ref in template["Parameters"], name


def test_the_template_defaults_are_valid_settings(template: dict[str, Any]) -> None:
    # Given the defaults of the parameters, as a deployed function would see them
    variables = function(template)["Environment"]["Variables"]
    env = {name: str(template["Parameters"][ref["Ref"]]["Default"]) for name, ref in variables.items() if "Ref" in ref}
    env |= {"VPS_API_TOKEN_SECRET": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:t", "STATE_TABLE_NAME": "t"}
    # When they load, Then they are the documented defaults
    settings = load_settings(PruneSettings, env)
    assert settings.retention_policy.describe() == "last 3, daily 7, weekly 4, monthly 6"
    assert (settings.prune_scope, settings.max_deletions_per_run, settings.dry_run) == ("managed", 50, False)
    assert settings.prune_concurrency == 4


def test_the_schedule_runs_daily_at_0330_through_a_role_that_can_only_start_a_prune_run(
    template: dict[str, Any],
) -> None:
    res = resources(template)
    schedule = res["PruneBackupsSchedule"]["Properties"]
    params = template["Parameters"]
    assert params[schedule["ScheduleExpression"]["Ref"]]["Default"] == "cron(30 3 * * ? *)"
    assert schedule["ScheduleExpressionTimezone"]["Ref"] in params
    target = schedule["Target"]
    assert target["Arn"] == {"Ref": "PruneStateMachine"}
    assert target["DeadLetterConfig"]["Arn"] == {"GetAtt": "FailedInvocationsQueue.Arn"}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert (
        parse_prune_request(
            json.loads(target["Input"].replace("<aws.scheduler.scheduled-time>", "2025-01-16T03:30:00Z"))
        ).trigger
        == "schedule"
    )
    role = res[target["RoleArn"]["GetAtt"].split(".")[0]]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert {
        (a, json.dumps(s["Resource"]))
        for s in statements
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    } == {
        ("states:StartExecution", json.dumps({"Ref": "PruneStateMachine"})),
        ("sqs:SendMessage", json.dumps({"GetAtt": "FailedInvocationsQueue.Arn"})),
        # the queue is encrypted with the stack's key: its dead letters need it
        ("kms:GenerateDataKey", json.dumps({"GetAtt": "NotificationsKey.Arn"})),
        ("kms:Decrypt", json.dumps({"GetAtt": "NotificationsKey.Arn"})),
    }


def test_the_function_may_read_the_secret_and_the_table_and_publish_nothing_more(template: dict[str, Any]) -> None:
    statements = [s for p in function(template)["Policies"] for s in p["Statement"]]
    granted = {
        (a, json.dumps(s["Resource"]))
        for s in statements
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert granted == {
        ("secretsmanager:GetSecretValue", json.dumps({"Ref": "VpsApiTokenSecretArn"})),
        ("dynamodb:Query", json.dumps({"GetAtt": "StateTable.Arn"})),
        ("dynamodb:GetItem", json.dumps({"GetAtt": "StateTable.Arn"})),  # a hold re-checked before each delete
        # prune's own items, in the prune-state partition only (test below); the journal, PutItem
        # only (tests/unit/basics/test_state_grants.py)
        ("dynamodb:BatchWriteItem", json.dumps({"GetAtt": "StateTable.Arn"})),
        ("dynamodb:PutItem", json.dumps({"GetAtt": "StateTable.Arn"})),
        ("dynamodb:DeleteItem", json.dumps({"GetAtt": "StateTable.Arn"})),
        # the provider quota every function shares, in the quota partition only (test below)
        ("dynamodb:UpdateItem", json.dumps({"GetAtt": "StateTable.Arn"})),
        ("sns:Publish", json.dumps({"Ref": "NotificationsTopic"})),
        # the topic is encrypted with the stack's own key: publishing needs it
        ("kms:GenerateDataKey", json.dumps({"GetAtt": "NotificationsKey.Arn"})),
        ("kms:Decrypt", json.dumps({"GetAtt": "NotificationsKey.Arn"})),
        ("sqs:SendMessage", json.dumps({"GetAtt": "FailedInvocationsQueue.Arn"})),
    }
    assert all("*" not in action for action, _ in granted)


def test_failures_are_kept_logged_and_alarmed(template: dict[str, Any]) -> None:
    res = resources(template)
    on_failure = function(template)["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
    assert on_failure == {"Type": "SQS", "Destination": {"GetAtt": "FailedInvocationsQueue.Arn"}}
    log_group = res["PruneBackupsLogGroup"]["Properties"]
    assert log_group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert log_group["LogGroupName"] == {"Sub": "/aws/lambda/${AWS::StackName}/prune-backups"}
    alarm = res["PruneBackupsErrorsAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "PruneBackupsFunction"}}]


def test_the_function_name_is_an_output(template: dict[str, Any]) -> None:
    assert template["Outputs"]["PruneBackupsFunctionName"]["Value"] == {"Ref": "PruneBackupsFunction"}


def test_a_failed_run_is_not_retried_so_the_valve_holds_per_run(template: dict[str, Any]) -> None:
    # A retried run plans afresh and could delete MAX_DELETIONS_PER_RUN more: the next schedule retries instead.
    assert function(template)["EventInvokeConfig"]["MaximumRetryAttempts"] == 0


def test_a_prune_run_is_a_state_machine_execution_the_schedule_starts(template: dict[str, Any]) -> None:
    machine = resources(template)["PruneStateMachine"]["Properties"]
    assert machine["Type"] == "STANDARD"
    assert machine["DefinitionUri"] == "statemachines/prune.asl.json"
    definition = json.loads((ROOT / machine["DefinitionUri"]).read_text(encoding="utf-8"))
    used = set(re.findall(r"\$\{(\w+)\}", json.dumps(definition)))
    assert used == set(machine["DefinitionSubstitutions"])
    assert machine["DefinitionSubstitutions"]["PruneFunctionArn"] == {"GetAtt": "PruneBackupsFunction.Arn"}
    # the schedule starts an execution (the run's request as its input), never the function itself
    target = resources(template)["PruneBackupsSchedule"]["Properties"]["Target"]
    assert target["Arn"] == {"Ref": "PruneStateMachine"}
    assert json.loads(target["Input"])["trigger"] == "schedule"
    # the machine may invoke the function and start itself (continue as new), nothing else of ours
    statements = [s for p in machine["Policies"] for s in p["Statement"]]
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"lambda:InvokeFunction", "states:StartExecution"} <= actions
    assert not {a for a in actions if a.startswith(("dynamodb:", "sns:", "secretsmanager:"))}


def test_a_failed_prune_run_fires_an_alarm(template: dict[str, Any]) -> None:
    alarm = resources(template)["PruneRunFailedAlarm"]["Properties"]
    watched = {m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert watched == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
    assert all(
        m["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "PruneStateMachine"}}]
        for m in alarm["Metrics"]
        if "MetricStat" in m
    )
    assert alarm["Threshold"] == 1 and {"Ref": "StackAlarmsTopic"} in alarm["AlarmActions"]


def test_prune_writes_only_its_own_partition_of_the_state_table(template: dict[str, Any]) -> None:
    statements = [s for policy in function(template)["Policies"] for s in policy["Statement"]]
    # (the journal's PutItem writes journal entries; the provider quota's item only UpdateItem
    # writes; anything else is prune's own state)
    writes = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
    partitions = {}
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if writes & set(actions) and statement["Resource"] == {"GetAtt": "StateTable.Arn"}:
            [(_, keys)] = statement["Condition"].items()
            [partition] = keys["dynamodb:LeadingKeys"]
            partitions[partition] = set(actions) & writes
    assert partitions == {
        "prune-state": {"dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"},
        "prune-run#*": {"dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"},
        "journal#*": {"dynamodb:PutItem"},
        "quota": {"dynamodb:UpdateItem"},
        "prune-budget": {"dynamodb:PutItem"},
    }


def test_every_function_may_write_the_provider_quota_item_only_in_its_partition(template: dict[str, Any]) -> None:
    for name in ("BackupOnDeployFunction", "PruneBackupsFunction", "RestoreOnAlarmFunction"):
        statements = [s for p in resources(template)[name]["Properties"]["Policies"] for s in p["Statement"]]
        [quota] = [s for s in statements if s.get("Sid") == "ProviderQuota"]
        assert quota["Action"] == ["dynamodb:GetItem", "dynamodb:UpdateItem"]
        assert quota["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["quota"]}}


def test_the_heartbeat_alarm_fires_when_no_run_completed_for_36_hours(template: dict[str, Any]) -> None:
    alarm = resources(template)["PruneHeartbeatAlarm"]["Properties"]
    # The metric each completed run emits, under the prune's service
    assert "RunsCompleted" in {name for name, _ in PRUNE_METRICS}
    assert (alarm["Namespace"], alarm["MetricName"]) == ("VpsBackupAutomation", "RunsCompleted")
    service = function(template)["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    assert alarm["Dimensions"] == [{"Name": "service", "Value": service}]
    # 36 hourly sums, every one below 1 (no run), missing data breaching: 36 hours without a run
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (
        "Sum",
        3600,
        36,
        36,
    )
    assert alarm["Period"] * alarm["EvaluationPeriods"] == 36 * 3600
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
    assert alarm["TreatMissingData"] == "breaching"
    assert alarm["AlarmActions"] == [{"Ref": "StackAlarmsTopic"}, {"Ref": "NotificationsTopic"}]


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("", True),
        ("https://hc-ping.com/0b7f7c3e-5f1a-4d4e-9d1c-2f8a1b0c9d7e", True),
        ("https://cronitor.link/p/abc/prune?state=complete", True),
        ("http://hc-ping.com/x", False),
        ("https://", False),
        ("hc-ping.com/x", False),
        ("https://hc ping.com/x", False),
    ],
)
def test_the_heartbeat_url_is_https_in_the_template_and_in_the_settings(
    template: dict[str, Any], url: str, accepted: bool
) -> None:
    parameter = template["Parameters"]["HeartbeatUrl"]
    assert parameter["Default"] == ""
    assert function(template)["Environment"]["Variables"]["HEARTBEAT_URL"] == {"Ref": "HeartbeatUrl"}
    assert bool(re.fullmatch(parameter["AllowedPattern"], url)) == accepted
    env = {"VPS_API_TOKEN_SECRET": "s", "STATE_TABLE_NAME": "t", "RETENTION_POLICY": '{"keep_last": 1}'}
    if accepted:
        assert load_settings(PruneSettings, {**env, "HEARTBEAT_URL": url}).heartbeat_url == url
    else:
        with pytest.raises(ConfigurationError, match="HEARTBEAT_URL"):
            load_settings(PruneSettings, {**env, "HEARTBEAT_URL": url})
