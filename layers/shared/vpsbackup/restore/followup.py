"""Did the restore work? The follow-ups of an automatic restore, carried out (docs/restore-on-alarm.md#did-it-work).

The decisions are :mod:`vpsbackup.restore.recovery`'s; this module reads what they need (the
server's restore lock, the alarm's state with ``cloudwatch:DescribeAlarms``), settles the incident
on the lock (:meth:`~vpsbackup.restore.guard.RestoreGuard.settle_incident`, once), and journals and
notifies what it found. Three moments:

- after a restore the API accepted: :meth:`FollowUps.schedule` creates a one-time EventBridge
  Scheduler schedule ``at(restore + RESTORE_VERIFY_AFTER)`` that invokes this function with a
  ``restore_verify`` event and deletes itself once it has fired (``ActionAfterCompletion: DELETE``);
- the alarm's state change to ``OK`` (the stack's second EventBridge rule): :meth:`FollowUps.on_ok`
  records ``restore_recovered`` with the time to recover, an ``info`` notification;
- the scheduled check: :meth:`FollowUps.on_check` reads the alarm; ``OK`` is a recovery (the ``OK``
  event was missed), anything else is ``restore_not_recovered``, an ``error`` notification, and the
  incident stays open (no automatic restore of the server until the alarm is seen in ``OK``).

Nothing here raises on a finding; an unreadable alarm state raises (the invocation fails, Lambda
retries it, then the failed-invocations queue keeps it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vpsbackup.aws.journal import Journal
from vpsbackup.aws.notifications import Notifier, Routing
from vpsbackup.observability import logger
from vpsbackup.restore import messages
from vpsbackup.restore.alarm import AlarmTransition, CurrentAlarm, Home, origin_problem
from vpsbackup.restore.guard import LockHolder, RestoreClaim, RestoreGuard
from vpsbackup.restore.job import RestoreOutcome, severity_of
from vpsbackup.restore.recovery import (
    FollowUp,
    VerifyCheck,
    at_expression,
    ok_not_confirmed,
    on_check,
    on_ok,
    schedule_name,
)
from vpsbackup.restore.settings import RestoreOnAlarmSettings

# The check's invocation of the function: retried by Scheduler if Lambda cannot take it.
SCHEDULE_RETRY = {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600}


@dataclass(kw_only=True, eq=False)
class FollowUps:
    """The follow-ups of automatic restores; ``scheduler`` None: no check is scheduled."""

    settings: RestoreOnAlarmSettings
    guard: RestoreGuard
    notifier: Notifier
    # The alarm by name as CloudWatch describes it now (restore.wiring.alarm_state_reader); may raise.
    alarm_state: Callable[[str], CurrentAlarm | None]
    home: Home  # the function's own account and region
    scheduler: Any = None
    journal: Journal | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # The function the check invokes: this one (the invocation's context says its ARN).
    target_arn: str | None = None

    # -- after a restore -----------------------------------------------------------------------

    def schedule(self, claim: RestoreClaim) -> str:
        """Schedule the check of ``claim``'s restore (just accepted); the line people read about it."""
        restored_at = self.clock()
        check_at = restored_at + self.settings.restore_verify_after
        check = VerifyCheck(
            server_id=claim.server_id,
            alarm_name=claim.alarm_name,
            transition=claim.transition_key,
            restored_at=restored_at,
            backup_id=claim.backup_id,
        )
        name = schedule_name(claim.server_id, claim.transition_key)
        log = {"server_id": claim.server_id, "alarm": claim.alarm_name, "schedule": name}
        if self.scheduler is None or not self.settings.restore_verify_role_arn or not self.target_arn:
            logger.warning("the restore's check is not scheduled: RESTORE_VERIFY_ROLE_ARN is not set", extra=log)
            return messages.follow_up_not_scheduled(claim.alarm_name, "RESTORE_VERIFY_ROLE_ARN is not set")
        try:
            self.scheduler.create_schedule(
                Name=name,
                GroupName=self.settings.restore_verify_schedule_group,
                Description=f"vpsbackup: did the restore of server {claim.server_id} clear alarm {claim.alarm_name}?",
                ScheduleExpression=at_expression(check_at),
                ScheduleExpressionTimezone="UTC",
                FlexibleTimeWindow={"Mode": "OFF"},
                ActionAfterCompletion="DELETE",
                Target={
                    "Arn": self.target_arn,
                    "RoleArn": self.settings.restore_verify_role_arn,
                    "Input": json.dumps(check.as_event()),
                    "RetryPolicy": SCHEDULE_RETRY,
                },
            )
        except self.scheduler.exceptions.ConflictException:
            logger.info("the restore's check was already scheduled", extra=log)
        except Exception as exc:  # AccessDenied, throttling...: the restore is done; say so and go on
            problem = f"{type(exc).__name__}: {exc}"[:300]
            logger.exception("the restore's check could not be scheduled", extra=log)
            return messages.follow_up_not_scheduled(claim.alarm_name, problem)
        logger.info("the restore's check is scheduled", extra={**log, "at": check_at.isoformat()})
        return messages.follow_up_scheduled(claim.alarm_name, check_at, self.settings.restore_verify_after)

    # -- the alarm back to OK ------------------------------------------------------------------

    def on_ok(self, transition: AlarmTransition, server_id: int | None) -> RestoreOutcome:
        """The alarm entered OK: the recovery of its server's open incident, if it has one."""
        alarm = transition.alarm_name
        if server_id is None:
            why = "the alarm returned to OK; it names no server, so there is no restore to follow up"
            logger.info("alarm back to OK: no server", extra={"alarm": alarm})
            return RestoreOutcome("ignored", why, alarm, cause="no_incident")
        holder = self.guard.lock_holder(server_id)
        found = on_ok(
            holder.as_incident() if holder else None,
            server_id=server_id,
            alarm_name=alarm,
            ok_at=transition.state_changed_at,
        )
        if found.kind == "recovered" and (unconfirmed := self._ok_unconfirmed(transition)) is not None:
            logger.warning(
                "alarm back to OK not confirmed: no recovery recorded", extra={"alarm": alarm, "why": unconfirmed}
            )
            reason = f"the OK is not confirmed: {unconfirmed}"
            return RestoreOutcome("ignored", reason, alarm, server_id, cause="not_confirmed")
        return self._record(found, holder, server_id, alarm, at=transition.state_changed_at, seen_by="ok_event")

    def _ok_unconfirmed(self, transition: AlarmTransition) -> str | None:
        """Why an OK that would close an incident is not this account's alarm, OK now; None if it is."""
        if (foreign := origin_problem(transition, self.home)) is not None:
            return foreign
        return ok_not_confirmed(transition.alarm_arn, self.alarm_state(transition.alarm_name))

    # -- the scheduled check -------------------------------------------------------------------

    def on_check(self, check: VerifyCheck) -> RestoreOutcome:
        """``RESTORE_VERIFY_AFTER`` after the restore: is the alarm OK?"""
        holder = self.guard.lock_holder(check.server_id)
        current = self.alarm_state(check.alarm_name)  # raises when unreadable: the invocation is retried
        now = self.clock()
        found = on_check(
            holder.as_incident() if holder else None,
            check,
            alarm_state=current.state if current else None,
            state_since=current.changed_at if current else None,
            now=now,
        )
        at = (current.changed_at or now) if found.kind == "recovered" and current else now
        extra = {"alarm_state": current.state if current else "gone"}
        return self._record(found, holder, check.server_id, check.alarm_name, at=at, seen_by="check", extra=extra)

    # -- recording -----------------------------------------------------------------------------

    def _record(
        self,
        found: FollowUp,
        holder: LockHolder | None,
        server_id: int,
        alarm: str,
        *,
        at: datetime,
        seen_by: str,
        extra: dict[str, Any] | None = None,
    ) -> RestoreOutcome:
        log = {"alarm": alarm, "server_id": server_id, "seen_by": seen_by, "why": found.reason}
        state = found.incident_state
        if holder is None or state is None:
            logger.info("restore follow-up: nothing to record", extra={**log, "cause": found.cause})
            return RestoreOutcome("ignored", found.reason, alarm, server_id, cause=found.cause)
        if not self.guard.settle_incident(holder, state, at=at):  # a concurrent follow-up recorded it
            logger.info("restore follow-up: already recorded", extra=log)
            return RestoreOutcome("ignored", "already recorded", alarm, server_id, holder.backup_id, cause="recorded")
        scene = messages.FollowUpScene(server_id, alarm, holder.backup_id, holder.restored_at)
        details: dict[str, Any] = {"seen_by": seen_by, **(extra or {})}
        if holder.restored_at is not None:
            details["restored_at"] = holder.restored_at.isoformat()
        if found.kind == "recovered":
            assert found.time_to_recover is not None
            seconds = int(found.time_to_recover.total_seconds())
            details |= {"ok_at": at.isoformat(), "time_to_recover_s": seconds}
            message = messages.recovered(scene, why=found.reason, ok_at=at, time_to_recover=found.time_to_recover)
            outcome = RestoreOutcome(
                "recovered", found.reason, alarm, server_id, holder.backup_id, cause=seen_by, extra=details
            )
            logger.info("restore recovered", extra={**log, "time_to_recover_s": seconds})
        else:
            details["checked_at"] = at.isoformat()
            message = messages.not_recovered(scene, why=found.reason, checked_at=at)
            outcome = RestoreOutcome(
                "not_recovered", found.reason, alarm, server_id, holder.backup_id, cause="not_cleared", extra=details
            )
            logger.error("the restore did not clear the alarm", extra=log)
        if self.journal is not None:
            self.journal.record(
                "restore_recovered" if found.kind == "recovered" else "restore_not_recovered",
                by=f"alarm {alarm}",
                outcome=state,
                server_id=server_id,
                backup_id=holder.backup_id,
                run=holder.transition_key,
                reasons=(found.reason,),
                details=details,
            )
        routing = Routing("restore-on-alarm", outcome.outcome, severity_of(outcome.outcome, None), server_id)
        notified = self.notifier.publish(message.subject, message.body, routing=routing, attributes={"alarm": alarm})
        return RestoreOutcome(**{**outcome.as_dict(), "notified": notified})
