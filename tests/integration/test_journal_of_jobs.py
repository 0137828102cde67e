"""The journal the functions write themselves, over the simulator (real HTTP) and moto: the backup a
deploy made, one entry per deletion of a prune run (with its reasons, policy and run), one per
restore of an alarm and per refusal; and a journal that cannot be written never stops the act it
records, which is logged and counted.

Given a server with a history of this project's backups, when a deploy, a prune, an alarm and its
flap happen, then ``history --backup`` would answer why each backup was made, deleted or restored.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto.core.responses import ActionResult
from moto.dynamodb.responses import DynamoHandler

import backup_on_deploy
import prune_backups
import restore_on_alarm
from devtools.simulator import Simulator
from tests.conftest import AwsEnv, FakeLambdaContext, load_event, set_alarm_state
from vpsbackup.aws.journal import Journal
from vpsbackup.aws.state import StateTable
from vpsbackup.markers import describe_with_marker
from vpsbackup.provider.client import RetryPolicy
from vpsbackup.records import JournalEntry

pytestmark = pytest.mark.integration

WEB = 12345
ALARM = "vps-restore-web-01-5xx"
FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)


# The three functions' environment on top of the shared one: keep the last 2, restore WEB's alarms.
ENV = {"RETENTION_POLICY": json.dumps({"keep_last": 2}), "ALARM_NAME_PREFIX": "vps-restore-"}


def forget_settings() -> None:
    backup_on_deploy.settings.cache_clear()
    prune_backups.settings.cache_clear()
    restore_on_alarm.reset()


@pytest.fixture
def env(
    shared_env: AwsEnv, monkeypatch: pytest.MonkeyPatch, fast_api_client: Callable[[Any], None]
) -> Iterator[AwsEnv]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    fast_api_client(FAST)
    forget_settings()
    yield shared_env
    forget_settings()


def alarm(at: datetime) -> dict[str, Any]:
    # the alarm exists and is in ALARM, as when CloudWatch sends the event
    set_alarm_state(ALARM, metrics=[{"ServerId": str(WEB)}])
    event = copy.deepcopy(load_event("alarm-eventbridge-alarm.json"))
    detail = event["detail"]
    detail["alarmName"] = ALARM
    event["resources"] = [f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{ALARM}"]
    detail["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = {"ServerId": str(WEB)}
    detail["state"].update(value="ALARM", timestamp=at.isoformat())
    detail["previousState"].update(value="OK", timestamp=(at - timedelta(minutes=5)).isoformat())
    event["time"] = at.isoformat()
    return event


def deploy(deployment_id: str) -> dict[str, Any]:
    event = load_event("deploy-eventbridge.json")
    event["detail"] = {"deployment_id": deployment_id, "server_ids": [WEB], "actor": "alice", "commit": "abc123"}
    return event


def older_backups(simulator: Simulator, now: datetime, days: range) -> list[int]:
    return [
        simulator.add_backup(
            WEB, "manual", "completed", now - timedelta(days=d), describe_with_marker(f"Release {d}", f"gh-{d}")
        )["id"]
        for d in days
    ]


def emitted_metrics(out: str) -> dict[str, Any]:
    """The EMF blob's metrics the handler printed (CloudWatch's embedded metric format)."""
    blobs = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    return {key: value for blob in blobs for key, value in blob.items() if not key.startswith("_")}


def test_a_deploy_a_prune_and_an_alarm_each_journal_what_they_did_and_why(env: AwsEnv, simulator: Simulator) -> None:
    # Given four earlier managed backups of WEB
    now = datetime.now(UTC)
    old = older_backups(simulator, now, range(1, 5))
    journal = Journal(StateTable.from_name(env.table_name), source="tests")

    # When a deploy backs WEB up, the scheduled prune runs, an alarm fires and fires again
    made = backup_on_deploy.handler(deploy("gh-1-1"), FakeLambdaContext())["backups"][0]["backup_id"]
    simulator.complete_all()
    pruned = prune_backups.handler(load_event("prune-scheduler.json"), FakeLambdaContext(aws_request_id="prune-7"))
    [first] = restore_on_alarm.handler(alarm(datetime.now(UTC)), FakeLambdaContext())["outcomes"]
    [again] = restore_on_alarm.handler(alarm(datetime.now(UTC) + timedelta(seconds=1)), FakeLambdaContext())["outcomes"]

    # Then the backup made for the deployment is journaled: by whom, for which deployment, its outcome
    assert (first["outcome"], again["outcome"], again["cause"]) == ("restored", "skipped", "cooldown")
    deleted = sorted(d["backup_id"] for d in pruned["deletions"] if d["outcome"] == "deleted")
    assert deleted == sorted(old[1:])  # keep last 2: the new one and the newest old one
    made_entries = journal.for_backup(made)
    assert [e.act for e in made_entries] == ["restore_refused", "restore_requested", "backup_created"]
    created = made_entries[-1]
    assert (created.by, created.outcome, created.run, created.source) == (
        "deployment gh-1-1",
        "created",
        "gh-1-1",
        "backup-on-deploy",
    )
    assert created.details | {"trigger": "eventbridge", "actor": "alice", "commit": "abc123"} == created.details

    # ... one entry per deletion: by the schedule, the run's id, the policy, and the plan's own reasons
    planned = {d["backup_id"]: d for d in prune_backups.handler({"dry_run": True}, FakeLambdaContext())["decisions"]}
    assert not set(deleted) & set(planned), "deleted backups are gone"
    for backup_id in deleted:
        [entry] = journal.for_backup(backup_id)
        assert (entry.act, entry.by, entry.run, entry.outcome, entry.server_id) == (
            "backup_deleted",
            "schedule",
            "prune-7",
            "deleted",
            WEB,
        )
        assert (entry.details["policy"], entry.details["policy_source"]) == ("last 2", "default")
        assert any("no retention rule keeps it" in r for r in entry.reasons)
    server_acts = [e.act for e in journal.for_server(WEB)]
    assert server_acts.count("backup_deleted") == len(deleted)
    assert server_acts.count("backup_created") == 1

    # ... one per restore, and one per refusal by the guard, with the alarm, the backup and the reasons
    refused, requested = journal.for_server(WEB)[:2]
    assert (requested.act, requested.outcome, requested.by, requested.backup_id) == (
        "restore_requested",
        "restored",
        f"alarm {ALARM}",
        made,
    )
    assert requested.details["trigger"] == "alarm"
    assert requested.details["api_status"] == 202
    assert "hold_until" in requested.details
    assert (refused.act, refused.outcome) == ("restore_refused", "cooldown")
    assert "RESTORE_COOLDOWN" in refused.reasons[0]
    # ... and the report stays what it was: the journal is in the table, not in the return value
    assert "journal" not in json.dumps(pruned)

    # ... and so is an alarm too old to act on (a redrive an hour later): refused, and why
    [late] = restore_on_alarm.handler(alarm(datetime.now(UTC) - timedelta(hours=1)), FakeLambdaContext())["outcomes"]
    assert (late["outcome"], late["cause"]) == ("skipped", "stale_alarm")
    newest = journal.for_server(WEB)[0]
    assert (newest.act, newest.outcome, newest.by) == ("restore_refused", "stale_alarm", f"alarm {ALARM}")
    assert "RESTORE_MAX_ALARM_AGE" in newest.reasons[0]


def journal_items(body: dict[str, Any]) -> int:
    """How many of a BatchWriteItem request's items are journal entries."""
    requests = [r for items in body["RequestItems"].values() for r in items]
    return sum(1 for r in requests if r["PutRequest"]["Item"]["pk"]["S"].startswith("journal#"))


