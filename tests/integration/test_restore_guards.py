"""The manual restore's guards over the provider simulator (real HTTP) and moto, where the alarm
path and a person meet (issue: five ways to a wrong restore):

- a cooldown override never sends a restore while an earlier one may still be running (claimed,
  sent with no clear answer, or accepted, less than ``IN_FLIGHT`` ago);
- the console chooses the restore point the way the alarm path does, ``RESTORE_WATCH_WINDOW``
  included.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

import restore_on_alarm
from devtools.simulator import Fault, Simulator
from devtools.simulator.pytest_plugin import SIM_TOKEN
from tests.conftest import AwsEnv, FakeLambdaContext, alarm_change_event
from vpsbackup.aws.journal import Journal
from vpsbackup.aws.state import StateTable
from vpsbackup.provider.client import RetryPolicy, VpsClient
from vpsbackup.provider.token import StaticTokenProvider
from vpsbackup.records import DeploymentRecord
from vpsbackup.restore.guard import RestoreGuard
from vpsbackup.restore.manual import ManualRestorer
from vpsbackup.restore.settings import RestoreOnAlarmSettings
from vpsbackup.settings import load_settings
from vpsbackup_console.cli import cli

pytestmark = pytest.mark.integration

ALARM = "vps-restore-web-01-5xx"
SERVER = 12345


def restore_posts(simulator: Simulator) -> list[Any]:
    return [r for r in simulator.requests if r.method == "POST" and r.path.endswith("/restore/")]


def restorer(aws: AwsEnv, simulator: Simulator, clock: Callable[[], datetime]) -> ManualRestorer:
    """What ``vpsbackup restore`` builds (console/vpsbackup_console/cli.py), on a clock of our own."""
    settings = load_settings(RestoreOnAlarmSettings)
    state = StateTable.from_name(aws.table_name)
    guard = RestoreGuard(
        state, cooldown=settings.restore_cooldown, max_per_hour=settings.max_restores_per_hour, clock=clock
    )
    client = VpsClient(
        simulator.base_url, StaticTokenProvider(SIM_TOKEN), retry=RetryPolicy(max_attempts=3, base_delay=0.01)
    )
    journal = Journal(state, source="console", clock=clock)
    return ManualRestorer(settings, client=client, state=state, guard=guard, journal=journal, who="alice", clock=clock)


def record_deployment(aws: AwsEnv, received_at: datetime, backup_id: int) -> None:
    record = DeploymentRecord(deployment_id="gh-8812-1", server_id=SERVER, received_at=received_at, backup_id=backup_id)
    StateTable.from_name(aws.table_name).put_deployment_record(record)


def journal_acts(aws: AwsEnv) -> list[str]:
    return sorted(e.act for e in Journal(StateTable.from_name(aws.table_name), source="test").for_server(SERVER))


# -- a cooldown override and a restore that may be running ----------------------------------------


@pytest.mark.parametrize("fault", ["drop_after", None])
def test_an_override_a_minute_after_an_alarm_restore_that_may_be_running_is_refused_and_posts_nothing(
    restore_env: AwsEnv, simulator: Simulator, fault: str | None
) -> None:
    # Given an alarm's restore the provider applied; its answer lost (the connection dropped after
    # the restore was applied: outcome unknown), or accepted
    good = simulator.add_backup(SERVER, created_at=datetime.now(UTC) - timedelta(hours=2))
    if fault is not None:
        simulator.inject(Fault(kind="drop_after", method="POST", path_prefix="/servers/", times=1))
    [first] = restore_on_alarm.handler(
        alarm_change_event(at=datetime.now(UTC), server=SERVER, alarm=ALARM), FakeLambdaContext()
    )["outcomes"]
    assert first["outcome"] == ("failed" if fault else "restored")
    assert simulator.servers[SERVER]["restore_count"] == 1
    assert len(restore_posts(simulator)) == 1

    # When a person overrides the cooldown a minute later (vpsbackup restore --override-cooldown --reason … --yes)
    a_minute_later = datetime.now(UTC) + timedelta(minutes=1)
    person = restorer(restore_env, simulator, lambda: a_minute_later)
    plan = person.plan(SERVER, override_cooldown=True)
    assert plan.backup is not None and plan.backup.id == good["id"]
    assert plan.refusal is not None and "may be running right now" in plan.refusal.reason
    result = person.execute(plan, override_reason="site still down")

    # Then it is refused (as the plan already said), and no second restore is sent
    assert (result.outcome, result.cause) == ("refused", "cooldown")
    assert "may be running right now" in result.reason
    assert len(restore_posts(simulator)) == 1
    assert simulator.servers[SERVER]["restore_count"] == 1
    assert "cooldown_overridden" not in journal_acts(restore_env)


# -- the console chooses as the alarm path does ---------------------------------------------------


def test_a_dry_run_inside_the_watch_window_chooses_as_the_alarm_path_does(
    restore_env: AwsEnv, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given RESTORE_WATCH_WINDOW 2d and RESTORE_MAX_BACKUP_AGE 1d, a deploy 30 hours ago whose
    # backup completed (now too old), and an automatic backup made 10 hours after that deploy
    monkeypatch.setenv("RESTORE_WATCH_WINDOW", "2d")
    monkeypatch.setenv("RESTORE_MAX_BACKUP_AGE", "1d")
    now = datetime.now(UTC)
    deployed = now - timedelta(hours=30)
    deploy_backup = simulator.add_backup(SERVER, backup_type="manual", created_at=deployed + timedelta(seconds=5))
    after = simulator.add_backup(SERVER, backup_type="automatic", created_at=deployed + timedelta(hours=10))
    StateTable.from_name(restore_env.table_name).put_deployment_record(
        DeploymentRecord(
            deployment_id="gh-8812-1", server_id=SERVER, received_at=deployed, backup_id=deploy_backup["id"]
        )
    )

    # When a person asks the console what a restore would do
    done = CliRunner().invoke(cli, ["restore", str(SERVER), "--dry-run", "--json"], catch_exceptions=False)

    # Then, as the alarm path: no restore point (the backup made after the deploy may hold the state
    # it broke), and the explanation says so, not that later backups count too
    assert done.exit_code == 1, done.output
    answer = json.loads(done.stdout)
    assert answer["outcome"] == "refused"
    assert answer["backup_id"] is None
    assert answer["backup_id"] != after["id"]
    assert "RESTORE_WATCH_WINDOW" in answer["why"]
    assert f"backup {deploy_backup['id']} of deployment gh-8812-1" in answer["why"]
    assert "count too" not in answer["why"]
    assert restore_posts(simulator) == []


def test_a_dry_run_outside_the_watch_window_lets_later_backups_count_as_the_alarm_path_does(
    restore_env: AwsEnv, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the same, with the deploy 3 days ago (outside a 2d window) and its backup too old
    monkeypatch.setenv("RESTORE_WATCH_WINDOW", "2d")
    monkeypatch.setenv("RESTORE_MAX_BACKUP_AGE", "1d")
    now = datetime.now(UTC)
    deployed = now - timedelta(days=3)
    deploy_backup = simulator.add_backup(SERVER, backup_type="manual", created_at=deployed + timedelta(seconds=5))
    after = simulator.add_backup(SERVER, backup_type="automatic", created_at=now - timedelta(hours=10))
    StateTable.from_name(restore_env.table_name).put_deployment_record(
        DeploymentRecord(
            deployment_id="gh-8812-1", server_id=SERVER, received_at=deployed, backup_id=deploy_backup["id"]
        )
    )

    done = CliRunner().invoke(cli, ["restore", str(SERVER), "--dry-run", "--json"], catch_exceptions=False)

    assert done.exit_code == 0, done.output
    answer = json.loads(done.stdout)
    assert (answer["outcome"], answer["backup_id"]) == ("would_restore", after["id"])
    assert "backups made after that deployment count too" in answer["why"]
