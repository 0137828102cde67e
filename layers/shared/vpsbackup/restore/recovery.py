"""Did the restore work? The follow-ups of an automatic restore, decided (docs/restore-on-alarm.md#did-it-work).

Pure: what an alarm's return to ``OK``, or the check ``RESTORE_VERIFY_AFTER`` after the restore,
means for the restore's **incident**, from plain data (the server's restore lock as
:class:`Incident`, the alarm's state and when it was entered, the time). The effects are
:mod:`vpsbackup.restore.followup`'s.

**The incident.** An automatic restore opens an incident on its server: from the restore (the API
accepted it) until the alarm that caused it is next seen in ``OK`` (its ``OK`` state change, or the
check reading ``OK``). The incident is kept on the server's restore lock (``incident``):

- ``open`` — restored, the alarm not yet seen in ``OK``;
- ``not_cleared`` — the check found the alarm still not ``OK`` (``ALARM``, or ``INSUFFICIENT_DATA``:
  not seen in ``OK`` either) ``RESTORE_VERIFY_AFTER`` after the restore;
- ``recovered`` — the alarm was seen in ``OK``: the incident is over.

While an incident is ``open`` or ``not_cleared``, no automatic restore of the server happens
(:mod:`vpsbackup.restore.guard` refuses it, cause ``incident_open``), whichever of its alarms fires
again; a person still can, with ``vpsbackup restore``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from vpsbackup.durations import describe_duration
from vpsbackup.provider.models import AwareDatetime
from vpsbackup.restore.alarm import CurrentAlarm

IncidentState = Literal["open", "not_cleared", "recovered"]
INCIDENT_STATES: tuple[IncidentState, ...] = ("open", "not_cleared", "recovered")
OPEN_STATES: frozenset[str] = frozenset({"open", "not_cleared"})
OK = "OK"
# The key of the event the scheduled check sends to the function (events/restore-verify-scheduled.json).
VERIFY_EVENT_KEY = "restore_verify"
SCHEDULE_NAME_PREFIX = "verify-"

FollowUpKind = Literal["recovered", "not_recovered", "nothing"]


class VerifyEventError(ValueError):
    """A ``restore_verify`` event that is not well formed (the message names the field)."""


class VerifyCheck(BaseModel):
    """What the scheduled check carries: which restore to verify."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    server_id: PositiveInt
    alarm_name: str = Field(min_length=1)
    transition: str = Field(min_length=1)  # the alarm state change that restored (the lock's)
    restored_at: AwareDatetime
    backup_id: PositiveInt | None = None

    def as_event(self) -> dict[str, Any]:
        return {VERIFY_EVENT_KEY: self.model_dump(mode="json")}


def parse_verify_event(event: Any) -> VerifyCheck | None:
    """The check in ``event``; None when ``event`` is not a check (an alarm event). Raises
    :class:`VerifyEventError` naming the field when it is one, badly formed."""
    if not isinstance(event, Mapping) or VERIFY_EVENT_KEY not in event:
        return None
    try:
        return VerifyCheck.model_validate(event[VERIFY_EVENT_KEY])
    except ValidationError as exc:
        error = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in (VERIFY_EVENT_KEY, *error["loc"]))
        raise VerifyEventError(f"{where}: {error['msg']}") from None


@dataclass(frozen=True)
class Incident:
    """A server's restore lock, as far as the follow-ups are concerned."""

    server_id: int
    alarm_name: str
    transition: str
    backup_id: int | None
    restored_at: datetime | None
    state: str | None  # an IncidentState; None: the lock has no incident (a manual restore, or not restored)


@dataclass(frozen=True)
class FollowUp:
    """What to record: ``recovered`` or ``not_recovered`` (the incident's new state), or ``nothing``."""

    kind: FollowUpKind
    reason: str
    time_to_recover: timedelta | None = None
    cause: str | None = None  # why nothing: no_incident, other_alarm, superseded, already_recovered, ...

    @property
    def incident_state(self) -> IncidentState | None:
        return {"recovered": "recovered", "not_recovered": "not_cleared"}.get(self.kind)  # type: ignore[return-value]


