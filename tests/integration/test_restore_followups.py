"""Did the restore work? The follow-ups of an automatic restore, end to end over the simulator (real
HTTP) and moto (StateTable, CloudWatch's alarm, EventBridge Scheduler, SNS -> SQS).

The check is run as Scheduler would run it: the handler is invoked with the schedule's own
``Target.Input``, read back from moto's Scheduler (ActionAfterCompletion DELETE: Scheduler deletes it
after it fires, which moto does not model). Tests read Given / When / Then.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

import restore_on_alarm
from devtools.simulator import Simulator
from tests.conftest import AwsEnv, FakeLambdaContext, load_event, set_alarm_state
from vpsbackup.aws.journal import Journal
from vpsbackup.aws.state import PK, SK, TTL_ATTRIBUTE, StateTable
from vpsbackup.restore.guard import LOCK_SK, lock_pk
from vpsbackup.restore.recovery import schedule_name

pytestmark = pytest.mark.integration

ALARM = "vps-restore-web-01-5xx"
SERVER = 12345


def eventbridge(*, new: str = "ALARM", previous: str = "OK", at: datetime | None = None) -> dict[str, Any]:
    """The alarm's state change as EventBridge delivers it; the alarm itself is put in the new state,
    as CloudWatch is when it sends the event (restore on alarm confirms it)."""
    set_alarm_state(ALARM, new, metrics=[{"ServerId": str(SERVER)}])
    event = copy.deepcopy(load_event("alarm-eventbridge-alarm.json"))
    at = at or datetime.now(UTC) - timedelta(minutes=1)
    detail = event["detail"]
    detail["alarmName"] = ALARM
    event["resources"] = [f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{ALARM}"]
    detail["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = {"ServerId": str(SERVER)}
    detail["state"] |= {"value": new, "timestamp": at.isoformat()}
    detail["previousState"] |= {"value": previous, "timestamp": (at - timedelta(minutes=5)).isoformat()}
    event["time"] = at.isoformat()
    return event


def outcome_of(event: dict[str, Any]) -> dict[str, Any]:
    [outcome] = restore_on_alarm.handler(event, FakeLambdaContext())["outcomes"]
    return dict(outcome)


def the_schedule(env: AwsEnv, transition_key: str) -> dict[str, Any]:
    scheduler = boto3.client("scheduler")
    got: dict[str, Any] = scheduler.get_schedule(GroupName=env.verify_group, Name=schedule_name(SERVER, transition_key))
    return got


def lock(env: AwsEnv) -> dict[str, Any]:
    item: dict[str, Any] = env.table().get_item(Key={PK: lock_pk(SERVER), SK: LOCK_SK})["Item"]
    return item


def cooldown_over(env: AwsEnv) -> None:
    """The server's cooldown has run out (the lock's locked_until moved into the past)."""
    past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    env.table().update_item(
        Key={PK: lock_pk(SERVER), SK: LOCK_SK},
        UpdateExpression="SET locked_until = :p",
        ExpressionAttributeValues={":p": past},
    )


def journal_acts(env: AwsEnv) -> list[tuple[str, str]]:
    journal = Journal(StateTable.from_name(env.table_name), source="tests")
    return [(e.act, e.outcome) for e in reversed(journal.for_server(SERVER))]


def restored(env: AwsEnv, simulator: Simulator) -> tuple[dict[str, Any], dict[str, Any]]:
    """Given a usable backup, the alarm entered ALARM and the server was restored: (outcome, schedule)."""
    simulator.add_backup(SERVER, created_at=datetime.now(UTC) - timedelta(hours=2))
    event = eventbridge()
    outcome = outcome_of(event)
    assert outcome["outcome"] == "restored"
    key = f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{ALARM}|ALARM|" + datetime.fromisoformat(
        event["detail"]["state"]["timestamp"]
    ).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return outcome, the_schedule(env, key)


def checked(env: AwsEnv, simulator: Simulator, alarm_state: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Given a server restored on its alarm (people told), the check fires with the alarm in
    ``alarm_state``: (the check's outcome, the schedule)."""
    _, schedule = restored(env, simulator)
    env.notifications()
    set_alarm_state(ALARM, alarm_state)
    return outcome_of(json.loads(schedule["Target"]["Input"])), schedule


