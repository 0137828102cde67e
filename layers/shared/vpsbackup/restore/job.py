"""Restore on alarm (docs/restore-on-alarm.md): from one alarm transition to one outcome, told to the people on call.

The decisions are pure and live elsewhere (``restore.alarm.resolve_server``,
``restore.point.choose_restore_point``); the guardrails are ``restore.guard``. This module only
sequences the effects, in this order, and turns every path into a :class:`RestoreOutcome`:

0. is the alarm real: the event's account and region (and its alarm's and SNS topic's ARNs) must be
   the function's own, and CloudWatch ``DescribeAlarms`` must find the alarm by name, with the ARN
   the event gives, in ``ALARM`` now — else skipped (``alarm_not_confirmed``), journaled, notified:
   a forged payload, another account's alarm, or one that has recovered restores nothing;
1. which server (dimension, tag, map), from the confirmed alarm's own dimensions and tags (what the
   event says of them may be forged) — unresolved: skipped, notified; an alarm that changed state
   more than ``RESTORE_MAX_ALARM_AGE`` ago (a redelivery, a redrive of the failed-invocations queue, a
   replay) or that claims a time in the future: skipped, notified — an automatic restore acts on
   a fresh alarm only, never on one the people on call may already have dealt with;
2. the server's latest deployment before the alarm (StateTable) and its backups (API) — a listing
   that cannot be read whole (a ``next`` link that repeats a page or leaves the base URL's origin,
   an item of the server that does not validate): failed, ``list_incomplete``, journaled, notified;
3. the restore point — none: skipped, notified;
4. ``RESTORE_MODE=notify``, or an alarm outside ``RESTORE_WATCH_WINDOW`` after the server's latest
   recorded deployment (or with none recorded, when a window is set): the plan is published, with
   what the guardrails would say; nothing is claimed (a shadow run must not use up the cooldown or
   the fleet budget of the real thing), but the proposed backup is held so that prune keeps it for
   whoever acts on the plan;
5. from here on the shared steps of :class:`~vpsbackup.restore.execute.GuardedRestore`, which a
   person's ``vpsbackup restore`` takes too, each journaled: the guard's claim (cooldown, fleet
   rate, duplicates) — refused: skipped, notified (a duplicate of an alarm change already handled
   is only logged: people were told the first time);
6. the hold on the chosen backup, so prune keeps it;
7. the backup's status re-read from the API — no longer completed: released, skipped, notified;
8. the restore call, once: accepted → restored; refused or certainly not applied → the claim is
   released, failed; outcome unknown → the claim is kept (the restore may be running), failed.

Nothing here retries a refused restore, and nothing raises on an API outcome: every outcome is
terminal, logged and published. Unexpected errors after a claim, before the restore request is
sent, release it and are reported too; once the request may have left, the claim is never released
(a failing lock update leaves it ``claimed``, which blocks like ``outcome_unknown``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Literal

from vpsbackup.aws.notifications import Notifier, Routing, Severity
from vpsbackup.durations import describe_duration, format_duration
from vpsbackup.observability import logger
from vpsbackup.provider.errors import ListingIncompleteError, VpsApiError
from vpsbackup.provider.models import Backup
from vpsbackup.restore import messages
from vpsbackup.restore.alarm import (
    AlarmTransition,
    CurrentAlarm,
    Home,
    ServerResolution,
    as_confirmed,
    confirmation_problem,
    origin_problem,
    resolve_server,
)
from vpsbackup.restore.execute import GuardedRestore, RestoreAttempt, RestoreRequest, api_said
from vpsbackup.restore.guard import GuardRefusal, RestoreClaim
from vpsbackup.restore.point import (
    RestorePointDecision,
    WatchWindowDecision,
    human_time,
    watch_window,
)

# An alarm older than RESTORE_MAX_ALARM_AGE is not acted on (the template's EventBridge and
# async-invoke MaximumEventAgeInSeconds is 900 too, but counts from when the event was queued, and
# does not cover a redrive, a replay or a direct invoke); one further in the future than the skew is
# not trusted.
MAX_ALARM_CLOCK_SKEW = timedelta(minutes=5)

OutcomeKind = Literal["restored", "planned", "skipped", "failed", "duplicate", "ignored", "recovered", "not_recovered"]

METRIC_NAMES: Mapping[str, str] = {
    "restored": "restored",
    "planned": "restore_planned",
    "skipped": "restore_skipped",
    "failed": "restore_failed",
    "duplicate": "restore_duplicate",
    "ignored": "alarm_ignored",
    # The follow-ups of a restore (restore.followup): the alarm seen back in OK, or not at the check.
    "recovered": "restore_recovered",
    "not_recovered": "restore_not_recovered",
}


# How much attention each published outcome asks for (the ``severity`` attribute people route on):
# a restore done or only planned, and a skipped one, want a look; a failure, an alarm that names no
# server and a server with no backup to restore from are errors.
SEVERITY: Mapping[str, Severity] = {
    "restored": "warning",
    "planned": "warning",
    "skipped": "warning",
    "failed": "error",
    "recovered": "info",
    "not_recovered": "error",
}
ERROR_CAUSES = frozenset({"server_unresolved", "no_backup"})
# Outcomes the journal keeps as refusals besides the guard's (journaled by GuardedRestore): an alarm
# not confirmed, too old or in the future, a server with no usable backup, and a listing that could
# not be read whole.
REFUSED_BEFORE_A_CLAIM = frozenset(
    {"alarm_not_confirmed", "stale_alarm", "alarm_in_future", "no_backup", "list_incomplete"}
)


def severity_of(outcome: str, cause: str | None) -> Severity:
    """The ``severity`` of a published restore outcome."""
    return "error" if cause in ERROR_CAUSES else SEVERITY.get(outcome, "warning")


@dataclass(frozen=True)
class RestoreOutcome:
    """What happened for one alarm transition; JSON-able (it is the idempotency record's value)."""

    outcome: OutcomeKind
    reason: str
    alarm_name: str | None = None
    server_id: int | None = None
    backup_id: int | None = None
    cause: str | None = None  # a short machine-readable reason: cooldown, rate_limit, no_backup, api_409 ...
    notified: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def metric_name(self) -> str:
        return METRIC_NAMES[self.outcome]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RestoreOutcome:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(kw_only=True, eq=False)
class AlarmRestorer(GuardedRestore):
    """Handles one :class:`AlarmTransition` (already known to enter ALARM) end to end.

    The steps from the claim to the restore call are the shared ones of
    :class:`~vpsbackup.restore.execute.GuardedRestore` (the manual restore takes them too); the words
    people read are composed in :mod:`vpsbackup.restore.messages`; this class chooses which.
    """

    notifier: Notifier
    alarm_tags: Callable[[str], Mapping[str, str]]
    # The alarm by name as CloudWatch describes it now (None: no such alarm); may raise.
    alarm_state: Callable[[str], CurrentAlarm | None]
    home: Home  # the function's own account and region
    # After a restore the API accepted: schedules its check (restore.followup.FollowUps.schedule) and
    # returns the line people read about it. None: no follow-up, and the restore opens no incident.
    schedule_check: Callable[[RestoreClaim], str] | None = None

    @property
    def opens_incident(self) -> bool:
        return self.schedule_check is not None

    def server_of(self, transition: AlarmTransition) -> ServerResolution:
        """Which server ``transition``'s alarm is about (dimension, tag, map)."""
        return resolve_server(
            transition,
            dimension=self.settings.server_id_dimension,
            alarm_server_map=self.settings.alarm_server_map,
            tags=lambda: self._tags_of(transition),
        )

    # -- the sequence --------------------------------------------------------------------------

    def handle(self, transition: AlarmTransition) -> RestoreOutcome:
        alarm = transition.alarm_name
        log = {"alarm": alarm, "transition": transition.key}
        confirmed = self._confirmed(transition)
        if isinstance(confirmed, str):
            logger.warning("no restore: the alarm is not confirmed", extra={**log, "why": confirmed})
            scene = messages.AlarmScene(
                transition, ServerResolution(None, ""), self.settings.restore_mode, self.settings.stack_name
            )
            return self._publish(
                scene,
                RestoreOutcome(
                    "skipped", f"the alarm is not confirmed: {confirmed}", alarm, cause="alarm_not_confirmed"
                ),
                messages.alarm_not_confirmed(scene, confirmed),
            )
        transition = as_confirmed(transition, confirmed)  # its server is the alarm's, not the event's
        resolution = self.server_of(transition)
        scene = messages.AlarmScene(transition, resolution, self.settings.restore_mode, self.settings.stack_name)
        if resolution.server_id is None:
            logger.error(
                "no restore: cannot tell which server the alarm is about", extra={**log, "why": resolution.explanation}
            )
            return self._publish(
                scene,
                RestoreOutcome(
                    "skipped",
                    f"cannot tell which server the alarm is about: {resolution.explanation}",
                    alarm,
                    cause="server_unresolved",
                ),
                messages.server_unresolved(scene, dimension=self.settings.server_id_dimension),
            )
        server_id = resolution.server_id
        log["server_id"] = str(server_id)

        if (untimely := self._untimely(transition)) is not None:
            cause, why = untimely
            logger.warning("no restore: the alarm is not current", extra={**log, "why": why})
            return self._publish(
                scene,
                RestoreOutcome("skipped", why, alarm, server_id, cause=cause),
                messages.alarm_not_current(scene, server_id, why),
            )

        deployment = self.state.latest_deployment_before(server_id, transition.state_changed_at)
        try:
            backups = self.client.list_backups(server_id=server_id)
        except ListingIncompleteError as exc:
            # Part of the listing is no basis for a restore point: the newest backup, or the
            # deployment's, may be in the part not read.
            logger.error("no restore: the listing of the backups is incomplete", extra={**log, "why": exc.problem})
            reason = f"the listing of server {server_id}'s backups is incomplete: {exc.problem}"
            return self._publish(
                scene,
                RestoreOutcome("failed", reason, alarm, server_id, cause="list_incomplete"),
                messages.listing_incomplete(scene, server_id, exc.problem),
            )
        except VpsApiError as exc:
            said = api_said(exc)
            logger.error("no restore: the backups could not be listed", extra={**log, "error": said})
            reason = f"the backups of server {server_id} could not be listed: {said}"
            return self._publish(
                scene,
                RestoreOutcome("failed", reason, alarm, server_id, cause="list_failed"),
                messages.listing_failed(scene, server_id, said),
            )
        decision = self.choose(server_id, backups, deployment, transition.state_changed_at)
        logger.info(
            "restore point decided",
            extra={
                **log,
                "backup_id": decision.backup.id if decision.backup else None,
                "basis": decision.basis,
                "why": decision.reason,
            },
        )
        if decision.backup is None:
            return self._publish(
                scene,
                RestoreOutcome("skipped", decision.reason, alarm, server_id, cause="no_backup"),
                messages.no_usable_backup(scene, decision),
            )
        backup = decision.backup

        if self.settings.restore_mode == "notify":
            return self._plan(scene, decision, backup)
        watch = watch_window(
            server_id, deployment, alarm_at=transition.state_changed_at, window=self.settings.restore_watch_window
        )
        logger.info("watch window", extra={**log, "acts": watch.acts, "cause": watch.cause, "why": watch.reason})
        if not watch.acts:
            return self._plan(scene, decision, backup, watch=watch)

        request = RestoreRequest(
            decision=decision,
            backup=backup,
            transition_key=transition.key,
            trigger="alarm",
            by=f"alarm {alarm}",
            lock_name=alarm,
            hold_reason=f"restore point for alarm {alarm}",
            details={"alarm_at": transition.state_changed_at.isoformat()},
            log={"alarm": alarm, "transition": transition.key},
        )
        claim = self.claim(request)
        if isinstance(claim, GuardRefusal):
            return self._refused(scene, decision, claim)
        return self._told(scene, decision, claim, self.carry_out(claim, request))

    def _told(
        self, scene: messages.AlarmScene, decision: RestorePointDecision, claim: RestoreClaim, attempt: RestoreAttempt
    ) -> RestoreOutcome:
        """Tell people what became of the claimed restore (:meth:`GuardedRestore.carry_out`)."""
        alarm, server_id, backup = scene.alarm, claim.server_id, decision.backup
        assert backup is not None  # a claim is only made for a restore point
        if attempt.kind == "reread_failed":
            return self._publish(
                scene,
                RestoreOutcome("failed", attempt.reason, alarm, server_id, backup.id, cause="reread_failed"),
                messages.reread_failed(scene, decision, backup, attempt.api_said or ""),
            )
        if attempt.kind == "backup_changed":
            return self._publish(
                scene,
                RestoreOutcome("skipped", attempt.reason, alarm, server_id, backup.id, cause="backup_changed"),
                messages.backup_changed(scene, decision, backup, attempt.now_is or ""),
            )
        if attempt.kind == "internal_error":
            error = attempt.error or "error"
            return self._publish(
                scene,
                RestoreOutcome("failed", attempt.reason, alarm, server_id, backup.id, cause="internal_error"),
                messages.internal_error(scene, decision, backup, error),
            )
        if attempt.kind in ("not_applied", "outcome_unknown"):
            said = attempt.api_said or ""
            return self._publish(
                scene,
                RestoreOutcome(
                    "failed",
                    f"the API did not restore server {server_id} from backup {backup.id}: {said}",
                    alarm,
                    server_id,
                    backup.id,
                    cause=attempt.cause,
                ),
                messages.restore_failed(
                    scene,
                    decision,
                    backup,
                    api_said=said,
                    not_applied=attempt.kind == "not_applied",
                    locked_until=claim.locked_until,
                ),
            )
        # restored: the backup was held, then the restore accepted
        assert attempt.accepted is not None
        assert attempt.hold_until is not None
        api_status = attempt.accepted.status_code
        guardrails = messages.Guardrails(
            locked_until=claim.locked_until,
            cooldown=self.settings.restore_cooldown,
            hold_until=attempt.hold_until,
            hold=self.settings.restore_hold,
        )
        follow_up = self.schedule_check(claim) if self.schedule_check is not None else None
        return self._publish(
            scene,
            RestoreOutcome(
                "restored",
                decision.reason,
                alarm,
                server_id,
                backup.id,
                cause=decision.basis,
                extra={"api_status": api_status},
            ),
            messages.restored(
                scene, decision, backup, api_status=api_status, guardrails=guardrails, follow_up=follow_up
            ),
        )

    def _plan(
        self,
        scene: messages.AlarmScene,
        decision: RestorePointDecision,
        backup: Backup,
        *,
        watch: WatchWindowDecision | None = None,
    ) -> RestoreOutcome:
        """Publish what a restore would do, claim nothing, hold the backup: ``RESTORE_MODE=notify``, or
        (``watch``) an alarm outside the watch window."""
        server_id = decision.server_id
        refusal = self.guard.check(server_id=server_id, transition_key=scene.transition.key)
        hold_until = self.hold(
            backup, reason=f"restore point for alarm {scene.alarm}", placed_by=f"alarm {scene.alarm}"
        )
        would = messages.guard_verdict(None if refusal is None else refusal.reason)
        why = "RESTORE_MODE=notify" if watch is None else f"outside the watch window: {watch.reason}"
        logger.info(
            "restore planned, not done",
            extra={"alarm": scene.alarm, "server_id": server_id, "backup_id": backup.id, "guard": would, "why": why},
        )
        extra: dict[str, Any] = {"guard": would, "basis": decision.basis}
        if watch is not None:
            extra["watch_window"] = watch.reason
        return self._publish(
            scene,
            RestoreOutcome(
                "planned",
                decision.reason,
                scene.alarm,
                server_id,
                backup.id,
                cause=decision.basis if watch is None else watch.cause,
                extra=extra,
            ),
            messages.planned(
                scene,
                decision,
                backup,
                would=would,
                hold_until=hold_until,
                watch=None if watch is None else watch.reason,
            ),
        )

    def _first_notice(self, refusal: GuardRefusal) -> bool:
        """False when people were already told of this refusal's cooldown or incident."""
        if refusal.holder is None:
            return True
        if refusal.kind == "cooldown":
            return self.guard.first_cooldown_notice(refusal.holder)
        if refusal.kind == "incident_open":
            return self.guard.first_incident_notice(refusal.holder)
        return True

    def _refused(
        self, scene: messages.AlarmScene, decision: RestorePointDecision, refusal: GuardRefusal
    ) -> RestoreOutcome:
        server_id = decision.server_id
        backup_id = decision.backup.id if decision.backup else None
        if refusal.kind == "duplicate":
            logger.info(
                "duplicate alarm change: already handled",
                extra={"alarm": scene.alarm, "server_id": server_id, "why": refusal.reason},
            )
            return RestoreOutcome("duplicate", refusal.reason, scene.alarm, server_id, backup_id, cause="duplicate")
        # A flapping alarm: journaled (by the claim) at each flap, people told once per cooldown, and
        # once per state of an open incident after it.
        if not self._first_notice(refusal):
            logger.info(
                f"skipped: {refusal.kind}; people were told already",
                extra={"alarm": scene.alarm, "server_id": server_id, "why": refusal.reason},
            )
            return RestoreOutcome("skipped", refusal.reason, scene.alarm, server_id, backup_id, cause=refusal.kind)
        return self._publish(
            scene,
            RestoreOutcome("skipped", refusal.reason, scene.alarm, server_id, backup_id, cause=refusal.kind),
            messages.refused(scene, decision, kind=refusal.kind, reason=refusal.reason),
        )

    # -- helpers -------------------------------------------------------------------------------

    def _confirmed(self, transition: AlarmTransition) -> CurrentAlarm | str:
        """The alarm as CloudWatch describes it now, when it confirms the transition (this account's,
        in ``ALARM``); else why not, in words."""
        if (foreign := origin_problem(transition, self.home)) is not None:
            return foreign
        try:
            current = self.alarm_state(transition.alarm_name)
        except Exception as exc:  # AccessDenied, throttling...: not confirmed is not a restore
            code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
            logger.warning("could not read the alarm", extra={"alarm": transition.alarm_name, "error": code})
            return f"the alarm could not be read (cloudwatch:DescribeAlarms: {code})"
        if (problem := confirmation_problem(transition, current, self.home)) is not None:
            return problem
        assert current is not None  # confirmation_problem says so when it is None
        return current

    def _untimely(self, transition: AlarmTransition) -> tuple[str, str] | None:
        """(cause, why) when the alarm's state change is too old or in the future to act on."""
        now = self.clock()
        at = transition.state_changed_at
        max_age = self.settings.restore_max_alarm_age
        if now - at > max_age:
            return "stale_alarm", (
                f"the alarm changed state at {human_time(at)}, {describe_duration(now - at)} ago: more than "
                f"{describe_duration(max_age)} (RESTORE_MAX_ALARM_AGE={format_duration(max_age)}) is too old for an "
                "automatic restore (a late redelivery or replay)"
            )
        if at - now > MAX_ALARM_CLOCK_SKEW:
            return "alarm_in_future", (
                f"the alarm's state-change time {human_time(at)} is {describe_duration(at - now)} in the future "
                f"(now {human_time(now)}): it is not trusted"
            )
        return None

    def _tags_of(self, transition: AlarmTransition) -> Mapping[str, str] | None:
        """The alarm's tags as CloudWatch has them (never the ones the event carries: they may be forged)."""
        if not transition.alarm_arn:
            return None
        try:
            return self.alarm_tags(transition.alarm_arn)
        except Exception as exc:  # AccessDenied (alarm outside the prefix), throttling...: fall back to the map
            logger.warning(
                "could not read the alarm's tags", extra={"alarm": transition.alarm_name, "error": type(exc).__name__}
            )
            return None

    def _publish(
        self, scene: messages.AlarmScene, outcome: RestoreOutcome, message: messages.Message
    ) -> RestoreOutcome:
        routing = Routing(
            "restore-on-alarm", outcome.outcome, severity_of(outcome.outcome, outcome.cause), outcome.server_id
        )
        if outcome.cause in REFUSED_BEFORE_A_CLAIM:
            self.journal_entry(
                "restore_refused",
                by=f"alarm {scene.alarm}",
                outcome=outcome.cause,
                server_id=outcome.server_id,
                run=scene.transition.key,
                reasons=(outcome.reason,),
                details={"trigger": "alarm", "alarm_at": scene.transition.state_changed_at.isoformat()},
            )
        notified = self.notifier.publish(
            message.subject, message.body, routing=routing, attributes={"alarm": scene.alarm}
        )
        return RestoreOutcome(**{**outcome.as_dict(), "notified": notified})
