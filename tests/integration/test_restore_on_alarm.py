"""Restore on alarm end to end: the handler over the local API simulator (real HTTP) and moto
(StateTable, alarm tags, SNS -> SQS to read what people are told). Tests read Given / When / Then.

Alarm events are the samples from ``events/`` with the alarm name, server and times changed; the
alarm fires "a minute ago" so the cooldown, the fleet window and the holds run on the real clock.
"""

from __future__ import annotations

import copy
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

import restore_on_alarm
from devtools.samples import alarm_states
from devtools.simulator import Fault, Simulator
from tests.conftest import AwsEnv, FakeLambdaContext, load_event, set_alarm_state
from vpsbackup.aws import runtime
from vpsbackup.aws.journal import Journal
from vpsbackup.aws.state import StateTable
from vpsbackup.provider.client import RetryPolicy
from vpsbackup.records import DeploymentRecord
from vpsbackup.restore.guard import RestoreGuard

pytestmark = pytest.mark.integration

ALARM = "vps-restore-web-01-5xx"
RESTORE_PATH = "/api/v1/servers/{}/restore/"
# Short sleeps, and more attempts than a deadline allows: the deadline is what bounds a 503 loop.
FAST = RetryPolicy(max_attempts=1000, base_delay=0.01, max_delay=0.05)


# -- helpers -------------------------------------------------------------------------------------


def alarm_time(minutes_ago: float = 1) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes_ago)