def test_a_restore_schedules_its_one_time_check_which_deletes_itself(restore_env: AwsEnv, simulator: Simulator) -> None:
    # Given a server restored on its alarm
    before = datetime.now(UTC)
    _, schedule = restored(restore_env, simulator)

    # Then a one-time schedule RESTORE_VERIFY_AFTER (30m) later invokes this function, then is deleted
    assert schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["ScheduleExpression"].startswith("at(")
    at = datetime.strptime(schedule["ScheduleExpression"], "at(%Y-%m-%dT%H:%M:%S)").replace(tzinfo=UTC)
    assert before + timedelta(minutes=30) - timedelta(seconds=1) <= at <= datetime.now(UTC) + timedelta(minutes=31)
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    target = schedule["Target"]
    assert target["Arn"] == FakeLambdaContext().invoked_function_arn
    assert target["RoleArn"] == restore_env.verify_role_arn
    check = json.loads(target["Input"])["restore_verify"]
    assert (check["server_id"], check["alarm_name"]) == (SERVER, ALARM)
    # ... and people are told when it will be checked
    [told] = restore_env.notifications()
    assert "Did it work: you will be told when alarm vps-restore-web-01-5xx returns to OK" in told["Message"]
    assert lock(restore_env)["incident"] == "open"


def emitted(out: str, name: str) -> list[float]:
    """The values of metric ``name`` in the EMF lines Powertools printed."""
    values: list[float] = []
    for line in out.splitlines():
        if line.startswith('{"_aws"'):
            values += json.loads(line).get(name, [])
    return values


