"""template.yaml, operations part: the dashboard shows what the code emits, encryption, checkov skips, samconfig."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, load_template
from vpsbackup.provider.client import API_ERRORS_METRIC, API_THROTTLED_METRIC
from vpsbackup.provider.shared_quota import QUOTA_SLOTS_TAKEN_METRIC
from vpsbackup.prune.chunks import CHUNKS_METRIC, RUNS_IN_PROGRESS_METRIC
from vpsbackup.prune.job import _METRICS as PRUNE_METRICS
from vpsbackup.restore.job import METRIC_NAMES as RESTORE_METRICS

FUNCTIONS = ("BackupOnDeployFunction", "PruneBackupsFunction", "RestoreOnAlarmFunction")
SHARED = ROOT / "layers" / "shared" / "vpsbackup"
# Where each job's metrics are added: the function's folder and its package in the layer.
JOB_SOURCES = {
    "BackupOnDeployFunction": (ROOT / "functions" / "backup_on_deploy", SHARED / "deploy"),
    "PruneBackupsFunction": (ROOT / "functions" / "prune_backups", SHARED / "prune"),
    "RestoreOnAlarmFunction": (ROOT / "functions" / "restore_on_alarm", SHARED / "restore"),
}
LITERAL_METRIC = re.compile(r"add_metric\(\s*name=\"([A-Za-z_]+)\"")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def service_of(template: dict[str, Any], function: str) -> str:
    service: str = template["Resources"][function]["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    return service


def emitted(template: dict[str, Any]) -> dict[str, set[str]]:
    """Per service (POWERTOOLS_SERVICE_NAME), the names of the metrics its code adds."""
    names: dict[str, set[str]] = {}
    for function, folders in JOB_SOURCES.items():
        found = {
            m.group(1)
            for folder in folders
            for path in Path(folder).rglob("*.py")
            for m in LITERAL_METRIC.finditer(path.read_text(encoding="utf-8"))
        }
        names[service_of(template, function)] = found | {
            API_ERRORS_METRIC,
            API_THROTTLED_METRIC,
            QUOTA_SLOTS_TAKEN_METRIC,
        }
    names["prune-backups"] |= {name for name, _ in PRUNE_METRICS} | {CHUNKS_METRIC, RUNS_IN_PROGRESS_METRIC}
    names["restore-on-alarm"] |= set(RESTORE_METRICS.values())
    return names


def dashboard(template: dict[str, Any]) -> dict[str, Any]:
    """The dashboard body as JSON, each ${Ref} left as the text "${Ref}"."""
    body = template["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]["Sub"]
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def dashboard_metrics(template: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(namespace, metric, dimension name, dimension value) of every metric on the dashboard."""
    found = []
    for widget in dashboard(template)["widgets"]:
        for row in widget["properties"].get("metrics", []):
            namespace, name, dimension, value = row[:4]
            assert len(row) == 5 and isinstance(row[4], dict), row  # exactly one dimension, then options
            found.append((namespace, name, dimension, value))
    return found


def test_the_code_emits_the_metrics_the_scan_expects(template: dict[str, Any]) -> None:
    # The scan itself: it finds the metrics each job is known to add (else the next test proves nothing)
    names = emitted(template)
    assert {"backups_created", "backups_failed", "requests_rejected"} <= names["backup-on-deploy"]
    assert {"BackupsDeleted", "BackupsKept", "BackupsDeferred", "DeletionsFailed"} <= names["prune-backups"]
    assert {"restored", "restore_failed", "restore_skipped"} <= names["restore-on-alarm"]


def test_every_custom_metric_on_the_dashboard_is_one_its_service_emits(template: dict[str, Any]) -> None:
    namespace = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    names = emitted(template)
    custom = [m for m in dashboard_metrics(template) if not m[0].startswith("AWS/")]
    assert custom
    for ns, name, dimension, service in custom:
        assert ns == namespace, name
        assert dimension == "service", name  # Powertools' default dimension
        assert name in names[service], f"{service} does not emit {name}"


