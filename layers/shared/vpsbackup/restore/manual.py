"""A restore started by a person (``vpsbackup restore``), inside the alarm path's guardrails.

The same pieces as the alarm path, in the same order: the restore point
(:func:`~vpsbackup.restore.point.choose_restore_point`, with "now" as the alarm's time, or the backup
the person named, checked by :func:`choose_named_backup`), the guard's claim (the server's lock and
cooldown, the fleet cap; :class:`~vpsbackup.restore.guard.RestoreGuard`), then
:func:`~vpsbackup.restore.execute.restore_with_claim` (the hold, the status re-read, one restore
call). A person may override the cooldown, with a reason; the fleet cap and a restore that may be
running right now still stop them. Every request, refusal and override is written to the journal.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from vpsbackup.aws.journal import Journal
from vpsbackup.aws.state import StateTable
from vpsbackup.durations import format_duration
from vpsbackup.observability import logger
from vpsbackup.provider.client import VpsClient
from vpsbackup.provider.models import Backup
from vpsbackup.restore.execute import RestoreAttempt, restore_with_claim
from vpsbackup.restore.guard import MANUAL_TRANSITION_PREFIX, GuardRefusal, RestoreGuard
from vpsbackup.restore.point import RestorePointDecision, choose_restore_point, human_time
from vpsbackup.restore.settings import RestoreOnAlarmSettings

ManualOutcome = Literal["restored", "refused", "failed", "outcome_unknown"]


def choose_named_backup(server_id: int, backups: Iterable[Backup], backup_id: int) -> RestorePointDecision:
    """The backup a person named, if it is a ``completed`` backup of ``server_id``; otherwise no
    restore point, and why. Pure; no age limit (the person chose it, and is shown what it loses)."""
    named = next((b for b in backups if b.id == backup_id), None)
    if named is None:
        why = f"backup {backup_id} is not among server {server_id}'s backups"
    elif named.server.id != server_id:
        why = f"backup {backup_id} belongs to server {named.server.id}, not {server_id}"
    elif not named.is_completed:
        why = f"backup {backup_id} is {named.status}: only a completed backup can be restored"
    else:
        return RestorePointDecision(
            server_id=server_id,
            backup=named,
            basis="newest_completed",
            reason=(
                f"backup {named.id} ({named.backup_type}, created {human_time(named.created_at)}) was named by hand"
            ),
        )
    return RestorePointDecision(server_id=server_id, backup=None, basis="none", reason=why)


@dataclass(frozen=True)
class ManualRestorePlan:
    """What a manual restore would do now: the restore point, and what the guardrails say."""

    server_id: int
    decision: RestorePointDecision
    now: datetime
    override_cooldown: bool
    refusal: GuardRefusal | None

    @property
    def backup(self) -> Backup | None:
        return self.decision.backup

    @property
    def loses(self) -> timedelta | None:
        """How much the server loses: the time since the backup was made."""
        return None if self.decision.backup is None else self.now - self.decision.backup.created_at

    @property
    def refused_because(self) -> str | None:
        """Why it would not go ahead (no backup, or a guard), or None."""
        if self.decision.backup is None:
            return f"no restore point: {self.decision.reason}"
        return self.refusal.reason if self.refusal is not None else None


@dataclass(frozen=True)
class ManualRestoreResult:
    outcome: ManualOutcome
    reason: str
    server_id: int
    backup_id: int | None
    cause: str
    hold_until: datetime | None = None
    overridden: str | None = None


class ManualRestorer:
    """Plans and carries out one person's restore; every act and refusal is journaled."""

    def __init__(
        self,
        settings: RestoreOnAlarmSettings,
        *,
        client: VpsClient,
        state: StateTable,
        guard: RestoreGuard,
        journal: Journal,
        who: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.client = client
        self.state = state
        self.guard = guard
        self.journal = journal
        self.who = who
        self._clock = clock

    def plan(
        self, server_id: int, *, backup_id: int | None = None, override_cooldown: bool = False
    ) -> ManualRestorePlan:
        """The restore point and the guardrails' verdict now; changes nothing."""
        now = self._clock()
        backups = self.client.list_backups(server_id=server_id)
        if backup_id is not None:
            decision = choose_named_backup(server_id, backups, backup_id)
        else:
            decision = choose_restore_point(
                server_id,
                backups,
                deployment=self.state.latest_deployment_before(server_id, now),
                alarm_at=now,
                max_age=self.settings.restore_max_backup_age,
            )
        refusal = self.guard.check(
            server_id=server_id, transition_key=f"{MANUAL_TRANSITION_PREFIX}plan", override_cooldown=override_cooldown
        )
        logger.info(
            "manual restore planned",
            extra={
                "server_id": server_id,
                "backup_id": decision.backup.id if decision.backup else None,
                "why": decision.reason,
                "guard": refusal.reason if refusal else "allowed",
            },
        )
        return ManualRestorePlan(server_id, decision, now, override_cooldown, refusal)

    def refuse(self, plan: ManualRestorePlan) -> None:
        """Journal the refusal the plan already shows (nothing is claimed, nothing changes)."""
        if plan.backup is None:
            self._journal_refusal(plan.server_id, None, "no_backup", f"no restore point: {plan.decision.reason}")
        elif plan.refusal is not None:
            self._journal_refusal(plan.server_id, plan.backup.id, plan.refusal.kind, plan.refusal.reason)

    def execute(self, plan: ManualRestorePlan, *, override_reason: str | None = None) -> ManualRestoreResult:
        """Claim, hold, re-read, restore once. A refusal or failure is a result, never an exception."""
        server_id, backup = plan.server_id, plan.backup
        if backup is None:
            reason = f"no restore point: {plan.decision.reason}"
            self._journal_refusal(server_id, None, "no_backup", reason)
            return ManualRestoreResult("refused", reason, server_id, None, "no_backup")
        if plan.override_cooldown and not override_reason:
            raise ValueError("override_reason: a cooldown override needs a reason")
        claim = self.guard.claim(
            server_id=server_id,
            backup_id=backup.id,
            transition_key=f"{MANUAL_TRANSITION_PREFIX}{uuid.uuid4().hex}",
            alarm_name=self.who,
            override_cooldown=plan.override_cooldown,
        )
        if isinstance(claim, GuardRefusal):
            self._journal_refusal(server_id, backup.id, claim.kind, claim.reason)
            logger.warning(
                "manual restore refused by the guardrails", extra={"server_id": server_id, "why": claim.reason}
            )
            return ManualRestoreResult("refused", claim.reason, server_id, backup.id, claim.kind)
        overridden = None
        if claim.overridden is not None:
            overridden = claim.overridden.describe()
            self.journal.record(
                "cooldown_overridden",
                by=self.who,
                outcome="overridden",
                server_id=server_id,
                backup_id=backup.id,
                run=claim.transition_key,
                reasons=(override_reason or "",),
                details={"overridden": overridden, "locked_until": claim.overridden.locked_until.isoformat()},
            )
        try:
            attempt = restore_with_claim(
                self.client,
                self.state,
                self.guard,
                claim,
                backup,
                hold_for=self.settings.restore_hold,
                hold_reason=f"restore point of a manual restore by {self.who}",
                placed_by=self.who,
                clock=self._clock,
            )
        except Exception as exc:  # before the request left (restore_with_claim never raises after it)
            self.guard.release(claim, f"unexpected error: {type(exc).__name__}")
            reason = f"an unexpected error stopped the restore: {type(exc).__name__}: {exc}"
            self._journal_request(plan, claim.transition_key, "failed", reason, None)
            return ManualRestoreResult("failed", reason, server_id, backup.id, "internal_error")
        self._journal_request(plan, claim.transition_key, attempt.kind, attempt.reason, attempt)
        outcome: ManualOutcome = (
            "restored"
            if attempt.kind == "restored"
            else "outcome_unknown"
            if attempt.kind == "outcome_unknown"
            else "refused"
            if attempt.kind == "backup_changed"
            else "failed"
        )
        return ManualRestoreResult(
            outcome, attempt.reason, server_id, backup.id, attempt.cause, attempt.hold_until, overridden
        )

    def _journal_refusal(self, server_id: int, backup_id: int | None, cause: str, reason: str) -> None:
        self.journal.record(
            "restore_refused", by=self.who, outcome=cause, server_id=server_id, backup_id=backup_id, reasons=(reason,)
        )

    def _journal_request(
        self, plan: ManualRestorePlan, run: str, outcome: str, reason: str, attempt: RestoreAttempt | None
    ) -> None:
        backup = plan.backup
        details: dict[str, str] = {"trigger": "manual"}
        if plan.loses is not None:
            details["loses"] = format_duration(plan.loses)
        if attempt is not None:
            details["hold_until"] = attempt.hold_until.isoformat()
            if attempt.api_said:
                details["api_said"] = attempt.api_said
        self.journal.record(
            "restore_requested",
            by=self.who,
            outcome=outcome,
            server_id=plan.server_id,
            backup_id=backup.id if backup else None,
            run=run,
            reasons=(plan.decision.reason, reason),
            details=details,
        )
