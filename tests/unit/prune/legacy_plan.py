"""FROZEN REFERENCE, not product code: the prune plan exactly as it was before it was split into named steps.

``test_plan_equivalence.py`` checks that :func:`vpsbackup.prune.plan.plan_prune` decides exactly as
this copy does (actions, reasons, order, valve) over random fleets. Do not edit it to make that test
pass: a difference is a behaviour change in the product code. It uses the frozen copy of
``apply_policy`` too (``legacy_retention``), so the whole decision is the old one. One deliberate
change is carried here: the failed-backup grace in the reasons is written for people
(``describe_duration``: "1 day", not "1d"); the decisions are untouched.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, tzinfo

from tests.unit.prune.legacy_retention import apply_policy
from vpsbackup.durations import describe_duration
from vpsbackup.markers import is_managed
from vpsbackup.provider.models import (
    BACKUP_AUTOMATIC,
    BACKUP_MANUAL,
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_IN_PROGRESS,
    Backup,
)
from vpsbackup.prune.plan import (
    ACTIONS,
    REASON_AUTOMATIC,
    REASON_CONFLICTING_COPIES,
    REASON_IN_PROGRESS,
    REASON_NEWEST_COMPLETED,
    REASON_NEWEST_COMPLETED_CANDIDATE,
    REASON_NEWEST_NOT_FUTURE,
    REASON_NOT_MANAGED,
    REASON_NOT_RETAINED,
    Action,
    BackupDecision,
    PrunePlan,
    Scope,
)
from vpsbackup.prune.retention import RetentionPolicy
from vpsbackup.records import Hold


def _order_key(backup: Backup) -> tuple[datetime, int]:
    # Time first; equal times fall back to the id, so the plan never depends on the listing order.
    return (backup.created_at, backup.id)


def _dedupe(backups: Iterable[Backup]) -> tuple[list[Backup], set[int]]:
    """One entry per backup id; ids whose copies disagree are returned apart, to be left alone."""
    copies: dict[int, list[Backup]] = defaultdict(list)
    for backup in backups:
        copies[backup.id].append(backup)
    unique: list[Backup] = []
    conflicting: set[int] = set()
    for backup_id, listed in copies.items():
        if any(other != listed[0] for other in listed[1:]):
            conflicting.add(backup_id)
            # Which copy is reported must not depend on the listing order either.
            unique.append(min(listed, key=lambda b: b.model_dump_json()))
        else:
            unique.append(listed[0])
    return unique, conflicting


def _hold_reason(hold: Hold) -> str:
    text = f"hold until {hold.until.isoformat()}"
    return f"{text}: {hold.reason}" if hold.reason else text


def plan_prune(
    backups: Iterable[Backup],
    *,
    policy_for: Callable[[int], RetentionPolicy],
    tz: tzinfo,
    now: datetime,
    scope: Scope,
    holds: Mapping[int, Hold],
    failed_grace: timedelta,
    max_deletions: int,
    server_ids: set[int] | frozenset[int] | None = None,
) -> PrunePlan:
    """Decide, for every backup of the selected servers, whether this run deletes it, and why.

    ``backups`` is the fleet's listing (manual and automatic, any order, duplicates tolerated);
    ``policy_for`` gives a server's retention policy (see ``RetentionPolicies``); ``holds`` maps
    backup ids to holds, and those whose ``until`` is after ``now`` are honoured; ``server_ids``
    limits the plan to those servers (``None``: all). Promises, whatever the input order:
    no deletion of an automatic, out-of-scope, in-progress, unknown-status or held backup, nor of
    a server's newest completed backup; failed backups deleted only once older than
    ``failed_grace``; at most ``max_deletions`` deletions, the oldest ones. Deterministic.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if scope not in ("managed", "manual"):
        raise ValueError(f"scope must be 'managed' or 'manual', got {scope!r}")
    if max_deletions < 0:
        raise ValueError(f"max_deletions must be >= 0, got {max_deletions}")
    if failed_grace < timedelta(0):
        raise ValueError("failed_grace must not be negative")

    unique, conflicting = _dedupe(backups)
    by_server: dict[int, list[Backup]] = defaultdict(list)
    for backup in unique:
        if server_ids is None or backup.server_id in server_ids:
            by_server[backup.server_id].append(backup)

    decided: list[tuple[Backup, Action, tuple[str, ...]]] = []
    for server_id in sorted(by_server):
        decided.extend(
            _plan_server(server_id, by_server[server_id], policy_for, tz, now, scope, holds, failed_grace, conflicting)
        )

    # The valve: the oldest would-be deletions go now, the rest wait for a later run.
    would_delete = sorted((item for item in decided if item[1] == "delete"), key=lambda item: _order_key(item[0]))
    deferred_ids = {backup.id for backup, _, _ in would_delete[max_deletions:]}
    valve_note = f"deferred (valve): at most {max_deletions} deletions per run"

    decisions: list[BackupDecision] = []
    for backup, action, reasons in decided:
        if backup.id in deferred_ids:
            action, reasons = "defer", (*reasons, valve_note)
        decisions.append(
            BackupDecision(
                backup_id=backup.id,
                server_id=backup.server_id,
                created_at=backup.created_at,
                status=backup.status,
                backup_type=backup.backup_type,
                action=action,
                reasons=reasons,
            )
        )

    by_id = {d.backup_id: d for d in decisions}
    counts = Counter(d.action for d in decisions)
    return PrunePlan(
        now=now,
        scope=scope,
        max_deletions=max_deletions,
        decisions=tuple(decisions),
        to_delete=tuple(by_id[b.id] for b, _, _ in would_delete[:max_deletions]),
        deferred=tuple(by_id[b.id] for b, _, _ in would_delete[max_deletions:]),
        valve_tripped=len(would_delete) > max_deletions,
        totals={action: counts.get(action, 0) for action in ACTIONS},
    )


