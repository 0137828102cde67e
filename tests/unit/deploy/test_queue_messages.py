"""Large deployments: the queue's messages, the 202 answer, and what the status says of a queued server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from vpsbackup.deploy.claims import QUEUE_PATIENCE, DeploymentMeta
from vpsbackup.deploy.job import DeploymentStatus, ServerResult, _claim_problem, http_status_for
from vpsbackup.deploy.queue import SERVERS_PER_MESSAGE, messages_for, parse_message
from vpsbackup.deploy.request import DeployRequest

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_servers_go_ten_to_a_message_with_the_request() -> None:
    request = DeployRequest(deployment_id="gh-1", server_ids=None, environment="fleet", commit="3f2c1a9")
    messages = list(messages_for(request, range(1, 26)))
    assert [len(m.server_ids) for m in messages] == [SERVERS_PER_MESSAGE, SERVERS_PER_MESSAGE, 5]
    assert [s for m in messages for s in m.server_ids] == list(range(1, 26))
    again = parse_message(messages[0].model_dump_json())
    assert again == messages[0] and DeployRequest.model_validate(again.request) == request


def test_a_message_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValidationError):
        parse_message('{"deployment_id": "gh-1", "request": {}, "server_ids": []}')


def test_a_queued_deployment_is_answered_202_unless_a_server_failed() -> None:
    queued = [ServerResult(1, "queued", "in_progress"), ServerResult(2, "queued", "in_progress")]
    assert http_status_for(queued) == 202
    failed = ServerResult(3, "failed", "error", error="x", http_status=502)
    assert http_status_for([*queued, failed]) == 502


def test_a_server_waiting_in_the_queue_is_pending_until_the_queue_has_given_up() -> None:
    meta = DeploymentMeta(
        deployment_id="gh-1", server_ids=(1,), received_at=T0, last_received_at=T0, deliveries=1, queued_at=T0
    )
    assert _claim_problem(None, meta, T0 + timedelta(minutes=50)) is None  # a plain delivery: an error by now
    problem = _claim_problem(None, meta, T0 + QUEUE_PATIENCE + timedelta(minutes=16))
    assert problem is not None and "send the deploy request again" in str(problem.error)


def test_progress_counts_created_pending_and_failed() -> None:
    status = DeploymentStatus(
        "gh-1",
        T0,
        [
            {"server_id": 1, "backup_id": 501, "status": "completed"},
            {"server_id": 2, "backup_id": 502, "status": "missing"},
            {"server_id": 3, "backup_id": None, "status": "in_progress"},
            {"server_id": 4, "backup_id": None, "status": "error", "error": "HTTP 404"},
        ],
        api_failed=False,
    )
    assert status.body()["progress"] == {"created": 2, "pending": 1, "failed": 1}


def test_the_queue_is_given_exactly_one_hour_for_a_server_it_has_not_reached() -> None:
    # Given a deployment queued at T0 whose delivery has long ended (no claim for the server yet)
    meta = DeploymentMeta(
        deployment_id="gh-1", server_ids=(1,), received_at=T0, last_received_at=T0, deliveries=1, queued_at=T0
    )
    assert timedelta(hours=1) == QUEUE_PATIENCE
    # Then the server is pending for the whole hour, and an error the instant the hour is over
    assert _claim_problem(None, meta, T0 + timedelta(minutes=59, seconds=59)) is None
    problem = _claim_problem(None, meta, T0 + timedelta(hours=1))
    assert problem is not None and "send the deploy request again" in str(problem.error)
