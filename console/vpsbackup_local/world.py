"""The console's local world (``vpsbackup --local``): the provider simulator and local AWS (moto's
server on 127.0.0.1) holding the project's resources, and the environment the functions read.

It needs the ``local`` extra (``pip install 'vps-backup-automation[local]'``: moto's server). Never
deployed. Nothing here reaches a real AWS account: ``AWS_ENDPOINT_URL`` points every boto3 client
at the local moto server and the credentials are fake. The demo and ``make invoke`` start the same
world through ``devtools.local_env``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

LOCAL_TOKEN = "local-dev-token"  # noqa: S105 - the simulator's token, local only
WEBHOOK_KEY = "test-webhook-secret"  # the documented test key of the sample webhook events
# StateTable's keys as template.yaml declares them (tests/unit/console/test_packaging.py compares).
STATE_TABLE: dict[str, Any] = {
    "BillingMode": "PAY_PER_REQUEST",
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
}


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
    """StateTable with the template's key schema (:data:`STATE_TABLE`; a test checks the two agree),
    the token and webhook-key secrets, the notifications topic and an SQS queue subscribed to it."""
    import boto3

    props = STATE_TABLE
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

    from vpsbackup_local.simulator import Simulator, seed_demo_fleet

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
