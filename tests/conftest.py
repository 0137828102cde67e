"""Fixtures shared by unit and integration tests.

- ``lambda_context``: a plain stand-in for Lambda's context object.
- ``aws``: moto's ``mock_aws`` with the project's resources built from ``template.yaml`` itself
  (the StateTable's key schema and TTL), the token secret, the notifications topic and an SQS queue
  subscribed to it so tests can read what people would be told.
- ``simulator`` (from ``devtools.simulator.pytest_plugin``): the local provider API on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from devtools.local_env import Resources, create_resources
from devtools.local_env import load_template as load_template  # re-exported for the template tests
from devtools.local_env import set_alarm_state as set_alarm_state  # re-exported: restore confirms its alarm

pytest_plugins = ["devtools.simulator.pytest_plugin"]

# No per-example deadline: hypothesis' 200 ms default is a timed test, and on a shared 2-core
# machine a slow example fails a correct property ("DeadlineExceeded ... unreliable results").
settings.register_profile("vpsbackup", deadline=None)
settings.load_profile("vpsbackup")

# Offline AWS: fake credentials and a region, so nothing can reach a real account.
os.environ["AWS_DEFAULT_REGION"] = "eu-west-1"
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_SECURITY_TOKEN"] = "testing"
os.environ["AWS_SESSION_TOKEN"] = "testing"
os.environ.pop("AWS_PROFILE", None)
os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
os.environ["POWERTOOLS_METRICS_NAMESPACE"] = "VpsBackupAutomationTests"
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "vpsbackup-tests")

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
SHARED = ROOT.parent / "shared"


TEST_ACCOUNT = "123456789012"  # moto's account, the samples' and FakeLambdaContext's


def resolve_refs(node: Any, parameters: dict[str, Any]) -> Any:
    """A template fragment with every ``{"Ref": <parameter>}`` replaced by the parameter's default and
    ``{"Ref": "AWS::AccountId"}`` by the test account (e.g. a rule's pattern, to match samples against)."""
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in parameters:
            return parameters[node["Ref"]]["Default"]
        if node == {"Ref": "AWS::AccountId"}:
            return TEST_ACCOUNT
        return {k: resolve_refs(v, parameters) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_refs(v, parameters) for v in node]
    return node


def confirming_alarms(server: int = 12345) -> dict[str, Any]:
    """``AlarmRestorer``'s ``alarm_state`` and ``home`` for tests that build one: the test account and
    region, where every alarm exists (its ARN as the samples give it), is in ``ALARM`` and watches a
    metric of ``server`` (the samples')."""
    from vpsbackup.restore.alarm import CurrentAlarm, Dimension, Home

    def in_alarm(name: str) -> CurrentAlarm:
        arn = f"arn:aws:cloudwatch:eu-west-1:{TEST_ACCOUNT}:alarm:{name}"
        return CurrentAlarm(name, arn, "ALARM", (Dimension(name="ServerId", value=str(server)),))

    return {"alarm_state": in_alarm, "home": Home(TEST_ACCOUNT, "eu-west-1")}


def load_event(name: str) -> dict[str, Any]:
    """A sample event from ``events/``."""
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def alarm_change_event(*, at: datetime, server: int | None, alarm: str) -> dict[str, Any]:
    """An EventBridge alarm state change OK -> ALARM of ``alarm`` at ``at``, on ``server``'s metric
    (none: a metric without a server); the alarm is made to exist and be in ALARM, as when
    CloudWatch sends the event."""
    dimensions = {"ServerId": str(server)} if server is not None else {}
    set_alarm_state(alarm, metrics=[dimensions])
    event = load_event("alarm-eventbridge-alarm.json")
    detail = event["detail"]
    detail["alarmName"] = alarm
    event["resources"] = [f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{alarm}"]
    detail["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = dimensions
    detail["state"].update(value="ALARM", timestamp=at.isoformat())
    detail["previousState"].update(value="OK", timestamp=(at - timedelta(minutes=5)).isoformat())
    event["time"] = at.isoformat()
    return dict(event)


@dataclass
class FakeLambdaContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:test-function"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"
    remaining_ms: int = 120_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@dataclass
class AwsEnv(Resources):
    """The mock account's resources (see ``devtools.local_env.create_resources``)."""

    def notifications(self) -> list[dict[str, Any]]:
        """Every SNS notification published so far (drains the queue): ``{"Subject", "Message", ...}``."""
        from devtools.local_env import drain_sns_queue

        return drain_sns_queue(self.clients["sqs"], self.queue_url)

    def table(self) -> Any:
        import boto3

        return boto3.resource("dynamodb").Table(self.table_name)


WEBHOOK_TEST_SECRET = "test-webhook-secret"  # the documented test key, also in README


@pytest.fixture
def aws() -> Iterator[AwsEnv]:
    """A fresh mock AWS account holding the project's resources."""
    from aws_lambda_powertools.utilities import parameters
    from moto import mock_aws

    from devtools.simulator.pytest_plugin import SIM_TOKEN
    from vpsbackup.aws import runtime

    parameters.clear_caches()
    runtime.reset()
    with mock_aws():
        made = create_resources(table_name="vpsbackup-state-test", api_token=SIM_TOKEN, webhook_key=WEBHOOK_TEST_SECRET)
        yield AwsEnv(**vars(made))
    parameters.clear_caches()
    runtime.reset()


@pytest.fixture
def atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's DynamoDB is not thread-safe (a failed transaction restores a snapshot of the whole
    table), while real DynamoDB applies each request atomically. Tests that race threads against
    the table use this to serialise moto's requests, which models the real service."""
    import threading

    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in ("put_item", "update_item", "delete_item", "get_item", "query", "transact_write_items"):
        original: Callable[..., Any] = getattr(DynamoDBBackend, name)

        def locked(*args: Any, __original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            with lock:
                return __original(*args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


@pytest.fixture
def fast_api_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Any], None]]:
    """Call with a RetryPolicy: the handlers' ``runtime.api_client`` then builds clients that retry
    with it (no real waiting in tests); they are closed after the test."""
    import functools

    from vpsbackup.aws import runtime
    from vpsbackup.provider.client import VpsClient
    from vpsbackup.provider.token import SecretsManagerTokenProvider

    clients: list[VpsClient] = []

    def use(retry: Any) -> None:
        @functools.cache
        def build(base_url: str, token_secret_id: str) -> VpsClient:
            client = VpsClient(base_url, SecretsManagerTokenProvider(token_secret_id), retry=retry)
            clients.append(client)
            return client

        monkeypatch.setattr(runtime, "api_client", build)

    yield use
    for client in clients:
        client.close()


@pytest.fixture
def shared_env(monkeypatch: pytest.MonkeyPatch, aws: AwsEnv, simulator: Any) -> AwsEnv:
    """The shared environment variables (docs/configuration.md) pointing at the simulator and the mock account."""
    monkeypatch.setenv("VPS_API_BASE_URL", simulator.base_url)
    monkeypatch.setenv("VPS_API_TOKEN_SECRET", aws.secret_id)
    monkeypatch.setenv("STATE_TABLE_NAME", aws.table_name)
    monkeypatch.setenv("NOTIFY_TOPIC_ARN", aws.topic_arn)
    # No request budget to speak of: the tests that exercise it set their own (and a simulated clock).
    monkeypatch.setenv("VPS_API_MAX_RPS", "1000")
    return aws


@pytest.fixture
def restore_env(
    shared_env: AwsEnv, monkeypatch: pytest.MonkeyPatch, fast_api_client: Callable[[Any], None]
) -> Iterator[AwsEnv]:
    """Restore on alarm's environment (the defaults of docs/configuration.md, alarms named
    ``vps-restore-*``), an API client with fast retries, and the function's warm state reset."""
    import restore_on_alarm
    from vpsbackup.provider.client import RetryPolicy

    monkeypatch.setenv("ALARM_NAME_PREFIX", "vps-restore-")
    monkeypatch.setenv("MAX_RESTORES_PER_HOUR", "3")
    # The restore's follow-up check: the template's schedule group and role, in the mock account.
    monkeypatch.setenv("RESTORE_VERIFY_ROLE_ARN", shared_env.verify_role_arn)
    monkeypatch.setenv("RESTORE_VERIFY_SCHEDULE_GROUP", shared_env.verify_group)
    # Short sleeps, and more attempts than a deadline allows: the deadline is what bounds a 503 loop.
    fast_api_client(RetryPolicy(max_attempts=1000, base_delay=0.01, max_delay=0.05))
    restore_on_alarm.reset()
    yield shared_env
    restore_on_alarm.reset()