def _plan_server(
    server_id: int,
    backups: list[Backup],
    policy_for: Callable[[int], RetentionPolicy],
    tz: tzinfo,
    now: datetime,
    scope: Scope,
    holds: Mapping[int, Hold],
    failed_grace: timedelta,
    conflicting: set[int],
) -> list[tuple[Backup, Action, tuple[str, ...]]]:
    """One server's decisions before the valve, newest first."""
    backups = sorted(backups, key=_order_key, reverse=True)
    reasons: dict[int, list[str]] = {b.id: [] for b in backups}
    action: dict[int, Action] = {}
    retained: list[Backup] = []  # completed candidates: the backups the retention rules see

    for backup in backups:
        why = reasons[backup.id]
        if backup.id in conflicting:
            action[backup.id] = "skip"
            why.append(REASON_CONFLICTING_COPIES)
        elif backup.backup_type != BACKUP_MANUAL:
            action[backup.id] = "skip"
            why.append(
                REASON_AUTOMATIC
                if backup.backup_type == BACKUP_AUTOMATIC
                else f"backup type {backup.backup_type!r} is never pruned"
            )
        elif scope == "managed" and not is_managed(backup.description):
            action[backup.id] = "skip"
            why.append(REASON_NOT_MANAGED)
        elif backup.status == STATUS_IN_PROGRESS:
            action[backup.id] = "skip"
            why.append(REASON_IN_PROGRESS)
        elif backup.status == STATUS_FAILED:
            grace = describe_duration(failed_grace)
            if now - backup.created_at > failed_grace:
                action[backup.id] = "delete"
                why.append(f"failed, older than {grace}")
            else:
                action[backup.id] = "keep"
                why.append(f"failed, within grace ({grace})")
        elif backup.status == STATUS_COMPLETED:
            retained.append(backup)
        else:
            action[backup.id] = "skip"
            why.append(f"unknown status {backup.status!r}")

    policy = policy_for(server_id)
    for verdict in apply_policy(((b.id, b.created_at) for b in retained), policy, tz, now=now):
        if verdict.keep:
            action[verdict.key] = "keep"
            reasons[verdict.key].extend(verdict.reasons)
        else:
            action[verdict.key] = "delete"
            reasons[verdict.key].append(f"{REASON_NOT_RETAINED} ({policy.describe()})")

    # Protections override any delete. The newest completed backup is taken over everything
    # listed for the server (an automatic one included); the newest completed candidate is kept
    # as well, so a server never loses its last backup this project manages.
    protect: dict[int, list[str]] = defaultdict(list)
    newest_completed = next((b for b in backups if b.status == STATUS_COMPLETED and b.id not in conflicting), None)
    if newest_completed is not None:
        protect[newest_completed.id].append(REASON_NEWEST_COMPLETED)
    if retained and retained[0] is not newest_completed:
        protect[retained[0].id].append(REASON_NEWEST_COMPLETED_CANDIDATE)
    # A backup dated after now (the provider's clock, bad data) is the newest only on paper, and a
    # keep_last or bucket rule would spend itself on it: the newest one dated before now is kept too.
    completed = [b for b in backups if b.status == STATUS_COMPLETED and b.id not in conflicting]
    for pool in (completed, retained):
        if pool and pool[0].created_at > now:
            past = next((b for b in pool if b.created_at <= now), None)
            if past is not None and REASON_NEWEST_NOT_FUTURE not in protect[past.id]:
                protect[past.id].append(REASON_NEWEST_NOT_FUTURE)
    for backup in backups:
        hold = holds.get(backup.id)
        if hold is not None and hold.until > now:
            protect[backup.id].append(_hold_reason(hold))

    for backup_id, notes in protect.items():
        if action.get(backup_id) in ("delete", "keep"):
            action[backup_id] = "keep"
            reasons[backup_id] = [*notes, *(r for r in reasons[backup_id] if not r.startswith(REASON_NOT_RETAINED))]

    return [(b, action[b.id], tuple(reasons[b.id])) for b in backups]
