"""FROZEN REFERENCE, not product code: ``AlarmRestorer`` exactly as it was before the alarm path and the
manual restore were given one shared path (``vpsbackup.restore.execute``).

``test_restore_job_equivalence.py`` checks that :class:`vpsbackup.restore.job.AlarmRestorer` does
exactly what this copy does (the outcome, what people are told, the guard's calls, the holds, the
restore calls) over random scenarios. Do not edit it to make that test pass: a difference is a
behaviour change in the product code. Its own docstring follows.

Restore on alarm (docs/restore-on-alarm.md): from one alarm transition to one outcome, told to the people on call.

The decisions are pure and live elsewhere (``restore.alarm.resolve_server``,
``restore.point.choose_restore_point``); the guardrails are ``restore.guard``. This module only
sequences the effects, in this order, and turns every path into a :class:`RestoreOutcome`:

1. which server (dimension, tag, map) — unresolved: skipped, notified; an alarm that changed state
   more than ``RESTORE_MAX_ALARM_AGE`` ago (a redelivery, a redrive of the failed-invocations queue, a
   replay) or that claims a time in the future: skipped, notified — an automatic restore acts on
   a fresh alarm only, never on one the people on call may already have dealt with;
2. the server's latest deployment before the alarm (StateTable) and its backups (API);
3. the restore point — none: skipped, notified;
4. ``RESTORE_MODE=notify``, or an alarm outside ``RESTORE_WATCH_WINDOW`` after the server's latest
   recorded deployment (or with none recorded, when a window is set): the plan is published, with
   what the guardrails would say; nothing is claimed (a shadow run must not use up the cooldown or
   the fleet budget of the real thing), but the proposed backup is held so that prune keeps it for
   whoever acts on the plan;
5. the guard's claim (cooldown, fleet rate, duplicates) — refused: skipped, notified (a duplicate
   of an alarm change already handled is only logged: people were told the first time);
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
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from vpsbackup.aws.notifications import Notifier, Routing, Severity
from vpsbackup.aws.state import StateTable
from vpsbackup.durations import describe_duration, format_duration
from vpsbackup.observability import logger
from vpsbackup.provider.client import VpsClient
from vpsbackup.provider.errors import (
    ApiConnectionError,
    ApiStatusError,
    OutcomeUnknownError,
    RateLimitedError,
    ServerError,
    VpsApiError,
)
from vpsbackup.provider.models import Backup, RestoreAccepted
from vpsbackup.records import Hold
from vpsbackup.restore import messages
from vpsbackup.restore.alarm import AlarmTransition, resolve_server
from vpsbackup.restore.guard import GuardRefusal, RestoreClaim, RestoreGuard
from vpsbackup.restore.point import (
    RestorePointDecision,
    WatchWindowDecision,
    choose_restore_point,
    human_time,
    watch_window,
)
from vpsbackup.restore.settings import RestoreOnAlarmSettings

# An alarm older than RESTORE_MAX_ALARM_AGE is not acted on (the template's EventBridge and
# async-invoke MaximumEventAgeInSeconds is 900 too, but counts from when the event was queued, and
# does not cover a redrive, a replay or a direct invoke); one further in the future than the skew is
# not trusted.
MAX_ALARM_CLOCK_SKEW = timedelta(minutes=5)

OutcomeKind = Literal["restored", "planned", "skipped", "failed", "duplicate", "ignored"]

METRIC_NAMES: Mapping[str, str] = {
    "restored": "restored",
    "planned": "restore_planned",
    "skipped": "restore_skipped",
    "failed": "restore_failed",
    "duplicate": "restore_duplicate",
    "ignored": "alarm_ignored",
}


# How much attention each published outcome asks for (the ``severity`` attribute people route on):
# a restore done or only planned, and a skipped one, want a look; a failure, an alarm that names no
# server and a server with no backup to restore from are errors.
SEVERITY: Mapping[str, Severity] = {
    "restored": "warning",
    "planned": "warning",
    "skipped": "warning",
    "failed": "error",
}
ERROR_CAUSES = frozenset({"server_unresolved", "no_backup"})


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


def _api_said(exc: VpsApiError) -> str:
    if isinstance(exc, ApiStatusError):
        return f"HTTP {exc.status_code}" + (f": {exc.api_message}" if exc.api_message else "")
    return exc.message


def _restore_was_not_applied(exc: VpsApiError) -> bool:
    """True when the API certainly did not start the restore (the claim can be released)."""
    if isinstance(exc, OutcomeUnknownError):
        return False
    if isinstance(exc, RateLimitedError):
        return True
    if isinstance(exc, ServerError):
        return exc.status_code == 503  # 503 means not applied; a 500 may have started something
    if isinstance(exc, ApiStatusError):
        return 400 <= exc.status_code < 500  # refused
    # ApiConnectionError / ApiTimeoutError on a POST: raised only when the request never left
    # (after it left, the client raises OutcomeUnknownError instead).
    return isinstance(exc, ApiConnectionError)


def _send_restore(client: VpsClient, server_id: int, backup_id: int) -> RestoreAccepted:
    """The restore call; an error that is not the client's own (e.g. ``httpx.DecodingError`` of an
    answer) may come after the request left, so it is an unknown outcome, never a plain failure
    (which would release the claim)."""
    try:
        return client.restore_server(server_id, backup_id)
    except VpsApiError:
        raise
    except Exception as exc:
        kind = type(exc).__name__
        raise OutcomeUnknownError(
            f"POST /servers/{server_id}/restore/: {kind} while restoring; it may have been applied",
            method="POST",
            path=f"/servers/{server_id}/restore/",
            cause=kind,
        ) from exc


class AlarmRestorer:
    """Handles one :class:`AlarmTransition` (already known to enter ALARM) end to end.

    The words people read are composed in :mod:`vpsbackup.restore.messages`; this class chooses which.
    """

    def __init__(
        self,
        settings: RestoreOnAlarmSettings,
        *,
        client: VpsClient,
        state: StateTable,
        guard: RestoreGuard,
        notifier: Notifier,
        alarm_tags: Callable[[str], Mapping[str, str]],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.client = client
        self.state = state
        self.guard = guard
        self.notifier = notifier
        self._alarm_tags = alarm_tags
        self._clock = clock

    # -- the sequence --------------------------------------------------------------------------

    def handle(self, transition: AlarmTransition) -> RestoreOutcome:
        alarm = transition.alarm_name
        log = {"alarm": alarm, "transition": transition.key}
        resolution = resolve_server(
            transition,
            dimension=self.settings.server_id_dimension,
            alarm_server_map=self.settings.alarm_server_map,
            tags=lambda: self._tags_of(transition),
        )
        scene = messages.AlarmScene(transition, resolution, self.settings.restore_mode)
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
        except VpsApiError as exc:
            said = _api_said(exc)
            logger.error("no restore: the backups could not be listed", extra={**log, "error": said})
            reason = f"the backups of server {server_id} could not be listed: {said}"
            return self._publish(
                scene,
                RestoreOutcome("failed", reason, alarm, server_id, cause="list_failed"),
                messages.listing_failed(scene, server_id, said),
            )
        decision = choose_restore_point(
            server_id,
            backups,
            deployment=deployment,
            alarm_at=transition.state_changed_at,
            max_age=self.settings.restore_max_backup_age,
        )
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

        claim = self.guard.claim(
            server_id=server_id, backup_id=backup.id, transition_key=transition.key, alarm_name=alarm
        )
        if isinstance(claim, GuardRefusal):
            return self._refused(scene, decision, claim)
        try:
            return self._restore(scene, decision, backup, claim)
        except Exception as exc:  # an AWS or programming error after the claim: never leave people uninformed
            logger.exception("restore aborted by an unexpected error", extra=log)
            # Only reached before the restore request was sent (see _restore): releasing is safe.
            error_name = type(exc).__name__
            self._guard_update(lambda: self.guard.release(claim, f"unexpected error: {error_name}"), log)
            reason = f"an unexpected error stopped the restore: {error_name}"
            return self._publish(
                scene,
                RestoreOutcome("failed", reason, alarm, server_id, backup.id, cause="internal_error"),
                messages.internal_error(scene, decision, backup, error_name),
            )

    def _restore(
        self, scene: messages.AlarmScene, decision: RestorePointDecision, backup: Backup, claim: RestoreClaim
    ) -> RestoreOutcome:
        alarm, server_id = scene.alarm, claim.server_id
        log = {"alarm": alarm, "server_id": str(server_id), "transition": scene.transition.key}
        hold_until = self._hold(scene.transition, backup)

        # The listing may be minutes old (and the claim took time): re-read the status right before.
        try:
            fresh = next((b for b in self.client.iter_backups(server_id=server_id) if b.id == backup.id), None)
        except VpsApiError as exc:
            said = _api_said(exc)
            reason = f"backup {backup.id} could not be re-read before restoring: {said}"
            return self._released(
                claim,
                f"re-reading backup {backup.id} failed: {said}",
                scene,
                RestoreOutcome("failed", reason, alarm, server_id, backup.id, cause="reread_failed"),
                messages.reread_failed(scene, decision, backup, said),
            )
        if fresh is None or not fresh.is_completed or fresh.server.id != server_id:
            now_is = messages.backup_now_is(fresh, server_id)
            outcome = RestoreOutcome(
                "skipped",
                f"backup {backup.id} {now_is} (it was completed when chosen)",
                alarm,
                server_id,
                backup.id,
                cause="backup_changed",
            )
            message = messages.backup_changed(scene, decision, backup, now_is)
            return self._released(claim, f"backup {backup.id} {now_is}", scene, outcome, message)

        try:
            accepted = _send_restore(self.client, server_id, backup.id)
        except VpsApiError as exc:
            return self._restore_failed(scene, decision, backup, claim, exc)

        # The restore happened; if this fails the lock still holds (state "claimed"): only logged.
        self._guard_update(lambda: self.guard.mark_restored(claim), log)
        logger.info(
            "server restored",
            extra={"alarm": alarm, "server_id": server_id, "backup_id": backup.id, "status": accepted.status_code},
        )
        guardrails = messages.Guardrails(
            locked_until=claim.locked_until,
            cooldown=self.settings.restore_cooldown,
            hold_until=hold_until,
            hold=self.settings.restore_hold,
        )
        return self._publish(
            scene,
            RestoreOutcome(
                "restored",
                decision.reason,
                alarm,
                server_id,
                backup.id,
                cause=decision.basis,
                extra={"api_status": accepted.status_code},
            ),
            messages.restored(scene, decision, backup, api_status=accepted.status_code, guardrails=guardrails),
        )

    def _restore_failed(
        self,
        scene: messages.AlarmScene,
        decision: RestorePointDecision,
        backup: Backup,
        claim: RestoreClaim,
        exc: VpsApiError,
    ) -> RestoreOutcome:
        alarm, server_id = scene.alarm, claim.server_id
        log = {"alarm": alarm, "server_id": str(server_id), "transition": scene.transition.key}
        said = _api_said(exc)
        # From here on nothing may raise into handle(), whose fallback releases the claim: a
        # failed lock update leaves it "claimed", which blocks new restores for the cooldown.
        not_applied = _restore_was_not_applied(exc)
        if not_applied:
            self._guard_update(lambda: self.guard.release(claim, f"restore refused or not applied: {said}"), log)
        else:
            self._guard_update(lambda: self.guard.mark_outcome_unknown(claim, said), log)
        cause = (
            f"api_{exc.status_code}"
            if isinstance(exc, ApiStatusError)
            else "outcome_unknown"
            if isinstance(exc, OutcomeUnknownError)
            else "api_unreachable"
        )
        logger.error(
            "restore failed",
            extra={"alarm": alarm, "server_id": server_id, "backup_id": backup.id, "api_said": said, "cause": cause},
        )
        reason = f"the API did not restore server {server_id} from backup {backup.id}: {said}"
        return self._publish(
            scene,
            RestoreOutcome("failed", reason, alarm, server_id, backup.id, cause=cause),
            messages.restore_failed(
                scene, decision, backup, api_said=said, not_applied=not_applied, locked_until=claim.locked_until
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
        hold_until = self._hold(scene.transition, backup)
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
        logger.warning(
            "restore refused by the guardrails",
            extra={"alarm": scene.alarm, "server_id": server_id, "kind": refusal.kind, "why": refusal.reason},
        )
        return self._publish(
            scene,
            RestoreOutcome("skipped", refusal.reason, scene.alarm, server_id, backup_id, cause=refusal.kind),
            messages.refused(scene, decision, kind=refusal.kind, reason=refusal.reason),
        )

    # -- helpers -------------------------------------------------------------------------------

    def _untimely(self, transition: AlarmTransition) -> tuple[str, str] | None:
        """(cause, why) when the alarm's state change is too old or in the future to act on."""
        now = self._clock()
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

    @staticmethod
    def _guard_update(update: Callable[[], None], log: Mapping[str, str]) -> None:
        """Run a lock update after which nothing must raise; a failure is logged, the lock stays as it was."""
        try:
            update()
        except Exception:
            logger.exception("could not update the restore lock; it stays claimed", extra=dict(log))

    def _tags_of(self, transition: AlarmTransition) -> Mapping[str, str] | None:
        if transition.tags is not None:
            return transition.tags
        if not transition.alarm_arn:
            return None
        try:
            return self._alarm_tags(transition.alarm_arn)
        except Exception as exc:  # AccessDenied (alarm outside the prefix), throttling...: fall back to the map
            logger.warning(
                "could not read the alarm's tags", extra={"alarm": transition.alarm_name, "error": type(exc).__name__}
            )
            return None

    def _hold(self, transition: AlarmTransition, backup: Backup) -> datetime:
        until = self._clock() + self.settings.restore_hold
        self.state.put_hold(
            Hold(
                backup_id=backup.id,
                server_id=backup.server.id,
                until=until,
                reason=f"restore point for alarm {transition.alarm_name}",
            )
        )
        return until

    def _released(
        self,
        claim: RestoreClaim,
        why: str,
        scene: messages.AlarmScene,
        outcome: RestoreOutcome,
        message: messages.Message,
    ) -> RestoreOutcome:
        """Release the claim (the restore request was not sent), then tell people."""
        self.guard.release(claim, why)
        return self._publish(scene, outcome, message)

    def _publish(
        self, scene: messages.AlarmScene, outcome: RestoreOutcome, message: messages.Message
    ) -> RestoreOutcome:
        routing = Routing(
            "restore-on-alarm", outcome.outcome, severity_of(outcome.outcome, outcome.cause), outcome.server_id
        )
        notified = self.notifier.publish(
            message.subject, message.body, routing=routing, attributes={"alarm": scene.alarm}
        )
        return RestoreOutcome(**{**outcome.as_dict(), "notified": notified})
