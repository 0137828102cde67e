"""The chunk cursor and the stored plan (prune/cursor.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from vpsbackup.provider.models import Backup
from vpsbackup.prune.compact import CompactListing, plan_fleet
from vpsbackup.prune.cursor import ChunkEvent, Cursor, advance, plan_from_dict, plan_to_dict, run_id
from vpsbackup.prune.plan import PlanInputs
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _listing() -> CompactListing:
    listing = CompactListing()
    for n in range(40):
        listing.add(
            Backup.model_validate(
                {
                    "id": 1000 + n,
                    "server": {"id": 7 + n % 2, "name": "web"},
                    "backup_type": "manual",
                    "status": "completed" if n % 9 else "failed",
                    "created_at": (NOW - timedelta(days=n)).isoformat(),
                    "description": "made by people",
                }
            )
        )
    return listing


@pytest.mark.parametrize("keep_decisions", [True, False])
@pytest.mark.parametrize("max_deletions", [0, 3, 1000])
def test_a_stored_plan_reads_back_equal(keep_decisions: bool, max_deletions: int) -> None:
    inputs = PlanInputs(
        policy_for=RetentionPolicies(RetentionPolicy(keep_last=2, keep_daily=5)),
        tz=UTC,
        now=NOW,
        scope="manual",
        holds={},
        failed_grace=timedelta(hours=24),
        max_deletions=max_deletions,
    )
    plan = plan_fleet(_listing(), inputs, keep_decisions=keep_decisions)
    assert plan.to_delete or not max_deletions
    assert plan_from_dict(plan_to_dict(plan)) == plan


def test_the_run_is_the_execution_s_whatever_the_attempt() -> None:
    assert run_id("arn:x:1") == run_id("arn:x:1") != run_id("arn:x:2")


def test_a_new_execution_counts_its_chunks_from_zero() -> None:
    cursor = advance(Cursor(run="r", phase="list"), execution="e1")
    cursor = advance(cursor, execution="e1", wait_seconds=5)
    assert (cursor.chunks, cursor.execution_chunks, cursor.wait_seconds) == (2, 2, 5)
    cursor = advance(cursor, execution="e2")
    assert (cursor.chunks, cursor.execution_chunks, cursor.wait_seconds) == (3, 1, 0)


def test_a_chunk_event_names_a_bad_field() -> None:
    with pytest.raises(ValidationError, match="step"):
        ChunkEvent.model_validate({"step": "go", "execution": "e"})
    with pytest.raises(ValidationError, match="extra"):
        Cursor.model_validate({"run": "r", "phase": "list", "dry-run": True})


def test_a_listing_found_broken_by_a_later_part_of_the_plan_reports_from_the_first_part() -> None:
    # Given a plan in parts whose third part finds a stored page missing
    from vpsbackup.prune.chunks import _not_planned

    cursor = Cursor(run="r", phase="plan", incremental=True, pages=10, rows=10**6, part=2, parts=4, execution="e")
    # When it hands the run to its report
    after = _not_planned(cursor, "e", "the run's stored listing has 9 of its 10 pages")
    # Then the report (an incremental run's write-back, in parts) starts at the first part
    assert (after.phase, after.part, after.parts) == ("report", 0, 4)
    assert after.stopped == "the run's stored listing has 9 of its 10 pages"
