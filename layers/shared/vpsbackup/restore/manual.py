"""A restore started by a person (``vpsbackup restore``), inside the alarm path's guardrails.

The restore point is chosen as the alarm path chooses it, with the same settings
(:meth:`~vpsbackup.restore.execute.GuardedRestore.choose`, with "now" as the alarm's time), or is the
backup the person named, checked by :func:`choose_named_backup`. From there on it is the alarm
path's own code, :class:`~vpsbackup.restore.execute.GuardedRestore`: the guard's claim (the server's
lock and cooldown, the fleet cap), the hold, the status re-read, one restore call, the journal. A
person may override the cooldown, with a reason; the fleet cap and a restore that may be running
right now still stop them. Every request, refusal and override is written to the journal.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from vpsbackup.durations import format_duration
from vpsbackup.observability import logger
from vpsbackup.provider.errors import ListingIncompleteError
from vpsbackup.provider.models import Backup
from vpsbackup.restore.execute import AttemptKind, GuardedRestore, RestoreRequest
from vpsbackup.restore.guard import MANUAL_TRANSITION_PREFIX, GuardRefusal
from vpsbackup.restore.point import RestorePointDecision, human_time

ManualOutcome = Literal["restored", "refused", "failed", "outcome_unknown"]
# What a person is told became of their restore; any other attempt is "failed".
MANUAL_OUTCOMES: Mapping[AttemptKind, ManualOutcome] = {
    "restored": "restored",
    "outcome_unknown": "outcome_unknown",
    "backup_changed": "refused",
}


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
    # Why there is no restore point, for the journal: no usable backup, or an incomplete listing.
    cause: str = "no_backup"

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


@dataclass(kw_only=True, eq=False)
class ManualRestorer(GuardedRestore):
    """Plans and carries out one person's restore (``who``: their AWS identity) through the shared
    steps of :class:`~vpsbackup.restore.execute.GuardedRestore`; every act and refusal is journaled."""

    who: str

    def plan(
        self, server_id: int, *, backup_id: int | None = None, override_cooldown: bool = False
    ) -> ManualRestorePlan:
        """The restore point and the guardrails' verdict now; changes nothing."""
        now = self.clock()
        try:
            backups = self.client.list_backups(server_id=server_id)
        except ListingIncompleteError as exc:
            # As on the alarm path: no restore point from part of the listing, named or chosen.
            logger.warning(
                "manual restore: the listing is incomplete", extra={"server_id": server_id, "why": exc.problem}
            )
            why = f"the listing of server {server_id}'s backups is incomplete: {exc.problem}"
            none = RestorePointDecision(server_id=server_id, backup=None, basis="none", reason=why)
            return ManualRestorePlan(server_id, none, now, override_cooldown, None, cause="list_incomplete")
        if backup_id is not None:
            decision = choose_named_backup(server_id, backups, backup_id)
        else:
            decision = self.choose(server_id, backups, self.state.latest_deployment_before(server_id, now), now)
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
            self._journal_no_backup(plan)
        elif plan.refusal is not None:
            self.journal_entry(
                "restore_refused",
                by=self.who,
                outcome=plan.refusal.kind,
                server_id=plan.server_id,
                backup_id=plan.backup.id,
                reasons=(plan.refusal.reason,),
                details={"trigger": "manual", "would_restore": plan.decision.reason},
            )

    def execute(self, plan: ManualRestorePlan, *, override_reason: str | None = None) -> ManualRestoreResult:
        """Claim, hold, re-read, restore once (the shared path). A refusal or failure is a result, never
        an exception."""
        server_id, backup = plan.server_id, plan.backup
        if backup is None:
            return self._journal_no_backup(plan)
        if plan.override_cooldown and not override_reason:
            raise ValueError("override_reason: a cooldown override needs a reason")
        details = {"loses": format_duration(plan.loses)} if plan.loses is not None else {}
        request = RestoreRequest(
            decision=plan.decision,
            backup=backup,
            transition_key=f"{MANUAL_TRANSITION_PREFIX}{uuid.uuid4().hex}",
            trigger="manual",
            by=self.who,
            lock_name=self.who,
            hold_reason=f"restore point of a manual restore by {self.who}",
            override_cooldown=plan.override_cooldown,
            override_reason=override_reason,
            details=details,
        )
        claim = self.claim(request)
        if isinstance(claim, GuardRefusal):
            return ManualRestoreResult("refused", claim.reason, server_id, backup.id, claim.kind)
        overridden = claim.overridden.describe() if claim.overridden is not None else None
        attempt = self.carry_out(claim, request)
        return ManualRestoreResult(
            MANUAL_OUTCOMES.get(attempt.kind, "failed"),
            attempt.reason,
            server_id,
            backup.id,
            attempt.cause,
            attempt.hold_until,
            overridden,
        )

    def _journal_no_backup(self, plan: ManualRestorePlan) -> ManualRestoreResult:
        reason = f"no restore point: {plan.decision.reason}"
        self.journal_entry(
            "restore_refused",
            by=self.who,
            outcome=plan.cause,
            server_id=plan.server_id,
            reasons=(reason,),
            details={"trigger": "manual"},
        )
        return ManualRestoreResult("refused", reason, plan.server_id, None, plan.cause)