def eventbridge(
    *,
    alarm: str = ALARM,
    server: int | None = 12345,
    at: datetime | None = None,
    new: str = "ALARM",
    previous: str = "OK",
) -> dict[str, Any]:
    """The EventBridge sample, for this alarm, server (None: no dimension), state change and time; the
    alarm itself (made if missing) is put in the new state, as CloudWatch is when it sends the event."""
    set_alarm_state(alarm, new, metrics=[{"ServerId": str(server)} if server is not None else {}])
    event = copy.deepcopy(load_event("alarm-eventbridge-alarm.json"))
    at = at or alarm_time()
    detail = event["detail"]
    detail["alarmName"] = alarm
    event["resources"] = [f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{alarm}"]
    metric = detail["configuration"]["metrics"][0]["metricStat"]["metric"]
    metric["dimensions"] = {"ServerId": str(server)} if server is not None else {}
    detail["state"]["value"] = new
    detail["state"]["timestamp"] = at.isoformat()
    detail["previousState"]["value"] = previous
    detail["previousState"]["timestamp"] = (at - timedelta(minutes=5)).isoformat()
    event["time"] = at.isoformat()
    return event


def invoke(event: dict[str, Any], context: FakeLambdaContext | None = None) -> list[dict[str, Any]]:
    result = restore_on_alarm.handler(event, context or FakeLambdaContext())
    return list(result["outcomes"])


def outcome_of(event: dict[str, Any], context: FakeLambdaContext | None = None) -> dict[str, Any]:
    [outcome] = invoke(event, context)
    return outcome


def restore_posts(simulator: Simulator, server: int | None = None) -> list[Any]:
    return [
        r
        for r in simulator.requests
        if r.method == "POST"
        and r.path.startswith("/api/v1/servers/")
        and (server is None or r.path == RESTORE_PATH.format(server))
    ]


def subjects(aws: AwsEnv) -> list[str]:
    return [n["Subject"] for n in aws.notifications()]


def state(aws: AwsEnv) -> StateTable:
    return StateTable.from_name(aws.table_name)


# -- the right backup --------------------------------------------------------------------------------


def test_the_pre_deploy_backup_is_chosen_even_when_a_newer_automatic_backup_exists(
    restore_env: AwsEnv, simulator: Simulator
) -> None:
    # Given a deploy at T-30m whose backup was made then, and a newer automatic backup at T-10m
    at = alarm_time()
    simulator.add_backup(12345, backup_type="automatic", created_at=at - timedelta(days=1))
    pre_deploy = simulator.add_backup(
        12345,
        backup_type="manual",
        created_at=at - timedelta(minutes=30),
        description="Release 2.3 [vpsbackup deployment=gh-8812-1]",
    )
    newer = simulator.add_backup(12345, backup_type="automatic", created_at=at - timedelta(minutes=10))
    state(restore_env).put_deployment_record(
        DeploymentRecord(
            deployment_id="gh-8812-1",
            server_id=12345,
            received_at=at - timedelta(minutes=31),
            backup_id=pre_deploy["id"],
        )
    )

    # When the server's alarm enters ALARM
    outcome = outcome_of(eventbridge(at=at))

    # Then the server is restored from the pre-deploy backup, not the newer one
    assert outcome["outcome"] == "restored"
    assert outcome["backup_id"] == pre_deploy["id"] != newer["id"]
    assert simulator.servers[12345]["restored_from"] == pre_deploy["id"]
    assert len(restore_posts(simulator)) == 1
    # And the people on call are told which backup, from when, for which alarm and why
    [note] = restore_env.notifications()
    assert (
        note["Subject"] == f"Restored server 12345 (web-server-01) from backup {pre_deploy['id']} after alarm {ALARM}"
    )
    assert f"Backup: {pre_deploy['id']}, manual, created" in note["Message"]
    assert "deployment gh-8812-1" in note["Message"]
    assert f"Alarm: {ALARM} went OK -> ALARM" in note["Message"]
    assert "Server found by: metric dimension ServerId=12345" in note["Message"]
    # And prune will keep that backup for RESTORE_HOLD
    holds = state(restore_env).active_holds(datetime.now(UTC))
    assert pre_deploy["id"] in holds
    assert holds[pre_deploy["id"]].until > datetime.now(UTC) + timedelta(days=6)


def test_the_sns_path_with_the_server_from_the_alarms_tag(restore_env: AwsEnv, simulator: Simulator) -> None:
    # Given an alarm with no server dimension, tagged vps:server-id=12346, delivered through SNS
    cloudwatch = boto3.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName="vps-restore-web-02-latency",
        MetricName="Latency",
        Namespace="Shop",
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
        Tags=[{"Key": "vps:server-id", "Value": "12346"}],
    )
    arn = set_alarm_state("vps-restore-web-02-latency")
    at = alarm_time()
    good = simulator.add_backup(12346, backup_type="automatic", created_at=at - timedelta(hours=3))
    event = copy.deepcopy(load_event("alarm-sns.json"))
    message = json.loads(event["Records"][0]["Sns"]["Message"])
    message.update(AlarmName="vps-restore-web-02-latency", AlarmArn=arn, StateChangeTime=at.isoformat())
    message["Trigger"]["Dimensions"] = []
    event["Records"][0]["Sns"]["Message"] = json.dumps(message)

    # When it is delivered
    outcome = outcome_of(event)

    # Then server 12346 is restored from its newest completed backup
    assert outcome["outcome"] == "restored"
    assert simulator.servers[12346]["restored_from"] == good["id"]
    [note] = restore_env.notifications()
    assert "Server found by: alarm tag vps:server-id=12346" in note["Message"]
    assert "newest completed backup" in note["Message"]


def test_a_metric_math_alarm_finds_the_server_in_its_metrics(restore_env: AwsEnv, simulator: Simulator) -> None:
    # Given the metric-math sample, fired a minute ago, on server 12346
    at = alarm_time()
    good = simulator.add_backup(12346, backup_type="manual", created_at=at - timedelta(hours=1))
    event = load_event("alarm-eventbridge-metric-math.json")
    event["detail"]["state"]["timestamp"] = at.isoformat()
    [(name, _, metrics)] = alarm_states(event)
    set_alarm_state(name, metrics=metrics)
    # When it is delivered
    outcome = outcome_of(event)
    # Then 12346 is restored
    assert (outcome["outcome"], outcome["server_id"], outcome["backup_id"]) == ("restored", 12346, good["id"])


# -- once ----------------------------------------------------------------------------------------------


