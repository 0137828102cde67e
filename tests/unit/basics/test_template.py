"""Template-wide rules that cfn-lint does not check (each job's own template tests check its part)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, load_template

FUNCTIONS = ("BackupOnDeployFunction", "PruneBackupsFunction", "RestoreOnAlarmFunction")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def test_the_contract_logical_ids_exist(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    for logical_id in (*FUNCTIONS, "SharedLayer", "StateTable", "NotificationsTopic"):
        assert logical_id in resources, logical_id


def test_every_function_has_a_log_group_with_retention_and_an_errors_alarm(template: dict[str, Any]) -> None:
    resources = template["Resources"].values()
    for name in FUNCTIONS:
        # The function logs into the stack's own group (LoggingConfig), so Lambda never creates one
        # without retention, and the group exists before the function can run.
        group_id = template["Resources"][name]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        group = template["Resources"][group_id]
        assert group["Type"] == "AWS::Logs::LogGroup"
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        alarms = [
            r["Properties"]
            for r in resources
            if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("MetricName") == "Errors"
        ]
        assert any({"Name": "FunctionName", "Value": {"Ref": name}} in a["Dimensions"] for a in alarms), name


def test_no_iam_statement_grants_every_action(template: dict[str, Any]) -> None:
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::KMS::Key":
            continue  # a key policy's Resource "*" means "this key"; its admin statement is the account root
        for policy in resource.get("Properties", {}).get("Policies", []) or []:
            document = policy.get("PolicyDocument", policy)
            for statement in document.get("Statement", []):
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert "*" not in actions, logical_id
                assert not any(a.endswith(":*") for a in actions), logical_id
                assert statement.get("Resource") != "*", logical_id


def test_every_function_setting_is_a_parameter(template: dict[str, Any]) -> None:
    """Parameters -> environment: each variable comes from a parameter or a resource, never a literal."""
    for name in FUNCTIONS:
        variables = template["Resources"][name]["Properties"]["Environment"]["Variables"]
        for variable, value in variables.items():
            if variable == "POWERTOOLS_SERVICE_NAME":
                continue
            assert isinstance(value, dict), f"{name}: {variable} is hard-coded"


def test_the_layer_is_built_for_the_runtime_without_the_runtime_s_own_boto3(template: dict[str, Any]) -> None:
    layer = template["Resources"]["SharedLayer"]
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    makefile = (ROOT / "layers" / "shared" / "Makefile").read_text(encoding="utf-8")
    assert "build-SharedLayer:" in makefile
    assert "botocore" in makefile  # removed from the build: the runtime provides it
    assert "compileall" in makefile
    # SAM zips with 1980 dates: byte-code checked against its source's date would be ignored on Lambda.
    assert "--invalidation-mode unchecked-hash" in makefile
    # arm64; only make's command line may change it (the artifact check does), not the environment
    assert "PLATFORM := manylinux2014_aarch64" in makefile
    requirements = Path(ROOT / "layers" / "shared" / "requirements.txt").read_text(encoding="utf-8")
    pinned = [line for line in requirements.splitlines() if line and not line.startswith("#")]
    assert all("==" in line for line in pinned)
    assert not any(line.startswith(("boto3", "botocore")) for line in pinned)
