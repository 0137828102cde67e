"""The exactly-once protocol: pure decisions, and the claim store's conditional writes (moto)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import AwsEnv
from vpsbackup.aws.state import StateTable
from vpsbackup.deploy.claims import LEASE_MARGIN, Action, Claim, ClaimStore, decide, find_marked_backup, lease_for
from vpsbackup.deploy.job import ServerResult, http_status_for
from vpsbackup.markers import make_marker
from vpsbackup.provider.models import Backup

T0 = datetime(2025, 1, 16, 15, 45, tzinfo=UTC)


def claim(state: str = "claimed", *, lease_until: datetime = T0 + timedelta(minutes=3), owner: str = "a") -> Claim:
    return Claim.model_validate(
        {
            "deployment_id": "d-1",
            "server_id": 12345,
            "state": state,
            "owner": owner,
            "claimed_at": T0,
            "lease_until": lease_until,
            "received_at": T0,
            "backup_id": 501 if state == "created" else None,
        }
    )


def backup(
    backup_id: int, *, server_id: int = 12345, description: str | None = None, kind: str = "manual", minute: int = 0
) -> Backup:
    return Backup.model_validate(
        {
            "id": backup_id,
            "server": {"id": server_id},
            "backup_type": kind,
            "status": "completed",
            "created_at": T0 + timedelta(minutes=minute),
            "description": description,
        }
    )


# -- decide --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seen", "now", "action"),
    [
        pytest.param(None, T0, Action.CREATE, id="nobody-tried"),
        pytest.param(claim("created"), T0, Action.REUSE, id="created"),
        pytest.param(claim("failed"), T0, Action.RETRY, id="definitely-failed"),
        pytest.param(claim("unknown"), T0, Action.RECONCILE, id="outcome-unknown"),
        pytest.param(claim("claimed"), T0 + timedelta(minutes=1), Action.WAIT, id="fresh-claim"),
        pytest.param(claim("claimed"), T0 + timedelta(minutes=3), Action.RECONCILE, id="lease-just-expired"),
        pytest.param(claim("claimed"), T0 + timedelta(hours=1), Action.RECONCILE, id="owner-long-dead"),
    ],
)
def test_decide(seen: Claim | None, now: datetime, action: Action) -> None:
    assert decide(seen, now) is action


@given(
    state=st.sampled_from(["claimed", "created", "failed", "unknown"]),
    offset=st.integers(min_value=-10_000, max_value=10_000),
)
def test_only_an_unexpired_claim_waits_and_nothing_is_ever_created_blind_after_an_unknown(
    state: str, offset: int
) -> None:
    now = T0 + timedelta(minutes=3) + timedelta(seconds=offset)
    action = decide(claim(state), now)
    # A delivery may POST without listing only when nobody tried or the last try surely failed.
    assert action is not Action.CREATE
    if action is Action.RETRY:
        assert state == "failed"
    if action is Action.WAIT:
        assert state == "claimed"
        assert offset < 0


def test_a_lease_outlasts_the_owners_lambda() -> None:
    assert lease_for(timedelta(seconds=100)) == timedelta(seconds=100) + LEASE_MARGIN
    assert lease_for(None) > timedelta(seconds=900)


# -- find_marked_backup --------------------------------------------------------------------------


def test_the_deployments_backup_is_found_by_its_marker_only() -> None:
    backups = [
        backup(1, description="Pre-update backup"),
        backup(2, description=f"x {make_marker('d-10')}"),  # another deployment
        backup(3, description=f"x {make_marker('d-1')}", server_id=12346),  # another server
        backup(4, description=f"x {make_marker('d-1')}", kind="automatic"),  # not manual
        backup(5, description=f"Release {make_marker('d-1')}", minute=5),
    ]
    found = find_marked_backup(backups, "d-1", 12345)
    assert found is not None
    assert found.id == 5


def test_of_several_marked_backups_the_oldest_is_the_deployments() -> None:
    backups = [backup(9, description=make_marker("d-1"), minute=9), backup(7, description=make_marker("d-1"), minute=2)]
    found = find_marked_backup(backups, "d-1", 12345)
    assert found is not None
    assert found.id == 7


def test_no_marked_backup_is_none() -> None:
    assert find_marked_backup([backup(1, description=None)], "d-1", 12345) is None


# -- http status ---------------------------------------------------------------------------------


def r(outcome: str, http_status: int | None = None) -> ServerResult:
    return ServerResult(1, outcome, "x", http_status=http_status)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("results", "code"),
    [
        pytest.param([r("created"), r("reused")], 201, id="something-created"),
        pytest.param([r("reused"), r("reconciled"), r("pending")], 200, id="nothing-new"),
        pytest.param([r("created"), r("failed", 404)], 404, id="unknown-server"),
        pytest.param([r("failed", 404), r("failed", 502)], 502, id="api-failure-wins"),
        pytest.param([r("created"), r("failed", 502)], 502, id="api-failure"),
    ],
)
def test_http_status_for(results: list[ServerResult], code: int) -> None:
    assert http_status_for(results) == code


# -- the claim store's conditional writes (moto) -------------------------------------------------


@pytest.fixture
def store(aws: AwsEnv) -> ClaimStore:
    return ClaimStore(StateTable.from_name(aws.table_name))


LEASE = timedelta(minutes=3)


def test_only_the_first_claim_wins(store: ClaimStore) -> None:
    # Given a claim taken by delivery a
    assert store.claim_new("d-1", 12345, owner="a", now=T0, lease=LEASE, received_at=T0) is not None
    # When delivery b tries to claim the same pair, Then it does not get it
    assert store.claim_new("d-1", 12345, owner="b", now=T0, lease=LEASE, received_at=T0) is None
    got = store.get("d-1", 12345)
    assert got is not None
    assert (got.state, got.owner) == ("claimed", "a")


def test_a_take_over_is_a_compare_and_swap_on_what_was_read(store: ClaimStore) -> None:
    # Given a claim whose owner died, read by two deliveries
    store.claim_new("d-1", 12345, owner="dead", now=T0, lease=LEASE, received_at=T0)
    seen = store.get("d-1", 12345)
    assert seen is not None
    later = T0 + LEASE + timedelta(seconds=1)
    # When both take it over, Then only the first succeeds
    first = store.take_over(seen, owner="b", now=later, lease=LEASE)
    assert first is not None
    assert first.attempts == 2
    assert store.take_over(seen, owner="c", now=later, lease=LEASE) is None


def test_an_unexpired_claim_cannot_be_taken_over(store: ClaimStore) -> None:
    store.claim_new("d-1", 12345, owner="a", now=T0, lease=LEASE, received_at=T0)
    seen = store.get("d-1", 12345)
    assert seen is not None
    assert store.take_over(seen, owner="b", now=T0 + timedelta(seconds=10), lease=LEASE) is None


def test_only_the_owner_records_the_outcome(store: ClaimStore) -> None:
    # Given a claim taken over by b from the dead a
    a = store.claim_new("d-1", 12345, owner="a", now=T0, lease=LEASE, received_at=T0)
    assert a is not None
    b = store.take_over(a, owner="b", now=T0 + LEASE, lease=LEASE)
    assert b is not None
    # When a (late) and b record, Then only b's write lands
    assert not store.mark_created(a, backup(1))
    assert store.mark_created(b, backup(2))
    got = store.get("d-1", 12345)
    assert got is not None
    assert (got.state, got.backup_id) == ("created", 2)
    # And a created claim is final
    assert not store.mark_failed(b, "late")


def test_a_failed_claim_can_be_retried_and_its_error_is_cleared(store: ClaimStore) -> None:
    a = store.claim_new("d-1", 12345, owner="a", now=T0, lease=LEASE, received_at=T0)
    assert a is not None
    assert store.mark_failed(a, "HTTP 409")
    failed = store.get("d-1", 12345)
    assert failed is not None
    assert (failed.state, failed.error) == ("failed", "HTTP 409")
    retried = store.take_over(failed, owner="b", now=T0, lease=LEASE)
    assert retried is not None
    got = store.get("d-1", 12345)
    assert got is not None
    assert (got.state, got.owner, got.error, got.received_at) == ("claimed", "b", None, T0)


def test_the_deployment_keeps_its_first_receipt_time_and_every_server_asked_for(store: ClaimStore) -> None:
    first = store.register_deployment("d-1", [12345], T0)
    again = store.register_deployment("d-1", [12346, 12345], T0 + timedelta(hours=1))
    assert first.received_at == again.received_at == T0
    assert again.last_received_at == T0 + timedelta(hours=1)
    assert again.server_ids == (12345, 12346)
    assert again.deliveries == 2


def test_load_deployment_reads_meta_and_claims_together(store: ClaimStore) -> None:
    assert store.load_deployment("nope") == (None, {})
    store.register_deployment("d-1", [12345, 12346], T0)
    store.claim_new("d-1", 12345, owner="a", now=T0, lease=LEASE, received_at=T0)
    meta, claims = store.load_deployment("d-1")
    assert meta is not None
    assert meta.server_ids == (12345, 12346)
    assert list(claims) == [12345]
