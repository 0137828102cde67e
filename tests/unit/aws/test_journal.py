"""The journal in StateTable (moto): one entry found by day, by server and by backup; newest first;
kept for the retention; a failed write never raises, is logged and counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3

from tests.conftest import AwsEnv
from vpsbackup.aws.journal import Journal
from vpsbackup.aws.state import StateTable

T0 = datetime(2025, 1, 16, 12, 0, tzinfo=UTC)


def journal(aws: AwsEnv, retention: timedelta = timedelta(days=400)) -> Journal:
    return Journal(StateTable.from_name(aws.table_name), source="tests", retention=retention, clock=lambda: T0)


def test_an_entry_is_found_by_backup_by_server_and_by_day(aws: AwsEnv) -> None:
    j = journal(aws)
    entry = j.record(
        "backup_deleted",
        by="schedule",
        outcome="deleted",
        server_id=12345,
        backup_id=501,
        run="run-1",
        reasons=("no retention rule keeps it (last 3)",),
        details={"policy": "last 3"},
    )
    assert entry is not None
    assert j.for_backup(501) == [entry]
    assert j.for_server(12345) == [entry]
    assert j.recent(T0 - timedelta(days=1)) == [entry]
    assert j.for_backup(50) == [] and j.for_backup(5010) == []
    assert j.failed_writes == 0


def test_entries_come_newest_first_and_since_limits_them(aws: AwsEnv) -> None:
    j = journal(aws)
    made = [
        j.record("hold_placed", by="alice", outcome="held", server_id=1, backup_id=7, at=T0 - timedelta(days=d))
        for d in (3, 0, 1)
    ]
    got = j.for_server(1)
    assert [e.at for e in got] == [T0, T0 - timedelta(days=1), T0 - timedelta(days=3)]
    assert {e.entry_id for e in got} == {e.entry_id for e in made if e}
    assert len(j.for_server(1, since=T0 - timedelta(days=2))) == 2
    assert len(j.recent(T0 - timedelta(days=2), now=T0)) == 2
    assert len(j.for_backup(7, limit=1)) == 1


def test_entries_expire_after_the_retention(aws: AwsEnv) -> None:
    j = journal(aws, retention=timedelta(days=30))
    j.record("restore_requested", by="alarm x", outcome="restored", server_id=1, backup_id=2)
    items = boto3.resource("dynamodb").Table(aws.table_name).scan()["Items"]
    assert len(items) == 3  # by day, by server, by backup
    assert {int(i["expiration"]) for i in items} == {int((T0 + timedelta(days=30)).timestamp())}


def test_a_failed_write_does_not_raise_and_is_counted(aws: AwsEnv) -> None:
    broken = Journal(StateTable.from_name("no-such-table"), source="tests", clock=lambda: T0)
    assert broken.record("backup_created", by="deployment d1", outcome="created", server_id=1, backup_id=2) is None
    assert broken.failed_writes == 1
    no_table = Journal(None, source="tests")
    assert no_table.record("backup_created", by="d", outcome="created") is not None  # logged only