def is_journal_put(body: dict[str, Any]) -> bool:
    return str(body["Item"]["pk"]["S"]).startswith("journal#")


def test_a_journal_that_cannot_be_written_stops_nothing_and_is_counted(
    env: AwsEnv,
    simulator: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given backups to prune, and a table that refuses every journal write
    now = datetime.now(UTC)
    old = older_backups(simulator, now, range(1, 6))
    attempts: list[str] = []
    original = DynamoHandler.put_item

    def refused(self: DynamoHandler) -> Any:
        if is_journal_put(self.body):
            attempts.append(str(self.body["Item"]["pk"]["S"]))
            raise RuntimeError("journal write refused")
        return original(self)

    monkeypatch.setattr(DynamoHandler, "put_item", refused)
    capsys.readouterr()

    # When the scheduled prune runs and an alarm fires
    pruned = prune_backups.handler(load_event("prune-scheduler.json"), FakeLambdaContext())
    prune_out = capsys.readouterr().out
    [restored] = restore_on_alarm.handler(alarm(datetime.now(UTC)), FakeLambdaContext())["outcomes"]

    # Then every planned deletion still happened, the restore too
    deleted = sorted(d["backup_id"] for d in pruned["deletions"] if d["outcome"] == "deleted")
    assert deleted == sorted(old[2:])
    assert {b["id"] for b in simulator.backups} == set(old[:2])
    assert restored["outcome"] == "restored"
    assert simulator.servers[WEB]["restore_count"] == 1
    # ... and each unwritten entry was tried, then counted (the metric), and logged whole
    assert emitted_metrics(prune_out)["JournalWriteFailed"] == [len(deleted)]
    assert len(attempts) >= len(deleted)
    logged = [r for r in caplog.records if r.getMessage().startswith("journal write failed")]
    assert sorted(r.__dict__["journal"]["backup_id"] for r in logged) == sorted([*deleted, restored["backup_id"]])
    monkeypatch.undo()
    journal = Journal(StateTable.from_name(env.table_name), source="tests")
    assert journal.recent(now - timedelta(days=1)) == []


def test_the_journal_is_written_append_only(env: AwsEnv, simulator: Simulator) -> None:
    # Given 40 backups to delete (120 journal items: 3 copies an entry)
    now = datetime.now(UTC)
    older_backups(simulator, now, range(1, 43))
    batched: list[int] = []
    puts: list[dict[str, Any]] = []
    original_batch, original_put = DynamoHandler.batch_write_item, DynamoHandler.put_item

    def counting_batch(self: DynamoHandler) -> ActionResult:
        batched.append(journal_items(self.body))
        return original_batch(self)

    def counting_put(self: DynamoHandler) -> Any:
        if is_journal_put(self.body):
            puts.append(self.body)
        return original_put(self)

    # When the scheduled prune (max 50 deletions) runs
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DynamoHandler, "batch_write_item", counting_batch)
        patch.setattr(DynamoHandler, "put_item", counting_put)
        pruned = prune_backups.handler(load_event("prune-scheduler.json"), FakeLambdaContext())

    # Then no BatchWriteItem carried a journal item: each copy was one PutItem on a new key only
    assert pruned["totals"]["deleted"] == 40
    assert sum(batched) == 0
    assert len(puts) == 120
    assert {p.get("ConditionExpression") for p in puts} == {"attribute_not_exists(#pk)"}
    # ... and writing an entry again (a retry) neither fails nor overwrites it
    journal = Journal(StateTable.from_name(env.table_name), source="tests")
    [first, *_] = journal.for_server(WEB)
    assert journal.write(first.model_copy(update={"outcome": "rewritten"})) is True
    assert journal.for_server(WEB)[0].outcome == first.outcome
    entries: list[JournalEntry] = Journal(StateTable.from_name(env.table_name), source="tests").for_server(WEB)
    assert sorted(e.backup_id for e in entries if e.backup_id is not None) == sorted(
        d["backup_id"] for d in pruned["deletions"]
    )