def test_a_flapping_alarm_restores_once_inside_the_cooldown(restore_env: AwsEnv, simulator: Simulator) -> None:
    # Given a usable backup
    simulator.add_backup(12345, created_at=alarm_time(120))
    first_at = alarm_time(10)

    # When the alarm goes ALARM, then OK, then ALARM again five minutes later
    first = outcome_of(eventbridge(at=first_at))
    back_to_ok = outcome_of(eventbridge(at=first_at + timedelta(minutes=2), new="OK", previous="ALARM"))
    again = outcome_of(eventbridge(at=first_at + timedelta(minutes=5)))

    # Then one restore; the OK closes its incident (recovered); the second ALARM, a new incident, is
    # skipped for the cooldown, and said so
    assert [first["outcome"], back_to_ok["outcome"], again["outcome"]] == ["restored", "recovered", "skipped"]
    assert again["cause"] == "cooldown"
    assert simulator.servers[12345]["restore_count"] == 1
    assert len(restore_posts(simulator)) == 1
    told = subjects(restore_env)
    assert len(told) == 3
    assert told[0].startswith("Restored server 12345")
    assert told[1].startswith("Recovered: server 12345")
    assert told[2] == "Restore skipped for server 12345: cooldown"


def test_a_flapping_alarm_is_told_once_per_cooldown_and_journaled_at_each_flap(
    restore_env: AwsEnv, simulator: Simulator
) -> None:
    # Given a usable backup, and the alarm restored once (its cooldown running)
    simulator.add_backup(12345, created_at=alarm_time(120))
    first_at = alarm_time(12)
    assert outcome_of(eventbridge(at=first_at))["outcome"] == "restored"
    # When it flaps back to ALARM four times inside the cooldown
    flaps = [outcome_of(eventbridge(at=first_at + timedelta(minutes=m))) for m in (1, 2, 3, 4)]
    # Then each flap is skipped for the cooldown and journaled, but people are told once
    assert [(f["outcome"], f["cause"]) for f in flaps] == [("skipped", "cooldown")] * 4
    assert [f["notified"] for f in flaps] == [True, False, False, False]
    assert subjects(restore_env)[1:] == ["Restore skipped for server 12345: cooldown"]
    refused = [e for e in Journal(state(restore_env), source="tests").for_server(12345) if e.act == "restore_refused"]
    assert [e.outcome for e in refused] == ["cooldown"] * 4
    assert simulator.servers[12345]["restore_count"] == 1

    # When the alarm is seen back in OK (the restore's incident is over: restore.recovery) and that
    # cooldown is over, a new alarm restores again (a new cooldown) and the alarm flaps again
    assert outcome_of(eventbridge(at=first_at + timedelta(minutes=5), new="OK", previous="ALARM"))["outcome"] == (
        "recovered"
    )
    assert subjects(restore_env)[0].startswith("Recovered: server 12345")
    table = restore_env.table()
    table.update_item(
        Key={"pk": "restore-lock#12345", "sk": "restore-lock"},
        UpdateExpression="SET locked_until = :past",
        ExpressionAttributeValues={":past": "2000-01-01T00:00:00.000000Z"},
    )
    again = outcome_of(eventbridge(at=first_at + timedelta(minutes=10)))
    flap = outcome_of(eventbridge(at=first_at + timedelta(minutes=11)))
    # Then the new cooldown's first refusal is told again
    assert (again["outcome"], flap["outcome"], flap["cause"], flap["notified"]) == (
        "restored",
        "skipped",
        "cooldown",
        True,
    )
    told = subjects(restore_env)
    assert len(told) == 2
    assert told[0].startswith("Restored server 12345")
    assert told[1] == "Restore skipped for server 12345: cooldown"


def test_the_same_event_redelivered_restores_once_and_tells_once(restore_env: AwsEnv, simulator: Simulator) -> None:
    # Given a usable backup, and an alarm event
    simulator.add_backup(12345, created_at=alarm_time(120))
    event = eventbridge()

    # When EventBridge delivers it twice, and once more after the idempotency record is lost
    first = outcome_of(event)
    second = outcome_of(event)
    table = restore_env.table()
    for item in table.query(
        KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": restore_on_alarm.IDEMPOTENCY_PK}
    )["Items"]:
        table.delete_item(Key={"pk": item["pk"], "sk": item["sk"]})
    third = outcome_of(event)

    # Then one restore, one notification; the repeats are duplicates (the lock remembers the alarm change)
    assert first["outcome"] == "restored"
    assert (second["outcome"], second["cause"]) == ("duplicate", "redelivery")
    assert (third["outcome"], third["cause"]) == ("duplicate", "duplicate")
    assert simulator.servers[12345]["restore_count"] == 1
    assert len(subjects(restore_env)) == 1


