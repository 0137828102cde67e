"""Deploys of any size: a large deployment is answered 202 at once and its backups are made by the
deploy queue's worker, exactly once, over the simulator and moto.

The test seam (docs/backup-on-deploy.md, large deployments): moto keeps the SQS queue but runs no
event source mapping, so the test reads the messages from moto's queue and hands them to the real
handler as the SQS event Lambda would send, deleting those the handler did not report as failed.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

import backup_on_deploy
from devtools.local_env import sqs_event as local_sqs_event
from devtools.simulator import Simulator
from tests.conftest import AwsEnv, FakeLambdaContext
from tests.integration.test_backup_on_deploy import eventbridge, post, posted_servers, status_of
from vpsbackup.markers import marker_matches
from vpsbackup.provider.client import NO_WAIT

pytestmark = pytest.mark.integration

FLEET = list(range(20_001, 20_501))  # 500 servers
SMALL = FLEET[:10]


@pytest.fixture
def queue_env(
    shared_env: AwsEnv, simulator: Simulator, monkeypatch: pytest.MonkeyPatch, fast_api_client: Callable[[Any], None]
) -> Iterator[str]:
    """Backup on deploy with its deploy queue (in moto) and a 500-server environment."""
    queue_url = boto3.client("sqs").create_queue(QueueName="deploy-queue")["QueueUrl"]
    monkeypatch.setenv("DEPLOY_QUEUE_URL", queue_url)
    monkeypatch.setenv("SERVER_GROUPS", json.dumps({"fleet": FLEET, "small": SMALL}))
    monkeypatch.setenv("WEBHOOK_SECRET", shared_env.webhook_secret_id)
    fast_api_client(NO_WAIT)
    for server in FLEET:
        simulator.add_server(server, f"web-{server}")
    backup_on_deploy.settings.cache_clear()
    yield queue_url
    backup_on_deploy.settings.cache_clear()


@dataclass
class Clock(FakeLambdaContext):
    """A Lambda context whose time runs out: each look at it costs ``step_ms``."""

    step_ms: int = 1_000

    def get_remaining_time_in_millis(self) -> int:
        self.remaining_ms -= self.step_ms
        return self.remaining_ms


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The event Lambda's SQS poller would send for these messages."""
    return local_sqs_event(messages, queue="deploy-queue")


def drain(queue_url: str, *, redeliver_every: int = 0) -> tuple[int, int]:
    """Run the worker on every message until the queue is empty: one message an invocation (the
    template's batch size), every other invocation short of time. ``redeliver_every``: hand that
    message to the worker a second time, as SQS may. Returns (invocations, messages re-queued)."""
    sqs = boto3.client("sqs")
    failures = 0
    for n in itertools.count():
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1).get("Messages", [])
        if not messages:
            return n, failures
        context = Clock(remaining_ms=32_000 if n % 2 else 120_000)
        answer = backup_on_deploy.handler(sqs_event(messages), context)
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        failures += len(failed)
        if redeliver_every and n % redeliver_every == 0:
            backup_on_deploy.handler(sqs_event(messages), Clock(remaining_ms=120_000))
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    raise AssertionError("unreachable")


def marked(simulator: Simulator, deployment_id: str) -> Counter[int]:
    return Counter(
        b["server"]["id"]
        for b in simulator.backups
        if b["backup_type"] == "manual" and marker_matches(b["description"], deployment_id)
    )


# 500 servers through the claims in moto: about 3,500 DynamoDB requests, a minute on a busy machine.
@pytest.mark.timeout(600)
def test_a_500_server_deploy_answers_202_at_once_and_the_worker_backs_up_each_server_once(
    queue_env: str, simulator: Simulator
) -> None:
    # When CI asks for a backup of the 500-server environment
    status, body = post({"deployment_id": "gh-big-1", "environment": "fleet"})

    # Then it is answered at once, every server queued, and nothing was asked of the provider yet
    assert status == 202
    assert [entry["server_id"] for entry in body["backups"]] == FLEET
    assert {(entry["status"], entry["backup_id"]) for entry in body["backups"]} == {("in_progress", None)}
    assert posted_servers(simulator) == []
    status, progress = status_of("gh-big-1")
    assert status == 200 and progress["progress"] == {"created": 0, "pending": 500, "failed": 0}

    # When the worker takes the queue's messages (some invocations run short of time, some
    # messages are delivered twice)
    invocations, failures = drain(queue_env, redeliver_every=7)

    # Then every server has exactly one backup for the deployment
    assert failures == 0
    assert invocations > len(FLEET) // 10  # short invocations queued what they did not reach
    assert marked(simulator, "gh-big-1") == Counter({server: 1 for server in FLEET})
    assert sorted(posted_servers(simulator)) == FLEET

    # and the status endpoint shows them all, read with one listing rather than 500
    simulator.clear_requests()
    status, done = status_of("gh-big-1")
    assert status == 200
    assert done["progress"] == {"created": 500, "pending": 0, "failed": 0}
    assert {entry["status"] for entry in done["backups"]} == {"completed"}
    assert len(simulator.requests) <= 500 // 10 + 1  # the simulator's pages of 10


def test_a_deployment_of_ten_servers_is_still_answered_with_its_backups(queue_env: str, simulator: Simulator) -> None:
    status, body = post({"deployment_id": "gh-small-1", "environment": "small"})
    assert status == 201
    assert all(entry["backup_id"] is not None for entry in body["backups"])
    assert boto3.client("sqs").receive_message(QueueUrl=queue_env).get("Messages", []) == []


def test_a_large_eventbridge_deploy_is_queued_without_failing_the_invocation(
    queue_env: str, simulator: Simulator
) -> None:
    body = backup_on_deploy.handler(
        eventbridge({"deployment_id": "gh-big-2", "server_ids": FLEET[:25]}), FakeLambdaContext()
    )
    assert len(body["backups"]) == 25 and posted_servers(simulator) == []
    drain(queue_env)
    assert marked(simulator, "gh-big-2") == Counter({server: 1 for server in FLEET[:25]})
    _, done = status_of("gh-big-2")
    assert done["progress"] == {"created": 25, "pending": 0, "failed": 0}
    # a repeat of the request queues the servers again, and the worker creates nothing
    backup_on_deploy.handler(eventbridge({"deployment_id": "gh-big-2", "server_ids": FLEET[:25]}), FakeLambdaContext())
    drain(queue_env)
    assert marked(simulator, "gh-big-2") == Counter({server: 1 for server in FLEET[:25]})


def test_a_message_for_an_unknown_deployment_is_reported_for_redelivery(queue_env: str, simulator: Simulator) -> None:
    body = json.dumps(
        {"deployment_id": "never-received", "request": {"deployment_id": "never-received"}, "server_ids": [1]}
    )
    answer = backup_on_deploy.handler(
        sqs_event([{"MessageId": "m-1", "ReceiptHandle": "r-1", "Body": body}]), FakeLambdaContext()
    )
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert simulator.requests == []
