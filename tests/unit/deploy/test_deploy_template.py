"""BackupOnDeployFunction in template.yaml: trigger patterns, least privilege, logs, alarms, samples."""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.events.models import EventPattern

from tests.conftest import TEST_ACCOUNT, load_event, load_template, resolve_refs


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def function(template: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = template["Resources"]["BackupOnDeployFunction"]["Properties"]
    return props


def _pattern(template: dict[str, Any], function: dict[str, Any]) -> Any:
    pattern = function["Events"]["DeploymentStarted"]["Properties"]["Pattern"]
    return EventPattern.load(json.dumps(resolve_refs(pattern, template["Parameters"])))


def test_the_eventbridge_sample_matches_the_rules_pattern(template: dict[str, Any], function: dict[str, Any]) -> None:
    assert load_event("deploy-eventbridge.json")["account"] == TEST_ACCOUNT
    assert _pattern(template, function).matches_event(load_event("deploy-eventbridge.json"))


@pytest.mark.parametrize(
    ("key", "value"),
    [("source", "ci.other"), ("detail-type", "Deployment Finished"), ("account", "999999999999")],
)
def test_the_rule_ignores_other_events_and_other_accounts(
    template: dict[str, Any], function: dict[str, Any], key: str, value: str
) -> None:
    event = {**load_event("deploy-eventbridge.json"), key: value}
    assert not _pattern(template, function).matches_event(event)


def test_the_rule_takes_only_the_stacks_own_account(function: dict[str, Any]) -> None:
    pattern = function["Events"]["DeploymentStarted"]["Properties"]["Pattern"]
    assert pattern["account"] == [{"Ref": "AWS::AccountId"}]


def test_the_rule_listens_on_the_configured_bus(template: dict[str, Any], function: dict[str, Any]) -> None:
    assert function["Events"]["DeploymentStarted"]["Properties"]["EventBusName"] == {"Ref": "DeployEventBusName"}
    assert template["Parameters"]["DeployEventBusName"]["Default"] == "default"


def test_handler_settings_and_service_name(template: dict[str, Any], function: dict[str, Any]) -> None:
    assert function["Handler"] == "backup_on_deploy.handler"
    assert function["CodeUri"] == "functions/backup_on_deploy/"
    env = function["Environment"]["Variables"]
    assert env["POWERTOOLS_SERVICE_NAME"] == "backup-on-deploy"
    assert env["SERVER_GROUPS"] == {"Ref": "ServerGroups"}
    assert env["WEBHOOK_SECRET"] == {"Ref": "WebhookSecretArn"}
    assert json.loads(template["Parameters"]["ServerGroups"]["Default"]) == {}


def test_the_function_url_is_public_and_can_be_invoked(template: dict[str, Any], function: dict[str, Any]) -> None:
    # AuthType NONE: the handler's HMAC check is the authentication.
    assert function["FunctionUrlConfig"]["AuthType"] == "NONE"
    permission = template["Resources"]["BackupOnDeployFunctionUrlInvokePermission"]["Properties"]
    assert permission["Action"] == "lambda:InvokeFunction"
    assert permission["InvokedViaFunctionUrl"] is True


def test_least_privilege(function: dict[str, Any]) -> None:
    statements = [s for policy in function["Policies"] for s in policy["Statement"]]
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert all("*" not in action for action in actions), statement
        assert all(resource != "*" for resource in resources), statement
    by_sid = {s["Sid"]: s for s in statements}
    assert by_sid["ReadApiTokenAndWebhookKey"]["Resource"] == [
        {"Ref": "VpsApiTokenSecretArn"},
        {"Ref": "WebhookSecretArn"},
    ]
    assert by_sid["DeploymentClaimsAndRecords"]["Resource"] == {"GetAtt": "StateTable.Arn"}
    assert "dynamodb:DeleteItem" not in by_sid["DeploymentClaimsAndRecords"]["Action"]


def test_failed_async_invocations_go_to_the_failure_queue(function: dict[str, Any]) -> None:
    on_failure = function["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
    assert on_failure == {"Type": "SQS", "Destination": {"GetAtt": "FailedInvocationsQueue.Arn"}}


def test_logs_are_kept_for_the_configured_retention(template: dict[str, Any]) -> None:
    group = template["Resources"]["BackupOnDeployLogGroup"]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert group["LogGroupName"] == {"Sub": "/aws/lambda/${AWS::StackName}/backup-on-deploy"}


def test_errors_and_failed_backups_raise_alarms(template: dict[str, Any]) -> None:
    errors = template["Resources"]["BackupOnDeployErrorsAlarm"]["Properties"]
    assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "BackupOnDeployFunction"}}]
    failed = template["Resources"]["BackupOnDeployBackupsFailedAlarm"]["Properties"]
    assert failed["MetricName"] == "backups_failed"
    assert failed["Dimensions"] == [{"Name": "service", "Value": "backup-on-deploy"}]


def test_outputs_give_ci_the_webhook_url(template: dict[str, Any]) -> None:
    assert template["Outputs"]["BackupOnDeployFunctionUrl"]["Value"] == {
        "GetAtt": "BackupOnDeployFunctionUrl.FunctionUrl"
    }
