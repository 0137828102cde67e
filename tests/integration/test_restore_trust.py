"""Only a real alarm restores (docs/restore-on-alarm.md#only-a-real-alarm), over the simulator and moto.

An alarm event is a claim anyone allowed to invoke the function, publish to its topic or put an
event can make. Before anything else the function confirms it: this account and region, and the
alarm itself, read by name with ``DescribeAlarms``, in ``ALARM`` now. Each test reads Given / When /
Then; the server has a usable backup throughout, so anything but ``alarm_not_confirmed`` would restore.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import restore_on_alarm
from devtools.simulator import Simulator
from tests.conftest import AwsEnv, FakeLambdaContext, load_event, set_alarm_state
from vpsbackup.aws.journal import Journal
from vpsbackup.aws.state import StateTable

pytestmark = pytest.mark.integration

ALARM = "vps-restore-web-01-5xx"
SERVER = 12345
FOREIGN = "999999999999"


def recently() -> datetime:
    return datetime.now(UTC) - timedelta(minutes=1)


def eventbridge(
    *, account: str = "123456789012", region: str = "eu-west-1", at: datetime | None = None
) -> dict[str, Any]:
    """The EventBridge sample, a minute ago (or ``at``), as if from ``account`` and ``region``."""
    event = copy.deepcopy(load_event("alarm-eventbridge-alarm.json"))
    at = at or recently()
    event.update(account=account, region=region, time=at.isoformat())
    event["resources"] = [f"arn:aws:cloudwatch:{region}:{account}:alarm:{ALARM}"]
    event["detail"]["state"]["timestamp"] = at.isoformat()
    return event


def classic_message(**changes: Any) -> dict[str, Any]:
    """The alarm JSON of the SNS sample, a minute ago, with ``changes``."""
    message = json.loads(load_event("alarm-sns.json")["Records"][0]["Sns"]["Message"])
    message.update(StateChangeTime=recently().isoformat(), **changes)
    return dict(message)


def forged_sns() -> dict[str, Any]:
    """An SNS event, as a direct invoke would hand it over, from another account's topic and alarm."""
    event = copy.deepcopy(load_event("alarm-sns.json"))
    record = event["Records"][0]["Sns"]
    record["TopicArn"] = f"arn:aws:sns:eu-west-1:{FOREIGN}:alarms"
    record["Message"] = json.dumps(
        classic_message(AWSAccountId=FOREIGN, AlarmArn=f"arn:aws:cloudwatch:eu-west-1:{FOREIGN}:alarm:{ALARM}")
    )
    return event


def outcome_of(event: dict[str, Any]) -> dict[str, Any]:
    [outcome] = restore_on_alarm.handler(event, FakeLambdaContext())["outcomes"]
    return dict(outcome)


def restores(simulator: Simulator) -> list[Any]:
    return [r for r in simulator.requests if r.method == "POST" and r.path.endswith("/restore/")]


@pytest.mark.parametrize(
    ("make_event", "alarm_state", "why"),
    [
        pytest.param(
            lambda: eventbridge(account=FOREIGN),
            "ALARM",
            f"the event is from account {FOREIGN}, not this function's account 123456789012",
            id="foreign-account-eventbridge",
        ),
        pytest.param(
            lambda: eventbridge(region="us-east-1"),
            "ALARM",
            "the event is from region us-east-1, not this function's region eu-west-1",
            id="another-region-eventbridge",
        ),
        pytest.param(
            forged_sns, "ALARM", f"the event is from account {FOREIGN}, not this function's", id="forged-sns-alarm"
        ),
        pytest.param(
            lambda: classic_message(AlarmName="vps-restore-nobody-made-this", AlarmArn=None, AWSAccountId=None),
            None,
            "no metric alarm named 'vps-restore-nobody-made-this' exists in account 123456789012, region eu-west-1",
            id="direct-invoke-of-an-alarm-that-does-not-exist",
        ),
        pytest.param(
            lambda: eventbridge(at=datetime.now(UTC) + timedelta(minutes=3)),
            "ALARM",
            "after the alarm's own last change",
            id="a-state-change-later-than-the-alarms-own",
        ),
        pytest.param(
            eventbridge,
            "OK",
            "the alarm is in OK now, not ALARM (it has recovered, or the event was not real)",
            id="alarm-back-in-ok",
        ),
    ],
)
def test_an_alarm_that_is_not_confirmed_restores_nothing_and_is_journaled_and_notified(
    restore_env: AwsEnv, simulator: Simulator, make_event: Any, alarm_state: str | None, why: str
) -> None:
    # Given a usable backup of the server, and this account's alarm of that name in alarm_state
    simulator.add_backup(SERVER, created_at=datetime.now(UTC) - timedelta(hours=2))
    if alarm_state is not None:
        set_alarm_state(ALARM, alarm_state, metrics=[{"ServerId": str(SERVER)}])

    # When the event arrives
    outcome = outcome_of(make_event())

    # Then nothing is restored, not even looked at: the provider is never called
    assert (outcome["outcome"], outcome["cause"]) == ("skipped", "alarm_not_confirmed")
    assert why in outcome["reason"]
    assert simulator.requests == []
    assert restores(simulator) == []

    # And people are told
    [note] = restore_env.notifications()
    assert note["Subject"].startswith("Restore skipped: alarm ")
    assert note["Subject"].endswith(" not confirmed")
    assert why in note["Message"]

    # And the refusal is in the journal
    journal = Journal(StateTable.from_name(restore_env.table_name), source="tests")
    [entry] = [e for e in journal.recent(datetime.now(UTC) - timedelta(hours=1)) if e.act == "restore_refused"]
    assert (entry.outcome, entry.source, entry.server_id) == ("alarm_not_confirmed", "restore-on-alarm", None)
    assert why in entry.reasons[0]


