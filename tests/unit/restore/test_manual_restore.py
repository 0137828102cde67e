"""A person's restore (``vpsbackup restore``) goes through the alarm path's own steps
(:class:`~vpsbackup.restore.execute.GuardedRestore`): the same lock, cooldown and fleet cap, the
same hold and re-read, and the journal. Over the simulator (real HTTP) and moto; the console runs
in-process (click's runner), so its exit codes and JSON are the real ones.

Given a server the alarm path just restored, when a person restores it by hand, then the cooldown
refuses (exit 1, the reason), and an override with a reason goes ahead and is journaled.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from moto.dynamodb.responses import DynamoHandler

from devtools.simulator import Simulator
from tests.conftest import AwsEnv, confirming_alarms, load_event
from vpsbackup.aws.journal import Journal
from vpsbackup.aws.state import HOLD_PK, StateTable
from vpsbackup.provider.client import VpsClient
from vpsbackup.provider.models import Backup
from vpsbackup.provider.token import SecretsManagerTokenProvider
from vpsbackup.restore.alarm import parse_alarm_event
from vpsbackup.restore.guard import IN_FLIGHT, RestoreGuard
from vpsbackup.restore.job import AlarmRestorer
from vpsbackup.restore.manual import ManualRestorer, choose_named_backup
from vpsbackup.restore.settings import RestoreOnAlarmSettings
from vpsbackup_console.cli import cli

WEB = 12345
NOW = datetime(2025, 1, 16, 12, 0, tzinfo=UTC)


# -- the backup a person names (pure) ------------------------------------------------------------


def backup(backup_id: int, server: int = 1, status: str = "completed", days: int = 30) -> Backup:
    return Backup.model_validate(
        {
            "id": backup_id,
            "server": {"id": server},
            "backup_type": "manual",
            "status": status,
            "created_at": (NOW - timedelta(days=days)).isoformat(),
        }
    )


def test_a_completed_backup_of_the_server_is_chosen_whatever_its_age() -> None:
    decision = choose_named_backup(1, [backup(5), backup(6, days=400)], 6)
    assert decision.backup is not None
    assert decision.backup.id == 6
    assert "named by hand" in decision.reason


def test_anything_else_is_refused_with_the_reason() -> None:
    listed = [backup(5, server=2), backup(6, status="in_progress"), backup(7, status="deleting")]
    assert choose_named_backup(1, listed, 5).reason == "backup 5 belongs to server 2, not 1"
    assert "in_progress: only a completed backup" in choose_named_backup(1, listed, 6).reason
    assert choose_named_backup(1, listed, 7).backup is None
    missing = choose_named_backup(1, listed, 8)
    assert missing.backup is None
    assert missing.reason == "backup 8 is not among server 1's backups"


# -- the shared path, over the simulator and moto ------------------------------------------------


class Parts:
    """The settings, the table, the guard and a client, as the function and the console build them."""

    def __init__(self, aws: AwsEnv, simulator: Simulator) -> None:
        self.settings = RestoreOnAlarmSettings(
            vps_api_base_url=simulator.base_url, vps_api_token_secret=aws.secret_id, state_table_name=aws.table_name
        )
        self.state = StateTable.from_name(aws.table_name)
        self.client = VpsClient(simulator.base_url, SecretsManagerTokenProvider(aws.secret_id))
        self.journal = Journal(self.state, source="tests")

    def guard(self, ago: timedelta = timedelta(0)) -> RestoreGuard:
        return RestoreGuard(
            self.state,
            cooldown=self.settings.restore_cooldown,
            max_per_hour=self.settings.max_restores_per_hour,
            clock=lambda: datetime.now(UTC) - ago,
        )

    def by_alarm(self, ago: timedelta = timedelta(0)) -> AlarmRestorer:
        """The alarm path, its guard's clock ``ago`` in the past (its lock as if taken that long ago)."""
        return AlarmRestorer(
            self.settings,
            client=self.client,
            state=self.state,
            guard=self.guard(ago),
            notifier=Silent(),  # type: ignore[arg-type]
            alarm_tags=lambda _arn: {},
            journal=self.journal,
            **confirming_alarms(),
        )

    def by_hand(self, who: str = "arn:aws:iam::123456789012:user/alice") -> ManualRestorer:
        return ManualRestorer(
            self.settings, client=self.client, state=self.state, guard=self.guard(), journal=self.journal, who=who
        )


class Silent:
    def publish(self, subject: str, message: str, **_: Any) -> bool:
        return True


@pytest.fixture
def parts(shared_env: AwsEnv, simulator: Simulator) -> Iterator[Parts]:
    made = Parts(shared_env, simulator)
    yield made
    made.client.close()


def alarm_restore(parts: Parts, simulator: Simulator, ago: timedelta = timedelta(0)) -> dict[str, Any]:
    """An alarm on WEB, handled by the alarm path: it restores from WEB's newest backup (its lock
    taken ``ago``)."""
    event = load_event("alarm-eventbridge-alarm.json")
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = {"ServerId": str(WEB)}
    [transition] = parse_alarm_event(event)
    at = datetime.now(UTC)
    outcome = parts.by_alarm(ago).handle(transition.model_copy(update={"state_changed_at": at}))
    assert outcome.outcome == "restored", outcome.reason
    assert simulator.servers[WEB]["restore_count"] == 1
    return outcome.as_dict()


