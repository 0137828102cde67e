"""The one restore path, shared by the alarm path (:mod:`vpsbackup.restore.job`) and a person's
manual restore (:mod:`vpsbackup.restore.manual`): from the guard's claim to the restore call, and the
journal of each.

:class:`GuardedRestore` takes a :class:`RestoreRequest` (which server, which backup, who asks and why)
through these steps, in this order (docs/restore-on-alarm.md):

1. :meth:`~GuardedRestore.claim` — the server's lock and ``RESTORE_COOLDOWN``, the fleet's
   ``MAX_RESTORES_PER_HOUR`` (:class:`~vpsbackup.restore.guard.RestoreGuard`, one transaction).
   Refused: ``restore_refused`` is journaled (a duplicate of an alarm change already handled is
   not a new refusal: only the caller logs it). A cooldown a person overrode: ``cooldown_overridden``;
2. :meth:`~GuardedRestore.carry_out` — the hold on the chosen backup, so that prune keeps it;
3. the backup's status re-read from the API — no longer completed, gone, or another server's: the
   claim is released, nothing is restored (``restore_refused``);
4. the restore call, once: accepted → the lock is marked restored; certainly not applied → the
   claim is released; outcome unknown → the claim is kept (the restore may be running). Each is
   journaled as ``restore_requested`` with that outcome.

An unexpected error before the restore call releases the claim and is an outcome
(``internal_error``), never an exception; once the call may have left, the claim is never released
(a failing lock update leaves it ``claimed``, which blocks like ``outcome_unknown``). The journal
never blocks a step (:meth:`vpsbackup.aws.journal.Journal.record` never raises). Callers word the
outcome for people; this module sequences the effects and says what happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from vpsbackup.aws.journal import Journal
from vpsbackup.aws.state import StateTable
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
from vpsbackup.records import DeploymentRecord, Hold, JournalAct
from vpsbackup.restore.guard import GuardRefusal, RestoreClaim, RestoreGuard
from vpsbackup.restore.messages import backup_now_is
from vpsbackup.restore.point import RestorePointDecision, choose_restore_point
from vpsbackup.restore.settings import RestoreOnAlarmSettings

AttemptKind = Literal["restored", "backup_changed", "reread_failed", "not_applied", "outcome_unknown", "internal_error"]
Trigger = Literal["alarm", "manual"]


def api_said(exc: VpsApiError) -> str:
    """What the API answered, short: ``HTTP 409: a restore is already running``."""
    if isinstance(exc, ApiStatusError):
        return f"HTTP {exc.status_code}" + (f": {exc.api_message}" if exc.api_message else "")
    return exc.message


def restore_was_not_applied(exc: VpsApiError) -> bool:
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


def send_restore(client: VpsClient, server_id: int, backup_id: int) -> RestoreAccepted:
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


def failure_cause(exc: VpsApiError) -> str:
    """The short cause of a failed restore call: ``api_409``, ``outcome_unknown``, ``api_unreachable``."""
    if isinstance(exc, ApiStatusError):
        return f"api_{exc.status_code}"
    return "outcome_unknown" if isinstance(exc, OutcomeUnknownError) else "api_unreachable"


@dataclass(frozen=True)
class RestoreRequest:
    """One restore someone asks for: the restore point and who asks, in the words the lock, the hold
    and the journal keep. ``transition_key`` is unique per request (an alarm's state change, or
    ``manual#<uuid>``); ``by`` is who asks (``alarm <name>``, a person's AWS identity)."""

    decision: RestorePointDecision
    backup: Backup
    transition_key: str
    trigger: Trigger
    by: str
    lock_name: str  # what the lock says claimed it (the alarm's name, the person)
    hold_reason: str
    override_cooldown: bool = False
    override_reason: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)  # more for the journal (alarm_at, loses)
    log: Mapping[str, str] = field(default_factory=dict)  # more for the log lines (the alarm)

    @property
    def server_id(self) -> int:
        return self.decision.server_id


@dataclass(frozen=True)
class RestoreAttempt:
    """What became of a granted claim: ``kind``, the words for it, and the API's answer or error."""

    kind: AttemptKind
    reason: str
    hold_until: datetime | None
    cause: str
    accepted: RestoreAccepted | None = None
    api_said: str | None = None
    now_is: str | None = None  # backup_changed: how the backup changed, in words
    error: str | None = None  # internal_error: the exception's type

    @property
    def sent(self) -> bool:
        """True when the restore call was made (whatever its answer)."""
        return self.kind in ("restored", "not_applied", "outcome_unknown")


