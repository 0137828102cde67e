"""The prune job's whole plan, decided without I/O.

:func:`plan_prune` takes the fleet's backups as listed (any order, possibly with the same backup
listed twice), the holds in force and the settings, and says for every backup whether to delete,
keep, skip or defer it, and why. The handler only executes ``plan.to_delete``. The rules of
docs/prune.md, in the order they are applied:

1. only ``manual`` backups are candidates; with ``scope="managed"`` only those carrying this
   project's marker; everything else is *skipped* (never deleted, never counted by a rule);
2. ``in_progress`` and unknown statuses are skipped;
3. ``failed`` backups count for no rule and are deleted once older than the grace period;
4. the retention policy of the server runs over its ``completed`` candidates;
5. a backup under a hold, and the server's newest ``completed`` backup (and, when that one is dated
   in the future, the newest dated before now), are kept whatever 3-4 say;
6. the safety valve lets at most ``max_deletions`` deletions through, oldest first across the
   fleet; the rest are *deferred* to a later run.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal

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
from vpsbackup.prune.retention import RetentionPolicy, apply_policy
from vpsbackup.records import Hold

Action = Literal["delete", "keep", "skip", "defer"]
Scope = Literal["managed", "manual"]
ACTIONS: tuple[Action, ...] = ("delete", "keep", "skip", "defer")

REASON_AUTOMATIC = "automatic backups expire by themselves"
REASON_NOT_MANAGED = "not made by this project"
REASON_IN_PROGRESS = "in progress"
REASON_NEWEST_COMPLETED = "newest completed"
REASON_NEWEST_COMPLETED_CANDIDATE = "newest completed in scope"
REASON_NEWEST_NOT_FUTURE = "newest completed not dated in the future"
REASON_NOT_RETAINED = "no retention rule keeps it"
REASON_KEEP_AT_LEAST = "keep at least"  # followed by KEEP_AT_LEAST: "keep at least 3"
REASON_CONFLICTING_COPIES = "listed more than once with different data"


@dataclass(frozen=True, slots=True)
class BackupDecision:
    """What the plan does with one backup, and why (reasons in the order they were found)."""

    backup_id: int
    server_id: int
    created_at: datetime
    status: str
    backup_type: str
    action: Action
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "server_id": self.server_id,
            "created_at": self.created_at.isoformat(),
            "status": self.status,
            "backup_type": self.backup_type,
            "action": self.action,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True, slots=True)
class PrunePlan:
    """The outcome of :func:`plan_prune`.

    ``decisions`` holds one entry per backup of the selected servers, ordered by server id then
    newest first; ``to_delete`` is what to delete, in the order to delete it (oldest first);
    ``deferred`` is what the valve held back, oldest first.
    """

    now: datetime
    scope: Scope
    max_deletions: int
    decisions: tuple[BackupDecision, ...]
    to_delete: tuple[BackupDecision, ...]
    deferred: tuple[BackupDecision, ...]
    valve_tripped: bool
    totals: Mapping[Action, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (times as ISO 8601 strings) for the handler's result and its log."""
        return {
            "now": self.now.isoformat(),
            "scope": self.scope,
            "max_deletions": self.max_deletions,
            "valve_tripped": self.valve_tripped,
            "totals": dict(self.totals),
            "to_delete": [d.backup_id for d in self.to_delete],
            "deferred": [d.backup_id for d in self.deferred],
            "decisions": [d.to_dict() for d in self.decisions],
        }


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


def hold_reason(hold: Hold) -> str:
    """Why a held backup is kept: ``hold until <time>: <reason>``."""
    text = f"hold until {hold.until.isoformat()}"
    return f"{text}: {hold.reason}" if hold.reason else text


# One backup's decision before the valve: the backup, what to do, and why.
_Decided = tuple[Backup, Action, tuple[str, ...]]
# What a rule decided for one backup id: the action and its reasons so far.
_Verdict = tuple[Action, list[str]]


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
    keep_at_least: int = 1,
) -> PrunePlan:
    """Decide, for every backup of the selected servers, whether this run deletes it, and why.

    ``backups`` is the fleet's listing (manual and automatic, any order, duplicates tolerated);
    ``policy_for`` gives a server's retention policy (see ``RetentionPolicies``); ``holds`` maps
    backup ids to holds, and those whose ``until`` is after ``now`` are honoured; ``server_ids``
    limits the plan to those servers (``None``: all). Promises, whatever the input order:
    no deletion of an automatic, out-of-scope, in-progress, unknown-status or held backup, nor of
    a server's newest completed backup; failed backups deleted only once older than
    ``failed_grace``; at most ``max_deletions`` deletions, the oldest ones; never fewer than
    ``keep_at_least`` completed backups in scope left on a server (``KEEP_AT_LEAST``; 1 is the
    newest completed one, as without it). Deterministic.
    """
    inputs = PlanInputs(policy_for, tz, now, scope, holds, failed_grace, max_deletions, keep_at_least)
    unique, conflicting = _dedupe(backups)
    by_server = _group_by_server(unique, server_ids)
    decided: list[_Decided] = []
    for server_id in sorted(by_server):
        decided.extend(_plan_server(server_id, by_server[server_id], inputs, conflicting))
    return _apply_valve(decided, now=now, scope=scope, max_deletions=max_deletions)


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """What a plan decides from, besides the listing: each server's policy (``policy_for``), the
    zone of the buckets, the time, the scope, the holds, the failed-backup grace, the valve and
    the floor (``KEEP_AT_LEAST``). Checked when made: a bad value is a ``ValueError`` naming it.
    Both planning paths take it (:func:`plan_prune` builds it from its arguments)."""

    policy_for: Callable[[int], RetentionPolicy]
    tz: tzinfo
    now: datetime
    scope: Scope
    holds: Mapping[int, Hold]
    failed_grace: timedelta
    max_deletions: int
    keep_at_least: int = 1

    def __post_init__(self) -> None:
        _check_arguments(
            now=self.now, scope=self.scope, max_deletions=self.max_deletions, failed_grace=self.failed_grace
        )
        check_keep_at_least(self.keep_at_least)


