"""Restore on alarm, adversarial cases: when it must not restore, which server, and a restore whose
outcome is unknown staying locked even when the StateTable misbehaves.

``AlarmRestorer`` runs over moto (StateTable, guard) with a fake provider client and a fake clock.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import AwsEnv, confirming_alarms, load_event
from vpsbackup.aws.state import StateTable
from vpsbackup.provider.client import NO_WAIT, VpsClient
from vpsbackup.provider.errors import ApiStatusError, ConflictError, OutcomeUnknownError
from vpsbackup.provider.models import Backup, RestoreAccepted
from vpsbackup.restore.alarm import AlarmTransition, Dimension, parse_alarm_event, resolve_server
from vpsbackup.restore.guard import RestoreClaim, RestoreGuard
from vpsbackup.restore.job import AlarmRestorer
from vpsbackup.restore.settings import RestoreOnAlarmSettings

SERVER = 12345
ALARM_AT = datetime(2025, 1, 16, 16, 5, 0, 123000, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FakeClient:
    """The provider API: a fixed list of backups; restore_server answers or raises as told."""

    def __init__(self, backups: list[Backup], restore_error: Exception | None = None) -> None:
        self.backups = backups
        self.restore_error = restore_error
        self.restores: list[tuple[int, int]] = []

    def list_backups(self, *, server_id: int | None = None, backup_type: str | None = None) -> list[Backup]:
        return [b for b in self.backups if server_id is None or b.server.id == server_id]

    def iter_backups(self, *, server_id: int | None = None, backup_type: str | None = None) -> Any:
        return iter(self.list_backups(server_id=server_id))

    def restore_server(self, server_id: int, backup_id: int) -> RestoreAccepted:
        self.restores.append((server_id, backup_id))
        if self.restore_error is not None:
            raise self.restore_error
        return RestoreAccepted(server_id=server_id, backup_id=backup_id, status_code=202)


class FakeNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def publish(self, subject: str, message: str, *, routing: Any = None, attributes: Any = None) -> bool:
        self.sent.append((subject, message))
        return True


def backup(backup_id: int, created_at: datetime, server: int = SERVER) -> Backup:
    return Backup.model_validate(
        {
            "id": backup_id,
            "server": {"id": server, "name": f"web-{server}"},
            "backup_type": "automatic",
            "status": "completed",
            "created_at": created_at.isoformat(),
        }
    )


def transition(at: datetime = ALARM_AT, **update: Any) -> AlarmTransition:
    [parsed] = parse_alarm_event(load_event("alarm-eventbridge-alarm.json"))
    return parsed.model_copy(update={"state_changed_at": at, **update})


def restorer(
    aws: AwsEnv, clock: Clock, client: FakeClient, notifier: FakeNotifier, guard: RestoreGuard | None = None
) -> AlarmRestorer:
    settings = RestoreOnAlarmSettings(vps_api_token_secret="secret", state_table_name=aws.table_name)
    state = StateTable.from_name(aws.table_name)
    return AlarmRestorer(
        settings,
        client=client,  # type: ignore[arg-type]
        state=state,
        guard=guard or RestoreGuard(state, cooldown=timedelta(hours=6), max_per_hour=3, clock=clock),
        notifier=notifier,  # type: ignore[arg-type]
        alarm_tags=lambda _arn: {},
        clock=clock,
        **confirming_alarms(),
    )


# -- a stale or future alarm ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "cause"),
    [
        (ALARM_AT + timedelta(days=2), "stale_alarm"),  # a redelivery / DLQ redrive / replay days later
        (ALARM_AT + timedelta(hours=1), "stale_alarm"),
        (ALARM_AT - timedelta(hours=2), "alarm_in_future"),  # a forged or badly skewed timestamp
    ],
)
def test_an_alarm_far_from_now_is_not_acted_on_but_reported(aws: AwsEnv, now: datetime, cause: str) -> None:
    # Given a usable backup made before the alarm, and the alarm handled long after (or before) it fired
    client = FakeClient([backup(501, ALARM_AT - timedelta(hours=3))])
    notifier = FakeNotifier()
    outcome = restorer(aws, Clock(now), client, notifier).handle(transition())
    # Then nothing is restored, and people are told why
    assert (outcome.outcome, outcome.cause) == ("skipped", cause)
    assert client.restores == []
    [(subject, _body)] = notifier.sent
    assert subject.startswith(f"Restore skipped for server {SERVER}")


def test_a_recent_alarm_still_restores(aws: AwsEnv) -> None:
    client = FakeClient([backup(501, ALARM_AT - timedelta(hours=3))])
    outcome = restorer(aws, Clock(ALARM_AT + timedelta(minutes=3)), client, FakeNotifier()).handle(transition())
    assert outcome.outcome == "restored"
    assert client.restores == [(SERVER, 501)]


def test_a_small_clock_skew_into_the_future_is_tolerated(aws: AwsEnv) -> None:
    client = FakeClient([backup(501, ALARM_AT - timedelta(hours=3))])
    outcome = restorer(aws, Clock(ALARM_AT - timedelta(seconds=30)), client, FakeNotifier()).handle(transition())
    assert outcome.outcome == "restored"


# -- an unknown outcome stays locked, whatever the StateTable does -----------------------------------


class FlakyGuard(RestoreGuard):
    """A guard whose lock-state updates fail (DynamoDB throttling, a network error...)."""

    def mark_outcome_unknown(self, claim: RestoreClaim, why: str) -> None:
        raise RuntimeError("ProvisionedThroughputExceededException")

    def mark_restored(self, claim: RestoreClaim, *, incident: bool = False) -> None:
        raise RuntimeError("ProvisionedThroughputExceededException")


def test_a_restore_that_may_have_started_is_never_released_even_if_the_lock_update_fails(aws: AwsEnv) -> None:
    # Given a restore whose answer is lost, and a StateTable that fails to record "outcome unknown"
    clock = Clock(ALARM_AT + timedelta(minutes=1))
    state = StateTable.from_name(aws.table_name)
    guard = FlakyGuard(state, cooldown=timedelta(hours=6), max_per_hour=3, clock=clock)
    client = FakeClient(
        [backup(501, ALARM_AT - timedelta(hours=3))], restore_error=OutcomeUnknownError("POST: no answer")
    )
    notifier = FakeNotifier()
    first = restorer(aws, clock, client, notifier, guard).handle(transition())

    # Then people are told it MAY have started, and the claim is kept (not released)
    assert (first.outcome, first.cause) == ("failed", "outcome_unknown")
    assert "MAY have started" in notifier.sent[0][1]
    holder = guard.lock_holder(SERVER)
    assert holder is not None
    assert holder.state != "released"
    assert guard.slot_times() != {}

    # And when the alarm flaps five minutes later, the server is not restored a second time
    clock.now += timedelta(minutes=5)
    client.restore_error = None
    again = restorer(aws, clock, client, notifier, guard).handle(transition(ALARM_AT + timedelta(minutes=5)))
    assert (again.outcome, again.cause) == ("skipped", "cooldown")
    assert len(client.restores) == 1


def test_a_refused_restore_is_still_reported_when_releasing_the_claim_fails(aws: AwsEnv) -> None:
    class NoRelease(RestoreGuard):
        def release(self, claim: RestoreClaim, why: str) -> None:
            raise RuntimeError("DynamoDB unavailable")

    clock = Clock(ALARM_AT + timedelta(minutes=1))
    guard = NoRelease(StateTable.from_name(aws.table_name), cooldown=timedelta(hours=6), max_per_hour=3, clock=clock)
    client = FakeClient(
        [backup(501, ALARM_AT - timedelta(hours=3))],
        restore_error=ConflictError("HTTP 409", status_code=409, api_message="A backup is in progress."),
    )
    notifier = FakeNotifier()
    outcome = restorer(aws, clock, client, notifier, guard).handle(transition())
    assert (outcome.outcome, outcome.cause) == ("failed", "api_409")
    assert len(notifier.sent) == 1
    assert "NOT restored" in notifier.sent[0][1]


# -- which server ----------------------------------------------------------------------------------


def resolve(t: AlarmTransition, mapping: dict[str, int] | None = None, tags: dict[str, str] | None = None) -> Any:
    return resolve_server(t, dimension="ServerId", alarm_server_map=mapping or {}, tags=lambda: tags)


def test_a_dimension_and_a_propagated_tag_that_disagree_restore_nothing() -> None:
    t = transition(tags={"vps:server-id": "67890"})
    resolution = resolve(t)
    assert resolution.server_id is None
    assert "67890" in resolution.explanation
    assert "12345" in resolution.explanation


def test_the_map_stays_the_last_resort_below_the_dimension() -> None:
    # ALARM_SERVER_MAP is the operator's fallback (docs/restore-on-alarm.md, and test_alarms pins tag > map)
    assert resolve(transition(), mapping={"vps-restore-web-01-5xx": 67890}).server_id == SERVER


def test_sources_that_agree_still_resolve() -> None:
    t = transition(tags={"vps:server-id": "12345"})
    assert resolve(t, mapping={"vps-restore-web-01-5xx": 12345}).server_id == SERVER


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12345", 12345),
        (" 12345 ", 12345),
        ("012345", 12345),
        ("12345.0", None),
        ("+12345", None),
        ("-12345", None),
        ("0", None),
        ("١٢٣٤٥", None),  # Arabic-Indic digits: int() reads them as 12345
        ("²", None),  # isdigit() but int() raises
        ("9" * 5000, None),  # int() raises past 4300 digits
    ],
)
def test_only_a_plain_decimal_dimension_names_a_server(value: str, expected: int | None) -> None:
    t = transition(dimensions=(Dimension(name="ServerId", value=value),))
    assert resolve(t).server_id == expected


# -- the API's answer to a restore -------------------------------------------------------------------


class Tokens:
    def get_token(self, *, force_refresh: bool = False) -> str:
        return "t"


@pytest.mark.parametrize("status", [301, 302, 303, 304, 307])
def test_a_redirect_is_not_an_accepted_restore(status: int) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"Location": "https://elsewhere.example/"}, content=b"")

    transport = httpx.MockTransport(answer)
    with (
        VpsClient("https://api.example/api/v1", Tokens(), retry=NO_WAIT, transport=transport) as client,
        pytest.raises(ApiStatusError) as raised,
    ):
        client.restore_server(SERVER, 501)
    assert raised.value.status_code == status


def test_the_sns_state_change_time_format_is_read_as_utc() -> None:
    event = load_event("alarm-sns.json")
    message = json.loads(event["Records"][0]["Sns"]["Message"])
    message["StateChangeTime"] = "2025-01-16T17:05:00.123+0100"
    event["Records"][0]["Sns"]["Message"] = json.dumps(message)
    [t] = parse_alarm_event(event)
    assert t.state_changed_at == ALARM_AT
    assert t.key == transition().key


def test_an_unexpected_error_from_the_restore_call_itself_keeps_the_claim(aws: AwsEnv) -> None:
    # Given the API applied the restore but its answer cannot be decoded (httpx.DecodingError is not a
    # TransportError, so the client lets it through as it is)
    clock = Clock(ALARM_AT + timedelta(minutes=1))
    state = StateTable.from_name(aws.table_name)
    guard = RestoreGuard(state, cooldown=timedelta(hours=6), max_per_hour=3, clock=clock)
    client = FakeClient([backup(501, ALARM_AT - timedelta(hours=3))], restore_error=httpx.DecodingError("bad gzip"))
    notifier = FakeNotifier()
    first = restorer(aws, clock, client, notifier, guard).handle(transition())
    # Then the restore counts as possibly started: the claim is kept, and a flap does not restore again
    assert (first.outcome, first.cause) == ("failed", "outcome_unknown")
    assert "MAY have started" in notifier.sent[0][1]
    holder = guard.lock_holder(SERVER)
    assert holder is not None
    assert holder.state == "outcome_unknown"
    clock.now += timedelta(minutes=5)
    client.restore_error = None
    again = restorer(aws, clock, client, notifier, guard).handle(transition(ALARM_AT + timedelta(minutes=5)))
    assert (again.outcome, again.cause) == ("skipped", "cooldown")
    assert len(client.restores) == 1
