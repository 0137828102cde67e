"""The times only AWS acts on, asserted by value (moto never expires an item): the TTL of a deploy
claim, of a deployment's ``meta`` item and of a deployment record are instants in the future; the
lease a take-over writes runs from now for the lease given, so the claim stays exclusive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import AwsEnv
from vpsbackup.aws.state import PK, SK, TTL_ATTRIBUTE, StateTable, deployment_pk, epoch, server_pk, utc_key_time
from vpsbackup.deploy.claims import RECORD_TTL, ClaimStore
from vpsbackup.records import DeploymentRecord

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
LEASE = timedelta(minutes=16)


@pytest.fixture
def table(aws: AwsEnv) -> StateTable:
    return StateTable.from_name(aws.table_name)


def item(table: StateTable, pk: str, sk: str) -> dict[str, Any]:
    found: dict[str, Any] = table.table.get_item(Key={PK: pk, SK: sk}, ConsistentRead=True)["Item"]
    return found


def test_a_new_claim_expires_400_days_after_it_was_taken_and_its_lease_runs_from_now(table: StateTable) -> None:
    store = ClaimStore(table)
    claim = store.claim_new("d-1", 7, owner="a", now=T0, lease=LEASE, received_at=T0)
    assert claim is not None
    stored = item(table, deployment_pk("d-1"), "server#7")
    assert int(stored[TTL_ATTRIBUTE]) == epoch(T0 + RECORD_TTL) > epoch(T0)
    assert timedelta(days=400) == RECORD_TTL
    assert stored["lease_until"] == utc_key_time(T0 + LEASE)
    assert claim.lease_until == T0 + LEASE
    assert (claim.attempts, int(stored["attempts"])) == (1, 1)


def test_the_deployment_meta_item_expires_400_days_after_the_latest_delivery(table: StateTable) -> None:
    ClaimStore(table).register_deployment("d-1", [7], T0)
    stored = item(table, deployment_pk("d-1"), "meta")
    assert int(stored[TTL_ATTRIBUTE]) == epoch(T0 + timedelta(days=400))


def test_a_take_over_writes_a_lease_from_now_not_one_already_expired(table: StateTable) -> None:
    # Given a claim whose owner died (its lease over)
    store = ClaimStore(table)
    first = store.claim_new("d-1", 7, owner="a", now=T0, lease=LEASE, received_at=T0)
    assert first is not None
    later = T0 + LEASE + timedelta(seconds=1)
    # When another delivery takes it over
    mine = store.take_over(first, owner="b", now=later, lease=LEASE)
    # Then the stored lease runs LEASE from the take-over: a third delivery must wait for it
    assert mine is not None
    stored = item(table, deployment_pk("d-1"), "server#7")
    assert (stored["owner"], stored["state"]) == ("b", "claimed")
    assert stored["lease_until"] == utc_key_time(later + LEASE)
    assert stored["claimed_at"] == utc_key_time(later)
    assert mine.lease_until == later + LEASE
    assert (mine.attempts, int(stored["attempts"])) == (2, 2)
    assert store.take_over(mine, owner="c", now=later + LEASE - timedelta(seconds=1), lease=LEASE) is None
    assert store.take_over(mine, owner="c", now=later + LEASE, lease=LEASE) is not None


def test_a_deployment_record_expires_400_days_after_its_request_was_received(table: StateTable) -> None:
    table.put_deployment_record(DeploymentRecord(deployment_id="d-1", server_id=7, received_at=T0, backup_id=99))
    stored = item(table, server_pk(7), f"deployment#{utc_key_time(T0)}#d-1")
    assert int(stored[TTL_ATTRIBUTE]) == epoch(T0 + timedelta(days=400))


@pytest.mark.parametrize("settles", [None, T0 + timedelta(minutes=5)], ids=["no settle time", "a settle time"])
def test_an_unknown_outcome_keeps_the_errors_first_1000_characters_and_answers_whether_the_claim_was_held(
    table: StateTable, settles: datetime | None
) -> None:
    # Given a claim held by "a"
    store = ClaimStore(table)
    claim = store.claim_new("d-1", 7, owner="a", now=T0, lease=LEASE, received_at=T0)
    assert claim is not None
    claim = claim.model_copy(update={"settles_at": settles})
    # When its POST's outcome is marked unknown with a 1,500-character error
    held = store.mark_unknown(claim, "x" * 999 + "y" * 501)
    # Then it was held, and the stored error is its first 1,000 characters (and the settle time, if any)
    assert held is True
    stored = item(table, deployment_pk("d-1"), "server#7")
    assert (stored["state"], stored["error"]) == ("unknown", "x" * 999 + "y")
    assert stored.get("settles_at") == (None if settles is None else utc_key_time(settles))
    # And marked again by an owner who no longer holds it, it answers False
    assert store.mark_unknown(claim.model_copy(update={"owner": "b"}), "again") is False


def test_a_failed_attempt_keeps_the_errors_first_1000_characters(table: StateTable) -> None:
    store = ClaimStore(table)
    claim = store.claim_new("d-1", 7, owner="a", now=T0, lease=LEASE, received_at=T0)
    assert claim is not None
    assert store.mark_failed(claim, "x" * 999 + "y" * 501) is True
    stored = item(table, deployment_pk("d-1"), "server#7")
    assert (stored["state"], stored["error"]) == ("failed", "x" * 999 + "y")


def test_get_deployment_reads_the_meta_item_and_answers_none_for_a_deployment_never_received(
    table: StateTable,
) -> None:
    store = ClaimStore(table)
    assert store.get_deployment("d-unknown") is None
    store.register_deployment("d-1", [7, 8], T0)
    meta = store.get_deployment("d-1")
    assert meta is not None
    assert (meta.deployment_id, meta.server_ids, meta.received_at, meta.deliveries) == ("d-1", (7, 8), T0, 1)