def _check_arguments(*, now: datetime, scope: Scope, max_deletions: int, failed_grace: timedelta) -> None:
    """Bad arguments are a ``ValueError`` naming the argument, before anything is decided."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if scope not in ("managed", "manual"):
        raise ValueError(f"scope must be 'managed' or 'manual', got {scope!r}")
    if max_deletions < 0:
        raise ValueError(f"max_deletions must be >= 0, got {max_deletions}")
    if failed_grace < timedelta(0):
        raise ValueError("failed_grace must not be negative")


def check_keep_at_least(keep_at_least: int) -> None:
    """``KEEP_AT_LEAST`` is a whole number of at least 1 (both planning paths check it)."""
    if isinstance(keep_at_least, bool) or not isinstance(keep_at_least, int) or keep_at_least < 1:
        raise ValueError(f"keep_at_least must be an integer >= 1, got {keep_at_least!r}")


def _group_by_server(
    backups: Iterable[Backup], server_ids: set[int] | frozenset[int] | None
) -> dict[int, list[Backup]]:
    """The selected servers' backups, by server id (``server_ids`` None: every server)."""
    by_server: dict[int, list[Backup]] = defaultdict(list)
    for backup in backups:
        if server_ids is None or backup.server_id in server_ids:
            by_server[backup.server_id].append(backup)
    return by_server


def valve_note(max_deletions: int) -> str:
    """The reason added to a deletion the safety valve defers."""
    return f"deferred (valve): at most {max_deletions} deletions per run"


def _apply_valve(decided: list[_Decided], *, now: datetime, scope: Scope, max_deletions: int) -> PrunePlan:
    """The safety valve: the oldest would-be deletions go now, the rest are deferred to a later run."""
    would_delete = sorted((item for item in decided if item[1] == "delete"), key=lambda item: _order_key(item[0]))
    deferred_ids = {backup.id for backup, _, _ in would_delete[max_deletions:]}
    note = valve_note(max_deletions)

    decisions: list[BackupDecision] = []
    for backup, action, reasons in decided:
        if backup.id in deferred_ids:
            action, reasons = "defer", (*reasons, note)
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


def _plan_server(server_id: int, backups: list[Backup], inputs: PlanInputs, conflicting: set[int]) -> list[_Decided]:
    """One server's decisions before the valve, newest first: rules 1-3, then retention, then protections."""
    now, scope, failed_grace = inputs.now, inputs.scope, inputs.failed_grace
    backups = sorted(backups, key=_order_key, reverse=True)
    verdicts: dict[int, _Verdict] = {}
    retained: list[Backup] = []  # completed candidates: the backups the retention rules see
    for backup in backups:
        verdict = _triage(backup, now=now, scope=scope, failed_grace=failed_grace, conflicting=conflicting)
        if verdict is None:
            retained.append(backup)
        else:
            verdicts[backup.id] = verdict
    verdicts.update(_retention_verdicts(retained, inputs.policy_for(server_id), inputs.tz, now))
    protect = _newest_protections(backups, retained, now, conflicting)
    _add_floor_protections(protect, retained, inputs.keep_at_least)
    _add_hold_protections(protect, backups, inputs.holds, now)
    _apply_protections(verdicts, protect)
    return [(b, verdicts[b.id][0], tuple(verdicts[b.id][1])) for b in backups]


def _triage(
    backup: Backup, *, now: datetime, scope: Scope, failed_grace: timedelta, conflicting: set[int]
) -> _Verdict | None:
    """Rules 1-3 for one backup: skipped, or a failed one deleted or kept; None for a completed candidate."""
    if backup.id in conflicting:
        return "skip", [REASON_CONFLICTING_COPIES]
    in_scope = scope == "manual" or is_managed(backup.description)
    reason = skip_reason(backup.backup_type, backup.status, in_scope=in_scope)
    if reason is not None:
        return "skip", [reason]
    if backup.status == STATUS_FAILED:
        deleted, kept = failed_reasons(failed_grace)
        return ("delete", [deleted]) if now - backup.created_at > failed_grace else ("keep", [kept])
    return None