def genuine_sns() -> dict[str, Any]:
    event = copy.deepcopy(load_event("alarm-sns.json"))
    event["Records"][0]["Sns"]["Message"] = json.dumps(classic_message())
    return event


@pytest.mark.parametrize("make_event", [eventbridge, genuine_sns], ids=["eventbridge", "sns"])
def test_an_alarm_that_exists_here_in_alarm_restores(
    restore_env: AwsEnv, simulator: Simulator, make_event: Any
) -> None:
    # Given a usable backup, and this account's alarm in ALARM
    good = simulator.add_backup(SERVER, created_at=datetime.now(UTC) - timedelta(hours=2))
    set_alarm_state(ALARM, "ALARM", metrics=[{"ServerId": str(SERVER)}])

    # When its event arrives
    outcome = outcome_of(make_event())

    # Then the server is restored
    assert (outcome["outcome"], outcome["backup_id"]) == ("restored", good["id"])
    assert simulator.servers[SERVER]["restore_count"] == 1


def test_an_alarm_that_cannot_be_read_restores_nothing(
    restore_env: AwsEnv, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an alarm in ALARM, but DescribeAlarms refused (AccessDenied: outside the prefix's grant)
    from botocore.exceptions import ClientError

    from vpsbackup.restore import wiring

    simulator.add_backup(SERVER, created_at=datetime.now(UTC) - timedelta(hours=2))
    set_alarm_state(ALARM, "ALARM", metrics=[{"ServerId": str(SERVER)}])

    def denied(_cloudwatch: Any) -> Any:
        def read(_name: str) -> Any:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DescribeAlarms")

        return read

    monkeypatch.setattr(wiring, "alarm_state_reader", denied)
    restore_on_alarm.reset()

    # When the event arrives
    outcome = outcome_of(eventbridge())

    # Then nothing is restored, and the reason names the call and the error
    assert (outcome["outcome"], outcome["cause"]) == ("skipped", "alarm_not_confirmed")
    assert "cloudwatch:DescribeAlarms: AccessDenied" in outcome["reason"]
    assert simulator.requests == []


def test_an_event_naming_a_real_alarm_cannot_choose_another_server(restore_env: AwsEnv, simulator: Simulator) -> None:
    # Given this account's alarm on server 12345, in ALARM, and usable backups of 12345 and 12346
    good = simulator.add_backup(SERVER, created_at=datetime.now(UTC) - timedelta(hours=2))
    simulator.add_backup(12346, created_at=datetime.now(UTC) - timedelta(hours=2))
    set_alarm_state(ALARM, "ALARM", metrics=[{"ServerId": str(SERVER)}])

    # When an event names that alarm but claims the metric of server 12346, and tags naming it too
    event = eventbridge()
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = {"ServerId": "12346"}
    outcome = outcome_of(event)

    # Then the server is the alarm's own, as CloudWatch describes it: 12346 is never restored
    assert (outcome["outcome"], outcome["server_id"], outcome["backup_id"]) == ("restored", SERVER, good["id"])
    assert simulator.servers[12346].get("restore_count", 0) == 0


def test_tags_an_event_carries_do_not_choose_the_server(restore_env: AwsEnv, simulator: Simulator) -> None:
    # Given this account's alarm with no server dimension, tagged vps:server-id=12345, in ALARM
    import boto3

    good = simulator.add_backup(SERVER, created_at=datetime.now(UTC) - timedelta(hours=2))
    simulator.add_backup(12346, created_at=datetime.now(UTC) - timedelta(hours=2))
    arn = set_alarm_state(ALARM, "ALARM", metrics=[{}])
    boto3.client("cloudwatch").tag_resource(ResourceARN=arn, Tags=[{"Key": "vps:server-id", "Value": str(SERVER)}])

    # When an event names it, carrying a tag vps:server-id=12346 and no dimension
    event = eventbridge()
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = {}
    event["detail"]["alarmTags"] = {"vps:server-id": "12346"}
    outcome = outcome_of(event)

    # Then the alarm's real tag decides
    assert (outcome["outcome"], outcome["server_id"], outcome["backup_id"]) == ("restored", SERVER, good["id"])
