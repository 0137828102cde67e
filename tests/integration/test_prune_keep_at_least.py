"""KEEP_AT_LEAST end to end (the prune handler over the local API simulator and moto), and the
attributes of prune's notifications, read back through an SQS subscription with raw delivery off."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import prune_backups
from devtools.simulator import Fault, Simulator
from tests.conftest import AwsEnv, FakeLambdaContext
from vpsbackup.aws import runtime
from vpsbackup.markers import describe_with_marker
from vpsbackup.provider.client import RetryPolicy

pytestmark = pytest.mark.integration

SERVER = 12345
FAST = RetryPolicy(max_attempts=8, sleep=lambda _s: None, random=lambda: 0.0)


@pytest.fixture
def prune_env(monkeypatch: pytest.MonkeyPatch, shared_env: AwsEnv, simulator: Simulator) -> Iterator[AwsEnv]:
    monkeypatch.setenv("RETENTION_POLICY", json.dumps({"keep_last": 1}))
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "prune-backups")
    prune_backups.settings.cache_clear()
    runtime.api_client(simulator.base_url, shared_env.secret_id).retry = FAST
    yield shared_env
    prune_backups.settings.cache_clear()


def seed(simulator: Simulator, days: int = 6) -> list[dict[str, Any]]:
    """One managed daily backup per day for ``days`` days, newest first."""
    now = datetime.now(UTC)
    return [
        simulator.add_backup(
            SERVER,
            "manual",
            "completed",
            now - timedelta(days=day, hours=1),
            describe_with_marker(f"Release {day}", f"gh-{day}"),
        )
        for day in range(days)
    ]


def decisions(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {d["backup_id"]: d for d in result["decisions"]}


def attributes_of(note: dict[str, Any]) -> dict[str, str]:
    return {key: value["Value"] for key, value in note.get("MessageAttributes", {}).items()}


def test_keep_at_least_3_keeps_three_under_keep_last_1_and_names_the_reason(
    prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given six completed managed backups of one server, {"keep_last": 1} and KEEP_AT_LEAST=3
    monkeypatch.setenv("KEEP_AT_LEAST", "3")
    backups = seed(simulator)
    # When prune runs
    result = prune_backups.handler({}, lambda_context)
    # Then the three newest remain, the three oldest are gone
    remaining = {b["id"] for b in simulator.backups}
    assert remaining == {b["id"] for b in backups[:3]}
    # And the plan says why: the newest by keep_last, the next two by the floor
    plan = decisions(result)
    assert plan[backups[0]["id"]]["action"] == "keep"
    for backup in backups[1:3]:
        assert plan[backup["id"]]["action"] == "keep"
        assert "keep at least 3" in plan[backup["id"]]["reasons"]
    for backup in backups[3:]:
        assert plan[backup["id"]]["action"] == "delete"


def test_the_default_floor_of_1_keeps_only_what_the_policy_keeps(
    prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext
) -> None:
    backups = seed(simulator)
    prune_backups.handler({}, lambda_context)
    assert {b["id"] for b in simulator.backups} == {backups[0]["id"]}


def test_prune_notifications_carry_their_attributes(
    prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a valve of 2 deletions and five to delete: the valve notification
    monkeypatch.setenv("MAX_DELETIONS_PER_RUN", "2")
    prune_backups.settings.cache_clear()
    backups = seed(simulator)
    prune_backups.handler({}, lambda_context)
    [valve] = prune_env.notifications()
    assert attributes_of(valve) == {"job": "prune", "outcome": "valve", "severity": "warning"}
    # Given a deletion that fails, for one server's run: the failure notification names the server
    stuck = backups[3]["id"]
    simulator.inject(Fault(kind="status", status=500, method="DELETE", path_prefix=f"/backups/{stuck}/", times=None))
    prune_backups.handler({"server_ids": [SERVER]}, lambda_context)
    [failed] = prune_env.notifications()
    assert attributes_of(failed) == {
        "job": "prune",
        "outcome": "deletions_failed",
        "severity": "error",
        "server_id": str(SERVER),
    }