def skip_reason(backup_type: str, status: str, *, in_scope: bool) -> str | None:
    """Rules 1-2: why a backup is skipped (``in_scope``: manual scope, or it carries the marker);
    None for a failed or completed candidate. Both planning paths ask it."""
    if backup_type != BACKUP_MANUAL:
        if backup_type == BACKUP_AUTOMATIC:
            return REASON_AUTOMATIC
        return f"backup type {backup_type!r} is never pruned"
    if not in_scope:
        return REASON_NOT_MANAGED
    if status == STATUS_IN_PROGRESS:
        return REASON_IN_PROGRESS
    if status in (STATUS_FAILED, STATUS_COMPLETED):
        return None
    return f"unknown status {status!r}"


def failed_reasons(failed_grace: timedelta) -> tuple[str, str]:
    """Rule 3's reasons: a failed backup counts for no rule, deleted once older than the grace
    period (the first reason), kept until then (the second)."""
    grace = describe_duration(failed_grace)
    return f"failed, older than {grace}", f"failed, within grace ({grace})"


def not_retained_reason(policy: RetentionPolicy) -> str:
    """The reason of a completed candidate that no rule of ``policy`` keeps."""
    return f"{REASON_NOT_RETAINED} ({policy.describe()})"


def _retention_verdicts(
    retained: list[Backup], policy: RetentionPolicy, tz: tzinfo, now: datetime
) -> dict[int, _Verdict]:
    """Rule 4: the server's retention policy over its completed candidates."""
    verdicts: dict[int, _Verdict] = {}
    not_retained = not_retained_reason(policy)
    for decision in apply_policy(((b.id, b.created_at) for b in retained), policy, tz, now=now):
        if decision.keep:
            verdicts[decision.key] = ("keep", list(decision.reasons))
        else:
            verdicts[decision.key] = ("delete", [not_retained])
    return verdicts


def _newest_protections(
    backups: list[Backup], retained: list[Backup], now: datetime, conflicting: set[int]
) -> dict[int, list[str]]:
    """Rule 5, newest part: the notes protecting a server's newest backups (``backups`` newest first).

    The newest completed backup is taken over everything listed for the server (an automatic one
    included); the newest completed candidate is kept as well, so a server never loses its last
    backup this project manages.
    """
    protect: dict[int, list[str]] = defaultdict(list)
    completed = [b for b in backups if b.status == STATUS_COMPLETED and b.id not in conflicting]
    newest_completed = completed[0] if completed else None
    if newest_completed is not None:
        protect[newest_completed.id].append(REASON_NEWEST_COMPLETED)
    if retained and retained[0] is not newest_completed:
        protect[retained[0].id].append(REASON_NEWEST_COMPLETED_CANDIDATE)
    # A backup dated after now (the provider's clock, bad data) is the newest only on paper, and a
    # keep_last or bucket rule would spend itself on it: the newest one dated before now is kept too.
    for pool in (completed, retained):
        past = _newest_not_future(pool, now)
        if past is not None and REASON_NEWEST_NOT_FUTURE not in protect[past.id]:
            protect[past.id].append(REASON_NEWEST_NOT_FUTURE)
    return protect


def _add_floor_protections(protect: dict[int, list[str]], retained: list[Backup], keep_at_least: int) -> None:
    """``KEEP_AT_LEAST``: the ``keep_at_least`` newest completed candidates (``retained``, newest
    first) are kept whatever the policy says. The newest one is already kept as the newest
    completed; the next ones get the reason ``keep at least N``. With 1 nothing is added."""
    reason = f"{REASON_KEEP_AT_LEAST} {keep_at_least}"
    for backup in retained[1:keep_at_least]:
        protect[backup.id].append(reason)


def _newest_not_future(pool: list[Backup], now: datetime) -> Backup | None:
    """When the newest of ``pool`` (newest first) is dated after ``now``: the newest dated before it."""
    if pool and pool[0].created_at > now:
        return next((b for b in pool if b.created_at <= now), None)
    return None


def _add_hold_protections(
    protect: dict[int, list[str]], backups: list[Backup], holds: Mapping[int, Hold], now: datetime
) -> None:
    """Rule 5, holds part: a note for every backup under a hold still in force."""
    for backup in backups:
        hold = holds.get(backup.id)
        if hold is not None and hold.until > now:
            protect[backup.id].append(hold_reason(hold))


def _apply_protections(verdicts: dict[int, _Verdict], protect: Mapping[int, list[str]]) -> None:
    """Protections override any delete: a protected backup that retention decided on is kept.

    Its protection notes come first; "no retention rule keeps it" no longer applies and is dropped.
    Skipped backups stay skipped.
    """
    for backup_id, notes in protect.items():
        action, reasons = verdicts[backup_id]
        if action in ("delete", "keep"):
            verdicts[backup_id] = ("keep", list(protected_reasons(notes, reasons)))


def protected_reasons(notes: Iterable[str], reasons: Iterable[str]) -> tuple[str, ...]:
    """A protected backup's reasons: its protection notes first, then what retention said, but for
    "no retention rule keeps it", which no longer applies."""
    return (*notes, *(r for r in reasons if not r.startswith(REASON_NOT_RETAINED)))
