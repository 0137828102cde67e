"""Backup on deploy end to end: the handler over the local API simulator (real HTTP) and moto.

Every test reads Given / When / Then. The webhook samples in ``events/`` carry an old timestamp,
so each test signs them again for "now" with the documented test key (``test-webhook-secret``).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import backup_on_deploy
from devtools.simulator import Fault, Simulator
from tests.conftest import WEBHOOK_TEST_SECRET, AwsEnv, FakeLambdaContext, load_event
from vpsbackup.aws.state import StateTable, deployment_pk, utc_key_time
from vpsbackup.deploy.claims import ClaimStore
from vpsbackup.deploy.job import DeploymentBackupFailedError
from vpsbackup.deploy.request import InvalidDeployRequestError
from vpsbackup.deploy.webhook import resign_function_url_event, signed_headers, signed_request_of
from vpsbackup.errors import ConfigurationError
from vpsbackup.markers import make_marker, marker_matches
from vpsbackup.provider.client import NO_WAIT

pytestmark = pytest.mark.integration

# "retired" names a server the provider no longer has (99999), for the 404 tests.
SERVER_GROUPS = {"production": [12345, 12346], "staging": [12346], "retired": [99999]}


@pytest.fixture
def deploy_env(
    shared_env: AwsEnv, simulator: Simulator, monkeypatch: pytest.MonkeyPatch, fast_api_client: Callable[[Any], None]
) -> Iterator[AwsEnv]:
    """The function's environment, and API clients that retry without waiting (fast tests)."""
    monkeypatch.setenv("SERVER_GROUPS", json.dumps(SERVER_GROUPS))
    monkeypatch.setenv("WEBHOOK_SECRET", shared_env.webhook_secret_id)
    fast_api_client(NO_WAIT)
    backup_on_deploy.settings.cache_clear()
    yield shared_env
    backup_on_deploy.settings.cache_clear()


# -- helpers -------------------------------------------------------------------------------------


def webhook(method: str, body: str | None = None, *, query: dict[str, str] | None = None) -> dict[str, Any]:
    """A Function URL event from the samples, with this body or query, freshly signed."""
    if method == "GET":
        event = load_event("deploy-status-get.json")
        event["queryStringParameters"] = query or {}
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    else:
        event = load_event("deploy-webhook-signed.json")
        event["body"] = body
    return resign_function_url_event(event, WEBHOOK_TEST_SECRET, time.time())


