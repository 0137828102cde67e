"""The console's local world (``vpsbackup --local``): the provider simulator and local AWS (moto's
server on 127.0.0.1) holding the project's resources, and the environment the functions read.

It needs the ``local`` extra (``pip install 'vps-backup-automation[local]'``: moto's server). Never
deployed. Nothing here reaches a real AWS account: ``AWS_ENDPOINT_URL`` points every boto3 client
at the local moto server and the credentials are fake. The demo and ``make invoke`` start the same
world through ``devtools.local_env``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
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
    # The restore's follow-up check (RESTORE_VERIFY_SCHEDULE_GROUP, RESTORE_VERIFY_ROLE_ARN).
    verify_group: str = ""
    verify_role_arn: str = ""


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
    scheduler = boto3.client("scheduler")
    verify_group = scheduler.create_schedule_group(Name="vpsbackup-restore-verify")["ScheduleGroupArn"].split("/")[-1]
    verify_role_arn = boto3.client("iam").create_role(
        RoleName="vpsbackup-restore-verify",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )["Role"]["Arn"]
    return Resources(
        table_name=table_name,
        secret_id=secret_id,
        webhook_secret_id=webhook_secret_id,
        topic_arn=topic_arn,
        queue_url=queue_url,
        clients={"sqs": sqs, "sns": sns, "secretsmanager": secrets, "dynamodb": ddb, "scheduler": scheduler},
        verify_group=verify_group,
        verify_role_arn=verify_role_arn,
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
            "RESTORE_VERIFY_ROLE_ARN": resources.verify_role_arn,
            "RESTORE_VERIFY_SCHEDULE_GROUP": resources.verify_group,
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


# -- the demo's world, shared by successive `vpsbackup --local` commands ----------------------------

WEB = 12345  # web-server-01, the demo fleet's server with three weeks of the project's deploy backups
# What `make demo` runs with: prune's policy and the deploy groups (devtools/demo.py uses these too).
DEMO_ENV: dict[str, str] = {
    "SERVER_GROUPS": json.dumps({"production": [12345, 12346]}),
    "RETENTION_POLICY": json.dumps({"keep_last": 3, "keep_daily": 7, "keep_weekly": 2}),
    "ALARM_NAME_PREFIX": "vps-restore-",
}
# The environment another process needs to act on a running world (`vpsbackup --local` prints it).
SHARED_NAMES = (
    "VPS_API_BASE_URL",
    "VPS_API_TOKEN_SECRET",
    "STATE_TABLE_NAME",
    "NOTIFY_TOPIC_ARN",
    *DEMO_ENV,
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


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
def demo_world(extra_env: Mapping[str, str] | None = None) -> Iterator[LocalWorld]:
    """The world `make demo` starts: the demo fleet, three weeks of the project's deploy backups on
    web-server-01 (so prune keeps some and deletes others, with reasons), the demo's policy."""
    with local_world(extra_env={**DEMO_ENV, **(extra_env or {})}) as world:
        seed_project_backups(world.simulator, datetime.now(UTC), servers=(WEB,))
        yield world


def world_file() -> Path:
    """Where a running world is told to the other commands: a per-user runtime directory."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "vpsbackup" if runtime else Path(tempfile.gettempdir()) / f"vpsbackup-{os.getuid()}"
    return base / "local-world.json"


def publish(environment: Mapping[str, str]) -> Path:
    """Tell other commands that this process's world runs, and how to reach it; returns the file."""
    path = world_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "environment": dict(environment)}), encoding="utf-8")
    tmp.replace(path)
    return path


def withdraw(path: Path) -> None:
    """The world stopped: forget it (only if the file is still this process's)."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()


def running_world() -> dict[str, str] | None:
    """The environment of the world a `vpsbackup --local` of this user runs now, or None (no file,
    an unreadable one, or its process is gone)."""
    try:
        told = json.loads(world_file().read_text(encoding="utf-8"))
        pid, environment = int(told["pid"]), dict(told["environment"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's process with the same pid would not have written our file
    return {str(k): str(v) for k, v in environment.items()}
