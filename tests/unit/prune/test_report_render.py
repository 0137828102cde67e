"""What a prune run's report renders to, pinned: the return value, the log record and its parts
(their byte budgets), and the notification, for named reports built by hand (no engine, no clock).

The golden files under ``golden/report/`` are the rendered output; a change to them is a change
people see (the function's result, its log, the notification), never a refactoring. After a
deliberate change of wording or layout, rewrite them with ``UPDATE_GOLDEN=1`` and read the diff.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from vpsbackup.provider.models import InvalidItem
from vpsbackup.prune import report_render as render
from vpsbackup.prune.compact import FleetPlan
from vpsbackup.prune.daily_budget import BudgetReport
from vpsbackup.prune.job import DeletionResult, InvalidItems, ListingProgress, PruneReport
from vpsbackup.prune.plan import BackupDecision
from vpsbackup.prune.request import PruneRequest

GOLDEN = Path(__file__).parent / "golden" / "report"
NOW = datetime(2025, 1, 20, 12, 0, tzinfo=UTC)


def decision(backup_id: int, days_old: int, action: str, *reasons: str, server: int = 12345) -> BackupDecision:
    return BackupDecision(
        backup_id=backup_id,
        server_id=server,
        created_at=NOW - timedelta(days=days_old),
        status="completed",
        backup_type="manual",
        action=action,  # type: ignore[arg-type]
        reasons=reasons,
    )


def troubled_run() -> PruneReport:
    """A scheduled run with a bit of everything: deletions done, already gone, failed, stopped by a
    hold and held by the daily budget; the valve tripped; two listed items that did not validate."""
    kept = [decision(100 + n, n + 1, "keep", f"last {n + 1}") for n in range(2)]
    to_delete = [decision(100 + n, n + 1, "delete", "no retention rule keeps it (last 2)") for n in range(9, 3, -1)]
    deferred = [decision(100 + n, n + 1, "delete", "deferred (valve): over MAX_DELETIONS_PER_RUN") for n in (3, 2)]
    skipped = [decision(200, 3, "skip", "made by people (no marker)")]
    plan = FleetPlan(
        now=NOW,
        scope="managed",
        max_deletions=6,
        servers=1,
        to_delete=tuple(to_delete),
        deferred=tuple(deferred),
        deferred_count=2,
        totals={"keep": 2, "delete": 6, "skip": 1, "defer": 2},
        by_reason={
            ("delete", "no retention rule keeps it"): 6,
            ("keep", "last"): 2,
            ("delete", "deferred (valve)"): 2,
            ("skip", "made by people"): 1,
        },
        decisions=(*kept, *reversed(deferred), *reversed(to_delete), *skipped),
    )
    frees = NOW + timedelta(hours=3)
    budget = BudgetReport(limit=5, asked=6, granted=5, frees_at=frees)
    results = (
        DeletionResult(109, "failed", "DELETE /backups/109/: HTTP 503"),
        DeletionResult(108, "already_gone", "404: already gone, counted as done"),
        DeletionResult(107, "not_started", "held since the plan: restore after alarm x", stopped_by_hold=True),
        DeletionResult(106, "deleted"),
        DeletionResult(105, "not_started", "time: less than 20 s of the invocation left; next run"),
        DeletionResult(104, "not_started", budget.reason(), True),
    )
    invalid = InvalidItems(
        count=2,
        sample=[
            InvalidItem(backup_id=901, server_id=7, reason="created_at: Input should be a valid datetime"),
            InvalidItem(backup_id=None, server_id=None, reason="id: Field required"),
        ],
        servers={7},
    )
    progress = ListingProgress(pages=3, listed=13, expected=13, seconds=1.23456, invalid=invalid)
    return PruneReport(
        request=PruneRequest(trigger="schedule", scheduled_time=NOW - timedelta(seconds=5), execution_id="exec-1"),
        dry_run=False,
        listing="fleet",
        listed=13,
        plan=plan,
        results=results,
        progress=progress,
        timings={"list_s": 1.23456, "holds_s": 0.01, "plan_s": 0.2, "delete_s": 3.0},
        selection={"mode": "incremental", "why": "2 servers changed", "by_trigger": {"changed": 2}},
        budget=budget,
    )


def listing_cut_short(stopped_by: str) -> PruneReport:
    """A run by hand for two servers whose listing stopped (``time`` or ``incomplete``)."""
    progress = ListingProgress(
        pages=40,
        listed=3_900,
        expected=10_000 if stopped_by == "time" else None,
        servers_requested=2,
        servers_listed=1,
        seconds=830.4,
        stopped="GET /backups/: the invocation's deadline is 2 s away"
        if stopped_by == "time"
        else "the next link repeats page 12",
        stopped_by=stopped_by,  # type: ignore[arg-type]
    )
    return PruneReport(
        request=PruneRequest(trigger="manual", server_ids=[3, 1]),
        dry_run=False,
        listing="per-server",
        listed=3_900,
        plan=FleetPlan.empty(now=NOW, scope="managed", max_deletions=50),
        results=(),
        progress=progress,
        timings={"list_s": 830.4},
    )


def rendered(report: PruneReport) -> dict[str, Any]:
    """Everything a report renders to, as one JSON-able value."""
    message = render.notification(report)
    log, log_parts = render.log_records(report)
    return {
        "result": render.result_record(report),
        "log": log,
        "log_parts": log_parts,
        "notification": None if message is None else {"subject": message[0], "text": message[1].splitlines()},
    }


SCENARIOS = {
    "troubled_run": troubled_run,
    "listing_out_of_time": lambda: listing_cut_short("time"),
    "listing_incomplete": lambda: listing_cut_short("incomplete"),
}


def assert_golden(name: str, value: Any) -> None:
    path = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n")
    assert json.loads(json.dumps(value)) == json.loads(path.read_text())


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_report_renders_to_its_golden_output(name: str) -> None:
    assert_golden(name, rendered(SCENARIOS[name]()))


def test_the_log_record_and_its_parts_split_at_their_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given log records of 1,500 bytes with no room kept for the fixed fields
    monkeypatch.setattr(render, "LOG_RECORD_LIMIT", 1_500)
    monkeypatch.setattr(render, "FIXED_ROOM", 0)
    report = troubled_run()
    # Then the main record and its parts are exactly the golden ones: the same deletions and
    # decisions in each, in the same order
    record, parts = render.log_records(report)
    assert_golden("troubled_run_small_records", {"log": record, "log_parts": parts})
    assert all(len(json.dumps(part, separators=(",", ":"))) <= 1_500 for part in parts)


def test_a_list_fits_its_budget_with_one_byte_to_spare_and_not_one_less() -> None:
    items = [{"backup_id": n} for n in range(5)]
    size = len(json.dumps(items, separators=(",", ":")))
    # The count is one byte over the list's JSON (each item counted with a separator): it fits at size + 1 ...
    assert render.fit(items, size + 1) == (items, [])
    # ... and at size the last item goes to the rest
    assert render.fit(items, size) == (items[:4], items[4:])
    assert render.fit(items, 2) == ([], items)
    assert render.fit([], 0) == ([], [])