def test_the_same_alarm_via_eventbridge_and_sns_restores_once(restore_env: AwsEnv, simulator: Simulator) -> None:
    simulator.add_backup(12345, created_at=alarm_time(120))
    at = alarm_time()
    sns_event = copy.deepcopy(load_event("alarm-sns.json"))
    message = json.loads(sns_event["Records"][0]["Sns"]["Message"])
    message["StateChangeTime"] = at.isoformat()
    sns_event["Records"][0]["Sns"]["Message"] = json.dumps(message)

    outcomes = [outcome_of(eventbridge(at=at)), outcome_of(sns_event)]

    assert [o["outcome"] for o in outcomes] == ["restored", "duplicate"]
    assert simulator.servers[12345]["restore_count"] == 1


@pytest.mark.usefixtures("atomic_moto")
@pytest.mark.parametrize("same_event", [True, False], ids=["one-event-x10", "ten-alarms-one-server"])
def test_ten_concurrent_invocations_restore_once(restore_env: AwsEnv, simulator: Simulator, same_event: bool) -> None:
    # Given a usable backup, and 10 deliveries racing: one event ten times, or ten alarms on one server
    simulator.add_backup(12345, created_at=alarm_time(120))
    at = alarm_time()
    events = [
        eventbridge(at=at) if same_event else eventbridge(alarm=f"vps-restore-web-01-{i}", at=at) for i in range(10)
    ]
    outcomes: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(10)

    def deliver(event: dict[str, Any]) -> None:
        barrier.wait()
        try:
            outcomes.extend(invoke(event))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then the server is restored once, with one POST
    assert errors == []
    assert simulator.servers[12345]["restore_count"] == 1
    assert len(restore_posts(simulator)) == 1
    assert [o["outcome"] for o in outcomes].count("restored") == 1
    others = {o["outcome"] for o in outcomes if o["outcome"] != "restored"}
    assert others <= ({"duplicate"} if same_event else {"skipped"})


def test_five_servers_alarming_with_a_limit_of_three_restore_three_and_tell_about_two(
    restore_env: AwsEnv, simulator: Simulator
) -> None:
    # Given 5 servers, each with a usable backup, and MAX_RESTORES_PER_HOUR=3
    servers = [12345, 12346, 12347, 12348, 12349]
    for server in servers:
        simulator.add_server(server, f"web-{server}")
        simulator.add_backup(server, created_at=alarm_time(120))

    # When all five alarm
    outcomes = [outcome_of(eventbridge(alarm=f"vps-restore-{s}", server=s)) for s in servers]

    # Then three are restored, two skipped for the fleet limit, and people are told of each
    assert [o["outcome"] for o in outcomes] == ["restored"] * 3 + ["skipped"] * 2
    assert sum(simulator.servers[s]["restore_count"] for s in servers) == 3
    told = subjects(restore_env)
    assert sum(s.startswith("Restored server") for s in told) == 3
    skips = [s for s in told if s.startswith("Restore skipped")]
    assert skips == [
        "Restore skipped for server 12348: fleet restore limit reached",
        "Restore skipped for server 12349: fleet restore limit reached",
    ]


# -- nothing to do, or only a plan ----------------------------------------------------------------


def test_no_usable_backup_means_no_restore_and_a_notification(restore_env: AwsEnv, simulator: Simulator) -> None:
    # Given only an 8-day-old backup, one in progress, and a failed one
    simulator.add_backup(12345, created_at=alarm_time(8 * 24 * 60))
    simulator.add_backup(12345, status="in_progress", created_at=alarm_time(30))
    simulator.add_backup(12345, status="failed", created_at=alarm_time(60))
    # When the alarm fires
    outcome = outcome_of(eventbridge())
    # Then nothing is restored, and people are told why
    assert (outcome["outcome"], outcome["cause"]) == ("skipped", "no_backup")
    assert restore_posts(simulator) == []
    [note] = restore_env.notifications()
    assert note["Subject"] == "Restore skipped for server 12345: no usable backup"
    assert "older than 7 days" in note["Message"]


