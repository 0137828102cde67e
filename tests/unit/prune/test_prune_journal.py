"""The journal of a prune run (``vpsbackup.prune.journal``), made from the run's report: one
``backup_deleted`` per deletion done, one ``deletion_refused`` per deletion the hold re-check
stopped, nothing for what did not happen; each with the plan's reasons, the policy and the run."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import AwsEnv
from tests.unit.prune.test_prune_run import NOW, FakeApi, HoldsPlacedDuringTheRun, daily, options
from vpsbackup.aws.journal import Journal
from vpsbackup.aws.state import StateTable
from vpsbackup.provider.errors import BackupAlreadyGoneError, ServerError
from vpsbackup.prune.job import PruneReport, run_prune
from vpsbackup.prune.journal import journal_entries, journal_run
from vpsbackup.prune.request import PruneRequest
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy
from vpsbackup.records import JournalEntry

# options()'s own (keep the last 2), and server 2's override.
POLICIES = RetentionPolicies(RetentionPolicy(keep_last=2), {2: RetentionPolicy(keep_last=1)})


class KeptJournal(Journal):
    """The journal with no table (it only logs), keeping what it was asked to write."""

    def __init__(self) -> None:
        super().__init__(None, source="tests", clock=lambda: NOW)
        self.written: list[JournalEntry] = []

    def write_many(self, entries: object, *, time_left: object = None) -> int:  # type: ignore[override]
        self.written.extend(entries)  # type: ignore[call-overload]
        return 0


@pytest.mark.parametrize("unreadable", [False, True], ids=["held", "hold-unreadable"])
def test_each_deletion_and_each_deletion_a_hold_stopped_is_journaled_with_reasons_policy_and_run(
    unreadable: bool,
) -> None:
    # Given a scheduled run that plans to delete 104..102 of server 1 (keep last 2), and a restore
    # that holds 103 while it runs (or whose hold cannot be read)
    api = FakeApi(daily(1, 5, 100), errors={102: BackupAlreadyGoneError("HTTP 404", status_code=404)})
    holds = HoldsPlacedDuringTheRun(api, held=103, unreadable=unreadable)
    report = run_prune(PruneRequest(trigger="schedule"), options(concurrency=1), client=api, holds=holds, now=NOW)
    journal = KeptJournal()

    # When its journal is written
    assert journal_run(report, POLICIES, journal=journal, run="req-1") == 0

    # Then one entry per planned deletion that happened, or that the hold re-check stopped
    by_backup = {e.backup_id: e for e in journal.written}
    assert {b: (e.act, e.outcome) for b, e in by_backup.items()} == {
        104: ("backup_deleted", "deleted"),
        103: ("deletion_refused", "failed" if unreadable else "not_started"),
        102: ("backup_deleted", "already_gone"),
    }
    deleted = by_backup[104]
    assert (deleted.by, deleted.run, deleted.server_id, deleted.source) == ("schedule", "req-1", 1, "tests")
    assert deleted.reasons == next(d.reasons for d in report.plan.to_delete if d.backup_id == 104)
    assert (deleted.details["policy"], deleted.details["policy_source"]) == ("last 2", "default")
    assert deleted.details["created_at"] == (NOW - timedelta(days=5)).isoformat()
    refused = by_backup[103].details["detail"]
    assert refused.startswith("hold not checked" if unreadable else "held since the plan: restore after alarm x")


@pytest.mark.parametrize("unreadable", [False, True], ids=["held", "hold-unreadable"])
def test_a_deletion_a_hold_stopped_is_journaled_as_refused_whatever_its_detail_says(unreadable: bool) -> None:
    # Given a run whose hold re-check stopped the deletion of 103, and whose details are then
    # reworded for people (the detail is prose, not a contract)
    api = FakeApi(daily(1, 5, 100))
    holds = HoldsPlacedDuringTheRun(api, held=103, unreadable=unreadable)
    report = run_prune(PruneRequest(trigger="schedule"), options(concurrency=1), client=api, holds=holds, now=NOW)
    reworded = tuple(dataclasses.replace(r, detail=f"reworded: {r.outcome}") for r in report.results)
    # When its journal is made
    acts = {e.backup_id: e.act for e in entries(dataclasses.replace(report, results=reworded))}
    # Then 103 is still a deletion the hold refused
    assert acts == {104: "backup_deleted", 103: "deletion_refused", 102: "backup_deleted"}


def test_a_failure_whose_detail_reads_like_a_hold_is_not_journaled_as_refused() -> None:
    # Given a deletion that failed with an API error whose words begin like a hold's
    api = FakeApi(daily(1, 5, 100), errors={103: ServerError("held since the plan: a proxy's page", status_code=502)})
    report = run_prune(PruneRequest(), options(), client=api, holds=HoldsPlacedDuringTheRun(api, 0), now=NOW)
    result = report.outcome_of(103)
    assert result is not None and (result.outcome, result.detail) == ("failed", "held since the plan: a proxy's page")
    # Then nothing is journaled for it: no hold stopped it, and nothing irreversible happened
    assert [e.backup_id for e in entries(report)] == [104, 102]


def test_failures_deletions_not_started_for_time_and_dry_runs_are_not_journaled() -> None:
    # Given runs where nothing irreversible happened
    failing = FakeApi(daily(2, 4, 200), errors={b: ServerError("HTTP 500", status_code=500) for b in (202, 203)})
    overridden = dataclasses.replace(options(), policies=POLICIES)  # server 2 keeps its last 1
    failed = run_prune(PruneRequest(), overridden, client=failing, holds=HoldsPlacedDuringTheRun(failing, 0), now=NOW)
    late = FakeApi(daily(1, 5, 100))
    out_of_time = run_prune(
        PruneRequest(), options(), client=late, holds=HoldsPlacedDuringTheRun(late, 0), now=NOW, time_left=lambda: 1.0
    )
    dry = FakeApi(daily(1, 5, 100))
    dry_run = run_prune(PruneRequest(dry_run=True), options(), client=dry, holds=HoldsPlacedDuringTheRun(dry, 0))

    # Then their journals are empty, but for the one server 2 deletion that went through (its override)
    assert [(e.backup_id, e.by, e.details["policy"], e.details["policy_source"]) for e in entries(failed)] == [
        (201, "manual invoke", "last 1", "override")
    ]
    assert out_of_time.totals["not_started"] == 3
    assert entries(out_of_time) == []
    assert entries(dry_run) == []


def entries(report: PruneReport) -> list[JournalEntry]:
    return list(journal_entries(report, POLICIES, journal=KeptJournal(), run="r"))


def test_written_to_the_table_the_entries_are_found_by_backup(aws: AwsEnv) -> None:
    api = FakeApi(daily(1, 4, 100))
    report = run_prune(PruneRequest(), options(), client=api, holds=HoldsPlacedDuringTheRun(api, 0), now=NOW)
    journal = Journal(StateTable.from_name(aws.table_name), source="tests", clock=lambda: datetime.now(UTC))
    assert journal_run(report, POLICIES, journal=journal, run="req-2") == 0
    assert [e.act for e in journal.for_backup(103)] == ["backup_deleted"]
    assert [e.backup_id for e in journal.for_server(1)] == [102, 103]