def console(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_a_manual_restore_inside_the_alarms_cooldown_is_refused_with_the_reason_and_exit_1(
    parts: Parts, simulator: Simulator
) -> None:
    # Given WEB restored by its alarm a moment ago
    simulator.add_backup(WEB, "manual", "completed", datetime.now(UTC) - timedelta(hours=2))
    restored = alarm_restore(parts, simulator)

    # When a person restores it by hand, through the console
    done = console("restore", str(WEB), "--yes", "--json")

    # Then the alarm path's lock refuses it: exit 1, the reason (the alarm's restore, the cooldown)
    assert done.exit_code == 1
    answer = json.loads(done.stdout)
    assert answer["outcome"] == "refused"
    assert f"for alarm {restored['alarm_name']!r}" in answer["reason"]
    assert "one restore per server per 6 hours (RESTORE_COOLDOWN)" in answer["reason"]
    assert answer["reason"] in done.stderr
    assert simulator.servers[WEB]["restore_count"] == 1
    # ... and the refusal is journaled, by the person, next to the alarm's restore
    [refusal, alarm_request] = parts.journal.for_server(WEB)[:2]
    assert (refusal.act, refusal.outcome, refusal.source) == ("restore_refused", "cooldown", "vpsbackup console")
    assert refusal.reasons == (answer["reason"],)
    assert (alarm_request.act, alarm_request.by) == ("restore_requested", f"alarm {restored['alarm_name']}")


def test_an_override_of_the_cooldown_restores_and_journals_who_why_and_what_it_overrode(
    parts: Parts, simulator: Simulator
) -> None:
    # Given WEB restored by its alarm from the newest backup 6 minutes ago (no longer in flight,
    # still in the cooldown), and an older one a person prefers
    older = simulator.add_backup(WEB, "manual", "completed", datetime.now(UTC) - timedelta(days=1))["id"]
    simulator.add_backup(WEB, "manual", "completed", datetime.now(UTC) - timedelta(hours=2))
    restored = alarm_restore(parts, simulator, ago=IN_FLIGHT + timedelta(minutes=1))

    # When they override the cooldown, with a reason
    done = console(
        "restore", str(WEB), "--backup", str(older), "--yes", "--override-cooldown", "--reason", "bad data", "--json"
    )

    # Then it is restored from their backup, held for prune, and the override is journaled
    assert done.exit_code == 0, done.stderr
    answer = json.loads(done.stdout)
    assert (answer["outcome"], answer["backup_id"]) == ("restored", older)
    assert simulator.servers[WEB]["restored_from"] == older
    assert parts.state.active_hold(older, datetime.now(UTC)) is not None
    requested, overridden = parts.journal.for_server(WEB)[:2]
    assert (overridden.act, overridden.outcome) == ("cooldown_overridden", "overridden")
    assert overridden.reasons == ("bad data",)
    assert f"for alarm {restored['alarm_name']!r}" in overridden.details["overridden"]
    assert overridden.by == requested.by
    assert (requested.act, requested.outcome, requested.backup_id) == ("restore_requested", "restored", older)
    assert requested.run == overridden.run
    assert requested.run is not None
    assert requested.run.startswith("manual#")
    assert requested.details["trigger"] == "manual"


def test_an_error_before_the_restore_call_releases_the_claim(
    parts: Parts, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a table that refuses to store the hold (the step before the restore call)
    simulator.add_backup(WEB, "manual", "completed", datetime.now(UTC) - timedelta(hours=2))

    original = DynamoHandler.update_item

    def refuse(self: DynamoHandler) -> Any:
        if self.body["Key"]["pk"] == {"S": HOLD_PK}:
            raise RuntimeError("the hold cannot be stored")
        return original(self)

    restorer = parts.by_hand()
    plan = restorer.plan(WEB)
    monkeypatch.setattr(DynamoHandler, "update_item", refuse)  # a hold is an update (the longer one wins)

    # When a person restores by hand
    result = restorer.execute(plan)

    # Then nothing was restored, the claim was released (a later try may go ahead) and it is journaled
    assert (result.outcome, result.cause) == ("failed", "internal_error")
    assert simulator.servers[WEB]["restore_count"] == 0
    monkeypatch.undo()
    lock = parts.guard().lock_holder(WEB)
    assert lock is not None
    assert lock.state == "released"
    [entry] = parts.journal.for_server(WEB)
    assert (entry.act, entry.outcome) == ("restore_requested", "internal_error")
    assert parts.by_hand().execute(parts.by_hand().plan(WEB)).outcome == "restored"


def test_an_override_right_after_the_alarm_s_restore_was_accepted_is_refused_it_may_be_running(
    parts: Parts, simulator: Simulator
) -> None:
    # Given WEB restored by its alarm a moment ago (the API accepted it: it is restoring now)
    simulator.add_backup(WEB, "manual", "completed", datetime.now(UTC) - timedelta(hours=2))
    alarm_restore(parts, simulator)

    # When a person overrides the cooldown at once
    done = console("restore", str(WEB), "--yes", "--override-cooldown", "--reason", "still down", "--json")

    # Then it is refused (exit 1), and nothing more is sent
    assert done.exit_code == 1, done.stdout
    answer = json.loads(done.stdout)
    assert answer["outcome"] == "refused"
    assert "may be running right now" in answer["reason"]
    assert simulator.servers[WEB]["restore_count"] == 1
