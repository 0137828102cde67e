"""Restore on alarm (docs/restore-on-alarm.md): from one alarm transition to one outcome, told to the people on call.

The decisions are pure and live elsewhere (``restore.alarm.resolve_server``,
``restore.point.choose_restore_point``); the guardrails are ``restore.guard``. This module only
sequences the effects, in this order, and turns every path into a :class:`RestoreOutcome`:

1. which server (dimension, tag, map) — unresolved: skipped, notified; an alarm that changed state
   more than ``MAX_ALARM_AGE`` ago (a redelivery, a redrive of the failed-invocations queue, a
   replay) or that claims a time in the future: skipped, notified — an automatic restore acts on
   a fresh alarm only, never on one the people on call may already have dealt with;
2. the server's latest deployment before the alarm (StateTable) and its backups (API);
3. the restore point — none: skipped, notified;
4. ``RESTORE_MODE=notify``: the plan is published, with what the guardrails would say; nothing is
   claimed (a shadow run must not use up the cooldown or the fleet budget of the real thing), but
   the proposed backup is held so that prune keeps it for whoever acts on the plan;
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

from vpsbackup.aws.notifications import Notifier
from vpsbackup.aws.state import StateTable
from vpsbackup.durations import format_duration
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
from vpsbackup.restore.alarm import AlarmTransition, ServerResolution, resolve_server
from vpsbackup.restore.guard import GuardRefusal, RestoreClaim, RestoreGuard
from vpsbackup.restore.point import RestorePointDecision, choose_restore_point, human_time
from vpsbackup.restore.settings import RestoreOnAlarmSettings

# An alarm older than this is not acted on (the template's EventBridge and async-invoke
# MaximumEventAgeInSeconds is 900 too, but counts from when the event was queued, and does not cover
# a redrive, a replay or a direct invoke); one further in the future than the skew is not trusted.
MAX_ALARM_AGE = timedelta(minutes=15)
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
    """Handles one :class:`AlarmTransition` (already known to enter ALARM) end to end."""

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
        if resolution.server_id is None:
            logger.error(
                "no restore: cannot tell which server the alarm is about", extra={**log, "why": resolution.explanation}
            )
            return self._publish(
                transition,
                RestoreOutcome(
                    "skipped",
                    f"cannot tell which server the alarm is about: {resolution.explanation}",
                    alarm,
                    cause="server_unresolved",
                ),
                subject=f"Restore skipped: alarm {alarm} names no server",
                body=self._unresolved_body(transition, resolution),
            )
        server_id = resolution.server_id
        log["server_id"] = str(server_id)

        if (untimely := self._untimely(transition)) is not None:
            cause, why = untimely
            logger.warning("no restore: the alarm is not current", extra={**log, "why": why})
            return self._publish(
                transition,
                RestoreOutcome("skipped", why, alarm, server_id, cause=cause),
                subject=f"Restore skipped for server {server_id}: alarm {alarm} is not current",
                body=self._body(
                    transition,
                    resolution,
                    headline=f"Server {server_id} was NOT restored: {why}.",
                    lines=[],
                    todo=(
                        "Check whether the server still needs a restore and do it by hand if so; "
                        "no automatic restore will happen for this alarm change."
                    ),
                ),
            )

        deployment = self.state.latest_deployment_before(server_id, transition.state_changed_at)
        try:
            backups = self.client.list_backups(server_id=server_id)
        except VpsApiError as exc:
            logger.error("no restore: the backups could not be listed", extra={**log, "error": _api_said(exc)})
            return self._publish(
                transition,
                RestoreOutcome(
                    "failed",
                    f"the backups of server {server_id} could not be listed: {_api_said(exc)}",
                    alarm,
                    server_id,
                    cause="list_failed",
                ),
                subject=f"Restore FAILED for server {server_id}: backups could not be listed",
                body=self._body(
                    transition,
                    resolution,
                    headline=f"Server {server_id} was NOT restored: its backups could not be listed.",
                    lines=[f"The API said: {_api_said(exc)}"],
                    todo="Restore by hand if the server still needs it; check the provider's API status.",
                ),
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
                transition,
                RestoreOutcome("skipped", decision.reason, alarm, server_id, cause="no_backup"),
                subject=f"Restore skipped for server {server_id}: no usable backup",
                body=self._body(
                    transition,
                    resolution,
                    headline=f"Server {server_id} was NOT restored: there is no usable backup.",
                    lines=[f"Why: {decision.reason}."],
                    todo="Investigate the server by hand; no automatic restore will happen for this alarm.",
                ),
            )
        backup = decision.backup

        if self.settings.restore_mode == "notify":
            return self._plan(transition, resolution, decision, backup)

        claim = self.guard.claim(
            server_id=server_id, backup_id=backup.id, transition_key=transition.key, alarm_name=alarm
        )
        if isinstance(claim, GuardRefusal):
            return self._refused(transition, resolution, decision, claim)
        try:
            return self._restore(transition, resolution, decision, backup, claim)
        except Exception as exc:  # an AWS or programming error after the claim: never leave people uninformed
            logger.exception("restore aborted by an unexpected error", extra=log)
            # Only reached before the restore request was sent (see _restore): releasing is safe.
            why = f"unexpected error: {type(exc).__name__}"
            self._guard_update(lambda: self.guard.release(claim, why), log)
            return self._publish(
                transition,
                RestoreOutcome(
                    "failed",
                    f"an unexpected error stopped the restore: {type(exc).__name__}",
                    alarm,
                    server_id,
                    backup.id,
                    cause="internal_error",
                ),
                subject=f"Restore FAILED for server {server_id}: internal error",
                body=self._body(
                    transition,
                    resolution,
                    headline=(
                        f"Server {server_id} was NOT restored: the automation hit an unexpected error "
                        f"({type(exc).__name__})."
                    ),
                    lines=self._backup_lines(decision, backup),
                    todo="Check the function's logs; restore by hand if the server still needs it.",
                ),
            )

    def _restore(
        self,
        transition: AlarmTransition,
        resolution: ServerResolution,
        decision: RestorePointDecision,
        backup: Backup,
        claim: RestoreClaim,
    ) -> RestoreOutcome:
        alarm, server_id = transition.alarm_name, claim.server_id
        log = {"alarm": alarm, "server_id": str(server_id), "transition": transition.key}
        hold_until = self._hold(transition, backup)
        guard_lines = [
            f"Guardrails: no other restore of server {server_id} before {human_time(claim.locked_until)} "
            f"(RESTORE_COOLDOWN {format_duration(self.settings.restore_cooldown)}); backup {backup.id} is kept "
            f"from pruning until {human_time(hold_until)} (RESTORE_HOLD {format_duration(self.settings.restore_hold)})."
        ]

        # The listing may be minutes old (and the claim took time): re-read the status right before.
        try:
            fresh = next((b for b in self.client.iter_backups(server_id=server_id) if b.id == backup.id), None)
        except VpsApiError as exc:
            self.guard.release(claim, f"re-reading backup {backup.id} failed: {_api_said(exc)}")
            return self._publish(
                transition,
                RestoreOutcome(
                    "failed",
                    f"backup {backup.id} could not be re-read before restoring: {_api_said(exc)}",
                    alarm,
                    server_id,
                    backup.id,
                    cause="reread_failed",
                ),
                subject=f"Restore FAILED for server {server_id}: backup status unreadable",
                body=self._body(
                    transition,
                    resolution,
                    headline=(
                        f"Server {server_id} was NOT restored: backup {backup.id}'s status could not be re-read "
                        "just before restoring."
                    ),
                    lines=[*self._backup_lines(decision, backup), f"The API said: {_api_said(exc)}"],
                    todo="Restore by hand if the server still needs it.",
                ),
            )
        if fresh is None or not fresh.is_completed or fresh.server.id != server_id:
            now_is = (
                "is gone"
                if fresh is None
                else f"is now {fresh.status}"
                if fresh.server.id == server_id
                else "belongs to another server"
            )
            self.guard.release(claim, f"backup {backup.id} {now_is}")
            return self._publish(
                transition,
                RestoreOutcome(
                    "skipped",
                    f"backup {backup.id} {now_is} (it was completed when chosen)",
                    alarm,
                    server_id,
                    backup.id,
                    cause="backup_changed",
                ),
                subject=f"Restore skipped for server {server_id}: backup {backup.id} no longer usable",
                body=self._body(
                    transition,
                    resolution,
                    headline=(
                        f"Server {server_id} was NOT restored: backup {backup.id} {now_is} "
                        "(re-checked just before restoring)."
                    ),
                    lines=self._backup_lines(decision, backup),
                    todo="Restore by hand from another backup if the server still needs it.",
                ),
            )

        try:
            accepted = _send_restore(self.client, server_id, backup.id)
        except VpsApiError as exc:
            said = _api_said(exc)
            # From here on nothing may raise into handle(), whose fallback releases the claim: a
            # failed lock update leaves it "claimed", which blocks new restores for the cooldown.
            if _restore_was_not_applied(exc):
                self._guard_update(lambda: self.guard.release(claim, f"restore refused or not applied: {said}"), log)
                verdict = "The restore did not start. It will not be retried for this alarm; a new alarm may try again."
            else:
                self._guard_update(lambda: self.guard.mark_outcome_unknown(claim, said), log)
                verdict = (
                    "The restore MAY have started (no clear answer came back). It is not re-sent; the server stays "
                    f"locked for restores until {human_time(claim.locked_until)}."
                )
            cause = (
                f"api_{exc.status_code}"
                if isinstance(exc, ApiStatusError)
                else "outcome_unknown"
                if isinstance(exc, OutcomeUnknownError)
                else "api_unreachable"
            )
            logger.error(
                "restore failed",
                extra={
                    "alarm": alarm,
                    "server_id": server_id,
                    "backup_id": backup.id,
                    "api_said": said,
                    "cause": cause,
                },
            )
            return self._publish(
                transition,
                RestoreOutcome(
                    "failed",
                    f"the API did not restore server {server_id} from backup {backup.id}: {said}",
                    alarm,
                    server_id,
                    backup.id,
                    cause=cause,
                ),
                subject=f"Restore FAILED for server {server_id}: {said}",
                body=self._body(
                    transition,
                    resolution,
                    headline=f"Server {server_id} was NOT restored from backup {backup.id}.",
                    lines=[*self._backup_lines(decision, backup), f"The API said: {said}", verdict],
                    todo="Check the server and the provider's panel; restore by hand if it still needs it.",
                ),
            )

        # The restore happened; if this fails the lock still holds (state "claimed"): only logged.
        self._guard_update(lambda: self.guard.mark_restored(claim), log)
        logger.info(
            "server restored",
            extra={"alarm": alarm, "server_id": server_id, "backup_id": backup.id, "status": accepted.status_code},
        )
        named = f" ({backup.server.name})" if backup.server.name else ""
        return self._publish(
            transition,
            RestoreOutcome(
                "restored",
                decision.reason,
                alarm,
                server_id,
                backup.id,
                cause=decision.basis,
                extra={"api_status": accepted.status_code},
            ),
            subject=f"Restored server {server_id}{named} from backup {backup.id} after alarm {alarm}",
            body=self._body(
                transition,
                resolution,
                headline=(
                    f"Server {server_id}{named} is being restored from backup {backup.id} "
                    f"(the API answered HTTP {accepted.status_code})."
                ),
                lines=[*self._backup_lines(decision, backup), *guard_lines],
                todo=(
                    f"Check that the server is healthy again. It now holds the state of "
                    f"{human_time(backup.created_at)}: anything written after that is gone from it."
                ),
            ),
        )

    def _plan(
        self, transition: AlarmTransition, resolution: ServerResolution, decision: RestorePointDecision, backup: Backup
    ) -> RestoreOutcome:
        server_id = decision.server_id
        refusal = self.guard.check(server_id=server_id, transition_key=transition.key)
        hold_until = self._hold(transition, backup)
        would = (
            "the guardrails would allow it now"
            if refusal is None
            else f"the guardrails would refuse it now: {refusal.reason}"
        )
        logger.info(
            "restore planned (RESTORE_MODE=notify)",
            extra={"alarm": transition.alarm_name, "server_id": server_id, "backup_id": backup.id, "guard": would},
        )
        return self._publish(
            transition,
            RestoreOutcome(
                "planned",
                decision.reason,
                transition.alarm_name,
                server_id,
                backup.id,
                cause=decision.basis,
                extra={"guard": would},
            ),
            subject=f"Restore plan for server {server_id}: backup {backup.id} (notify mode, nothing done)",
            body=self._body(
                transition,
                resolution,
                headline=(
                    f"RESTORE_MODE=notify: server {server_id} was NOT restored. The automation would restore it "
                    f"from backup {backup.id}."
                ),
                lines=[
                    *self._backup_lines(decision, backup),
                    f"Guardrails: {would}.",
                    f"Backup {backup.id} is kept from pruning until {human_time(hold_until)}.",
                ],
                todo=f'To restore by hand: POST /servers/{server_id}/restore/ with {{"backup_id": {backup.id}}}.',
            ),
        )

    def _refused(
        self,
        transition: AlarmTransition,
        resolution: ServerResolution,
        decision: RestorePointDecision,
        refusal: GuardRefusal,
    ) -> RestoreOutcome:
        server_id = decision.server_id
        backup_id = decision.backup.id if decision.backup else None
        if refusal.kind == "duplicate":
            logger.info(
                "duplicate alarm change: already handled",
                extra={"alarm": transition.alarm_name, "server_id": server_id, "why": refusal.reason},
            )
            return RestoreOutcome(
                "duplicate", refusal.reason, transition.alarm_name, server_id, backup_id, cause="duplicate"
            )
        logger.warning(
            "restore refused by the guardrails",
            extra={"alarm": transition.alarm_name, "server_id": server_id, "kind": refusal.kind, "why": refusal.reason},
        )
        label = "cooldown" if refusal.kind == "cooldown" else "fleet restore limit reached"
        return self._publish(
            transition,
            RestoreOutcome("skipped", refusal.reason, transition.alarm_name, server_id, backup_id, cause=refusal.kind),
            subject=f"Restore skipped for server {server_id}: {label}",
            body=self._body(
                transition,
                resolution,
                headline=f"Server {server_id} was NOT restored: {refusal.reason}.",
                lines=[f"It would have been restored from backup {backup_id}: {decision.reason}."] if backup_id else [],
                todo="If the server still needs a restore, do it by hand (the automation will not retry this alarm).",
            ),
        )

    # -- helpers -------------------------------------------------------------------------------

    def _untimely(self, transition: AlarmTransition) -> tuple[str, str] | None:
        """(cause, why) when the alarm's state change is too old or in the future to act on."""
        now = self._clock()
        at = transition.state_changed_at
        if now - at > MAX_ALARM_AGE:
            return "stale_alarm", (
                f"the alarm changed state at {human_time(at)}, {format_duration(now - at)} ago: more than "
                f"{format_duration(MAX_ALARM_AGE)} is too old for an automatic restore (a late redelivery or replay)"
            )
        if at - now > MAX_ALARM_CLOCK_SKEW:
            return "alarm_in_future", (
                f"the alarm's state-change time {human_time(at)} is {format_duration(at - now)} in the future "
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

    def _publish(
        self, transition: AlarmTransition, outcome: RestoreOutcome, *, subject: str, body: str
    ) -> RestoreOutcome:
        notified = self.notifier.publish(
            subject,
            body,
            attributes={
                "job": "restore-on-alarm",
                "outcome": outcome.outcome,
                "server_id": str(outcome.server_id or ""),
                "alarm": transition.alarm_name,
            },
        )
        return RestoreOutcome(**{**outcome.as_dict(), "notified": notified})

    @staticmethod
    def _backup_lines(decision: RestorePointDecision, backup: Backup) -> list[str]:
        description = f', "{backup.description}"' if backup.description else ""
        return [
            f"Backup: {backup.id}, {backup.backup_type}, created {human_time(backup.created_at)}{description}",
            f"Why this backup: {decision.reason}.",
        ]

    def _body(
        self, transition: AlarmTransition, resolution: ServerResolution, *, headline: str, lines: list[str], todo: str
    ) -> str:
        previous = transition.previous_state or "?"
        parts = [
            headline,
            "",
            f"Alarm: {transition.alarm_name} went {previous} -> {transition.new_state} "
            f"at {human_time(transition.state_changed_at)}",
        ]
        if transition.reason:
            parts.append(f"       {transition.reason}")
        if resolution.server_id is not None:
            parts.append(f"Server found by: {resolution.found_by}")
        parts += lines
        parts += ["", f"What to do: {todo}"]
        if self.settings.restore_mode == "execute" and transition.account:
            parts.append(f"(account {transition.account}, region {transition.region or '?'})")
        return "\n".join(parts)

    def _unresolved_body(self, transition: AlarmTransition, resolution: ServerResolution) -> str:
        return self._body(
            transition,
            resolution,
            headline=(
                f"No server was restored: the alarm {transition.alarm_name!r} does not say which server it is about."
            ),
            lines=[f"Looked for: {resolution.explanation}."],
            todo=(
                f"Give the alarm's metric a {self.settings.server_id_dimension} dimension, or tag the alarm "
                f"vps:server-id=<server id>, or add it to ALARM_SERVER_MAP; restore by hand if needed."
            ),
        )
