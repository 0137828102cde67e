"""Did the restore work? restore.recovery's decisions: the alarm back to OK, the scheduled check, the
check's event and its schedule's name and time. Pure: exhaustive over the incident's states, and
hypothesis for the invariants."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpsbackup.restore.alarm import CurrentAlarm
from vpsbackup.restore.recovery import (
    INCIDENT_STATES,
    Incident,
    VerifyCheck,
    VerifyEventError,
    at_expression,
    ok_not_confirmed,
    on_check,
    on_ok,
    parse_verify_event,
    schedule_name,
)

T0 = datetime(2025, 1, 16, 16, 5, 4, tzinfo=UTC)
ALARM = "vps-restore-web-01-5xx"
ARN = f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{ALARM}"
KEY = f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{ALARM}|ALARM|2025-01-16T16:05:00.000000Z"
CHECK = VerifyCheck(server_id=12345, alarm_name=ALARM, transition=KEY, restored_at=T0, backup_id=501)


def incident(state: str | None = "open", *, alarm: str = ALARM, transition: str = KEY) -> Incident:
    return Incident(
        server_id=12345, alarm_name=alarm, transition=transition, backup_id=501, restored_at=T0, state=state
    )


# -- the alarm back to OK ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("found", "kind", "cause"),
    [
        (None, "nothing", "no_incident"),
        (incident(None), "nothing", "no_incident"),  # a person's restore, or one without follow-ups
        (incident("open"), "recovered", None),
        (incident("not_cleared"), "recovered", None),  # seen in OK at last: recorded late
        (incident("recovered"), "nothing", "recovered"),
        (incident("open", alarm="vps-restore-other"), "nothing", "other_alarm"),
    ],
)
def test_ok_records_a_recovery_of_an_open_incident_of_that_alarm_only(
    found: Incident | None, kind: str, cause: str | None
) -> None:
    verdict = on_ok(found, server_id=12345, alarm_name=ALARM, ok_at=T0 + timedelta(minutes=7))
    assert (verdict.kind, verdict.cause) == (kind, cause)
    if kind == "recovered":
        assert verdict.time_to_recover == timedelta(minutes=7)
        assert verdict.reason == "the alarm returned to OK 7 minutes after the restore"
        assert verdict.incident_state == "recovered"


def test_an_ok_dated_before_the_restore_recovers_in_no_time_and_says_so() -> None:
    verdict = on_ok(incident(), server_id=12345, alarm_name=ALARM, ok_at=T0 - timedelta(seconds=30))
    assert (verdict.kind, verdict.time_to_recover) == ("recovered", timedelta(0))
    assert "before the restore was accepted" in verdict.reason


# -- the check -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "kind", "says"),
    [
        ("OK", "recovered", "returned to OK 20 minutes after the restore"),
        ("ALARM", "not_recovered", "is still in ALARM 30 minutes after the restore: the restore did not clear"),
        ("INSUFFICIENT_DATA", "not_recovered", "is still in INSUFFICIENT_DATA 30 minutes after"),
        (None, "not_recovered", "no longer exists, so it was never seen in OK"),
    ],
)
def test_the_check_reads_the_alarm(state: str | None, kind: str, says: str) -> None:
    verdict = on_check(
        incident(), CHECK, alarm_state=state, state_since=T0 + timedelta(minutes=20), now=T0 + timedelta(minutes=30)
    )
    assert verdict.kind == kind
    assert says in verdict.reason
    assert verdict.incident_state == ("recovered" if kind == "recovered" else "not_cleared")


@pytest.mark.parametrize(
    ("found", "cause"),
    [
        (None, "no_incident"),
        (incident(None), "no_incident"),
        (incident("recovered"), "recovered"),
        (incident("not_cleared"), "already_checked"),
        (incident("open", transition="another change"), "superseded"),
        (incident("open", alarm="vps-restore-other"), "other_alarm"),
    ],
)
def test_the_check_records_nothing_unless_its_own_incident_is_still_open(found: Incident | None, cause: str) -> None:
    verdict = on_check(found, CHECK, alarm_state="ALARM", state_since=T0, now=T0 + timedelta(minutes=30))
    assert (verdict.kind, verdict.cause, verdict.incident_state) == ("nothing", cause, None)


@given(
    state=st.sampled_from([*INCIDENT_STATES, None]),
    alarm_state=st.sampled_from(["OK", "ALARM", "INSUFFICIENT_DATA", None]),
    since=st.timedeltas(min_value=timedelta(hours=-2), max_value=timedelta(hours=2)),
    same_alarm=st.booleans(),
)
def test_follow_up_invariants(state: str | None, alarm_state: str | None, since: timedelta, same_alarm: bool) -> None:
    found = incident(state, alarm=ALARM if same_alarm else "vps-restore-other")
    now = T0 + timedelta(minutes=30)
    for verdict in (
        on_check(found, CHECK, alarm_state=alarm_state, state_since=T0 + since, now=now),
        on_ok(found, server_id=12345, alarm_name=ALARM, ok_at=T0 + since),
    ):
        # Only an open incident of this alarm is settled; a recovery needs OK; time to recover is never negative
        if verdict.kind != "nothing":
            assert same_alarm and state in ("open", "not_cleared")
        if verdict.kind == "recovered":
            assert verdict.time_to_recover is not None and verdict.time_to_recover >= timedelta(0)
    checked = on_check(found, CHECK, alarm_state=alarm_state, state_since=T0 + since, now=now)
    assert (checked.kind == "recovered") == (same_alarm and state == "open" and alarm_state == "OK")


# -- the event, the schedule ---------------------------------------------------------------------


def test_the_check_event_round_trips_and_other_events_are_not_checks() -> None:
    assert parse_verify_event(CHECK.as_event()) == CHECK
    assert parse_verify_event({"detail-type": "CloudWatch Alarm State Change"}) is None
    assert parse_verify_event(["not", "a", "mapping"]) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"alarm_name": ALARM, "transition": KEY, "restored_at": "2025-01-16T16:05:04Z"}, "restore_verify.server_id"),
        ({"server_id": 0, "alarm_name": ALARM, "transition": KEY, "restored_at": "2025-01-16T16:05:04Z"}, "server_id"),
        ({"server_id": 1, "alarm_name": "", "transition": KEY, "restored_at": "2025-01-16T16:05:04Z"}, "alarm_name"),
        ({"server_id": 1, "alarm_name": ALARM, "transition": KEY, "restored_at": "yesterday"}, "restored_at"),
        ("not an object", "restore_verify"),
    ],
)
def test_a_malformed_check_names_the_field(body: object, field: str) -> None:
    with pytest.raises(VerifyEventError, match=re.escape(field)):
        parse_verify_event({"restore_verify": body})


@given(server=st.integers(min_value=1, max_value=10**12), transition=st.text(min_size=1, max_size=300))
def test_schedule_names_are_valid_for_scheduler_and_tell_restores_apart(server: int, transition: str) -> None:
    name = schedule_name(server, transition)
    assert re.fullmatch(r"[0-9A-Za-z_.-]{1,64}", name)
    assert name.startswith(f"verify-{server}-")
    assert schedule_name(server, transition + "x") != name


def test_the_at_expression_is_utc_and_never_early() -> None:
    assert at_expression(T0 + timedelta(minutes=30)) == "at(2025-01-16T16:35:04)"
    assert at_expression(T0 + timedelta(minutes=30, microseconds=1)) == "at(2025-01-16T16:35:05)"


@pytest.mark.parametrize(
    ("current", "says"),
    [
        (CurrentAlarm(ALARM, ARN, "OK"), None),
        (None, "no metric alarm of that name exists"),
        (CurrentAlarm(ALARM, ARN, "ALARM"), "the alarm is in ALARM now, not OK"),
        (CurrentAlarm(ALARM, ARN.replace("123456789012", "210987654321"), "OK"), "but the alarm of that name here is"),
    ],
)
def test_an_ok_closes_an_incident_only_when_the_alarm_read_now_confirms_it(
    current: CurrentAlarm | None, says: str | None
) -> None:
    problem = ok_not_confirmed(ARN, current)
    assert problem is None if says is None else says in (problem or "")
