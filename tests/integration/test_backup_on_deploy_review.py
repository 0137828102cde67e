"""Adversarial end-to-end scenarios for backup on deploy (handler, simulator, moto)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import backup_on_deploy
from devtools.simulator import Simulator
from tests.conftest import AwsEnv, FakeLambdaContext, load_event
from vpsbackup.aws.state import StateTable
from vpsbackup.deploy.claims import ClaimStore
from vpsbackup.deploy.job import DeploymentBackupFailedError
from vpsbackup.provider.client import NO_WAIT

pytestmark = pytest.mark.integration


@pytest.fixture
def deploy_env(
    shared_env: AwsEnv, simulator: Simulator, monkeypatch: pytest.MonkeyPatch, fast_api_client: Callable[[Any], None]
) -> Iterator[AwsEnv]:
    monkeypatch.setenv("SERVER_GROUPS", json.dumps({"production": [12345, 12346]}))
    monkeypatch.setenv("WEBHOOK_SECRET", shared_env.webhook_secret_id)
    monkeypatch.setattr(backup_on_deploy, "MAX_WAIT_FOR_CLAIM_S", 0.3)
    fast_api_client(NO_WAIT)
    backup_on_deploy.settings.cache_clear()
    yield shared_env
    backup_on_deploy.settings.cache_clear()


def test_an_eventbridge_delivery_that_only_saw_another_deliverys_claim_is_retried_not_a_success(
    deploy_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext
) -> None:
    # Given another delivery holds a fresh claim on server 12345 (it may yet die before creating it)
    claims = ClaimStore(StateTable.from_name(deploy_env.table_name))
    now = datetime.now(UTC)
    claims.claim_new("eb-busy", 12345, owner="other", now=now, lease=timedelta(minutes=5), received_at=now)
    event = load_event("deploy-eventbridge.json")
    event["detail"] = {"deployment_id": "eb-busy", "server_ids": [12345, 12346]}

    # When EventBridge delivers the deploy event
    # Then the invocation fails (Lambda retries it later, and the retry reuses what was made),
    # after backing up the server it could
    with pytest.raises(DeploymentBackupFailedError, match="another delivery: 12345") as failed:
        backup_on_deploy.handler(event, lambda_context)
    entries = {e["server_id"]: e for e in failed.value.result.body()["backups"]}
    assert entries[12345]["backup_id"] is None
    assert entries[12346]["backup_id"] is not None
    assert [int(r.body["server_id"]) for r in simulator.requests if r.method == "POST"] == [12346]