def test_the_dashboard_shows_what_on_call_needs(template: dict[str, Any]) -> None:
    shown = {(name, value) for _, name, _, value in dashboard_metrics(template)}
    deploy, prune, restore = (service_of(template, f) for f in FUNCTIONS)
    needed = {
        ("backups_created", deploy),
        ("backups_failed", deploy),
        ("BackupsDeleted", prune),
        ("BackupsKept", prune),
        ("BackupsDeferred", prune),
        ("DeletionsFailed", prune),
        *((name, restore) for name in RESTORE_METRICS.values()),  # restores by outcome
        ("RunsCompleted", prune),  # the heartbeat
        (RUNS_IN_PROGRESS_METRIC, prune),  # prune runs in progress, and their chunks
        (CHUNKS_METRIC, prune),
        ("ExecutionsFailed", "${PruneStateMachine}"),
        *((QUOTA_SLOTS_TAKEN_METRIC, service) for service in (deploy, prune, restore)),  # the quota in use
        *(
            (metric, service)
            for metric in (API_ERRORS_METRIC, API_THROTTLED_METRIC)
            for service in (deploy, prune, restore)
        ),
        *((metric, f"${{{f}}}") for metric in ("Errors", "Duration") for f in FUNCTIONS),
    }
    assert needed - shown == set()
    lambda_rows = [m for m in dashboard_metrics(template) if m[0] == "AWS/Lambda"]
    assert all(dimension == "FunctionName" for _, _, dimension, _ in lambda_rows)


def test_every_reference_in_the_dashboard_is_a_resource_and_its_url_is_an_output(template: dict[str, Any]) -> None:
    body = template["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]["Sub"]
    for ref in re.findall(r"\$\{([^}]+)\}", body):
        logical_id = ref.split(".")[0]
        assert ref.startswith("AWS::") or logical_id in template["Resources"], ref
    url = template["Outputs"]["DashboardUrl"]["Value"]["Sub"]
    assert url.startswith("https://") and "${OperationsDashboard}" in url


def test_the_failure_queue_and_the_topics_are_encrypted_with_the_stack_key(template: dict[str, Any]) -> None:
    res = template["Resources"]
    for logical_id in ("FailedInvocationsQueue", "NotificationsTopic", "StackAlarmsTopic", "AlarmActionsTopic"):
        assert res[logical_id]["Properties"]["KmsMasterKeyId"] == {"Ref": "NotificationsKey"}, logical_id
    principals = {
        s["Principal"].get("Service") for s in res["NotificationsKey"]["Properties"]["KeyPolicy"]["Statement"]
    }
    # alarms publish to the topics; EventBridge rules dead-letter into the queue
    assert {"cloudwatch.amazonaws.com", "events.amazonaws.com"} <= principals


def _grants(statements: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (a, json.dumps(s["Resource"]))
        for s in statements
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }


def test_whoever_sends_to_the_encrypted_queue_may_use_its_key(template: dict[str, Any]) -> None:
    key = json.dumps({"GetAtt": "NotificationsKey.Arn"})
    res = template["Resources"]
    for name in FUNCTIONS:
        props = res[name]["Properties"]
        assert props["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Type"] == "SQS"
        grants = _grants([s for p in props["Policies"] for s in p["Statement"]])
        assert {("kms:GenerateDataKey", key), ("kms:Decrypt", key)} <= grants, name
    role = res["PruneBackupsSchedulerRole"]["Properties"]
    grants = _grants([s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]])
    assert {("kms:GenerateDataKey", key), ("kms:Decrypt", key)} <= grants


def test_every_checkov_skip_says_why(template: dict[str, Any]) -> None:
    skips = 0
    for logical_id, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            skips += 1
            assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), logical_id
            assert len(skip.get("comment", "").split()) >= 8, f"{logical_id}: {skip['id']} has no reason"
    assert skips


def test_prune_reserves_no_concurrency_its_runs_take_a_lock(template: dict[str, Any]) -> None:
    # A reservation fails the stack on an account whose limit is 10; one run at a time is the
    # state machine's run lock (tests/integration/test_prune_state_machine.py).
    assert "ReservedConcurrentExecutions" not in template["Resources"]["PruneBackupsFunction"]["Properties"]


def test_samconfig_is_committed_with_guided_deploy_defaults(template: dict[str, Any]) -> None:
    assert "samconfig.toml" not in (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    assert config["version"] == 0.1
    deploy = config["default"]["deploy"]["parameters"]
    assert "CAPABILITY_IAM" in deploy["capabilities"]
    assert deploy["confirm_changeset"] is True
    assert deploy["resolve_s3"] is True
    assert config["default"]["global"]["parameters"]["stack_name"]
    # parameter overrides name real parameters only, and never a secret value (ARNs only)
    overrides = deploy.get("parameter_overrides", [])
    for override in shlex.split(overrides) if isinstance(overrides, str) else overrides:
        name = override.split("=", 1)[0]
        assert name in template["Parameters"], name
