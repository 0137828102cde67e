"""The shared client against the local simulator: real HTTP on 127.0.0.1, every fault included."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from devtools.simulator import Fault, Simulator
from devtools.simulator.pytest_plugin import SIM_TOKEN
from tests.conftest import AwsEnv
from vpsbackup.provider.client import NO_WAIT, RetryPolicy, VpsClient
from vpsbackup.provider.errors import (
    AuthenticationError,
    BackupAlreadyGoneError,
    ConflictError,
    NotFoundError,
    OutcomeUnknownError,
)
from vpsbackup.provider.models import Backup
from vpsbackup.provider.token import SecretsManagerTokenProvider, StaticTokenProvider

pytestmark = pytest.mark.integration

# Fast but real: the client's own timeouts, no waiting between retries.
FAST = RetryPolicy(max_attempts=8, sleep=lambda _s: None, random=lambda: 0.0, max_retry_after=5.0)


def client_for(sim: Simulator, token: str = SIM_TOKEN, retry: RetryPolicy = FAST) -> VpsClient:
    return VpsClient(sim.base_url, StaticTokenProvider(token), retry=retry)


def test_the_documented_examples_round_trip(simulator: Simulator) -> None:
    # Given the three backups of the provider's documentation page
    doc = [
        (501, "automatic", 4523, "2025-01-16T03:00:00", "2025-02-16T03:00:00", "Automatic daily backup"),
        (499, "manual", 4456, "2025-01-14T10:30:00", None, "Pre-update backup"),
        (495, "automatic", 4389, "2025-01-15T03:00:00", "2025-02-15T03:00:00", "Automatic daily backup"),
    ]
    for backup_id, kind, size, created, expires, description in doc:
        simulator.add_backup(
            12345,
            id=backup_id,
            backup_type=kind,
            size_mb=size,
            created_at=datetime.fromisoformat(created).replace(tzinfo=UTC),
            expires_at=datetime.fromisoformat(expires).replace(tzinfo=UTC) if expires else None,
            description=description,
        )
    # When they are listed through the client
    with client_for(simulator) as client:
        listed = {b.id: b for b in client.list_backups(server_id=12345)}
    # Then every field survives, and the models match the simulator's own view of them
    assert set(listed) == {501, 499, 495}
    for raw in simulator.backups:
        assert listed[raw["id"]] == Backup.model_validate(raw)
    assert listed[499].expires_at is None
    assert listed[501].expires_at == datetime(2025, 2, 16, 3, tzinfo=UTC)
    assert listed[495].created_at > listed[499].created_at  # a higher id is not a newer backup


def test_1000_backups_over_10_item_pages_with_30_percent_transient_failures(simulator: Simulator) -> None:
    # Given 1,000 backups and an API that fails 30% of requests (429, 503, dropped connections)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for n in range(1000):
        simulator.add_backup(12345 if n % 2 else 12346, created_at=start + timedelta(hours=n))
    simulator.inject_flaky(rate=0.3, kinds=("429", "503", "drop_before"), seed=7)
    # When the whole fleet is listed
    with client_for(simulator, retry=RetryPolicy(max_attempts=12, sleep=lambda _s: None)) as client:
        backups = client.list_backups()
    # Then every backup comes back exactly once, although failures really happened
    ids = [b.id for b in backups]
    assert len(ids) == 1000
    assert set(ids) == {b["id"] for b in simulator.backups}
    faults = [r for r in simulator.requests if r.fault]
    assert len(faults) > 20
    assert {r.fault for r in faults} >= {"429", "503", "drop_before"} or len({r.fault for r in faults}) >= 2
    served_pages = [r for r in simulator.requests if r.status == 200]
    assert len(served_pages) == 100


def test_an_ambiguous_create_is_outcome_unknown_and_sent_once(simulator: Simulator) -> None:
    # Given an API that creates the backup and then drops the connection
    simulator.inject(Fault(kind="drop_after", method="POST", path_prefix="/backups/"))
    # When the client creates a backup
    with client_for(simulator) as client, pytest.raises(OutcomeUnknownError):
        client.create_backup(12345, "Release 2.3")
    # Then exactly one POST reached the API, and it did create the backup
    posts = [r for r in simulator.requests if r.method == "POST"]
    assert len(posts) == 1
    assert [b["description"] for b in simulator.backups] == ["Release 2.3"]


@pytest.mark.parametrize("status", [502, 504])
def test_a_gateway_error_on_create_is_outcome_unknown_and_not_resent(simulator: Simulator, status: int) -> None:
    simulator.inject(Fault(kind="status", status=status, method="POST"))
    with client_for(simulator) as client, pytest.raises(OutcomeUnknownError):
        client.create_backup(12345)
    assert len([r for r in simulator.requests if r.method == "POST"]) == 1


def test_a_create_refused_with_429_is_retried_after_retry_after(simulator: Simulator) -> None:
    simulator.inject(Fault(kind="status", status=429, method="POST", retry_after=1, times=2))
    slept: list[float] = []
    with client_for(simulator, retry=RetryPolicy(sleep=slept.append, random=lambda: 0.0)) as client:
        created = client.create_backup(12345, "after throttling")
    assert created.status == "in_progress"
    assert slept == [1.0, 1.0]
    assert [r.status for r in simulator.requests] == [429, 429, 201]
    assert len(simulator.backups) == 1


def test_a_slow_api_hits_the_client_timeout_and_a_get_is_retried(simulator: Simulator) -> None:
    import httpx

    simulator.inject(Fault(kind="latency", delay=0.6, method="GET", times=1))
    client = VpsClient(
        simulator.base_url, StaticTokenProvider(SIM_TOKEN), retry=FAST, timeout=httpx.Timeout(0.3, connect=1.0)
    )
    with client:
        assert client.list_backups() == []
    # The slow request is logged by the simulator when its (late) handling ends.
    deadline = time.monotonic() + 2.0
    while len(simulator.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(r.fault or "" for r in simulator.requests if r.method == "GET") == ["", "latency"]


def test_delete_restore_and_their_errors(simulator: Simulator) -> None:
    done = simulator.add_backup(12345, status="completed")
    running = simulator.add_backup(12346, status="in_progress")
    with client_for(simulator) as client:
        accepted = client.restore_server(12345, done["id"])
        assert 200 <= accepted.status_code < 300
        assert simulator.servers[12345]["restored_from"] == done["id"]
        with pytest.raises(ConflictError):
            client.restore_server(12346, running["id"])
        with pytest.raises(NotFoundError):
            client.restore_server(99999, done["id"])
        client.delete_backup(done["id"])
        with pytest.raises(BackupAlreadyGoneError):
            client.delete_backup(done["id"])
        with pytest.raises(NotFoundError):
            client.create_backup(99999)


def test_a_rotated_token_is_picked_up_after_one_401(simulator: Simulator, aws: AwsEnv) -> None:
    # Given a client that has already used the current token (it is cached)
    provider = SecretsManagerTokenProvider(aws.secret_id)
    with VpsClient(simulator.base_url, provider, retry=NO_WAIT) as client:
        assert client.list_backups() == []
        # When the token is rotated: the API rejects the old one, the secret holds the new one
        simulator.set_tokens({"rotated-token"})
        boto3.client("secretsmanager").put_secret_value(SecretId=aws.secret_id, SecretString="rotated-token")
        simulator.clear_requests()
        # Then the next call succeeds after exactly one 401
        assert client.list_backups() == []
    assert [r.status for r in simulator.requests] == [401, 200]


def test_a_wrong_token_fails_clearly_after_one_re_read(simulator: Simulator, aws: AwsEnv) -> None:
    boto3.client("secretsmanager").put_secret_value(SecretId=aws.secret_id, SecretString="wrong-token")
    client = VpsClient(simulator.base_url, SecretsManagerTokenProvider(aws.secret_id), retry=FAST)
    with client, pytest.raises(AuthenticationError, match="401") as info:
        client.create_backup(12345)
    assert "wrong-token" not in str(info.value)
    assert [r.status for r in simulator.requests] == [401, 401]
    assert simulator.backups == []
