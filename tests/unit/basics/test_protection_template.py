"""Capacity and data protection in the template: concurrency as parameters that reserve nothing by
default, the alarms on the failed-invocations queue and on refused webhook calls, what the stack
keeps when it goes, and a written reason for every checkov finding skipped (source and expansion)."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.sam_expand import copy_generated_skips
from tests.conftest import load_template
from vpsbackup.prune.settings import PruneSettings


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.mark.parametrize(
    ("function", "parameter", "condition"),
    [
        ("RestoreOnAlarmFunction", "RestoreOnAlarmReservedConcurrency", "HasRestoreReservedConcurrency"),
        ("BackupOnDeployFunction", "BackupOnDeployMaxConcurrency", "HasBackupOnDeployConcurrencyCap"),
    ],
)
def test_concurrency_is_a_parameter_that_reserves_nothing_by_default(
    template: dict[str, Any], function: str, parameter: str, condition: str
) -> None:
    # An account whose limit is 10 can reserve nothing (AWS keeps 10 unreserved): 0 must mean "none".
    param = template["Parameters"][parameter]
    assert (param["Default"], param["MinValue"]) == (0, 0)
    assert template["Conditions"][condition] == {"Not": [{"Equals": [{"Ref": parameter}, 0]}]}
    reserved = template["Resources"][function]["Properties"]["ReservedConcurrentExecutions"]
    assert reserved == {"If": [condition, {"Ref": parameter}, {"Ref": "AWS::NoValue"}]}


@pytest.mark.parametrize(
    ("parameter", "setting", "ceiling"),
    [("MaxDeletionsPerRun", "max_deletions_per_run", 1000), ("MaxDeletionsPerDay", "max_deletions_per_day", 10000)],
)
def test_the_deletion_budgets_have_a_ceiling_the_settings_share(
    template: dict[str, Any], parameter: str, setting: str, ceiling: int
) -> None:
    param = template["Parameters"][parameter]
    assert param["MaxValue"] == ceiling
    field = PruneSettings.model_fields[setting]
    bounds = {name: getattr(m, name) for m in field.metadata for name in ("ge", "le") if hasattr(m, name)}
    assert bounds == {"ge": param["MinValue"], "le": param["MaxValue"]}


def test_what_the_stack_keeps_when_it_goes(template: dict[str, Any]) -> None:
    res = template["Resources"]
    assert res["StateTable"]["Properties"]["DeletionProtectionEnabled"] is True
    for name in (
        "StateTable",
        "NotificationsKey",
        "BackupOnDeployLogGroup",
        "PruneBackupsLogGroup",
        "RestoreOnAlarmLogGroup",
    ):
        assert (res[name]["DeletionPolicy"], res[name]["UpdateReplacePolicy"]) == ("Retain", "Retain"), name
    log_groups = [n for n, r in res.items() if r["Type"] == "AWS::Logs::LogGroup"]
    assert all(res[n].get("DeletionPolicy") == "Retain" for n in log_groups)


def test_the_failed_invocations_queue_and_refused_webhooks_are_alarmed(template: dict[str, Any]) -> None:
    res = template["Resources"]
    depth = res["FailedInvocationsQueueDepthAlarm"]["Properties"]
    assert (depth["Namespace"], depth["MetricName"], depth["Threshold"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        1,
    )
    assert depth["Dimensions"] == [{"Name": "QueueName", "Value": {"GetAtt": "FailedInvocationsQueue.QueueName"}}]
    rejected = res["BackupOnDeployWebhookRejectedAlarm"]["Properties"]
    assert (rejected["Namespace"], rejected["MetricName"]) == ("VpsBackupAutomation", "webhook_rejected")
    service = res["BackupOnDeployFunction"]["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    assert rejected["Dimensions"] == [{"Name": "service", "Value": service}]
    for alarm in (depth, rejected):
        assert alarm["AlarmActions"] == [{"Ref": "StackAlarmsTopic"}, {"Ref": "NotificationsTopic"}]


def _skips(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, resource in template["Resources"].items():
        meta = resource.get("Metadata", {})
        out += [(name, skip) for skip in meta.get("checkov", {}).get("skip", [])]
        out += [(f"{name}->{g}", skip) for g, skips in meta.get("checkov_generated", {}).items() for skip in skips]
    return out


def test_every_checkov_skip_says_why(template: dict[str, Any]) -> None:
    skips = _skips(template)
    assert any("->" in where for where, _ in skips)  # the expansion's own skips are checked too
    for where, skip in skips:
        assert skip["id"].startswith("CKV_"), where
        assert len(str(skip.get("comment", "")).split()) >= 8, f"{where}: {skip['id']} skipped without a reason"


def test_skips_for_generated_resources_go_onto_them_and_a_stale_one_is_an_error() -> None:
    skip = {"id": "CKV_AWS_258", "comment": "why"}
    source = {"Resources": {"Fn": {"Metadata": {"checkov_generated": {"FnUrl": [skip], "FnGone": [skip]}}}}}
    expanded: dict[str, Any] = {
        "Resources": {"Fn": {"Metadata": {"checkov_generated": {}}}, "FnUrl": {"Type": "AWS::Lambda::Url"}}
    }
    assert copy_generated_skips(source, expanded) == ["Fn: FnGone"]
    assert expanded["Resources"]["FnUrl"]["Metadata"] == {"checkov": {"skip": [skip]}}
    assert "checkov_generated" not in expanded["Resources"]["Fn"]["Metadata"]