def call(event: dict[str, Any], context: FakeLambdaContext | None = None) -> tuple[int, dict[str, Any]]:
    response = backup_on_deploy.handler(event, context or FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


def post(request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return call(webhook("POST", json.dumps(request)))


def status_of(deployment_id: str) -> tuple[int, dict[str, Any]]:
    return call(webhook("GET", query={"deployment_id": deployment_id}))


def eventbridge(request: dict[str, Any]) -> dict[str, Any]:
    event = load_event("deploy-eventbridge.json")
    event["detail"] = request
    return event


def posts(sim: Simulator) -> list[Any]:
    return [r for r in sim.requests if r.method == "POST"]


def posted_servers(sim: Simulator) -> list[int]:
    """The server of every create the API received, in order."""
    return [int((r.body or {})["server_id"]) for r in posts(sim)]


def manual_backups(sim: Simulator, server_id: int, deployment_id: str) -> list[dict[str, Any]]:
    return [
        b
        for b in sim.backups
        if b["server"]["id"] == server_id
        and b["backup_type"] == "manual"
        and marker_matches(b["description"], deployment_id)
    ]


def ids(body: dict[str, Any]) -> list[tuple[int, int | None]]:
    return [(entry["server_id"], entry["backup_id"]) for entry in body["backups"]]


def by_server(body: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {entry["server_id"]: entry for entry in body["backups"]}


# -- creating, once ------------------------------------------------------------------------------


def test_signed_webhook_sample_creates_one_marked_backup_and_records_the_deployment(
    deploy_env: AwsEnv, simulator: Simulator
) -> None:
    # Given the signed sample (deployment gh-8812-1, server 12345), re-signed for now
    event = resign_function_url_event(load_event("deploy-webhook-signed.json"), WEBHOOK_TEST_SECRET, time.time())
    before = datetime.now(UTC)

    # When CI calls the webhook
    code, body = call(event)

    # Then one manual backup exists, described with the request's text and the deployment's marker
    assert code == 201
    [backup] = manual_backups(simulator, 12345, "gh-8812-1")
    assert body == {
        "deployment_id": "gh-8812-1",
        "backups": [{"server_id": 12345, "backup_id": backup["id"], "status": "in_progress"}],
    }
    assert backup["description"] == f"Release 2.3 {make_marker('gh-8812-1')}"
    # And the restore job finds the deployment and its backup
    record = StateTable.from_name(deploy_env.table_name).latest_deployment_before(12345, datetime.now(UTC))
    assert record is not None
    assert (record.deployment_id, record.backup_id) == ("gh-8812-1", backup["id"])
    assert record.received_at >= before - timedelta(seconds=1)


def test_redelivered_eventbridge_event_creates_nothing_new_and_keeps_the_first_receipt_time(
    deploy_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext
) -> None:
    # Given a deploy event for the production environment, handled once
    event = eventbridge({"deployment_id": "deploy-42", "environment": "production", "repository": "acme/shop"})
    first = backup_on_deploy.handler(event, lambda_context)
    table = StateTable.from_name(deploy_env.table_name)
    first_record = table.latest_deployment_before(12346, datetime.now(UTC))
    simulator.clear_requests()

    # When EventBridge delivers the same event again
    again = backup_on_deploy.handler(event, lambda_context)

    # Then the same backups are reported (with their current status), nothing is POSTed, and each
    # server still has exactly one backup
    assert ids(again) == ids(first)
    assert {b["status"] for b in again["backups"]} == {"completed"}
    assert posts(simulator) == []
    assert [len(manual_backups(simulator, s, "deploy-42")) for s in (12345, 12346)] == [1, 1]
    # And the deployment keeps the time its request was first received
    assert table.latest_deployment_before(12346, datetime.now(UTC)) == first_record


def test_ci_retry_of_the_webhook_answers_200_with_the_same_backups(deploy_env: AwsEnv, simulator: Simulator) -> None:
    # Given a deploy request that was answered 201
    request = {"deployment_id": "gh-1", "server_ids": [12345, 12346], "commit": "abc"}
    code, first = post(request)
    assert code == 201

    # When CI retries it (the backups have finished meanwhile)
    simulator.complete_all()
    code, again = post(request)

    # Then 200: the same backups, with their current status, and nothing new created
    assert code == 200
    assert ids(again) == ids(first)
    assert {b["status"] for b in again["backups"]} == {"completed"}
    assert len(posts(simulator)) == 2


def test_partial_failure_then_retry_creates_only_the_missing_backup(
    deploy_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext
) -> None:
    # Given the API refuses the first create (server 12345) with a 409 (certainly not applied; a 500
    # may have been, and a retry within the settle time would not create: see the _settle tests)
    simulator.inject(Fault(kind="status", status=409, method="POST", path_prefix="/backups/", times=1))
    event = eventbridge({"deployment_id": "deploy-7", "server_ids": [12345, 12346]})

    # When EventBridge delivers the deploy event
    with pytest.raises(DeploymentBackupFailedError) as failed:
        backup_on_deploy.handler(event, lambda_context)

    # Then the invocation fails only after every server was tried: 12346 has its backup
    result = by_server(failed.value.result.body())
    assert result[12345]["status"] == "error"
    assert "409" in result[12345]["error"]
    assert result[12346]["backup_id"] is not None
    simulator.clear_requests()

    # When Lambda retries the event
    retried = by_server(backup_on_deploy.handler(event, lambda_context))

    # Then only the missing backup is created, and each server has exactly one
    assert posted_servers(simulator) == [12345]
    assert retried[12346]["backup_id"] == result[12346]["backup_id"]
    assert retried[12345]["backup_id"] is not None
    assert [len(manual_backups(simulator, s, "deploy-7")) for s in (12345, 12346)] == [1, 1]


@pytest.mark.usefixtures("atomic_moto")  # DynamoDB's conditional writes are atomic; moto's, under threads, not
def test_ten_concurrent_duplicate_deliveries_make_one_backup_per_server(
    deploy_env: AwsEnv, simulator: Simulator
) -> None:
    # And the API answers creates slowly, so the duplicates really overlap
    simulator.inject(Fault(kind="latency", method="POST", delay=0.2, times=None))
    event = eventbridge({"deployment_id": "storm-1", "server_ids": [12345, 12346]})
    start = threading.Barrier(10)
    results: list[Any] = []

    def deliver() -> None:
        start.wait()
        results.append(backup_on_deploy.handler(event, FakeLambdaContext()))

    # When ten deliveries of the same event run at once
    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Then every delivery reports the same two backups, and the API saw exactly two creates
    assert len(results) == 10
    assert len({json.dumps(ids(r)) for r in results}) == 1
    assert all(b["backup_id"] is not None for r in results for b in r["backups"])
    assert sorted(posted_servers(simulator)) == [12345, 12346]
    assert [len(manual_backups(simulator, s, "storm-1")) for s in (12345, 12346)] == [1, 1]


def test_ambiguous_create_is_resolved_by_listing_not_by_a_second_post(deploy_env: AwsEnv, simulator: Simulator) -> None:
    # Given the API creates the backup but the connection drops before the answer
    simulator.inject(Fault(kind="drop_after", method="POST", path_prefix="/backups/", times=1))

    # When CI calls the webhook
    code, body = post({"deployment_id": "gh-amb", "server_ids": [12345]})

    # Then the backup is found by listing: exactly one POST, and it is reported and recorded
    assert len(posts(simulator)) == 1
    [backup] = manual_backups(simulator, 12345, "gh-amb")
    assert code == 201
    assert body["backups"] == [{"server_id": 12345, "backup_id": backup["id"], "status": backup["status"]}]
    claim = ClaimStore(StateTable.from_name(deploy_env.table_name)).get("gh-amb", 12345)
    assert claim is not None
    assert (claim.state, claim.backup_id) == ("created", backup["id"])


def test_a_dead_owners_stale_claim_is_reconciled_by_listing_before_creating(
    deploy_env: AwsEnv, simulator: Simulator
) -> None:
    # Given a delivery that claimed server 12345, created its backup and died before recording it
    claims = ClaimStore(StateTable.from_name(deploy_env.table_name))
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    claims.register_deployment("gh-dead", [12345], long_ago)
    assert claims.claim_new(
        "gh-dead", 12345, owner="dead-owner", now=long_ago, lease=timedelta(minutes=3), received_at=long_ago
    )
    made = simulator.add_backup(12345, status="completed", description=f"Deploy {make_marker('gh-dead')}")

    # When the deployment is delivered again
    code, body = post({"deployment_id": "gh-dead", "server_ids": [12345]})

    # Then the dead owner's backup is found and recorded; nothing is created
    assert posts(simulator) == []
    assert body["backups"] == [{"server_id": 12345, "backup_id": made["id"], "status": "completed"}]
    assert code == 200
    claim = claims.get("gh-dead", 12345)
    assert claim is not None
    assert (claim.state, claim.backup_id, claim.received_at) == ("created", made["id"], long_ago)


def test_a_fresh_claim_held_by_another_delivery_is_not_created_twice(
    deploy_env: AwsEnv, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given another delivery holds a fresh claim on server 12345 (and never finishes)
    claims = ClaimStore(StateTable.from_name(deploy_env.table_name))
    now = datetime.now(UTC)
    claims.claim_new("gh-busy", 12345, owner="other", now=now, lease=timedelta(minutes=5), received_at=now)
    monkeypatch.setattr(backup_on_deploy, "MAX_WAIT_FOR_CLAIM_S", 0.3)

    # When this delivery arrives
    code, body = post({"deployment_id": "gh-busy", "server_ids": [12345, 12346]})

    # Then it waits briefly, reports 12345 as in progress without creating it, and backs up 12346
    entries = by_server(body)
    assert entries[12345] == {"server_id": 12345, "backup_id": None, "status": "in_progress"}
    assert entries[12346]["backup_id"] is not None
    assert posted_servers(simulator) == [12346]
    assert code == 201


# -- requests refused before any API call ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(json.dumps({"server_ids": [12345]}), "deployment_id", id="no-deployment-id"),
        pytest.param(json.dumps({"deployment_id": "", "server_ids": [12345]}), "deployment_id", id="empty-id"),
        pytest.param(json.dumps({"deployment_id": "x" * 129, "server_ids": [12345]}), "deployment_id", id="id-129"),
        pytest.param(json.dumps({"deployment_id": "d", "server_ids": ["abc"]}), "server_ids", id="server-not-int"),
        pytest.param(json.dumps({"deployment_id": "d", "server_ids": [True]}), "server_ids", id="server-bool"),
        pytest.param(json.dumps({"deployment_id": "d", "server_ids": [-1]}), "server_ids", id="server-negative"),
        pytest.param(json.dumps({"deployment_id": "d"}), "server_ids", id="no-server"),
        pytest.param(json.dumps({"deployment_id": "d", "server_ids": []}), "server_ids", id="empty-servers"),
        pytest.param(json.dumps({"deployment_id": "d", "environment": "qa"}), "environment", id="unknown-env"),
        pytest.param(json.dumps({"deployment_id": 7, "server_ids": [1]}), "deployment_id", id="id-not-string"),
        pytest.param("{not json", "body", id="not-json"),
        pytest.param(json.dumps([1, 2]), "body", id="not-an-object"),
        pytest.param("", "body", id="empty-body"),
    ],
)
def test_a_bad_request_is_400_naming_the_field_with_zero_api_requests(
    deploy_env: AwsEnv, simulator: Simulator, body: str, field: str
) -> None:
    # Given a correctly signed call whose body is wrong
    event = webhook("POST", body)

    # When it arrives
    code, answer = call(event)

    # Then 400 names the field, the API was never called and nothing was recorded
    assert code == 400
    assert field in answer["fields"]
    assert field in answer["message"] or field == "body"
    assert simulator.requests == []
    assert deploy_env.table().scan()["Items"] == []


def _unsigned(event: dict[str, Any]) -> dict[str, Any]:
    event["headers"] = {k: v for k, v in event["headers"].items() if not k.startswith("x-signature")}
    return event


def _signed_at(offset: float) -> dict[str, Any]:
    event = load_event("deploy-webhook-signed.json")
    return resign_function_url_event(event, WEBHOOK_TEST_SECRET, time.time() + offset)


def _tampered_body() -> dict[str, Any]:
    event = webhook("POST", json.dumps({"deployment_id": "d", "server_ids": [12345]}))
    event["body"] = json.dumps({"deployment_id": "d", "server_ids": [12346]})
    return event


def _other_key() -> dict[str, Any]:
    return resign_function_url_event(load_event("deploy-webhook-signed.json"), "not-the-key", time.time())


def _bad_timestamp() -> dict[str, Any]:
    event = webhook("POST", json.dumps({"deployment_id": "d", "server_ids": [12345]}))
    event["headers"]["x-signature-timestamp"] = "soon"
    return event


@pytest.mark.parametrize(
    "make_event",
    [
        pytest.param(lambda: load_event("deploy-webhook-bad-signature.json"), id="bad-signature-sample"),
        pytest.param(lambda: _unsigned(webhook("POST", "{}")), id="no-signature"),
        pytest.param(lambda: load_event("deploy-webhook-signed.json"), id="sample-timestamp-too-old"),
        pytest.param(lambda: _signed_at(-330), id="stale-330s"),
        # 330 s, not 301: the exact boundary is a unit test; here a slow machine must not drift into the window
        pytest.param(lambda: _signed_at(+330), id="future-330s"),
        # at most 60 s ahead (90: the test's own time only shrinks the lead)
        pytest.param(lambda: _signed_at(+90), id="future-90s"),
        pytest.param(_tampered_body, id="body-changed-after-signing"),
        pytest.param(_other_key, id="other-key"),
        pytest.param(_bad_timestamp, id="timestamp-not-a-number"),
        pytest.param(lambda: _unsigned(webhook("GET", query={"deployment_id": "gh-1"})), id="status-unsigned"),
    ],
)
def test_a_missing_wrong_or_stale_signature_is_401_with_zero_api_requests(
    deploy_env: AwsEnv, simulator: Simulator, make_event: Callable[[], dict[str, Any]]
) -> None:
    # Given a call that is not correctly signed now
    event = make_event()

    # When it arrives
    code, answer = call(event)

    # Then 401, without saying which part failed, and the API was never called
    assert code == 401
    assert answer == {"error": "unauthorized"}
    assert simulator.requests == []
    assert deploy_env.table().scan()["Items"] == []


def _replayed_on(method: str, path: str, query: str) -> dict[str, Any]:
    """A status call for gh-1 signed now, its signature headers then sent with another request line."""
    event = webhook("GET", query={"deployment_id": "gh-1"})
    event["requestContext"]["http"].update(method=method, path=path)
    event.update(rawPath=path, rawQueryString=query)
    event["queryStringParameters"] = dict(q.split("=", 1) for q in query.split("&")) if query else {}
    return event


def _retired_scheme() -> dict[str, Any]:
    """A call signed as before v1: sha256= over "<timestamp>.<body>" only."""
    import hmac

    event = webhook("POST", json.dumps({"deployment_id": "d", "server_ids": [12345]}))
    ts = event["headers"]["x-signature-timestamp"]
    digest = hmac.new(WEBHOOK_TEST_SECRET.encode(), f"{ts}.{event['body']}".encode(), "sha256").hexdigest()
    event["headers"]["x-signature"] = f"sha256={digest}"
    return event


@pytest.mark.parametrize(
    "make_event",
    [
        pytest.param(lambda: _replayed_on("GET", "/", "deployment_id=gh-2"), id="another-query"),
        pytest.param(lambda: _replayed_on("GET", "/status", "deployment_id=gh-1"), id="another-path"),
        pytest.param(lambda: _replayed_on("POST", "/", "deployment_id=gh-1"), id="another-method"),
        pytest.param(_retired_scheme, id="retired-sha256-scheme"),
    ],
)
def test_a_signature_replayed_on_another_method_path_or_query_is_401_with_zero_api_requests(
    deploy_env: AwsEnv, simulator: Simulator, make_event: Callable[[], dict[str, Any]]
) -> None:
    # Given a deployment gh-2 whose status a captured call must not reveal
    post({"deployment_id": "gh-2", "server_ids": [12345]})
    simulator.clear_requests()

    # When a correctly signed call arrives with another method, path or query (or signed the old way)
    code, answer = call(make_event())

    # Then 401, and the API was never asked
    assert (code, answer) == (401, {"error": "unauthorized"})
    assert simulator.requests == []


def test_a_status_call_with_a_body_is_400_and_asks_nothing(deploy_env: AwsEnv, simulator: Simulator) -> None:
    # Given a status call for "release.1", replayed as "release" with the tail "1." moved into a body
    # (the same signed bytes: "<ts>.GET./?deployment_id=release" + "." + "1.")
    post({"deployment_id": "release", "server_ids": [12345]})
    simulator.clear_requests()
    event = webhook("GET", query={"deployment_id": "release.1"})
    event.update(rawQueryString="deployment_id=release", body="1.", queryStringParameters={"deployment_id": "release"})

    # When it arrives
    code, answer = call(event)

    # Then 400 naming the body, and the API was never asked
    assert code == 400
    assert answer["fields"] == ["body"]
    assert simulator.requests == []


def test_during_a_key_rotation_the_current_and_the_previous_key_are_accepted(
    deploy_env: AwsEnv, simulator: Simulator
) -> None:
    # Given the secret holds the new key and the previous one (the test key)
    from aws_lambda_powertools.utilities import parameters

    deploy_env.clients["secretsmanager"].put_secret_value(
        SecretId=deploy_env.webhook_secret_id,
        SecretString=json.dumps({"current": "the-new-key", "previous": WEBHOOK_TEST_SECRET}),
    )
    parameters.clear_caches()
    body = json.dumps({"deployment_id": "rotated", "server_ids": [12345]})
    event = load_event("deploy-webhook-signed.json")
    event["body"] = body

    # When CI signs with either key, or with neither
    with_previous = call(resign_function_url_event(event, WEBHOOK_TEST_SECRET, time.time()))
    with_current = call(resign_function_url_event(event, "the-new-key", time.time()))
    with_other = call(resign_function_url_event(event, "an-older-key", time.time()))

    # Then both keys are accepted (the second call is a repeat), any other refused
    assert (with_previous[0], with_current[0], with_other[0]) == (201, 200, 401)


def test_a_signature_inside_the_window_is_accepted_at_the_edge(deploy_env: AwsEnv, simulator: Simulator) -> None:
    # Given a call signed 290 s ago
    event = _signed_at(-290)

    # When it arrives
    code, _ = call(event)

    # Then it is accepted
    assert code == 201


def test_a_base64_encoded_body_is_verified_and_read_as_sent(deploy_env: AwsEnv, simulator: Simulator) -> None:
    # Given a Function URL event whose body arrives base64-encoded
    raw = json.dumps({"deployment_id": "b64", "server_ids": [12346]}).encode()
    event = load_event("deploy-webhook-signed.json")
    event.update(body=base64.b64encode(raw).decode(), isBase64Encoded=True)
    event["headers"].update(signed_headers(WEBHOOK_TEST_SECRET, signed_request_of(event), time.time()))

    # When it arrives
    code, body = call(event)

    # Then the signature is checked over the decoded bytes and the backup is made
    assert code == 201
    assert body["backups"][0]["server_id"] == 12346


# -- servers -------------------------------------------------------------------------------------


def test_a_server_outside_every_group_is_400_naming_server_ids_and_nothing_is_created(
    deploy_env: AwsEnv, simulator: Simulator
) -> None:
    # Given SERVER_GROUPS, which does not list server 12347
    # When a signed deploy request names it next to a listed server
    code, answer = post({"deployment_id": "gh-forged", "server_ids": [12345, 12347]})

    # Then 400 naming server_ids, before any API call or any item
    assert code == 400
    assert answer["fields"] == ["server_ids"]
    assert "12347 is in no group of SERVER_GROUPS" in answer["message"]
    assert simulator.requests == []
    assert deploy_env.table().scan()["Items"] == []


def test_an_eventbridge_event_naming_a_server_outside_every_group_is_refused_and_creates_nothing(
    deploy_env: AwsEnv, simulator: Simulator
) -> None:
    # Given a deploy event naming server 12347, which no group of SERVER_GROUPS lists
    event = eventbridge({"deployment_id": "eb-forged", "server_ids": [12347]})

    # When it is delivered: the invocation fails (to the failed-invocations queue), naming the field
    with pytest.raises(InvalidDeployRequestError) as refused:
        backup_on_deploy.handler(event, FakeLambdaContext())

    # Then nothing was asked of the API and nothing recorded (no restore point for a forged deploy)
    assert refused.value.fields == ["server_ids"]
    assert simulator.requests == []
    assert deploy_env.table().scan()["Items"] == []


def test_environment_is_resolved_through_server_groups(deploy_env: AwsEnv, simulator: Simulator) -> None:
    # Given SERVER_GROUPS maps production to 12345 and 12346
    # When a deploy names only the environment
    code, body = post({"deployment_id": "env-1", "environment": "production", "actor": "alice"})

    # Then both servers are backed up
    assert code == 201
    assert sorted(by_server(body)) == [12345, 12346]
    assert [len(manual_backups(simulator, s, "env-1")) for s in (12345, 12346)] == [1, 1]


def test_an_unknown_server_is_404_for_it_while_the_others_are_backed_up(
    deploy_env: AwsEnv, simulator: Simulator
) -> None:
    # Given server 99999 does not exist at the provider
    # When a deploy names it between two real servers
    code, body = post({"deployment_id": "gh-404", "server_ids": [12345, 99999, 12346]})

    # Then 404, its entry says so, and the two real servers have their backups
    entries = by_server(body)
    assert code == 404
    assert entries[99999]["backup_id"] is None
    assert entries[99999]["status"] == "error"
    assert "does not exist" in entries[99999]["error"]
    assert entries[12345]["backup_id"] is not None
    assert entries[12346]["backup_id"] is not None


def test_an_api_outage_is_502_and_a_later_retry_creates_the_backup(deploy_env: AwsEnv, simulator: Simulator) -> None:
    # Given the API keeps answering 503 (the client retries, then gives up)
    simulator.inject(Fault(kind="status", status=503, method="POST", times=5))

    # When CI calls the webhook
    code, body = post({"deployment_id": "gh-503", "server_ids": [12345]})

    # Then 502 with the server's error; and once the API is back, a retry creates exactly one backup
    assert code == 502
    assert "503" in body["backups"][0]["error"]
    code, body = post({"deployment_id": "gh-503", "server_ids": [12345]})
    assert code == 201
    assert len(manual_backups(simulator, 12345, "gh-503")) == 1


def test_eventbridge_event_with_a_bad_detail_fails_the_invocation(
    deploy_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext
) -> None:
    # Given a deploy event without a deployment id
    event = eventbridge({"server_ids": [12345]})

    # When it is delivered, Then the invocation fails naming the field, before any API call
    with pytest.raises(ValueError, match="deployment_id"):
        backup_on_deploy.handler(event, lambda_context)
    assert simulator.requests == []


# -- status endpoint -----------------------------------------------------------------------------


def test_status_endpoint_reports_in_progress_then_completed(deploy_env: AwsEnv, simulator: Simulator) -> None:
    # Given backups take a while to finish, and a deploy was backed up
    simulator.set_completion_delay(3600)
    code, created = post({"deployment_id": "gh-wait", "server_ids": [12345, 12346]})
    assert code == 201

    # When CI polls the status endpoint
    code, first = status_of("gh-wait")

    # Then every backup is in progress
    assert code == 200
    assert first["deployment_id"] == "gh-wait"
    assert [(b["backup_id"], b["status"]) for b in first["backups"]] == [
        (b["backup_id"], "in_progress") for b in created["backups"]
    ]

    # When the provider finishes them and CI polls again
    simulator.complete_all()
    code, second = status_of("gh-wait")

    # Then every backup is completed
    assert code == 200
    assert {b["status"] for b in second["backups"]} == {"completed"}


def test_status_of_an_unknown_deployment_is_404(deploy_env: AwsEnv, simulator: Simulator) -> None:
    # Given no deployment "nope" was ever received
    # When CI asks for its status
    code, body = status_of("nope")

    # Then 404, and the API was not called
    assert code == 404
    assert body["error"] == "not_found"
    assert simulator.requests == []


def test_status_sample_event_is_a_signed_get(deploy_env: AwsEnv, simulator: Simulator) -> None:
    # Given the status sample, re-signed, for a deployment that was backed up
    post({"deployment_id": "gh-8812-1", "server_ids": [12345]})
    event = resign_function_url_event(load_event("deploy-status-get.json"), WEBHOOK_TEST_SECRET, time.time())

    # When it is invoked
    code, body = call(event)

    # Then it answers the deployment's status
    assert code == 200
    assert body["backups"][0]["server_id"] == 12345


def test_claims_and_meta_live_under_the_deployment(deploy_env: AwsEnv, simulator: Simulator) -> None:
    # Given a deploy request
    post({"deployment_id": "gh-keys", "server_ids": [12345]})

    # When the table is read
    items = deploy_env.table().query(
        KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": deployment_pk("gh-keys")}
    )["Items"]

    # Then the meta item and the server's claim share the deployment's partition, with a TTL
    assert sorted(i["sk"] for i in items) == ["meta", "server#12345"]
    assert all(int(i["expiration"]) > time.time() for i in items)
    assert all(len(i["received_at"]) == len(utc_key_time(datetime.now(UTC))) for i in items)


def test_status_names_a_server_that_could_not_be_backed_up_and_a_stalled_delivery(
    deploy_env: AwsEnv, simulator: Simulator
) -> None:
    # Given a deployment where server 99999 does not exist, and one whose delivery died mid-way
    post({"deployment_id": "gh-mixed", "server_ids": [12345, 99999]})
    claims = ClaimStore(StateTable.from_name(deploy_env.table_name))
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    claims.register_deployment("gh-stalled", [12346], long_ago)
    claims.claim_new("gh-stalled", 12346, owner="dead", now=long_ago, lease=timedelta(minutes=3), received_at=long_ago)

    # When CI asks for their status
    _, mixed = status_of("gh-mixed")
    _, stalled = status_of("gh-stalled")

    # Then the failed server and the stalled one are errors CI can fail on, with a reason
    assert by_server(mixed)[12345]["status"] == "completed"
    assert by_server(mixed)[99999]["status"] == "error"
    assert "does not exist" in by_server(mixed)[99999]["error"]
    assert stalled["backups"][0]["status"] == "error"
    assert "send the deploy request again" in stalled["backups"][0]["error"]


def test_a_bad_setting_fails_the_cold_start_naming_the_variable(
    deploy_env: AwsEnv, monkeypatch: pytest.MonkeyPatch, lambda_context: FakeLambdaContext
) -> None:
    # Given SERVER_GROUPS is not valid JSON
    monkeypatch.setenv("SERVER_GROUPS", "{production: [1]}")
    backup_on_deploy.settings.cache_clear()

    # When the function starts, Then it fails naming SERVER_GROUPS
    with pytest.raises(ConfigurationError, match="SERVER_GROUPS"):
        backup_on_deploy.handler(load_event("deploy-eventbridge.json"), lambda_context)
