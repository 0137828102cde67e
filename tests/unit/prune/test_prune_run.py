"""The prune orchestration with fakes: deletion order, bounded concurrency, outcomes, time, dry run, report."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from vpsbackup.markers import make_marker
from vpsbackup.provider.errors import (
    ApiTimeoutError,
    AuthenticationError,
    BackupAlreadyGoneError,
    RateLimitedError,
    ServerError,
)
from vpsbackup.provider.models import Backup
from vpsbackup.prune import report_render
from vpsbackup.prune.job import PruneOptions, PruneReport, execute_deletions, publish_report, run_prune
from vpsbackup.prune.request import PruneRequest
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy
from vpsbackup.records import Hold

NOW = datetime(2025, 1, 20, 12, 0, tzinfo=UTC)


def backup(backup_id: int, *, server: int = 1, days_old: int = 1, managed: bool = True) -> Backup:
    return Backup.model_validate(
        {
            "id": backup_id,
            "server": {"id": server},
            "backup_type": "manual",
            "status": "completed",
            "created_at": (NOW - timedelta(days=days_old)).isoformat(),
            "description": f"Release {make_marker(f'd{backup_id}')}" if managed else "by hand",
        }
    )


def daily(server: int, days: int, first_id: int) -> list[Backup]:
    """One managed backup a day for ``days`` days; ids grow with age."""
    return [backup(first_id + n, server=server, days_old=n + 1) for n in range(days)]


class FakeApi:
    """Records listings and deletions; fails the deletions it is told to; counts requests in flight."""

    def __init__(self, backups: list[Backup], *, errors: dict[int, Exception] | None = None, delay: float = 0.0):
        self.backups = {b.id: b for b in backups}
        self.errors = errors or {}
        self.delay = delay
        self.calls: list[str] = []
        self.listings: list[tuple[int | None, str | None]] = []
        self.started: list[int] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0

    def iter_backups(
        self,
        *,
        server_id: int | None = None,
        backup_type: str | None = None,
        every_copy: bool = False,
        on_page: Any = None,
        on_invalid: Any = None,
    ) -> Iterator[Backup]:
        self.calls.append("list")
        self.listings.append((server_id, backup_type))
        yield from list(self.backups.values())  # like an API that ignores the filter: the plan must not care

    def delete_backup(self, backup_id: int, *, before_retry: Any = None) -> None:
        with self._lock:
            self.started.append(backup_id)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            time.sleep(self.delay)
            if backup_id in self.errors:
                raise self.errors[backup_id]
            del self.backups[backup_id]
        finally:
            with self._lock:
                self._in_flight -= 1


class FakeHolds:
    def __init__(self, api: FakeApi, holds: dict[int, Hold] | None = None) -> None:
        self.api = api
        self.holds = holds or {}

    def active_holds(self, now: datetime) -> dict[int, Hold]:
        self.api.calls.append("holds")
        return {k: h for k, h in self.holds.items() if h.until > now}

    def active_hold(self, backup_id: int, now: datetime) -> Hold | None:
        hold = self.holds.get(backup_id)
        return hold if hold is not None and hold.until > now else None


class FakeNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def publish(self, subject: str, message: str, *, routing: Any = None, attributes: Any = None) -> bool:
        self.sent.append((subject, message))
        return True


def options(
    *, keep_last: int = 2, max_deletions: int = 50, concurrency: int = 4, dry_run: bool = False
) -> PruneOptions:
    return PruneOptions(
        policies=RetentionPolicies(RetentionPolicy(keep_last=keep_last)),
        tz=ZoneInfo("UTC"),
        scope="managed",
        failed_grace=timedelta(hours=24),
        max_deletions=max_deletions,
        concurrency=concurrency,
        dry_run=dry_run,
    )


def run(api: FakeApi, request: PruneRequest | None = None, **kwargs: Any) -> PruneReport:
    time_left = kwargs.pop("time_left", lambda: None)
    holds = kwargs.pop("holds", None)
    return run_prune(
        request or PruneRequest(),
        options(**kwargs),
        client=api,
        holds=FakeHolds(api, holds),
        now=NOW,
        time_left=time_left,
    )


# -- deletions -----------------------------------------------------------------------------------


def test_deletions_start_oldest_first_one_at_a_time() -> None:
    # Given 10 daily backups of which the policy keeps 2
    api = FakeApi(daily(1, 10, first_id=100))
    # When the run deletes one at a time
    report = run(api, concurrency=1)
    # Then the 8 oldest went, oldest first, and each is reported deleted
    assert api.started == [109, 108, 107, 106, 105, 104, 103, 102]
    assert set(api.backups) == {100, 101}
    assert report.totals["deleted"] == 8
    assert [r.outcome for r in report.results] == ["deleted"] * 8


def test_concurrency_is_bounded_and_used() -> None:
    # Given 3 servers × 12 daily backups and a slow API
    api = FakeApi([*daily(1, 12, 100), *daily(2, 12, 200), *daily(3, 12, 300)], delay=0.01)
    # When the run deletes with PRUNE_CONCURRENCY=4
    report = run(api, concurrency=4)
    # Then it never had more than 4 deletions in flight, and did overlap them
    assert report.totals["deleted"] == 30
    assert 1 < api.max_in_flight <= 4
    # ... and they were started in the plan's order (oldest first)
    assert api.started[:4] and sorted(api.started[:4]) == sorted(d.backup_id for d in report.plan.to_delete[:4])


def test_each_failure_is_recorded_and_the_others_go_on() -> None:
    # Given an API on which one deletion is a 404, one a 500 and one a surprise
    backups = daily(1, 8, 100)
    api = FakeApi(
        backups,
        errors={
            107: BackupAlreadyGoneError("gone", status_code=404),
            106: ServerError("DELETE /backups/106/: HTTP 500", status_code=500),
            105: RuntimeError("boom"),
        },
    )
    # When the run deletes
    report = run(api, concurrency=2)
    # Then the 404 counts as done, the 500 and the surprise are failed with their reason, the rest deleted
    outcomes = {r.backup_id: (r.outcome, r.detail) for r in report.results}
    assert outcomes[107][0] == "already_gone"
    assert outcomes[106] == ("failed", "DELETE /backups/106/: HTTP 500")
    assert outcomes[105] == ("failed", "RuntimeError: boom")
    assert {o for o, _ in (outcomes[i] for i in (102, 103, 104))} == {"deleted"}
    assert [report.totals[k] for k in ("deleted", "already_gone", "failed", "not_started")] == [3, 1, 2, 0]
    assert report.needs_attention


def test_an_authentication_failure_stops_new_deletions() -> None:
    # Given an API that refuses the token from the second deletion on
    api = FakeApi(daily(1, 8, 100), errors={106: AuthenticationError("HTTP 401", status_code=401)})
    # When the run deletes one at a time
    report = run(api, concurrency=1)
    # Then no deletion starts after it; they are reported, with the reason
    assert api.started == [107, 106]
    assert [r.outcome for r in report.results] == ["deleted", "failed"] + ["not_started"] * 4
    assert "token" in report.results[-1].detail


def test_a_deletion_answered_429_fails_for_now_and_no_deletion_starts_after_it() -> None:
    # Given an API that answers the second deletion 429 with a Retry-After of 90 s (the client's
    # own retries spent)
    api = FakeApi(daily(1, 8, 100), errors={106: RateLimitedError("HTTP 429", status_code=429, retry_after=90.0)})
    # When the run deletes one at a time
    report = run(api, concurrency=1)
    # Then no deletion starts after it: it failed (an earlier attempt of it may have been applied),
    # the rest are not started, all to be sent again in 90 s
    assert api.started == [107, 106]
    assert [r.outcome for r in report.results] == ["deleted", "failed"] + ["not_started"] * 4
    assert [r.retry_in for r in report.results] == [None] + [90.0] * 5
    assert report.results[1].detail.startswith("rate limited: the provider answered 429 (Retry-After 90 s)")
    # (a Retry-After beyond an hour is not believed)
    api = FakeApi(daily(1, 8, 100), errors={107: RateLimitedError("HTTP 429", status_code=429, retry_after=1e6)})
    assert {r.retry_in for r in run(api, concurrency=1).results} == {3600.0}
    # (and a 429 that names no wait is waited a minute)
    api = FakeApi(daily(1, 8, 100), errors={107: RateLimitedError("HTTP 429", status_code=429)})
    assert {r.retry_in for r in run(api, concurrency=1).results} == {60.0}


def test_only_deletions_never_sent_or_refused_429_are_to_be_sent_again() -> None:
    # Given a deletion never sent (its turn in the request budget 40 s away, past the deadline),
    # one sent that timed out (it may have been applied), one failing with 500
    errors: dict[int, Exception] = {
        106: ApiTimeoutError("DELETE /backups/106/: not started", not_sent=True, wait=40.0),
        105: ApiTimeoutError("DELETE /backups/105/: ReadTimeout after 4 attempt(s)"),
        104: ServerError("HTTP 500", status_code=500),
    }
    api = FakeApi(daily(1, 8, 100), errors=errors)
    report = run(api, concurrency=1)
    # Then the first is not started, to be sent again in 40 s; the others are final failures
    assert {r.backup_id: (r.outcome, r.retry_in) for r in report.results} == {
        107: ("deleted", None),
        106: ("not_started", 40.0),
        105: ("failed", None),
        104: ("failed", None),
        103: ("deleted", None),
        102: ("deleted", None),
    }
    assert all(r.retry_in == 0.0 for r in run(FakeApi(daily(1, 5, 100)), time_left=lambda: 19.0).results)


def test_no_deletion_starts_under_the_time_margin() -> None:
    # Given an invocation with 19 s left (the margin is 20 s)
    api = FakeApi(daily(1, 5, 100))
    # When the run happens, Then nothing is deleted and everything is reported as not started for time
    report = run(api, time_left=lambda: 19.0)
    assert api.started == []
    assert {r.outcome for r in report.results} == {"not_started"}
    assert all(r.detail.startswith("time") for r in report.results)


def test_execute_deletions_with_nothing_to_do_starts_no_pool() -> None:
    api = FakeApi([])
    assert execute_deletions(api, [], holds=FakeHolds(api), concurrency=4, time_left=lambda: None) == ()


# -- listing, holds, dry run -------------------------------------------------------------------------


def test_the_fleet_is_listed_once_then_holds_are_read() -> None:
    api = FakeApi(daily(1, 3, 100))
    run(api)
    assert api.listings == [(None, "manual")]
    assert api.calls[:2] == ["list", "holds"]


def test_a_run_for_some_servers_lists_each_and_never_touches_another_one() -> None:
    # Given an API that ignores the server filter and answers with the whole fleet
    api = FakeApi([*daily(1, 5, 100), *daily(2, 5, 200), *daily(3, 5, 300)])
    # When a run is limited to servers 3 and 1
    report = run(api, PruneRequest(server_ids=[3, 1]))
    # Then each was listed on its own, and only their backups were deleted
    assert api.listings == [(1, "manual"), (3, "manual")]
    assert report.listing == "per-server"
    assert set(range(200, 205)) <= set(api.backups)
    assert {d.server_id for d in report.plan.decisions} == {1, 3}


@pytest.mark.parametrize(("setting", "asked"), [(True, False), (False, True), (True, True)])
def test_a_dry_run_deletes_nothing_and_returns_the_real_plan(setting: bool, asked: bool) -> None:
    # Given a fleet, When a dry run happens (by setting, by request, or both)
    api = FakeApi(daily(1, 6, 100))
    dry = run(api, PruneRequest(dry_run=asked), dry_run=setting)
    # Then nothing is deleted, the deletions say so, and a real run then deletes exactly that plan
    assert api.started == []
    assert dry.dry_run
    assert {r.outcome for r in dry.results} == {"dry_run"}
    real = run(api)
    assert [d.backup_id for d in real.plan.to_delete] == [d.backup_id for d in dry.plan.to_delete]
    # (with 4 deletions in flight, the order in which threads start them is the scheduler's)
    assert sorted(api.started) == sorted(d.backup_id for d in dry.plan.to_delete)


def test_a_held_backup_is_kept() -> None:
    api = FakeApi(daily(1, 6, 100))
    hold = Hold(backup_id=104, server_id=1, until=NOW + timedelta(days=3), reason="restore")
    report = run(api, holds={104: hold})
    assert 104 in api.backups
    assert 104 not in api.started
    assert report.totals["deleted"] == 3


# -- the report ----------------------------------------------------------------------------------


def test_the_report_carries_every_decision_each_outcome_and_totals() -> None:
    api = FakeApi([*daily(1, 4, 100), backup(900, days_old=9, managed=False)])
    result = report_render.result_record(run(api))
    assert result["totals"] == {
        "listed": 5,
        "kept": 2,
        "skipped": 1,
        "deferred": 0,
        "to_delete": 2,
        "deleted": 2,
        "already_gone": 0,
        "failed": 0,
        "not_started": 0,
        "dry_run": 0,
    }
    decisions = {d["backup_id"]: d for d in result["decisions"]}
    assert decisions[103]["action"] == "delete"
    assert decisions[103]["outcome"] == "deleted"
    assert "outcome" not in decisions[100]
    assert decisions[900]["reasons"] == ["not made by this project"]
    assert result["deletions"][0] == {
        "backup_id": 103,
        "server_id": 1,
        "created_at": (NOW - timedelta(days=4)).isoformat(),
        "outcome": "deleted",
        "detail": "",
    }
    assert (result["trigger"], result["dry_run"], result["listing"]) == ("manual", False, "fleet")


def test_what_does_not_fit_the_log_record_goes_to_parts_and_nothing_is_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given log records limited to 1,500 bytes (beyond the fixed fields) and a run of 40 decisions
    monkeypatch.setattr(report_render, "LOG_RECORD_LIMIT", 1_500)
    monkeypatch.setattr(report_render, "FIXED_ROOM", 0)
    report = run(FakeApi(daily(1, 40, 100)), keep_last=5)
    record, parts = report_render.log_records(report)
    # Then the main record names some decisions and counts the rest, and the parts, each within the
    # limit, carry every one of the others, in order
    assert 0 < len(record["decisions"]) < 40
    assert record["decisions_omitted"] == 40 - len(record["decisions"])
    assert all(len(json.dumps(part, separators=(",", ":"))) <= 1_500 for part in parts)
    assert [p["part"] for p in parts] == list(range(1, len(parts) + 1))
    assert all(p["parts"] == len(parts) for p in parts)
    logged = record["decisions"] + [d for p in parts for d in p.get("decisions", [])]
    assert logged == report_render.result_record(report)["decisions"]
    deletions = record["deletions"] + [d for p in parts for d in p.get("deletions", [])]
    assert [d["backup_id"] for d in deletions] == [d.backup_id for d in report.plan.to_delete]
    # ... while the return value, with its larger limit, holds everything
    assert "decisions_omitted" not in report_render.result_record(report)


def test_a_quiet_run_tells_no_one() -> None:
    notifier = FakeNotifier()
    publish_report(run(FakeApi(daily(1, 6, 100))), notifier=notifier)  # type: ignore[arg-type]
    assert notifier.sent == []


def test_a_tripped_valve_and_a_failure_are_told_in_words() -> None:
    # Given a run where the valve holds back deletions and one deletion fails
    api = FakeApi(daily(12345, 10, 100), errors={109: ServerError("DELETE /backups/109/: HTTP 503", status_code=503)})
    report = run(api, max_deletions=3)
    notifier = FakeNotifier()
    # When it is published
    publish_report(report, notifier=notifier)  # type: ignore[arg-type]
    # Then one notification says both, which backup failed and why, and what happens next
    ((subject, message),) = notifier.sent
    assert subject == "VPS backup prune: 1 deletion failed, safety valve held back 5 deletions"
    assert "backup 109 of server 12345, made 2025-01-10 12:00 UTC: DELETE /backups/109/: HTTP 503" in message
    assert "the next run will try again" in message
    assert "at most 3 backups (MAX_DELETIONS_PER_RUN)" in message
    assert "wanted 8 deletions" in message


def test_a_dry_run_tells_no_one_even_when_the_valve_would_trip() -> None:
    notifier = FakeNotifier()
    report = run(FakeApi(daily(1, 10, 100)), max_deletions=1, dry_run=True)
    assert report.plan.valve_tripped
    publish_report(report, notifier=notifier)  # type: ignore[arg-type]
    assert notifier.sent == []


def test_a_long_list_of_failures_is_cut_in_the_notification() -> None:
    backups = daily(1, 40, 100)
    api = FakeApi(backups, errors={b.id: ServerError("HTTP 500", status_code=500) for b in backups})
    subject, message = report_render.notification(run(api)) or ("", "")
    assert subject == "VPS backup prune: 38 deletions failed"
    assert "… and 18 more" in message


class HoldsPlacedDuringTheRun(FakeHolds):
    """No hold when the plan is made; a restore holds ``held`` before its deletion starts."""

    def __init__(self, api: FakeApi, held: int, *, unreadable: bool = False) -> None:
        super().__init__(api)
        self.held = held
        self.unreadable = unreadable

    def active_hold(self, backup_id: int, now: datetime) -> Hold | None:
        if backup_id != self.held:
            return None
        if self.unreadable:
            raise RuntimeError("DynamoDB throttled")
        return Hold(backup_id=backup_id, server_id=1, until=now + timedelta(days=7), reason="restore after alarm x")


@pytest.mark.parametrize("unreadable", [False, True], ids=["held", "hold-unreadable"])
def test_a_backup_held_after_the_plan_is_not_deleted(unreadable: bool) -> None:
    # Given a plan that deletes 104..102, and a restore that holds 103 while the run is under way
    api = FakeApi(daily(1, 5, 100))
    holds = HoldsPlacedDuringTheRun(api, held=103, unreadable=unreadable)
    # When the run deletes
    report = run_prune(PruneRequest(), options(concurrency=1), client=api, holds=holds, now=NOW)
    # Then 103 survives (a hold that cannot be read counts as a hold), the others go
    assert 103 in api.backups
    assert sorted(api.started) == [102, 104]
    outcome = report.outcome_of(103)
    assert outcome is not None
    assert outcome.outcome == ("failed" if unreadable else "not_started")
    # and only 103 is marked as stopped by the hold (what the journal reads, not the detail's words)
    assert [r.backup_id for r in report.results if r.stopped_by_hold] == [103]


def test_a_listings_progress_stored_and_read_back_is_the_same_progress() -> None:
    from vpsbackup.provider.models import InvalidItem
    from vpsbackup.prune.job import InvalidItems, ListingProgress

    invalid = InvalidItems()
    invalid.add(
        InvalidItem(backup_id=9, server_id=4, reason="created_at: Input should be a valid datetime"), servers=(4, 4)
    )
    invalid.add(InvalidItem(reason="id: Field required", owner_unknown=True), servers=(7, None))
    progress = ListingProgress(
        pages=31,
        listed=1503,
        expected=1504,
        servers_listed=2,
        servers_requested=3,
        seconds=12.5,
        stopped="a walk stopped",
        stopped_by="incomplete",
        invalid=invalid,
    )
    stored = json.loads(json.dumps(progress.to_stored()))
    assert ListingProgress.from_stored(stored) == progress