@dataclass(kw_only=True, eq=False)
class GuardedRestore:
    """The shared steps of a restore (module docstring); the alarm path and the manual one extend it.

    ``journal`` None: nothing is journaled (only logged by the caller).
    """

    settings: RestoreOnAlarmSettings = field(kw_only=False)
    client: VpsClient
    state: StateTable
    guard: RestoreGuard
    journal: Journal | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    @property
    def opens_incident(self) -> bool:
        """True when a restore done here opens an incident its follow-ups settle (restore.recovery)."""
        return False

    # -- the journal ---------------------------------------------------------------------------

    def journaled(
        self,
        act: JournalAct,
        request: RestoreRequest,
        *,
        outcome: str,
        reasons: tuple[str, ...],
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """One journal entry about ``request`` (never raises)."""
        self.journal_entry(
            act,
            by=request.by,
            server_id=request.server_id,
            backup_id=request.backup.id,
            outcome=outcome,
            run=request.transition_key,
            reasons=reasons,
            details={"trigger": request.trigger, "basis": request.decision.basis, **request.details, **(details or {})},
        )

    def journal_entry(self, act: JournalAct, **entry: Any) -> None:
        """Write one entry, if there is a journal; never raises (see :meth:`Journal.record`)."""
        if self.journal is not None:
            self.journal.record(act, **entry)

    # -- the steps -----------------------------------------------------------------------------

    def choose(
        self, server_id: int, backups: Iterable[Backup], deployment: DeploymentRecord | None, at: datetime
    ) -> RestorePointDecision:
        """The restore point at ``at`` (the alarm's state change, or now for a person), with the
        settings both paths share: one set of inputs, so a person's restore chooses the way the alarm
        path does (``RESTORE_MAX_BACKUP_AGE``, ``RESTORE_WATCH_WINDOW``)."""
        return choose_restore_point(
            server_id,
            backups,
            deployment=deployment,
            alarm_at=at,
            max_age=self.settings.restore_max_backup_age,
            watch_window=self.settings.restore_watch_window,
        )

    def claim(self, request: RestoreRequest) -> RestoreClaim | GuardRefusal:
        """The guard's claim (lock, cooldown, fleet cap); a refusal and an override are journaled."""
        claim = self.guard.claim(
            server_id=request.server_id,
            backup_id=request.backup.id,
            transition_key=request.transition_key,
            alarm_name=request.lock_name,
            override_cooldown=request.override_cooldown,
        )
        if isinstance(claim, GuardRefusal):
            if claim.kind != "duplicate":  # an alarm change already handled: its outcome is journaled
                logger.warning(
                    "restore refused by the guardrails",
                    extra={**request.log, "server_id": request.server_id, "kind": claim.kind, "why": claim.reason},
                )
                self.journaled(
                    "restore_refused",
                    request,
                    outcome=claim.kind,
                    reasons=(claim.reason,),
                    details={"would_restore": request.decision.reason},
                )
            return claim
        if claim.overridden is not None:
            self.journaled(
                "cooldown_overridden",
                request,
                outcome="overridden",
                reasons=(request.override_reason or "",),
                details={
                    "overridden": claim.overridden.describe(),
                    "locked_until": claim.overridden.locked_until.isoformat(),
                },
            )
        return claim

    def hold(self, backup: Backup, *, reason: str, placed_by: str) -> datetime:
        """Hold ``backup`` (kind ``restore``) for ``RESTORE_HOLD``, so prune keeps it; returns until when."""
        now = self.clock()
        until = now + self.settings.restore_hold
        self.state.put_hold(
            Hold(
                backup_id=backup.id,
                server_id=backup.server.id,
                until=until,
                reason=reason,
                kind="restore",
                placed_by=placed_by,
                placed_at=now,
            )
        )
        return until

    def carry_out(self, claim: RestoreClaim, request: RestoreRequest) -> RestoreAttempt:
        """Hold, re-read, restore once, record the lock's state and journal it; never raises."""
        attempt = self._attempt(claim, request)
        act: JournalAct = "restore_refused" if attempt.kind == "backup_changed" else "restore_requested"
        details: dict[str, Any] = {"locked_until": claim.locked_until.isoformat()}
        if attempt.hold_until is not None:
            details["hold_until"] = attempt.hold_until.isoformat()
        if attempt.api_said:
            details["api_said"] = attempt.api_said
        if attempt.accepted is not None:
            details["api_status"] = attempt.accepted.status_code
        self.journaled(
            act, request, outcome=attempt.kind, reasons=(request.decision.reason, attempt.reason), details=details
        )
        return attempt

    def _attempt(self, claim: RestoreClaim, request: RestoreRequest) -> RestoreAttempt:
        backup, log = request.backup, {**request.log, "server_id": str(claim.server_id)}
        hold_until: datetime | None = None
        try:
            hold_until = self.hold(backup, reason=request.hold_reason, placed_by=request.by)
            # The listing may be minutes old (and the claim took time): re-read the status right before.
            fresh = next((b for b in self.client.iter_backups(server_id=claim.server_id) if b.id == backup.id), None)
        except VpsApiError as exc:
            said = api_said(exc)
            self.guard_update(lambda: self.guard.release(claim, f"re-reading backup {backup.id} failed: {said}"), log)
            reason = f"backup {backup.id} could not be re-read before restoring: {said}"
            return RestoreAttempt("reread_failed", reason, hold_until, "reread_failed", api_said=said)
        except Exception as exc:  # an AWS or programming error before the request: releasing is safe
            logger.exception("restore aborted by an unexpected error", extra=log)
            error = type(exc).__name__
            self.guard_update(lambda: self.guard.release(claim, f"unexpected error: {error}"), log)
            reason = f"an unexpected error stopped the restore: {error}"
            return RestoreAttempt("internal_error", reason, hold_until, "internal_error", error=error)
        if fresh is None or not fresh.is_completed or fresh.server.id != claim.server_id:
            now_is = backup_now_is(fresh, claim.server_id)
            self.guard_update(lambda: self.guard.release(claim, f"backup {backup.id} {now_is}"), log)
            reason = f"backup {backup.id} {now_is} (it was completed when chosen)"
            return RestoreAttempt("backup_changed", reason, hold_until, "backup_changed", now_is=now_is)
        return self._send(claim, backup, hold_until, log)

    def _send(
        self, claim: RestoreClaim, backup: Backup, hold_until: datetime | None, log: Mapping[str, str]
    ) -> RestoreAttempt:
        """The restore call, once; from here on nothing raises and the claim is released only when the
        restore certainly did not happen."""
        server_id = claim.server_id
        try:
            accepted = send_restore(self.client, server_id, backup.id)
        except VpsApiError as exc:
            said, cause = api_said(exc), failure_cause(exc)
            logger.error("restore failed", extra={**log, "backup_id": backup.id, "api_said": said, "cause": cause})
            if restore_was_not_applied(exc):
                self.guard_update(lambda: self.guard.release(claim, f"restore refused or not applied: {said}"), log)
                reason = f"the API did not restore server {server_id} from backup {backup.id}: {said}"
                return RestoreAttempt("not_applied", reason, hold_until, cause, api_said=said)
            self.guard_update(lambda: self.guard.mark_outcome_unknown(claim, said), log)
            reason = (
                f"the restore of server {server_id} from backup {backup.id} MAY have started (no clear answer): {said}"
            )
            return RestoreAttempt("outcome_unknown", reason, hold_until, cause, api_said=said)
        # The restore happened; if this fails the lock still holds (state "claimed"): only logged.
        self.guard_update(lambda: self.guard.mark_restored(claim, incident=self.opens_incident), log)
        logger.info("server restored", extra={**log, "backup_id": backup.id, "status": accepted.status_code})
        reason = (
            f"the API accepted the restore of server {server_id} from backup {backup.id} (HTTP {accepted.status_code})"
        )
        return RestoreAttempt("restored", reason, hold_until, "restored", accepted=accepted)

    @staticmethod
    def guard_update(update: Callable[[], None], log: Mapping[str, str]) -> None:
        """A lock update after which nothing must raise; a failure is logged, the lock stays as it was."""
        try:
            update()
        except Exception:
            logger.exception("could not update the restore lock; it stays claimed", extra=dict(log))
