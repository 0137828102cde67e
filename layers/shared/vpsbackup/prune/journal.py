"""The journal of a prune run: one entry per backup it deleted, and per deletion a guard stopped.

Written after the deletions (:func:`journal_run`), to ``StateTable`` and never into the run's
report, which stays bounded: the entries go in ``BatchWriteItem`` requests of 25 items
(:meth:`~vpsbackup.aws.journal.Journal.write_many`), and a failed write never changes what the run
did or reports (it is logged, with the whole entry, and counted in ``JournalWriteFailed``).

- ``backup_deleted``: a planned deletion done (``deleted``) or found done (``already_gone``, the API
  answered 404), with the plan's reasons, the server's retention policy and the run;
- ``deletion_refused``: a planned deletion the hold re-check stopped: a hold placed since the plan
  (``not_started``), a hold that could not be read, or one that appeared while the deletion was
  being retried (``failed``).

Nothing for a dry run, a listing out of time, an API failure or a deletion not started for lack of
time: nothing irreversible happened, and the next run decides again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from vpsbackup.aws.journal import Journal
from vpsbackup.prune.job import DeletionResult, PruneReport
from vpsbackup.prune.plan import BackupDecision
from vpsbackup.prune.retention import RetentionPolicies
from vpsbackup.records import JournalAct, JournalEntry


def journal_act(result: DeletionResult) -> JournalAct | None:
    """The journal's act for one deletion's outcome, or None when nothing is journaled for it."""
    if result.outcome in ("deleted", "already_gone"):
        return "backup_deleted"
    if result.stopped_by_hold:
        return "deletion_refused"
    return None


def run_by(report: PruneReport) -> str:
    """Who ran it, in the journal's words: ``schedule``, or ``manual invoke``."""
    return "schedule" if report.request.trigger in ("schedule", "scheduled-event") else "manual invoke"


def journal_entries(
    report: PruneReport, policies: RetentionPolicies, *, journal: Journal, run: str, at: datetime | None = None
) -> Iterator[JournalEntry]:
    """The run's entries, made one at a time (a run may delete thousands). With ``at`` (a chunked
    run's report instant, the same for every attempt of its report chunk), each entry's keys are
    the same however often it is written: a retried chunk replaces its entries, never adds them."""
    if report.dry_run:
        return
    by = run_by(report)
    for decision in report.plan.to_delete:
        result = report.outcome_of(decision.backup_id)
        act = journal_act(result) if result is not None else None
        if result is None or act is None:
            continue
        details = _details(report, policies, decision, result)
        about: dict[str, Any] = {"server_id": decision.server_id, "backup_id": decision.backup_id, "run": run}
        entry_id = None if at is None else _entry_id(run, decision.backup_id, act)
        entry = journal.entry(
            act,
            by=by,
            outcome=result.outcome,
            reasons=decision.reasons,
            details=details,
            at=at,
            entry_id=entry_id,
            **about,
        )
        if entry is not None:
            yield entry


def _details(
    report: PruneReport, policies: RetentionPolicies, decision: BackupDecision, result: DeletionResult
) -> dict[str, str]:
    policy = policies(decision.server_id)
    details = {
        "policy": policy.describe(),
        "policy_source": "override" if decision.server_id in policies.overrides else "default",
        "scope": report.plan.scope,
        "trigger": report.request.trigger,
        "created_at": decision.created_at.isoformat(),
        "run_at": report.plan.now.isoformat(),
    }
    if result.detail:
        details["detail"] = result.detail
    if report.request.execution_id:
        details["execution_id"] = report.request.execution_id
    return details


def journal_run(
    report: PruneReport,
    policies: RetentionPolicies,
    *,
    journal: Journal,
    run: str,
    time_left: Callable[[], float | None] = lambda: None,
    at: datetime | None = None,
) -> int:
    """Write the run's entries (module docstring); returns how many could not be written. Never raises."""
    entries = journal_entries(report, policies, journal=journal, run=run, at=at)
    return journal.write_many(entries, time_left=time_left)


def _entry_id(run: str, backup_id: int, act: str) -> str:
    return hashlib.sha256(f"{run}#{backup_id}#{act}".encode()).hexdigest()[:32]
