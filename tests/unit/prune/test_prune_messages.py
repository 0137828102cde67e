"""The words people read after a prune run that needs a look: one pinned message per kind of trouble."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vpsbackup.prune import messages
from vpsbackup.prune.compact import FleetPlan
from vpsbackup.prune.plan import BackupDecision
from vpsbackup.prune.request import PruneRequest

NOW = datetime(2025, 1, 20, 12, 0, tzinfo=UTC)


def decision(backup_id: int, *, server: int = 1, days_old: int = 1) -> BackupDecision:
    created = NOW - timedelta(days=days_old)
    return BackupDecision(backup_id, server, created, "completed", "manual", "delete", ("not kept by the policy",))


def plan(to_delete: tuple[BackupDecision, ...], deferred: tuple[BackupDecision, ...] = ()) -> FleetPlan:
    return FleetPlan(
        now=NOW,
        scope="managed",
        max_deletions=len(to_delete) if deferred else 50,
        servers=2,
        decisions=(*to_delete, *deferred),
        to_delete=to_delete,
        deferred=deferred,
        deferred_count=len(deferred),
        totals={"delete": len(to_delete), "keep": 0, "skip": 0, "defer": len(deferred)},
        by_reason={},
    )


def totals(*, deleted: int = 0, already_gone: int = 0, kept: int = 7, skipped: int = 3) -> dict[str, int]:
    return {"deleted": deleted, "already_gone": already_gone, "kept": kept, "skipped": skipped}


def test_failed_deletions_are_listed_with_what_went_wrong() -> None:
    failed = [(decision(11, days_old=40), "HTTP 500"), (decision(12, server=2, days_old=35), "HTTP 502")]
    subject, text = messages.needs_a_look(
        PruneRequest(trigger="schedule"),
        plan((decision(10, days_old=45), *(d for d, _ in failed))),
        totals(deleted=1),
        failed=failed,
        not_started=[],
    )
    assert subject == "VPS backup prune: 2 deletions failed"
    assert text == (
        "The scheduled prune of manual VPS backups at 2025-01-20 12:00 UTC needs a look.\n\n"
        "Deleted 1 backup, kept 7 that the retention policy keeps, left alone 3 "
        "(automatic backups, backups made by people or still in progress).\n\n"
        "2 backups could not be deleted. They are still there and the next run will try again; "
        "if this repeats, check the provider's status and the API token:\n"
        "- backup 11 of server 1, made 2024-12-11 12:00 UTC: HTTP 500\n"
        "- backup 12 of server 2, made 2024-12-16 12:00 UTC: HTTP 502"
    )


def test_a_tripped_valve_says_how_many_wait_and_what_to_check() -> None:
    subject, text = messages.needs_a_look(
        PruneRequest(),
        plan((decision(1, days_old=9), decision(2, days_old=8)), deferred=(decision(3, days_old=7),)),
        totals(deleted=1, already_gone=1),
        failed=[],
        not_started=[],
    )
    assert subject == "VPS backup prune: safety valve held back 1 deletion"
    assert text == (
        "A prune run started by hand of manual VPS backups at 2025-01-20 12:00 UTC needs a look.\n\n"
        "Deleted 2 backups (1 of them were already gone), kept 7 that the retention policy keeps, left alone 3 "
        "(automatic backups, backups made by people or still in progress).\n\n"
        "Safety valve: one run deletes at most 2 backups (MAX_DELETIONS_PER_RUN), and the retention policy "
        "wanted 3 deletions. The oldest 2 went first; the 1 others wait for the next runs. This is expected the "
        "first time prune runs or after the policy was tightened. If neither happened, check RETENTION_POLICY "
        "before raising the limit: a policy that keeps too little looks like this."
    )


def test_both_troubles_and_the_deletions_that_did_not_start_are_all_told() -> None:
    failed = [(decision(5, server=12345), "hold not checked (ClientError): not deleted")]
    late = [(decision(6, server=12345), "time: less than 20 s of the invocation left; next run"), (decision(7), "")]
    subject, text = messages.needs_a_look(
        PruneRequest(server_ids=[12345, 678]),
        plan((decision(5), decision(6), decision(7)), deferred=(decision(8), decision(9))),
        totals(),
        failed=failed,
        not_started=late,
    )
    assert subject == "VPS backup prune: 1 deletion failed, safety valve held back 2 deletions"
    assert text.startswith("A prune run started by hand of manual VPS backups for servers 678, 12345 at ")  # sorted
    assert "\n1 backup could not be deleted." in text
    line = "- backup 5 of server 12345, made 2025-01-19 12:00 UTC: hold not checked (ClientError): not deleted"
    assert f"\n{line}\n" in text
    assert "\nSafety valve: one run deletes at most 3 backups" in text
    assert text.endswith(
        "\n\n2 deletions did not start (time: less than 20 s of the invocation left; next run); "
        "the next run picks them up."
    )


def test_a_long_list_of_failures_names_the_first_ones_and_counts_the_rest() -> None:
    failed = [(decision(100 + n, days_old=30 + n), "HTTP 500") for n in range(messages.NOTIFY_LIST_LIMIT + 3)]
    _, text = messages.needs_a_look(
        PruneRequest(trigger="schedule"), plan(tuple(d for d, _ in failed)), totals(), failed=failed, not_started=[]
    )
    listed = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(listed) == messages.NOTIFY_LIST_LIMIT + 1
    assert listed[0] == "- backup 100 of server 1, made 2024-12-21 12:00 UTC: HTTP 500"
    assert listed[-1] == "- … and 3 more (see the function's log)"


def test_a_listing_out_of_time_says_how_far_it_got_that_nothing_was_deleted_and_what_to_change() -> None:
    progress = {
        "listed": 88_200,
        "expected": 301_000,
        "pages": 882,
        "seconds": 871.4,
        "stopped": "GET /api/v1/backups/: not started, the deadline has passed",
    }
    subject, text = messages.listing_out_of_time(PruneRequest(trigger="schedule"), NOW, progress)
    assert subject == "VPS backup prune: out of time while listing, nothing deleted"
    assert text == (
        "The scheduled prune of manual VPS backups at 2025-01-20 12:00 UTC ran out of time while listing the "
        "backups.\n\n"
        "It listed 88,200 of 301,000 backups (29%) in 882 pages in 871 s, then stopped: "
        "GET /api/v1/backups/: not started, the deadline has passed.\n"
        "Nothing was deleted: a plan made on part of the listing could delete what the rest would keep. "
        "The next run starts the listing afresh, and will stop the same way while the fleet stays this large.\n\n"
        "To make the listing fit one run: larger pages (VPS_API_PAGE_SIZE, if the provider allows them), "
        "more requests per second (VPS_API_MAX_RPS, if the provider's limit allows it), or a longer function "
        "timeout (at most 15 minutes)."
    )


def test_a_listing_out_of_time_without_a_count_says_what_it_listed() -> None:
    progress = {"listed": 0, "expected": None, "pages": 0, "seconds": 0.2, "stopped": None}
    _, text = messages.listing_out_of_time(PruneRequest(server_ids=[7]), NOW, progress)
    assert "for servers 7 at" in text
    assert "It listed 0 backups in 0 pages in 0 s, then stopped: out of time." in text
