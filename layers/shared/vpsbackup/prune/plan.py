"""The prune plan's vocabulary: actions, reasons, a decision, and what a plan decides from.

The plan itself is made by :func:`~vpsbackup.prune.compact.plan_fleet` over a compact listing,
one server at a time (:class:`~vpsbackup.prune.compact_rules.ServerRules`, with restic's walk in
:func:`~vpsbackup.prune.buckets.walk_policy`). The rules of docs/prune.md, in the order they are
applied, each with the words it explains itself in, defined here:

1. only ``manual`` backups are candidates; with ``scope="managed"`` only those carrying this
   project's marker; everything else is *skipped* (never deleted, never counted by a rule);
2. ``in_progress`` and unknown statuses are skipped (:func:`skip_reason`);
3. ``failed`` backups count for no rule and are deleted once older than the grace period
   (:func:`failed_reasons`);
4. the retention policy of the server runs over its ``completed`` candidates
   (:func:`not_retained_reason` when no rule keeps one);
5. a backup under a hold, the server's newest ``completed`` backup (and, when that one is dated
   in the future, the newest dated before now) and the ``KEEP_AT_LEAST`` newest candidates are
   kept whatever 3-4 say (:func:`protected_reasons`);
6. the safety valve lets at most ``max_deletions`` deletions through, oldest first across the
   fleet; the rest are *deferred* to a later run (:func:`valve_note`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal

from vpsbackup.durations import describe_duration
from vpsbackup.provider.models import (
    BACKUP_AUTOMATIC,
    BACKUP_MANUAL,
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_IN_PROGRESS,
)
from vpsbackup.prune.retention import RetentionPolicy
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


def hold_reason(hold: Hold) -> str:
    """Why a held backup is kept: ``hold until <time>: <reason>``."""
    text = f"hold until {hold.until.isoformat()}"
    return f"{text}: {hold.reason}" if hold.reason else text


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """What a plan decides from, besides the listing: each server's policy (``policy_for``), the
    zone of the buckets, the time, the scope, the holds, the failed-backup grace, the valve and
    the floor (``KEEP_AT_LEAST``). Checked when made: a bad value is a ``ValueError`` naming it."""

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
    """``KEEP_AT_LEAST`` is a whole number of at least 1 (the plan and the settings check it)."""
    if isinstance(keep_at_least, bool) or not isinstance(keep_at_least, int) or keep_at_least < 1:
        raise ValueError(f"keep_at_least must be an integer >= 1, got {keep_at_least!r}")


def valve_note(max_deletions: int) -> str:
    """The reason added to a deletion the safety valve defers."""
    return f"deferred (valve): at most {max_deletions} deletions per run"


def skip_reason(backup_type: str, status: str, *, in_scope: bool) -> str | None:
    """Rules 1-2: why a backup is skipped (``in_scope``: manual scope, or it carries the marker);
    None for a failed or completed candidate."""
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


def protected_reasons(notes: Iterable[str], reasons: Iterable[str]) -> tuple[str, ...]:
    """A protected backup's reasons: its protection notes first, then what retention said, but for
    "no retention rule keeps it", which no longer applies."""
    return (*notes, *(r for r in reasons if not r.startswith(REASON_NOT_RETAINED)))