def test_the_alarm_back_to_ok_records_the_recovery_and_the_check_then_does_nothing(
    restore_env: AwsEnv, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a server restored on its alarm
    _, schedule = restored(restore_env, simulator)
    restore_env.notifications()
    capsys.readouterr()

    # When the alarm returns to OK (the OK rule's event), twice (a redelivery)
    ok_at = datetime.now(UTC)
    recovered = outcome_of(eventbridge(new="OK", previous="ALARM", at=ok_at))
    again = outcome_of(eventbridge(new="OK", previous="ALARM", at=ok_at))

    # Then the recovery is recorded once: outcome, info notification, journal, the lock's incident
    assert (recovered["outcome"], recovered["cause"]) == ("recovered", "ok_event")
    assert recovered["extra"]["time_to_recover_s"] >= 0
    assert (again["outcome"], again["cause"]) == ("ignored", "recovered")
    [told] = restore_env.notifications()
    assert told["Subject"].startswith(f"Recovered: server {SERVER}")
    assert told["MessageAttributes"]["severity"]["Value"] == "info"
    assert "time to recover" in told["Message"]
    assert journal_acts(restore_env)[-1] == ("restore_recovered", "recovered")
    assert lock(restore_env)["incident"] == "recovered"
    # ... and the metrics: one restore_recovered, its time_to_recover in seconds
    out = capsys.readouterr().out
    assert emitted(out, "restore_recovered") == [1.0]
    assert emitted(out, "time_to_recover") == [float(recovered["extra"]["time_to_recover_s"])]

    # When the check fires 30 minutes after the restore (the schedule's own input)
    set_alarm_state(ALARM, "OK")
    checked = outcome_of(json.loads(schedule["Target"]["Input"]))

    # Then nothing more: already recovered, nobody told again, nothing journaled
    assert (checked["outcome"], checked["cause"]) == ("ignored", "recovered")
    assert restore_env.notifications() == []
    assert [act for act, _ in journal_acts(restore_env)].count("restore_recovered") == 1


def test_a_check_that_reads_ok_records_the_recovery_the_ok_event_missed(
    restore_env: AwsEnv, simulator: Simulator
) -> None:
    # Given a restored server whose alarm is OK again, its OK event lost; When the check fires
    found, _ = checked(restore_env, simulator, "OK")

    # Then the recovery is recorded from the alarm's state
    assert (found["outcome"], found["cause"]) == ("recovered", "check")
    assert journal_acts(restore_env)[-1] == ("restore_recovered", "recovered")
    [told] = restore_env.notifications()
    assert told["MessageAttributes"]["severity"]["Value"] == "info"


def test_a_restore_that_did_not_clear_the_alarm_is_told_and_never_restored_again_automatically(
    restore_env: AwsEnv, simulator: Simulator
) -> None:
    # Given a server restored on its alarm, and the alarm still in ALARM when the check fires
    _, schedule = restored(restore_env, simulator)
    restore_env.notifications()
    set_alarm_state(ALARM, "ALARM")

    # When the check fires (twice: Lambda may deliver an asynchronous invocation again)
    checked = outcome_of(json.loads(schedule["Target"]["Input"]))
    again = outcome_of(json.loads(schedule["Target"]["Input"]))

    # Then an error notification "the restore did not clear the alarm", journaled, once
    assert (checked["outcome"], checked["cause"]) == ("not_recovered", "not_cleared")
    assert checked["extra"]["alarm_state"] == "ALARM"
    assert (again["outcome"], again["cause"]) == ("ignored", "already_checked")
    [told] = restore_env.notifications()
    assert told["Subject"].startswith("The restore did not clear the alarm")
    assert told["MessageAttributes"]["severity"]["Value"] == "error"
    assert f"vpsbackup restore {SERVER} --backup ID" in told["Message"]
    assert journal_acts(restore_env)[-1] == ("restore_not_recovered", "not_cleared")
    # ... and the incident outlives the cooldown (the lock has no expiry any more)
    held = lock(restore_env)
    assert held["incident"] == "not_cleared"
    assert TTL_ATTRIBUTE not in held

    # When, the cooldown over, the alarm enters ALARM again without having been OK (the same incident)
    cooldown_over(restore_env)
    later = outcome_of(eventbridge(previous="INSUFFICIENT_DATA", at=datetime.now(UTC)))

    # Then no restore: refused with a clear cause, journaled, told
    assert (later["outcome"], later["cause"]) == ("skipped", "incident_open")
    assert "did not clear the alarm" in later["reason"]
    assert simulator.servers[SERVER]["restore_count"] == 1
    assert journal_acts(restore_env)[-1] == ("restore_refused", "incident_open")
    [refused] = restore_env.notifications()
    assert "incident is still open" in refused["Subject"]

    # When the alarm is at last seen in OK, the incident is over; a later ALARM restores again
    late = outcome_of(eventbridge(new="OK", previous="ALARM", at=datetime.now(UTC)))
    assert late["outcome"] == "recovered"
    assert lock(restore_env)["incident"] == "recovered"
    assert TTL_ATTRIBUTE in lock(restore_env)
    cooldown_over(restore_env)
    next_incident = outcome_of(eventbridge(at=datetime.now(UTC) + timedelta(seconds=1)))
    assert next_incident["outcome"] == "restored"
    assert simulator.servers[SERVER]["restore_count"] == 2


def test_the_check_of_an_alarm_that_no_longer_exists_is_not_a_recovery(
    restore_env: AwsEnv, simulator: Simulator
) -> None:
    # Given a restored server whose alarm was deleted since
    _, schedule = restored(restore_env, simulator)
    boto3.client("cloudwatch").delete_alarms(AlarmNames=[ALARM])

    # When the check fires
    checked = outcome_of(json.loads(schedule["Target"]["Input"]))

    # Then it was never seen in OK: not recovered
    assert checked["outcome"] == "not_recovered"
    assert checked["extra"]["alarm_state"] == "gone"


def test_an_ok_of_an_alarm_with_no_restore_is_ignored(restore_env: AwsEnv) -> None:
    # When an alarm returns to OK with no restore behind it
    outcome = outcome_of(eventbridge(new="OK", previous="ALARM"))

    # Then nothing is recorded, nobody is told
    assert (outcome["outcome"], outcome["cause"]) == ("ignored", "no_incident")
    assert restore_env.notifications() == []
    assert journal_acts(restore_env) == []


def test_a_malformed_check_fails_the_invocation_naming_the_field(restore_env: AwsEnv) -> None:
    from vpsbackup.restore.recovery import VerifyEventError

    with pytest.raises(VerifyEventError, match=r"restore_verify\.server_id"):
        restore_on_alarm.handler({"restore_verify": {"alarm_name": ALARM}}, FakeLambdaContext())


def test_an_ok_the_alarm_does_not_confirm_records_no_recovery_and_the_incident_stays_open(
    restore_env: AwsEnv, simulator: Simulator
) -> None:
    # Given a restored server
    restored(restore_env, simulator)
    restore_env.notifications()
    # When an OK arrives while the alarm, read now, is in ALARM (a late or a forged OK)
    event = eventbridge(new="OK", previous="ALARM", at=datetime.now(UTC))
    set_alarm_state(ALARM, "ALARM")
    outcome = outcome_of(event)
    # Then no recovery is recorded: the incident stays open, nobody is told it recovered
    assert (outcome["outcome"], outcome["cause"]) == ("ignored", "not_confirmed")
    assert "the alarm is in ALARM now, not OK" in outcome["reason"]
    assert lock(restore_env)["incident"] == "open"
    assert restore_env.notifications() == []
    assert "restore_recovered" not in [act for act, _ in journal_acts(restore_env)]


def test_vpsbackup_history_says_whether_each_restore_worked(restore_env: AwsEnv, simulator: Simulator) -> None:
    from click.testing import CliRunner

    from vpsbackup_console.cli import cli

    # Given a restore the check found had not cleared the alarm, and the alarm seen in OK later
    assert checked(restore_env, simulator, "ALARM")[0]["outcome"] == "not_recovered"
    assert outcome_of(eventbridge(new="OK", previous="ALARM", at=datetime.now(UTC)))["outcome"] == "recovered"

    # When a person asks the console for the server's history
    answer = CliRunner().invoke(cli, ["history", "--server", str(SERVER), "--json"], catch_exceptions=False)
    table = CliRunner().invoke(cli, ["history", "--server", str(SERVER)], catch_exceptions=False)

    # Then, newest first: recovered (with the time to recover), not cleared, the restore itself
    assert answer.exit_code == 0, answer.output
    entries = json.loads(answer.stdout)["entries"]
    assert [(e["act"], e["outcome"]) for e in entries] == [
        ("restore_recovered", "recovered"),
        ("restore_not_recovered", "not_cleared"),
        ("restore_requested", "restored"),
    ]
    recovered, not_cleared = entries[0], entries[1]
    assert recovered["details"]["time_to_recover_s"] >= 0 and recovered["details"]["seen_by"] == "ok_event"
    assert "after the restore" in recovered["reasons"][0]
    assert "the restore did not clear the alarm" in not_cleared["reasons"][0]
    assert not_cleared["details"]["alarm_state"] == "ALARM"
    # ... and the table shows the same three entries (its cells fold to the terminal's width)
    assert table.exit_code == 0, table.output
    assert "Journal: 3 entries" in table.stdout


def test_a_flapping_alarm_over_an_open_incident_is_told_once_and_journaled_at_each_flap(
    restore_env: AwsEnv, simulator: Simulator
) -> None:
    # Given a restore the check found had not cleared the alarm (people told, an error), its cooldown over
    assert checked(restore_env, simulator, "ALARM")[0]["outcome"] == "not_recovered"
    cooldown_over(restore_env)
    restore_env.notifications()

    # When the alarm flaps (INSUFFICIENT_DATA, then ALARM again) three times, never OK
    start = datetime.now(UTC)
    flaps = [outcome_of(eventbridge(previous="INSUFFICIENT_DATA", at=start + timedelta(seconds=s))) for s in (1, 2, 3)]

    # Then each is refused for the open incident and journaled, but people are told once
    assert [(f["outcome"], f["cause"]) for f in flaps] == [("skipped", "incident_open")] * 3
    assert [f["notified"] for f in flaps] == [True, False, False]
    [told] = restore_env.notifications()
    assert "incident is still open" in told["Subject"]
    assert [act for act in journal_acts(restore_env) if act == ("restore_refused", "incident_open")] == [
        ("restore_refused", "incident_open")
    ] * 3
    assert simulator.servers[SERVER]["restore_count"] == 1


def test_inside_the_cooldown_a_flap_over_an_open_incident_is_a_cooldown_told_once(
    restore_env: AwsEnv, simulator: Simulator
) -> None:
    # Given a server just restored on its alarm (its incident open, its cooldown running)
    restored(restore_env, simulator)
    restore_env.notifications()

    # When the alarm flaps back to ALARM twice
    start = datetime.now(UTC)
    flaps = [outcome_of(eventbridge(previous="INSUFFICIENT_DATA", at=start + timedelta(seconds=s))) for s in (1, 2)]

    # Then both are the cooldown's refusals, told once, saying the incident outlasts the cooldown
    assert [(f["outcome"], f["cause"], f["notified"]) for f in flaps] == [
        ("skipped", "cooldown", True),
        ("skipped", "cooldown", False),
    ]
    assert "its incident is open" in flaps[0]["reason"]
    assert len(restore_env.notifications()) == 1
