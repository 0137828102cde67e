"""A whole local world for the demo and ``make invoke``: the console's local world
(:mod:`vpsbackup_local.world`: the provider simulator, local AWS on 127.0.0.1 with the project's
resources, the environment the functions read), with the function folders importable as Lambda lays
them out, and what only development needs (the template as data, alarms, invoking a handler).

Never deployed. Nothing here reaches a real AWS account: AWS_ENDPOINT_URL points every boto3 client
at the local moto server and the credentials are fake.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vpsbackup_local import world as _world
from vpsbackup_local.world import (
    LOCAL_TOKEN,
    WEBHOOK_KEY,
    LocalWorld,
    Resources,
    create_resources,
    drain_sns_queue,
    seed_project_backups,
)

__all__ = [
    "FUNCTIONS",
    "LOCAL_TOKEN",
    "ROOT",
    "WEBHOOK_KEY",
    "LocalContext",
    "LocalWorld",
    "Resources",
    "add_import_paths",
    "create_resources",
    "drain_sns_queue",
    "invoke",
    "load_template",
    "local_world",
    "seed_project_backups",
    "set_alarm_state",
    "sqs_event",
]

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = {
    "backup_on_deploy": "BackupOnDeployFunction",
    "prune_backups": "PruneBackupsFunction",
    "restore_on_alarm": "RestoreOnAlarmFunction",
}


def add_import_paths() -> None:
    """The layer's package and the function folders, as Lambda lays them out (/opt/python, /var/task)."""
    for path in [ROOT / "layers" / "shared", *(ROOT / "functions" / name for name in FUNCTIONS)]:
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def load_template() -> dict[str, Any]:
    """template.yaml as data; CloudFormation tags (!Ref, !Sub, ...) become ``{"Tag": value}``."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {suffix: value}

    Loader.add_multi_constructor("!", any_tag)
    with open(ROOT / "template.yaml", encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.load(fh, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    return data


def set_alarm_state(name: str, state: str = "ALARM", *, metrics: Sequence[Mapping[str, str]] | None = None) -> str:
    """The metric alarm ``name`` in the local account, put in ``state``, as CloudWatch is when it tells
    of a change (restore on alarm confirms the alarm with ``DescribeAlarms`` before it acts, and takes
    its server from the alarm's own dimensions). ``metrics``: each watched metric's dimensions (one:
    a plain metric alarm; more: a metric-math alarm); the alarm is (re)defined with them, or made
    without dimensions if missing and not given. Returns the alarm's ARN."""
    import boto3

    cloudwatch = boto3.client("cloudwatch")
    if metrics is not None or not cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]:
        cloudwatch.put_metric_alarm(**_alarm_definition(name, metrics or [{}]))
    cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="set locally")
    return str(cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["AlarmArn"])


def _alarm_definition(name: str, metrics: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    common = {
        "AlarmName": name,
        "EvaluationPeriods": 1,
        "Threshold": 10.0,
        "ComparisonOperator": "GreaterThanThreshold",
    }

    def dimensions(of: Mapping[str, str]) -> list[dict[str, str]]:
        return [{"Name": key, "Value": value} for key, value in of.items()]

    if len(metrics) == 1:
        return {
            **common,
            "Namespace": "Shop",
            "MetricName": "Http5xx",
            "Statistic": "Sum",
            "Period": 60,
            "Dimensions": dimensions(metrics[0]),
        }
    queries: list[dict[str, Any]] = [
        {
            "Id": f"m{i}",
            "MetricStat": {
                "Metric": {"Namespace": "Shop", "MetricName": "Errors", "Dimensions": dimensions(of)},
                "Period": 60,
                "Stat": "Sum",
            },
            "ReturnData": False,
        }
        for i, of in enumerate(metrics)
    ]
    expression = "+".join(query["Id"] for query in queries)
    return {**common, "Metrics": [*queries, {"Id": "e", "Expression": expression, "ReturnData": True}]}


@contextmanager
def local_world(**options: Any) -> Iterator[LocalWorld]:
    """:func:`vpsbackup_local.world.local_world`, with the functions importable (the demo invokes them)."""
    add_import_paths()
    with _world.local_world(**options) as world:
        yield world


def sqs_event(messages: list[dict[str, Any]], *, queue: str) -> dict[str, Any]:
    """The event Lambda's SQS poller would send for these messages (``receive_message``'s) of ``queue``."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:eu-west-1:123456789012:{queue}",
                "awsRegion": "eu-west-1",
            }
            for m in messages
        ]
    }


@dataclass
class LocalContext:
    """A stand-in for Lambda's context object."""

    function_name: str
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: f"local-{uuid.uuid4().hex[:12]}")
    timeout_s: float = 120.0
    invoked_function_arn: str = ""

    def __post_init__(self) -> None:
        import time

        self._deadline = time.monotonic() + self.timeout_s
        self.invoked_function_arn = f"arn:aws:lambda:eu-west-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        import time

        return max(0, int((self._deadline - time.monotonic()) * 1000))


def invoke(function: str, event: dict[str, Any], *, timeout_s: float = 120.0) -> Any:
    """Import a function's handler module (as Lambda would) and call it with ``event``."""
    import importlib

    if function not in FUNCTIONS:
        raise SystemExit(f"unknown function {function!r}; one of {', '.join(FUNCTIONS)}")
    add_import_paths()
    os.environ["POWERTOOLS_SERVICE_NAME"] = function.replace("_", "-")
    module = importlib.import_module(function)
    return module.handler(event, LocalContext(function_name=function, timeout_s=timeout_s))
