"""The steps of a restore after its claim was granted, shared by the alarm path and the manual one.

In this order (docs/restore-on-alarm.md):

1. the hold on the chosen backup, so that prune keeps it;
2. the backup's status re-read from the API — no longer completed, gone, or another server's: the
   claim is released, nothing is restored;
3. the restore call, once: accepted → the lock is marked restored; certainly not applied → the
   claim is released; outcome unknown → the claim is kept (the restore may be running).

Callers word the outcome for people; this module only sequences the effects and says what happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from vpsbackup.aws.state import StateTable
from vpsbackup.observability import logger
from vpsbackup.provider.client import VpsClient
from vpsbackup.provider.errors import ApiStatusError, OutcomeUnknownError, VpsApiError
from vpsbackup.provider.models import Backup, RestoreAccepted
from vpsbackup.records import Hold
from vpsbackup.restore.guard import RestoreClaim, RestoreGuard
from vpsbackup.restore.job import _api_said, _restore_was_not_applied, _send_restore

AttemptKind = Literal["restored", "backup_changed", "reread_failed", "not_applied", "outcome_unknown"]


@dataclass(frozen=True)
class RestoreAttempt:
    """What became of a granted claim: ``kind``, the words for it, and the API's answer or error."""

    kind: AttemptKind
    reason: str
    hold_until: datetime
    cause: str
    accepted: RestoreAccepted | None = None
    api_said: str | None = None


def _guard_update(update: Callable[[], None], server_id: int) -> None:
    """A lock update after the request may have left: a failure is logged, the lock stays claimed."""
    try:
        update()
    except Exception:
        logger.exception("could not update the restore lock; it stays claimed", extra={"server_id": server_id})


def hold_restore_point(
    state: StateTable, backup: Backup, *, until: datetime, reason: str, placed_by: str, now: datetime
) -> datetime:
    """Hold ``backup`` (kind ``restore``) until ``until``; returns ``until``."""
    state.put_hold(
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


def restore_with_claim(
    client: VpsClient,
    state: StateTable,
    guard: RestoreGuard,
    claim: RestoreClaim,
    backup: Backup,
    *,
    hold_for: timedelta,
    hold_reason: str,
    placed_by: str,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> RestoreAttempt:
    """Hold, re-read, restore once, and record the lock's state (see the module docstring)."""
    server_id = claim.server_id
    now = clock()
    hold_until = hold_restore_point(
        state, backup, until=now + hold_for, reason=hold_reason, placed_by=placed_by, now=now
    )
    try:
        fresh = next((b for b in client.iter_backups(server_id=server_id) if b.id == backup.id), None)
    except VpsApiError as exc:
        guard.release(claim, f"re-reading backup {backup.id} failed: {_api_said(exc)}")
        return RestoreAttempt(
            "reread_failed",
            f"backup {backup.id} could not be re-read before restoring: {_api_said(exc)}",
            hold_until,
            "reread_failed",
            api_said=_api_said(exc),
        )
    if fresh is None or not fresh.is_completed or fresh.server.id != server_id:
        now_is = (
            "is gone"
            if fresh is None
            else f"is now {fresh.status}"
            if fresh.server.id == server_id
            else "belongs to another server"
        )
        guard.release(claim, f"backup {backup.id} {now_is}")
        return RestoreAttempt(
            "backup_changed",
            f"backup {backup.id} {now_is} (it was completed when chosen)",
            hold_until,
            "backup_changed",
        )
    try:
        accepted = _send_restore(client, server_id, backup.id)
    except VpsApiError as exc:
        said = _api_said(exc)
        cause = (
            f"api_{exc.status_code}"
            if isinstance(exc, ApiStatusError)
            else "outcome_unknown"
            if isinstance(exc, OutcomeUnknownError)
            else "api_unreachable"
        )
        if _restore_was_not_applied(exc):
            _guard_update(lambda: guard.release(claim, f"restore refused or not applied: {said}"), server_id)
            return RestoreAttempt(
                "not_applied",
                f"the API did not restore server {server_id} from backup {backup.id}: {said}",
                hold_until,
                cause,
                api_said=said,
            )
        _guard_update(lambda: guard.mark_outcome_unknown(claim, said), server_id)
        return RestoreAttempt(
            "outcome_unknown",
            f"the restore of server {server_id} from backup {backup.id} MAY have started (no clear answer): {said}",
            hold_until,
            cause,
            api_said=said,
        )
    _guard_update(lambda: guard.mark_restored(claim), server_id)
    return RestoreAttempt(
        "restored",
        f"the API accepted the restore of server {server_id} from backup {backup.id} (HTTP {accepted.status_code})",
        hold_until,
        "restored",
        accepted=accepted,
    )
