"""What a prune run's report renders to: the function's return value, its log records, and the
notification people read. Pure functions over a :class:`~vpsbackup.prune.job.PruneReport`, which
holds the data only.

- **byte budgets**: at any fleet size the return value stays under :data:`RESULT_LIMIT` bytes of
  JSON and each log record under :data:`LOG_RECORD_LIMIT` (CloudWatch Logs takes events up to
  256 KB, Lambda's synchronous response 6 MB). Of the room left after :data:`FIXED_ROOM` (the
  record's fixed fields and the logger's own), the ids to delete get 10 %, the deferred ids 5 %,
  the deletions and their outcomes 40 %, every decision what is left; what does not fit is counted
  (``*_omitted``), the failures among the deletions left out apart;
- **log splitting**: the deletions and decisions the main log record left out go to further
  records ("parts"), each under :data:`LOG_RECORD_LIMIT`, numbered ``part`` of ``parts``;
- **notification**: the words are :mod:`vpsbackup.prune.messages`'; here, which one a run gets
  (none when it needs no attention).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from vpsbackup.prune import messages

if TYPE_CHECKING:
    from vpsbackup.prune.job import DeletionResult, PruneReport
    from vpsbackup.prune.plan import BackupDecision

LOG_RECORD_LIMIT = 200_000
RESULT_LIMIT = 1_000_000
# Room kept in each for the record's fixed fields (totals, reasons, progress) and the logger's own.
FIXED_ROOM = 40_000
# A part record's own fields ({"decisions": [...], "part": n, "parts": m}).
PART_ENVELOPE = 100

Record = dict[str, Any]


def result_record(report: PruneReport) -> Record:
    """The return value (JSON-able, under :data:`RESULT_LIMIT` bytes whatever the fleet's size):
    totals, counts by reason, the deletions and their outcomes, and every decision when the plan kept
    them and they fit; what does not fit is counted (``*_omitted``)."""
    return _record(report, RESULT_LIMIT)[0]


def log_records(report: PruneReport) -> tuple[Record, list[Record]]:
    """The run's main log record, and the parts with the deletions and decisions it left out: each
    under :data:`LOG_RECORD_LIMIT` bytes."""
    record, deletions_left, decisions_left = _record(report, LOG_RECORD_LIMIT)
    parts: list[Record] = []
    for key, items in (("deletions", deletions_left), ("decisions", decisions_left)):
        while items:
            chunk, items = fit(items, LOG_RECORD_LIMIT - FIXED_ROOM - PART_ENVELOPE)
            if not chunk:  # one item larger than a record: never loop
                chunk, items = items[:1], items[1:]
            parts.append({key: chunk})
    for n, part in enumerate(parts, start=1):
        part["part"] = n
        part["parts"] = len(parts)
    return record, parts


def notification(report: PruneReport) -> tuple[str, str] | None:
    """Subject and text for people, or None when the run needs no attention."""
    if not report.needs_attention:
        return None
    if not report.listing_complete:
        if report.progress.stopped_by == "incomplete":
            return messages.listing_incomplete(report.request, report.plan.now, report.progress.to_dict())
        return messages.listing_out_of_time(report.request, report.plan.now, report.progress.to_dict())
    results = _results(report)
    return messages.needs_a_look(
        report.request,
        report.plan,
        report.totals,
        failed=[(d, results[d.backup_id].detail) for d in report.with_outcome("failed")],
        not_started=[
            (d, results[d.backup_id].detail)
            for d in report.with_outcome("not_started")
            if not results[d.backup_id].held_by_budget
        ],
        invalid=report.progress.invalid.to_dict(),
        budget=report.budget,
    )


def json_size(value: Any) -> int:
    """Bytes of ``value``'s compact JSON."""
    return len(json.dumps(value, separators=(",", ":"), default=str))


def fit(items: list[Any], budget: int) -> tuple[list[Any], list[Any]]:
    """The longest head of ``items`` whose JSON fits ``budget`` bytes, and the rest."""
    used = 2
    for n, item in enumerate(items):
        used += json_size(item) + 1
        if used > budget:
            return items[:n], items[n:]
    return items, []


def _results(report: PruneReport) -> dict[int, DeletionResult]:
    return {r.backup_id: r for r in report.results}


def _deletion(decision: BackupDecision, result: DeletionResult) -> Record:
    return {
        "backup_id": decision.backup_id,
        "server_id": decision.server_id,
        "created_at": decision.created_at.isoformat(),
        "outcome": result.outcome,
        "detail": result.detail,
    }


def _decision(decision: BackupDecision, result: DeletionResult | None) -> Record:
    data = decision.to_dict()
    if result is not None:
        data["outcome"] = result.outcome
        if result.detail:
            data["detail"] = result.detail
    return data


def _record(report: PruneReport, limit: int) -> tuple[Record, list[Record], list[Record]]:
    """The report in at most ``limit`` bytes of JSON, and the deletions and decisions left out."""
    plan, results = report.plan, _results(report)
    room = limit - FIXED_ROOM
    to_delete, _ = fit([d.backup_id for d in plan.to_delete], room // 10)
    deferred, _ = fit([d.backup_id for d in plan.deferred], room // 20)
    deletions, deletions_left = fit([_deletion(d, results[d.backup_id]) for d in plan.to_delete], room * 4 // 10)
    room -= json_size(to_delete) + json_size(deferred) + json_size(deletions)
    decisions: list[Record] | None = None
    decisions_left: list[Record] = []
    if plan.decisions is not None:
        decisions, decisions_left = fit([_decision(d, results.get(d.backup_id)) for d in plan.decisions], room)
    record: Record = {
        **_fixed_fields(report),
        "to_delete": to_delete,
        "deferred": deferred,
        "deletions": deletions,
        "timings": {key: round(value, 3) for key, value in report.timings.items()},
        **({} if report.selection is None else {"selection": dict(report.selection)}),
        **({} if report.budget is None else {"daily_budget": report.budget.to_dict()}),
    }
    record.update(_omitted(report, len(to_delete), len(deferred), deletions_left))
    if decisions is not None:
        record["decisions"] = decisions
        if decisions_left:
            record["decisions_omitted"] = len(decisions_left)
    else:
        record["decisions_omitted"] = report.listed_decisions
    return record, deletions_left, decisions_left


def _omitted(report: PruneReport, to_delete: int, deferred: int, deletions_left: list[Record]) -> Record:
    """The counts of what the record left out of ``to_delete``, ``deferred`` and the deletions."""
    plan = report.plan
    omitted: Record = {}
    if to_delete < len(plan.to_delete):
        omitted["to_delete_omitted"] = len(plan.to_delete) - to_delete
    if deferred < plan.deferred_count:
        omitted["deferred_omitted"] = plan.deferred_count - deferred
    if deletions_left:
        omitted["deletions_omitted"] = len(deletions_left)
        # Failures matter most to people: the ones left out are at least counted apart.
        omitted["failures_omitted"] = sum(1 for d in deletions_left if d["outcome"] == "failed")
    return omitted


def _fixed_fields(report: PruneReport) -> Record:
    """What every record of the run says, whatever its size: the request, the listing, the plan's totals."""
    request, plan = report.request, report.plan
    return {
        "dry_run": report.dry_run,
        "trigger": request.trigger,
        "server_ids": request.server_ids,
        "scheduled_time": request.scheduled_time.isoformat() if request.scheduled_time else None,
        "listing": report.listing,
        "listing_complete": report.listing_complete,
        "progress": report.progress.to_dict(),
        "invalid_items": report.progress.invalid.to_dict(),
        "now": plan.now.isoformat(),
        "scope": plan.scope,
        "max_deletions": plan.max_deletions,
        "valve_tripped": plan.valve_tripped,
        "servers": plan.servers,
        "totals": report.totals,
        "reasons": plan.reason_counts()[:100],
    }
