"""StateTable's shared records (moto): holds and the deployment history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Key

from tests.conftest import AwsEnv
from vpsbackup.aws.state import HOLD_PK, PK, SK, StateTable, hold_sk, paged_items
from vpsbackup.records import DeploymentRecord, Hold

T0 = datetime(2025, 1, 16, 12, 0, tzinfo=UTC)


def test_a_hold_is_extended_never_shortened_and_read_back(aws: AwsEnv) -> None:
    table = StateTable.from_name(aws.table_name)
    table.put_hold(Hold(backup_id=7, server_id=1, until=T0 + timedelta(days=7), reason="restore A"))
    table.put_hold(Hold(backup_id=7, server_id=1, until=T0 + timedelta(days=1), reason="restore B"))
    hold = table.active_hold(7, T0)
    assert hold is not None
    assert hold.until == T0 + timedelta(days=7)
    assert hold.reason == "restore A"
    table.put_hold(Hold(backup_id=7, server_id=1, until=T0 + timedelta(days=9), reason="restore C"))
    assert table.active_holds(T0)[7].reason == "restore C"


def test_an_expired_hold_is_not_in_force(aws: AwsEnv) -> None:
    table = StateTable.from_name(aws.table_name)
    table.put_hold(Hold(backup_id=8, server_id=1, until=T0, reason="old"))
    assert table.active_hold(8, T0 + timedelta(seconds=1)) is None
    assert table.active_holds(T0 + timedelta(seconds=1)) == {}
    assert table.active_hold(999, T0) is None


def test_the_latest_deployment_strictly_before_a_time(aws: AwsEnv) -> None:
    table = StateTable.from_name(aws.table_name)
    for minutes, deployment in ((0, "d1"), (30, "d2"), (60, "d3")):
        table.put_deployment_record(
            DeploymentRecord(
                deployment_id=deployment, server_id=1, received_at=T0 + timedelta(minutes=minutes), backup_id=minutes
            )
        )
    table.put_deployment_record(
        DeploymentRecord(deployment_id="other", server_id=2, received_at=T0 + timedelta(minutes=45))
    )
    latest = table.latest_deployment_before(1, T0 + timedelta(minutes=45))
    assert latest is not None
    assert (latest.deployment_id, latest.backup_id) == ("d2", 30)
    at_the_same_instant = table.latest_deployment_before(1, T0 + timedelta(minutes=60))
    assert at_the_same_instant is not None
    assert at_the_same_instant.deployment_id == "d2"  # strictly before
    assert table.latest_deployment_before(1, T0) is None
    assert table.latest_deployment_before(3, T0 + timedelta(days=1)) is None


def test_a_manual_hold_and_a_restore_hold_live_side_by_side_and_the_longest_counts(aws: AwsEnv) -> None:
    table = StateTable.from_name(aws.table_name)
    table.put_hold(Hold(backup_id=50, server_id=1, until=T0 + timedelta(days=1), reason="restore"))
    assert table.put_hold(
        Hold(backup_id=50, server_id=1, until=T0 + timedelta(days=5), reason="migration", kind="manual", placed_by="a")
    )
    table.put_hold(Hold(backup_id=5010, server_id=1, until=T0 + timedelta(days=9), reason="another backup"))
    assert sorted(h.kind for h in table.holds_of(50)) == ["manual", "restore"]
    held = table.active_hold(50, T0)
    assert held is not None and (held.kind, held.reason, held.placed_by) == ("manual", "migration", "a")
    assert table.active_holds(T0)[50].kind == "manual"
    # A shorter manual hold does not shorten the standing one.
    assert not table.put_hold(Hold(backup_id=50, server_id=1, until=T0 + timedelta(days=2), kind="manual"))
    assert table.delete_hold(50, "manual")
    assert not table.delete_hold(50, "manual")
    held = table.active_hold(50, T0)
    assert held is not None and held.kind == "restore"
    assert table.active_hold(5010, T0) is not None


def test_paged_items_follows_every_page_and_reads_the_next_only_when_asked(aws: AwsEnv) -> None:
    table = StateTable.from_name(aws.table_name)
    for backup_id in range(1, 6):
        table.put_hold(Hold(backup_id=backup_id, server_id=1, until=T0, reason="r"))
    calls: list[dict[str, Any]] = []

    def query(**kwargs: Any) -> Any:
        calls.append(dict(kwargs))
        return table.table.query(**kwargs)

    items = paged_items(query, KeyConditionExpression=Key(PK).eq(HOLD_PK), Limit=2)
    assert next(items)[SK] == hold_sk(1)
    assert len(calls) == 1
    assert [item[SK] for item in items] == [hold_sk(n) for n in (2, 3, 4, 5)]
    assert len(calls) == 3
    assert "ExclusiveStartKey" not in calls[0]
    assert all("ExclusiveStartKey" in later for later in calls[1:])