def _no_open_incident(incident: Incident | None, alarm_name: str, server_id: int) -> FollowUp | None:
    if incident is None or incident.state is None:
        return FollowUp("nothing", f"server {server_id} has no automatic restore to follow up", cause="no_incident")
    if incident.alarm_name != alarm_name:
        return FollowUp(
            "nothing",
            f"server {server_id}'s restore was for alarm {incident.alarm_name!r}, not {alarm_name!r}",
            cause="other_alarm",
        )
    if incident.state == "recovered":
        return FollowUp("nothing", f"the restore of server {server_id} was already seen to recover", cause="recovered")
    return None


def recovery(restored_at: datetime | None, ok_at: datetime) -> tuple[timedelta, str]:
    """The time to recover (never negative) and the words for it."""
    if restored_at is None:
        return timedelta(0), "the alarm returned to OK"
    ttr = max(timedelta(0), ok_at - restored_at)
    if ok_at < restored_at:
        return ttr, "the alarm returned to OK before the restore was accepted"
    return ttr, f"the alarm returned to OK {describe_duration(ttr)} after the restore"


def on_ok(incident: Incident | None, *, server_id: int, alarm_name: str, ok_at: datetime) -> FollowUp:
    """The alarm ``alarm_name`` of ``server_id`` entered OK at ``ok_at``."""
    if (nothing := _no_open_incident(incident, alarm_name, server_id)) is not None:
        return nothing
    assert incident is not None
    ttr, words = recovery(incident.restored_at, ok_at)
    return FollowUp("recovered", words, ttr)


def on_check(
    incident: Incident | None,
    check: VerifyCheck,
    *,
    alarm_state: str | None,
    state_since: datetime | None,
    now: datetime,
) -> FollowUp:
    """The scheduled check: the alarm is in ``alarm_state`` (None: the alarm is gone) since ``state_since``."""
    if (nothing := _no_open_incident(incident, check.alarm_name, check.server_id)) is not None:
        return nothing
    assert incident is not None
    if incident.transition != check.transition:
        return FollowUp(
            "nothing",
            f"server {check.server_id} has been restored again since; this check is stale",
            cause="superseded",
        )
    if incident.state == "not_cleared":
        return FollowUp("nothing", "this restore was already found not to clear the alarm", cause="already_checked")
    if alarm_state == OK:
        ttr, words = recovery(incident.restored_at, state_since or now)
        return FollowUp("recovered", words, ttr)
    after = describe_duration(max(timedelta(0), now - check.restored_at))
    if alarm_state is None:
        return FollowUp(
            "not_recovered",
            f"the alarm {check.alarm_name!r} no longer exists, so it was never seen in OK ({after} after the restore)",
        )
    return FollowUp(
        "not_recovered",
        f"the alarm {check.alarm_name!r} is still in {alarm_state} {after} after the restore: "
        "the restore did not clear the alarm",
    )


def ok_not_confirmed(alarm_arn: str | None, current: CurrentAlarm | None) -> str | None:
    """Why the alarm as read now does not confirm a return to OK, in words; None when it does (it
    exists here, is the one the event names, and is OK now). Not confirmed, no recovery is recorded:
    the incident stays open until the alarm is seen in OK (a later OK, or the check)."""
    if current is None:
        return "no metric alarm of that name exists in this account and region"
    if alarm_arn and alarm_arn != current.arn:
        return f"the event names the alarm {alarm_arn}, but the alarm of that name here is {current.arn}"
    if current.state != OK:
        return f"the alarm is in {current.state} now, not OK"
    return None


def schedule_name(server_id: int, transition: str) -> str:
    """The one-time schedule's name for a restore (Scheduler: at most 64 of ``[0-9A-Za-z_.-]``)."""
    digest = hashlib.sha256(transition.encode()).hexdigest()[:16]
    return f"{SCHEDULE_NAME_PREFIX}{server_id}-{digest}"


def at_expression(moment: datetime) -> str:
    """Scheduler's one-time expression, in UTC, rounded up to the next whole second."""
    utc = moment.astimezone(UTC)
    if utc.microsecond:
        utc = utc.replace(microsecond=0) + timedelta(seconds=1)
    return f"at({utc:%Y-%m-%dT%H:%M:%S})"