def test_an_alarm_that_names_no_server_is_not_acted_on_but_reported(restore_env: AwsEnv, simulator: Simulator) -> None:
    outcome = outcome_of(eventbridge(alarm="vps-restore-mystery", server=None))
    assert (outcome["outcome"], outcome["cause"]) == ("skipped", "server_unresolved")
    assert simulator.requests == []
    [note] = restore_env.notifications()
    assert note["Subject"] == "Restore skipped: alarm vps-restore-mystery names no server"
    assert "vps:server-id" in note["Message"]


def test_insufficient_data_is_ignored_without_calling_anything(restore_env: AwsEnv, simulator: Simulator) -> None:
    outcome = outcome_of(load_event("alarm-eventbridge-insufficient-data.json"))
    assert outcome["outcome"] == "ignored"
    assert "INSUFFICIENT_DATA" in outcome["reason"]
    assert simulator.requests == []
    assert restore_env.notifications() == []


def test_notify_mode_publishes_the_plan_and_consumes_no_guard(
    restore_env: AwsEnv, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given RESTORE_MODE=notify and a usable backup
    monkeypatch.setenv("RESTORE_MODE", "notify")
    good = simulator.add_backup(12345, created_at=alarm_time(120))
    # When the alarm fires
    outcome = outcome_of(eventbridge())
    # Then no restore is requested; the plan is published; no lock or slot is taken; the backup is held
    assert outcome["outcome"] == "planned"
    assert restore_posts(simulator) == []
    [note] = restore_env.notifications()
    assert note["Subject"] == f"Restore plan for server 12345: backup {good['id']} (notify mode, nothing done)"
    assert "the guardrails would allow it now" in note["Message"]
    guard = RestoreGuard(state(restore_env), cooldown=timedelta(hours=6), max_per_hour=3)
    assert guard.lock_holder(12345) is None
    assert guard.slot_times() == {}
    assert good["id"] in state(restore_env).active_holds(datetime.now(UTC))


# -- the API says no -----------------------------------------------------------------------------------


def test_a_restore_the_api_refuses_409_is_reported_and_never_retried(restore_env: AwsEnv, simulator: Simulator) -> None:
    # Given a usable backup, but a backup is running on the server (the API answers 409)
    good = simulator.add_backup(12345, created_at=alarm_time(120))
    simulator.add_backup(12345, status="in_progress", created_at=alarm_time(5))
    event = eventbridge()

    # When the alarm fires, and its event is redelivered
    first = outcome_of(event)
    again = outcome_of(event)

    # Then one POST, a failure notification that quotes the API, and no second attempt
    assert (first["outcome"], first["cause"]) == ("failed", "api_409")
    assert len(restore_posts(simulator)) == 1
    assert simulator.servers[12345]["restore_count"] == 0
    [note] = restore_env.notifications()
    assert (
        note["Subject"] == "Restore FAILED for server 12345: HTTP 409: A backup is already in progress for this server."
    )
    assert "The restore did not start" in note["Message"]
    assert f"Backup: {good['id']}" in note["Message"]
    assert again["outcome"] == "duplicate"
    # And the claim was released: the fleet budget is not used by a restore that did not happen
    guard = RestoreGuard(state(restore_env), cooldown=timedelta(hours=6), max_per_hour=3)
    assert guard.slot_times() == {}
    holder = guard.lock_holder(12345)
    assert holder is not None
    assert holder.state == "released"


def test_503_until_the_deadline_fails_clearly_without_a_retry_loop(restore_env: AwsEnv, simulator: Simulator) -> None:
    # Given a usable backup, an API answering 503 to every restore, and a few seconds left before
    # the function's safety margin (enough for the first POST even on a busy machine)
    simulator.add_backup(12345, created_at=alarm_time(120))
    simulator.inject(Fault(kind="status", method="POST", path_prefix="/servers/", status=503, times=None))
    deadline_s = 4.0
    context = FakeLambdaContext(remaining_ms=int((runtime.DEFAULT_SAFETY_MARGIN_S + deadline_s) * 1000))
    event = eventbridge()

    # When the alarm fires (and is then redelivered)
    started = datetime.now(UTC)
    outcome = outcome_of(event, context)
    elapsed = (datetime.now(UTC) - started).total_seconds()
    posts_after_first = len(restore_posts(simulator))
    again = outcome_of(event, context)

    # Then the client retried the 503 (not applied) only until the deadline, and gave up
    assert 1 <= posts_after_first < FAST.max_attempts
    # (the attempts bound above is what proves the deadline stopped it: FAST allows 1000 attempts of
    # at most 50 ms, so a client ignoring the deadline would post 1000 times and take ~50 s)
    assert elapsed < deadline_s + 20
    assert (outcome["outcome"], outcome["cause"]) == ("failed", "api_503")
    [note] = restore_env.notifications()
    assert note["Subject"].startswith("Restore FAILED for server 12345: HTTP 503")
    # And no second attempt: the redelivery posts nothing more
    assert again["outcome"] == "duplicate"
    assert len(restore_posts(simulator)) == posts_after_first


def test_a_restore_whose_answer_is_lost_is_not_resent_and_keeps_the_server_locked(
    restore_env: AwsEnv, simulator: Simulator
) -> None:
    # Given the API applies the restore but the connection drops before the answer
    simulator.add_backup(12345, created_at=alarm_time(120))
    simulator.inject(Fault(kind="drop_after", method="POST", path_prefix="/servers/", times=1))
    first_at = alarm_time(10)

    # When the alarm fires, and then a new alarm change comes for the same server
    first = outcome_of(eventbridge(at=first_at))
    later = outcome_of(eventbridge(at=first_at + timedelta(minutes=5)))

    # Then one POST only; people are told it may have started; the next alarm is held by the cooldown
    assert (first["outcome"], first["cause"]) == ("failed", "outcome_unknown")
    assert len(restore_posts(simulator)) == 1
    assert simulator.servers[12345]["restore_count"] == 1  # it did happen
    assert (later["outcome"], later["cause"]) == ("skipped", "cooldown")
    notes = restore_env.notifications()
    assert "MAY have started" in notes[0]["Message"]
    assert notes[1]["Subject"] == "Restore skipped for server 12345: cooldown"


def test_a_backup_deleted_between_choice_and_restore_is_not_restored(
    restore_env: AwsEnv, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the chosen backup disappears right after the first listing
    good = simulator.add_backup(12345, created_at=alarm_time(120))
    claim = RestoreGuard.claim

    def claim_then_delete(self: RestoreGuard, **kwargs: Any) -> Any:
        result = claim(self, **kwargs)
        simulator.remove_backup(good["id"])
        return result

    monkeypatch.setattr(RestoreGuard, "claim", claim_then_delete)
    # When the alarm fires
    outcome = outcome_of(eventbridge())
    # Then the re-read catches it: no POST, people told, claim released
    assert (outcome["outcome"], outcome["cause"]) == ("skipped", "backup_changed")
    assert restore_posts(simulator) == []
    assert "no longer usable" in subjects(restore_env)[0]


def test_an_alarm_event_redriven_days_later_does_not_restore(restore_env: AwsEnv, simulator: Simulator) -> None:
    # Given an alarm that fired two days ago, whose event sat in the failed-invocations queue (its
    # idempotency record and restore lock long expired), and a backup made before it
    at = alarm_time(2 * 24 * 60)
    simulator.add_backup(12345, created_at=at - timedelta(hours=3))
    # When the queue is redriven
    outcome = outcome_of(eventbridge(at=at))
    # Then the server is not restored over two days of data, and people are told why
    assert (outcome["outcome"], outcome["cause"]) == ("skipped", "stale_alarm")
    assert restore_posts(simulator) == []
    [note] = restore_env.notifications()
    assert note["Subject"] == f"Restore skipped for server 12345: alarm {ALARM} is not current"
    assert "too old for an automatic restore" in note["Message"]
