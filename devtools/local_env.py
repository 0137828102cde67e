"""A whole local world for the demo and ``make invoke``: the provider simulator, local AWS (moto's
server on 127.0.0.1) holding the project's resources, and the environment the functions read.

Never deployed. Nothing here reaches a real AWS account: AWS_ENDPOINT_URL points every boto3 client
at the local moto server and the credentials are fake.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = {
    "backup_on_deploy": "BackupOnDeployFunction",
    "prune_backups": "PruneBackupsFunction",
    "restore_on_alarm": "RestoreOnAlarmFunction",
}
LOCAL_TOKEN = "local-dev-token"  # noqa: S105 - the simulator's token, local only
WEBHOOK_KEY = "test-webhook-secret"  # the documented test key of the sample webhook events


def add_import_paths() -> None:
    """The layer's package and the function folders, as Lambda lays them out (/opt/python, /var/task)."""
    for path in [ROOT / "layers" / "shared", *(ROOT / "functions" / name for name in FUNCTIONS)]:
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


@dataclass
class LocalWorld:
    """What :func:`local_world` started; ``notifications()`` drains what people would have been told."""

    api_base_url: str
    aws_endpoint: str
    table_name: str
    topic_arn: str
    queue_url: str
    simulator: Any = None
    clients: dict[str, Any] = field(default_factory=dict)

    def notifications(self) -> list[dict[str, str]]:
        return [
            {"subject": body.get("Subject", ""), "message": body.get("Message", "")}
            for body in drain_sns_queue(self.clients["sqs"], self.queue_url)
        ]


def drain_sns_queue(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every SNS envelope waiting in an SQS queue subscribed to a topic (the queue is emptied)."""
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = got.get("Messages", [])
        if not messages:
            return out
        for message in messages:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def _fake_aws_environment(endpoint: str) -> None:
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": "local",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "VpsBackupAutomationLocal",
        }
    )
    os.environ.pop("AWS_PROFILE", None)


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


@dataclass
class Resources:
    """The project's AWS resources in a local (moto) account, and the clients that made them."""

    table_name: str
    secret_id: str
    webhook_secret_id: str
    topic_arn: str
    queue_url: str
    clients: dict[str, Any]


def create_resources(*, table_name: str, api_token: str, webhook_key: str) -> Resources:
    """StateTable built from template.yaml's own properties (so the two cannot drift apart), the
    token and webhook-key secrets, the notifications topic and an SQS queue subscribed to it."""
    import boto3

    props = load_template()["Resources"]["StateTable"]["Properties"]
    ddb = boto3.client("dynamodb")
    ddb.create_table(
        TableName=table_name,
        BillingMode=props["BillingMode"],
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
    )
    ddb.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"AttributeName": props["TimeToLiveSpecification"]["AttributeName"], "Enabled": True},
    )
    secrets = boto3.client("secretsmanager")
    secret_id = secrets.create_secret(Name="vpsbackup/api-token", SecretString=api_token)["ARN"]
    webhook_secret_id = secrets.create_secret(Name="vpsbackup/webhook-key", SecretString=webhook_key)["ARN"]
    sns = boto3.client("sns")
    topic_arn = sns.create_topic(Name="vpsbackup-notifications")["TopicArn"]
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="people-on-call")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return Resources(
        table_name=table_name,
        secret_id=secret_id,
        webhook_secret_id=webhook_secret_id,
        topic_arn=topic_arn,
        queue_url=queue_url,
        clients={"sqs": sqs, "sns": sns, "secretsmanager": secrets, "dynamodb": ddb},
    )


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


def seed_project_backups(
    simulator: Any, now: datetime, servers: tuple[int, ...] = (12345, 12346), days: int = 21
) -> int:
    """Earlier deploys' backups, made by this project (their descriptions carry its marker): one a
    day at 14:05 UTC for ``days`` days before ``now`` on each of ``servers``, so prune has a real
    plan. Returns how many were added."""
    from vpsbackup.markers import describe_with_marker

    added = 0
    for day in range(1, days + 1):
        for server_id in servers:
            simulator.add_backup(
                server_id,
                backup_type="manual",
                created_at=(now - timedelta(days=day)).replace(hour=14, minute=5, second=0, microsecond=0),
                description=describe_with_marker(f"Release 2.{30 - day}", f"gh-{8800 - day}-1"),
            )
            added += 1
    return added


@contextmanager
def local_world(
    *,
    api_url: str | None = None,
    api_token: str | None = None,
    completion_delay: float = 0.0,
    demo_fleet: bool = True,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LocalWorld]:
    """Start the simulator (unless ``api_url`` names a real API) and local AWS; set the environment."""
    from moto.server import ThreadedMotoServer

    from devtools.simulator import Simulator, seed_demo_fleet

    add_import_paths()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    moto_server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto_server.start()
    host, port = moto_server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    _fake_aws_environment(endpoint)
    simulator = None
    if api_url is None:
        simulator = Simulator(tokens={LOCAL_TOKEN}, page_size=10, completion_delay=completion_delay, seed=0)
        if demo_fleet:
            seed_demo_fleet(simulator)
        simulator.start()
        api_url = simulator.base_url
        api_token = LOCAL_TOKEN
    elif not api_token:
        raise SystemExit("a real API needs its token: pass --token or set VPS_API_TOKEN")
    resources = create_resources(table_name="vpsbackup-state", api_token=api_token or "", webhook_key=WEBHOOK_KEY)
    os.environ.update(
        {
            "VPS_API_BASE_URL": api_url,
            "VPS_API_TOKEN_SECRET": resources.secret_id,
            "STATE_TABLE_NAME": resources.table_name,
            "NOTIFY_TOPIC_ARN": resources.topic_arn,
            "WEBHOOK_SECRET": resources.webhook_secret_id,
            "RETENTION_POLICY": os.environ.get("RETENTION_POLICY", '{"keep_last": 2, "keep_daily": 7}'),
            **(extra_env or {}),
        }
    )
    world = LocalWorld(
        api_base_url=api_url,
        aws_endpoint=endpoint,
        table_name=resources.table_name,
        topic_arn=resources.topic_arn,
        queue_url=resources.queue_url,
        simulator=simulator,
        clients=resources.clients,
    )
    try:
        yield world
    finally:
        if simulator is not None:
            simulator.stop()
        moto_server.stop()


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
