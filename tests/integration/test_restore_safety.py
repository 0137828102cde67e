"""Restore on alarm, the guardrails of the safety issue, end to end: the handler over the local API
simulator (real HTTP) and moto (StateTable, SNS -> SQS with raw delivery off, so every notification's
attributes are read back as a subscriber's filter policy sees them).

- ``RESTORE_WATCH_WINDOW``: inside the window after the latest deployment an alarm restores; outside
  it (or with no deployment) the plan is only published, nothing is claimed, the backup is held;
- a failed pre-deploy backup: the restore uses the newest backup made before that deploy, never a
  newer one made after it; a deploy backup that completed but is too old does not limit the choice;
- a late retry: the deploy's first backup attempt fails and a redelivery makes the backup later; if
  that is more than ``DEPLOYMENT_BACKUP_LATEST`` after the request, it is not the restore point;
- ``RESTORE_MAX_ALARM_AGE`` replaces the fixed 15 minutes;
- every notification carries ``job``, ``outcome``, ``severity`` and ``server_id``; ``NOTIFY_FORMAT=chatbot``
  publishes the AWS Chatbot document.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import restore_on_alarm
from devtools.simulator import Fault, Simulator
from devtools.simulator.pytest_plugin import SIM_TOKEN
from tests.conftest import AwsEnv, FakeLambdaContext, alarm_change_event
from vpsbackup.aws.state import StateTable
from vpsbackup.deploy.claims import ClaimStore, lease_for
from vpsbackup.deploy.job import BackupOnDeploy, DeploymentResult, back_up_deployment
from vpsbackup.deploy.request import DeployRequest
from vpsbackup.provider.client import RetryPolicy, VpsClient
from vpsbackup.provider.token import StaticTokenProvider
from vpsbackup.records import DEPLOYMENT_BACKUP_LATEST, DeploymentRecord
from vpsbackup.restore.guard import RestoreGuard

pytestmark = pytest.mark.integration

ALARM = "vps-restore-web-01-5xx"
SERVER = 12345
FAST = RetryPolicy(max_attempts=1000, base_delay=0.01, max_delay=0.05)


def alarm_time(minutes_ago: float = 1) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes_ago)


def eventbridge(*, at: datetime, server: int | None = SERVER, alarm: str = ALARM) -> dict[str, Any]:
    return alarm_change_event(at=at, server=server, alarm=alarm)


def outcome_of(event: dict[str, Any]) -> dict[str, Any]:
    [outcome] = restore_on_alarm.handler(event, FakeLambdaContext())["outcomes"]
    return dict(outcome)


def restore_posts(simulator: Simulator) -> list[Any]:
    return [r for r in simulator.requests if r.method == "POST" and r.path.endswith("/restore/")]


def attributes_of(note: dict[str, Any]) -> dict[str, str]:
    return {key: value["Value"] for key, value in note.get("MessageAttributes", {}).items()}


def state(aws: AwsEnv) -> StateTable:
    return StateTable.from_name(aws.table_name)


def record_deployment(aws: AwsEnv, received_at: datetime, backup_id: int | None) -> None:
    state(aws).put_deployment_record(
        DeploymentRecord(deployment_id="gh-8812-1", server_id=SERVER, received_at=received_at, backup_id=backup_id)
    )


def nothing_claimed(aws: AwsEnv) -> bool:
    guard = RestoreGuard(state(aws), cooldown=timedelta(hours=6), max_per_hour=3)
    return guard.lock_holder(SERVER) is None and guard.slot_times() == {}


# -- the watch window --------------------------------------------------------------------------------


def test_an_alarm_inside_the_watch_window_restores(
    restore_env: AwsEnv, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a 2h watch window and a deploy 30 minutes before the alarm, with its backup
    monkeypatch.setenv("RESTORE_WATCH_WINDOW", "2h")
    at = alarm_time()
    pre_deploy = simulator.add_backup(SERVER, backup_type="manual", created_at=at - timedelta(minutes=29))
    record_deployment(restore_env, at - timedelta(minutes=30), pre_deploy["id"])
    # When the alarm fires
    outcome = outcome_of(eventbridge(at=at))
    # Then the server is restored from the deploy's backup
    assert outcome["outcome"] == "restored"
    assert simulator.servers[SERVER]["restored_from"] == pre_deploy["id"]
    assert len(restore_posts(simulator)) == 1
    # And the notification is routable: job, outcome, severity, server
    [note] = restore_env.notifications()
    assert attributes_of(note) == {
        "job": "restore-on-alarm",
        "outcome": "restored",
        "severity": "warning",
        "server_id": str(SERVER),
        "alarm": ALARM,
    }


@pytest.mark.parametrize("deployed_minutes_before", [5 * 60, None])
def test_an_alarm_outside_the_watch_window_only_publishes_the_plan_and_claims_nothing(
    restore_env: AwsEnv, simulator: Simulator, monkeypatch: pytest.MonkeyPatch, deployed_minutes_before: int | None
) -> None:
    # Given a 2h watch window, and the last deploy 5h before the alarm (or none recorded)
    monkeypatch.setenv("RESTORE_WATCH_WINDOW", "2h")
    at = alarm_time()
    good = simulator.add_backup(SERVER, created_at=at - timedelta(hours=6))
    if deployed_minutes_before is not None:
        record_deployment(restore_env, at - timedelta(minutes=deployed_minutes_before), good["id"])
    # When the alarm fires
    outcome = outcome_of(eventbridge(at=at))
    # Then nothing is restored, nothing is claimed, the backup it would use is held
    assert outcome["outcome"] == "planned"
    assert outcome["cause"] == ("outside_window" if deployed_minutes_before else "no_deployment")
    assert restore_posts(simulator) == []
    assert simulator.servers[SERVER]["restored_from"] is None
    assert simulator.servers[SERVER]["restore_count"] == 0
    assert nothing_claimed(restore_env)
    assert good["id"] in state(restore_env).active_holds(datetime.now(UTC))
    # And the plan is published as in notify mode: the backup, why, and how to restore by hand
    [note] = restore_env.notifications()
    assert (
        note["Subject"]
        == f"Restore plan for server {SERVER}: backup {good['id']} (outside the watch window, nothing done)"
    )
    assert "RESTORE_WATCH_WINDOW (2h)" in note["Message"]
    assert f"Why this backup: backup {good['id']}" in note["Message"]
    assert f"vpsbackup restore {SERVER} --backup {good['id']}" in note["Message"]
    assert "the guardrails would allow it now" in note["Message"]
    assert attributes_of(note)["outcome"] == "planned"
    assert attributes_of(note)["severity"] == "warning"


def test_no_window_is_today_s_behaviour(restore_env: AwsEnv, simulator: Simulator) -> None:
    # Given the default RESTORE_WATCH_WINDOW=0 and no deployment recorded at all
    at = alarm_time()
    good = simulator.add_backup(SERVER, created_at=at - timedelta(hours=6))
    # When the alarm fires, Then it restores
    assert outcome_of(eventbridge(at=at))["outcome"] == "restored"
    assert simulator.servers[SERVER]["restored_from"] == good["id"]


# -- no fallback past a failed deploy backup ---------------------------------------------------------


def test_a_failed_pre_deploy_backup_restores_the_older_backup_made_before_the_deploy(
    restore_env: AwsEnv, simulator: Simulator
) -> None:
    # Given a deploy 30 minutes ago whose backup failed, a backup made the day before it, and a
    # newer backup made 10 minutes after the deploy (it may hold the bad deploy's state)
    at = alarm_time()
    deployed = at - timedelta(minutes=30)
    before = simulator.add_backup(SERVER, backup_type="automatic", created_at=deployed - timedelta(hours=20))
    failed = simulator.add_backup(SERVER, backup_type="manual", status="failed", created_at=deployed)
    after = simulator.add_backup(SERVER, backup_type="automatic", created_at=deployed + timedelta(minutes=10))
    record_deployment(restore_env, deployed, failed["id"])
    # When the alarm fires
    outcome = outcome_of(eventbridge(at=at))
    # Then the server is restored from the backup made before the deploy, never the newer one
    assert outcome["outcome"] == "restored"
    assert outcome["backup_id"] == before["id"] != after["id"]
    assert simulator.servers[SERVER]["restored_from"] == before["id"]
    assert outcome["cause"] == "before_deployment"
    # And people are told which deployment's backup was unusable, and why the older one was chosen
    [note] = restore_env.notifications()
    assert f"backup {failed['id']} of deployment gh-8812-1" in note["Message"]
    assert "its status is failed" in note["Message"]
    assert "before that deployment" in note["Message"]
    assert str(after["id"]) in note["Message"]


def test_a_failed_deploy_backup_and_nothing_before_it_means_no_restore(
    restore_env: AwsEnv, simulator: Simulator
) -> None:
    at = alarm_time()
    deployed = at - timedelta(minutes=30)
    failed = simulator.add_backup(SERVER, backup_type="manual", status="failed", created_at=deployed)
    simulator.add_backup(SERVER, backup_type="automatic", created_at=deployed + timedelta(minutes=10))
    record_deployment(restore_env, deployed, failed["id"])
    outcome = outcome_of(eventbridge(at=at))
    assert (outcome["outcome"], outcome["cause"]) == ("skipped", "no_backup")
    assert restore_posts(simulator) == []
    [note] = restore_env.notifications()
    assert attributes_of(note)["severity"] == "error"
    assert "gh-8812-1" in note["Message"]


def test_a_deploy_backup_that_completed_but_is_too_old_gives_way_to_last_night_s_backup(
    restore_env: AwsEnv, simulator: Simulator
) -> None:
    # Given a deploy 8 days before the alarm whose backup completed (now older than the default
    # RESTORE_MAX_BACKUP_AGE of 7 days), and last night's automatic backup
    at = alarm_time()
    deployed = at - timedelta(days=8)
    deploy_backup = simulator.add_backup(SERVER, backup_type="manual", created_at=deployed + timedelta(seconds=5))
    last_night = simulator.add_backup(SERVER, backup_type="automatic", created_at=at - timedelta(hours=13))
    record_deployment(restore_env, deployed, deploy_backup["id"])
    # When the alarm fires (no watch window: the default)
    outcome = outcome_of(eventbridge(at=at))
    # Then the server is restored from last night's backup
    assert outcome["outcome"] == "restored"
    assert outcome["cause"] == "newest_completed"
    assert simulator.servers[SERVER]["restored_from"] == last_night["id"]
    # And the notification says why not the deploy's backup
    [note] = restore_env.notifications()
    assert f"backup {deploy_backup['id']} of deployment gh-8812-1" in note["Message"]
    assert "RESTORE_MAX_BACKUP_AGE" in note["Message"]


def deliver_deploy(aws: AwsEnv, simulator: Simulator, *, at: datetime) -> DeploymentResult:
    """One delivery of deployment gh-8812-1 to server SERVER, through the deploy job over the
    simulator and moto, as received at ``at`` (the provider stamps the backup with its own clock)."""
    client = VpsClient(simulator.base_url, StaticTokenProvider(SIM_TOKEN), retry=FAST)
    table = state(aws)
    deps = BackupOnDeploy(
        client=client,
        claims=ClaimStore(table),
        state=table,
        owner=f"test/{at.isoformat()}",
        lease=lease_for(timedelta(seconds=120)),
        wait_for_claim=0.0,
        clock=lambda: at,
    )
    try:
        return back_up_deployment(DeployRequest(deployment_id="gh-8812-1"), [SERVER], deps, received_at=at)
    finally:
        client.close()


@pytest.mark.parametrize(
    ("first_attempt_ago", "restored_from", "cause"),
    [
        # The retry made the backup 5 minutes after the request: the first delivery could have.
        (timedelta(minutes=5), "retried", "deployment"),
        # 40 minutes after: only a later delivery did, maybe after the deploy went out.
        (timedelta(minutes=40), "before", "before_deployment"),
    ],
)
def test_a_deploy_backup_a_late_retry_made_is_not_the_restore_point(
    restore_env: AwsEnv,
    simulator: Simulator,
    caplog: pytest.LogCaptureFixture,
    first_attempt_ago: timedelta,
    restored_from: str,
    cause: str,
) -> None:
    # Given a backup made the day before, and a deploy whose first backup attempt the API refused
    now = datetime.now(UTC)
    before = simulator.add_backup(SERVER, backup_type="automatic", created_at=now - timedelta(hours=20))
    simulator.inject(Fault(kind="status", status=409, method="POST", times=1))
    first = deliver_deploy(restore_env, simulator, at=now - first_attempt_ago)
    assert first.servers[0].outcome == "failed"
    # When CI retries the deploy request now, and its backup is made
    caplog.clear()
    retry = deliver_deploy(restore_env, simulator, at=now)
    assert retry.servers[0].outcome == "created"
    retried = retry.servers[0].backup_id
    # And the deploy job says so in its log when the retry came too late
    late = [r for r in caplog.records if r.getMessage().startswith("backup made late")]
    assert len(late) == (1 if cause == "before_deployment" else 0)
    # Then the deployment stays recorded under the first delivery's time, with the retry's backup
    record = state(restore_env).latest_deployment_before(SERVER, now + timedelta(seconds=1))
    assert record is not None
    assert (record.received_at, record.backup_id) == (now - first_attempt_ago, retried)
    # When an alarm fires after the deploy
    outcome = outcome_of(eventbridge(at=datetime.now(UTC)))
    # Then the retry's backup is used only if the first delivery could have made it
    expected = {"retried": retried, "before": before["id"]}[restored_from]
    assert (outcome["outcome"], outcome["cause"]) == ("restored", cause)
    assert simulator.servers[SERVER]["restored_from"] == expected
    [note] = restore_env.notifications()
    if cause == "before_deployment":
        # And people are told the deploy's backup was made too late to trust
        assert f"backup {retried} of deployment gh-8812-1" in note["Message"]
        assert f"{int(DEPLOYMENT_BACKUP_LATEST.total_seconds() // 60)} minutes" in note["Message"]
        assert "retry" in note["Message"]


def test_inside_the_watch_window_a_too_old_deploy_backup_still_bars_the_backups_made_after_the_deploy(
    restore_env: AwsEnv, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a 2-day watch window, RESTORE_MAX_BACKUP_AGE 1 day, a deploy 30 hours before the alarm
    # whose backup completed (now too old), and a backup made 10 hours after the deploy
    monkeypatch.setenv("RESTORE_WATCH_WINDOW", "2d")
    monkeypatch.setenv("RESTORE_MAX_BACKUP_AGE", "1d")
    at = alarm_time()
    deployed = at - timedelta(hours=30)
    deploy_backup = simulator.add_backup(SERVER, backup_type="manual", created_at=deployed + timedelta(seconds=5))
    simulator.add_backup(SERVER, backup_type="automatic", created_at=deployed + timedelta(hours=10))
    record_deployment(restore_env, deployed, deploy_backup["id"])
    # When the alarm fires, inside the window: the deploy is the likely cause
    outcome = outcome_of(eventbridge(at=at))
    # Then nothing is restored: the backup made after the deploy may hold the state it broke, and
    # the one before it is too old
    assert outcome["outcome"] == "skipped"
    assert outcome["cause"] == "no_backup"
    assert restore_posts(simulator) == []
    assert simulator.servers[SERVER]["restored_from"] is None
    # And people are told why
    [note] = restore_env.notifications()
    assert "RESTORE_WATCH_WINDOW" in note["Message"]
    assert f"backup {deploy_backup['id']} of deployment gh-8812-1" in note["Message"]


# -- RESTORE_MAX_ALARM_AGE -------------------------------------------------------------------------


def test_the_stale_alarm_limit_is_a_setting(
    restore_env: AwsEnv, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an alarm that changed state 30 minutes ago, and a usable backup
    at = alarm_time(30)
    good = simulator.add_backup(SERVER, created_at=at - timedelta(hours=2))
    # When the default 15m limit applies, Then it is too old
    stale = outcome_of(eventbridge(at=at))
    assert (stale["outcome"], stale["cause"]) == ("skipped", "stale_alarm")
    assert "15 minutes (RESTORE_MAX_ALARM_AGE=15m)" in stale["reason"]
    [note] = restore_env.notifications()
    assert attributes_of(note)["outcome"] == "skipped"
    # When RESTORE_MAX_ALARM_AGE=1h, Then the same alarm (as a new change) restores
    monkeypatch.setenv("RESTORE_MAX_ALARM_AGE", "1h")
    restore_on_alarm.reset()
    fresh = outcome_of(eventbridge(at=at + timedelta(seconds=1)))
    assert fresh["outcome"] == "restored"
    assert simulator.servers[SERVER]["restored_from"] == good["id"]


# -- every notification routable -------------------------------------------------------------------


def test_each_restore_outcome_carries_its_attributes(
    restore_env: AwsEnv, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devtools.simulator import Fault

    at = alarm_time()
    # an alarm that names no server: skipped, an error to fix
    outcome_of(eventbridge(at=at, server=None, alarm="vps-restore-mystery"))
    # no usable backup on 12346: skipped, error
    outcome_of(eventbridge(at=at, server=12346, alarm="vps-restore-web-02"))
    # a restore the API refuses on 12345: failed, error
    simulator.add_backup(SERVER, created_at=at - timedelta(hours=1))
    simulator.inject(Fault(kind="status", status=409, method="POST", path_prefix=f"/servers/{SERVER}/restore/"))
    outcome_of(eventbridge(at=at))
    notes = restore_env.notifications()
    seen = sorted((a["outcome"], a["severity"], a.get("server_id", "-")) for a in (attributes_of(n) for n in notes))
    assert seen == [("failed", "error", str(SERVER)), ("skipped", "error", "-"), ("skipped", "error", "12346")]
    assert all(attributes_of(n)["job"] == "restore-on-alarm" for n in notes)


def test_notify_format_chatbot_publishes_the_chatbot_document(
    restore_env: AwsEnv, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given NOTIFY_FORMAT=chatbot
    monkeypatch.setenv("NOTIFY_FORMAT", "chatbot")
    at = alarm_time()
    good = simulator.add_backup(SERVER, created_at=at - timedelta(hours=1))
    # When a restore happens
    assert outcome_of(eventbridge(at=at))["outcome"] == "restored"
    # Then a chat subscriber gets the AWS Chatbot custom-notification document
    [note] = restore_env.notifications()
    document = json.loads(note["Message"])
    assert document["version"] == "1.0"
    assert document["source"] == "custom"
    assert document["content"]["textType"] == "client-markdown"
    assert document["content"]["title"].startswith(f"[warning] Restored server {SERVER}")
    assert f"Backup: {good['id']}" in document["content"]["description"]
    assert document["metadata"]["additionalContext"]["outcome"] == "restored"
    assert attributes_of(note)["severity"] == "warning"
