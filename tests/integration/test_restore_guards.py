"""The manual restore's guards over the provider simulator (real HTTP) and moto, where the alarm
path and a person meet (issue: five ways to a wrong restore):

- a cooldown override never sends a restore while an earlier one may still be running (claimed,
  sent with no clear answer, or accepted, less than ``IN_FLIGHT`` ago);
- the console chooses the restore point the way the alarm path does, ``RESTORE_WATCH_WINDOW``
  included.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import restore_on_alarm
from devtools.simulator import Fault, Simulator
from devtools.simulator.pytest_plugin import SIM_TOKEN
from tests.conftest import AwsEnv, FakeLambdaContext, alarm_change_event
from vpsbackup.aws.journal import Journal
from vpsbackup.aws.state import StateTable
from vpsbackup.provider.client import RetryPolicy, VpsClient
from vpsbackup.provider.token import StaticTokenProvider
from vpsbackup.restore.guard import RestoreGuard
from vpsbackup.restore.manual import ManualRestorer
from vpsbackup.restore.settings import RestoreOnAlarmSettings
from vpsbackup.settings import load_settings

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
