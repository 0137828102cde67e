"""Prune at fleet scale: a report bounded at 300,000 backups, and a listing out of time.

The fleet is generated compactly (unvalidated models, made as they are listed) so these run in
seconds; nothing here is timed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from vpsbackup.aws.notifications import Routing
from vpsbackup.durations import describe_duration
from vpsbackup.markers import make_marker
from vpsbackup.provider.errors import ApiTimeoutError, ServerError
from vpsbackup.provider.models import Backup, BackupPage, ServerRef
from vpsbackup.prune import job as prune
from vpsbackup.prune import report_render
from vpsbackup.prune.job import PruneOptions, publish_report, run_prune
from vpsbackup.prune.request import PruneRequest
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy
from vpsbackup.records import Hold

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MARKERS = [make_marker(f"deploy-{n}") for n in range(30)]


class Listed:
    """What the client yields for one listed backup, without pydantic's per-object cost (these
    tests are about the report, not about parsing: models are tested elsewhere)."""

    __slots__ = ("backup_type", "created_at", "description", "expires_at", "id", "server", "size_mb", "status")

    def __init__(
        self, backup_id: int, server: ServerRef, days: int, minutes: int, marker: str, status: str = "completed"
    ) -> None:
        self.id = backup_id
        self.server = server
        self.backup_type = "manual"
        self.status = status
        self.size_mb = 4000
        self.created_at = NOW - timedelta(days=days, minutes=minutes)
        self.expires_at = None
        self.description = marker

    @property
    def server_id(self) -> int:
        return self.server.id

    def model_dump_json(self) -> str:
        return (
            f'{{"id":{self.id},"server":{{"id":{self.server.id},"name":null}},"backup_type":"manual",'
            f'"status":"{self.status}","size_mb":4000,"created_at":"{self.created_at.isoformat()}",'
            f'"expires_at":null,"description":"{self.description}"}}'
        )


def fleet(servers: int, per_server: int, *, failed_from: int | None = None) -> Iterator[Backup]:
    """``servers`` × ``per_server`` managed backups, one a day, made as they are listed; from the
    ``failed_from``-th of each server on, failed ones (deleted by rule 3, without a retention walk:
    a big fleet that is cheap to plan, with as many deletions as one could wish)."""
    for s in range(servers):
        server = ServerRef(id=10_000 + s)
        for k in range(per_server):
            status = "failed" if failed_from is not None and k >= failed_from else "completed"
            yield Listed(1 + s * per_server + k, server, k, s % 600, MARKERS[k % 30], status)  # type: ignore[misc]


class PagedApi:
    """Lists ``backups`` in pages of ``page_size`` (telling ``on_page``), then ``fail_after`` pages
    raises ``error`` as the client does at its deadline; records deletions."""

    def __init__(
        self,
        backups: Callable[[], Iterator[Backup]],
        *,
        total: int,
        page_size: int = 100,
        fail_after: int | None = None,
        error: Exception | None = None,
    ) -> None:
        self.backups, self.total, self.page_size = backups, total, page_size
        self.fail_after, self.error = fail_after, error
        self.deleted: list[int] = []

    def iter_backups(self, *, on_page: Callable[[BackupPage], None] | None = None, **_: Any) -> Iterator[Backup]:
        page: list[Backup] = []
        pages = 0
        for backup in self.backups():
            page.append(backup)
            if len(page) == self.page_size:
                if self.fail_after is not None and pages == self.fail_after:
                    assert self.error is not None
                    raise self.error
                if on_page is not None:
                    on_page(
                        BackupPage.model_construct(
                            count=self.total, next="x", previous=None if not pages else "p", results=page
                        )
                    )
                yield from page
                page, pages = [], pages + 1
        if page:
            yield from page

    def delete_backup(self, backup_id: int, *, before_retry: Any = None) -> None:
        self.deleted.append(backup_id)


class NoHolds:
    def active_holds(self, now: datetime) -> dict[int, Hold]:
        return {}

    def active_hold(self, backup_id: int, now: datetime) -> Hold | None:
        return None


class Notifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, str] | None]] = []

    def publish(
        self, subject: str, message: str, *, routing: Routing, attributes: dict[str, str] | None = None
    ) -> bool:
        self.sent.append((subject, message, routing.attributes()))
        return True


def options(*, max_deletions: int = 50, dry_run: bool = False) -> PruneOptions:
    return PruneOptions(
        policies=RetentionPolicies(RetentionPolicy(keep_last=3, keep_daily=7, keep_weekly=4, keep_monthly=6)),
        tz=ZoneInfo("Europe/Madrid"),
        scope="managed",
        failed_grace=timedelta(hours=24),
        max_deletions=max_deletions,
        concurrency=4,
        dry_run=dry_run,
    )


def size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))


# 300,000 backups listed and planned: about 15 s of CPU; the limit only guards against a hang on a
# machine shared by many test runs.
@pytest.mark.timeout(600)
def test_the_report_stays_bounded_at_300000_backups() -> None:
    # Given 10,000 servers × 30 backups (5 completed and 25 old failed ones each), and a valve
    # opened wide (20,000 deletions in one run: their list alone would be 3 MB)
    api = PagedApi(lambda: fleet(10_000, 30, failed_from=5), total=300_000)
    # When a dry run plans it
    report = run_prune(PruneRequest(dry_run=True), options(max_deletions=20_000), client=api, holds=NoHolds(), now=NOW)
    result, (record, parts) = report_render.result_record(report), report_render.log_records(report)
    # Then the return value is under 1 MB and every log record under 200 KB
    assert size(result) < 1_000_000
    assert size(record) < 200_000
    assert parts and all(size(part) < 200_000 for part in parts)
    # ... and they still say what matters: totals, reasons, and every planned deletion (in parts)
    totals = result["totals"]
    assert totals["listed"] == 300_000
    assert totals["to_delete"] + totals["kept"] + totals["skipped"] + totals["deferred"] == 300_000
    assert totals["to_delete"] == 20_000 and totals["deferred"] > 0
    assert "decisions" not in result and result["decisions_omitted"] == 300_000
    failed_old = f"failed, older than {describe_duration(timedelta(hours=24))}"
    assert {r["reason"] for r in result["reasons"]} >= {failed_old, "daily", "deferred (valve)"}
    logged = record["deletions"] + [d for part in parts for d in part.get("deletions", [])]
    assert [d["backup_id"] for d in logged] == [d.backup_id for d in report.plan.to_delete]
    assert result["deletions_omitted"] == len(report.plan.to_delete) - len(result["deletions"])
    assert api.deleted == []
    # ... and a notification, if any, stays short
    notifier = Notifier()
    publish_report(report, notifier=notifier)  # type: ignore[arg-type]
    assert all(len(text) < 4_000 for _, text, _ in notifier.sent)


def test_a_listing_out_of_time_deletes_nothing_does_not_raise_reports_and_notifies(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a fleet of 3,000 backups and a client that reaches its deadline after 12 pages of 100
    from vpsbackup.observability import metrics

    metrics.clear_metrics()
    deadline = ApiTimeoutError("GET /api/v1/backups/: not started, the deadline has passed", method="GET")
    api = PagedApi(lambda: fleet(100, 30), total=3_000, fail_after=12, error=deadline)
    # When the scheduled run happens (the policy would delete many of them)
    report = run_prune(PruneRequest(trigger="schedule"), options(), client=api, holds=NoHolds(), now=NOW)
    notifier = Notifier()
    publish_report(report, notifier=notifier)  # type: ignore[arg-type]
    # Then it returned (no exception), planned nothing and deleted nothing
    assert api.deleted == []
    assert not report.listing_complete
    assert report.plan.to_delete == () and report.totals["to_delete"] == 0
    # ... its report says how far the listing got and why it stopped
    result = report_render.result_record(report)
    assert result["listing_complete"] is False
    assert result["progress"] | {"seconds": 0} == {
        "complete": False,
        "pages": 12,
        "listed": 1_200,
        "expected": 3_000,
        "servers_listed": 0,
        "servers_requested": None,
        "seconds": 0,
        "stopped": "GET /api/v1/backups/: not started, the deadline has passed",
        "stopped_by": "time",
    }
    # ... people are told, in words
    [(subject, text, attributes)] = notifier.sent
    assert subject == "VPS backup prune: out of time while listing, nothing deleted"
    assert "It listed 1,200 of 3,000 backups (40%) in 12 pages" in text
    assert attributes == {"job": "prune", "outcome": "listing_incomplete", "severity": "warning"}
    # ... and the metric says the listing was incomplete
    metrics.flush_metrics()
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf[-1]["ListingIncomplete"] == [1]
    assert emf[-1]["BackupsDeleted"] == [0]


def test_an_api_error_with_time_left_still_fails_the_run_before_any_deletion() -> None:
    # A listing that fails for another reason than time is not "out of time": it raises, as before
    # (the errors alarm), and nothing was deleted.
    api = PagedApi(lambda: fleet(10, 30), total=300, fail_after=1, error=ServerError("HTTP 500", status_code=500))
    with pytest.raises(ServerError):
        run_prune(PruneRequest(), options(), client=api, holds=NoHolds(), now=NOW, time_left=lambda: 300.0)
    assert api.deleted == []


def test_an_api_error_with_too_little_time_left_is_out_of_time() -> None:
    api = PagedApi(lambda: fleet(10, 30), total=300, fail_after=1, error=ServerError("HTTP 503", status_code=503))
    report = run_prune(
        PruneRequest(),
        options(),
        client=api,
        holds=NoHolds(),
        now=NOW,
        time_left=lambda: prune.STOP_STARTING_MARGIN_S - 1,
    )
    assert not report.listing_complete
    assert report.progress.stopped == "HTTP 503"
    assert api.deleted == []
