"""Adversarial review of prune: scenarios in which a backup that must be kept could be deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.prune.strategies import plan_backups, walked
from vpsbackup.errors import ConfigurationError
from vpsbackup.markers import make_marker
from vpsbackup.provider.client import NO_WAIT, VpsClient
from vpsbackup.provider.models import Backup
from vpsbackup.prune.job import PruneOptions, run_prune
from vpsbackup.prune.request import InvalidPruneRequestError, PruneRequest, parse_prune_request
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy, parse_retention_policy
from vpsbackup.prune.settings import PruneSettings
from vpsbackup.records import Hold
from vpsbackup.settings import load_settings

NOW = datetime(2025, 1, 20, 12, 0, tzinfo=UTC)
BASE = "https://api.test/api/v1"


def backup_json(backup_id: int, *, days_old: float, status: str = "completed", **extra: Any) -> dict[str, Any]:
    return {
        "id": backup_id,
        "server": {"id": 1, "name": "web"},
        "backup_type": "manual",
        "status": status,
        "size_mb": 10,
        "created_at": (NOW - timedelta(days=days_old)).isoformat(),
        "expires_at": None,
        "description": f"Release {make_marker(f'd{backup_id}')}",
        **extra,
    }


class Tokens:
    def get_token(self, *, force_refresh: bool = False) -> str:
        return "token"


class NoHolds:
    def active_holds(self, now: datetime) -> dict[int, Hold]:
        return {}

    def active_hold(self, backup_id: int, now: datetime) -> Hold | None:
        return None


def options(policy: RetentionPolicy) -> PruneOptions:
    return PruneOptions(
        policies=RetentionPolicies(policy),
        tz=ZoneInfo("UTC"),
        scope="managed",
        failed_grace=timedelta(hours=24),
        max_deletions=50,
        concurrency=1,
        dry_run=False,
    )


# -- the same backup on two pages, with different data -------------------------------------------


def test_a_backup_whose_status_changed_between_pages_is_not_deleted() -> None:
    # Given a listing in which backup 1 is "completed" on page 1 and, by the time page 2 is read,
    # "restoring" (a status we do not know: someone is using it)
    pages = [
        {"next": f"{BASE}/backups/?page=2", "results": [backup_json(1, days_old=3), backup_json(2, days_old=1)]},
        {"next": None, "results": [backup_json(1, days_old=3, status="restoring")]},
    ]
    deleted: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            deleted.append(request.url.path)
            return httpx.Response(204)
        return httpx.Response(200, json=pages.pop(0))

    client = VpsClient(BASE, Tokens(), retry=NO_WAIT, transport=httpx.MockTransport(handler))
    # When prune runs with a policy that keeps only the newest backup
    report = run_prune(PruneRequest(), options(RetentionPolicy(keep_last=1)), client=client, holds=NoHolds(), now=NOW)
    # Then backup 1 is left alone: its copies disagree, so the listing cannot be trusted for it
    assert deleted == []
    decision = next(d for d in report.plan.decisions if d.backup_id == 1)
    assert decision.action == "skip"
    assert "listed more than once with different data" in decision.reasons


def test_the_client_yields_a_disagreeing_copy_only_when_asked() -> None:
    pages = [
        {"next": f"{BASE}/backups/?page=2", "results": [backup_json(1, days_old=3), backup_json(2, days_old=1)]},
        {"next": None, "results": [backup_json(2, days_old=1), backup_json(1, days_old=3, status="deleting")]},
    ]

    def client() -> VpsClient:
        answers = list(pages)
        return VpsClient(
            BASE,
            Tokens(),
            retry=NO_WAIT,
            transport=httpx.MockTransport(lambda _r: httpx.Response(200, json=answers.pop(0))),
        )

    # Identical copies are still yielded once; by default, each id once (first copy), as before
    assert [(b.id, b.status) for b in client().list_backups()] == [(1, "completed"), (2, "completed")]
    assert [(b.id, b.status) for b in client().list_backups(distinct_copies=True)] == [
        (1, "completed"),
        (2, "completed"),
        (1, "deleting"),
    ]


# -- clock skew at the provider ---------------------------------------------------------------------


def plan(backups: list[Backup], policy: RetentionPolicy) -> dict[int, str]:
    result = plan_backups(
        backups,
        policy_for=RetentionPolicies(policy),
        tz=ZoneInfo("UTC"),
        now=NOW,
        scope="managed",
        holds={},
        failed_grace=timedelta(hours=24),
        max_deletions=50,
    )
    return {d.backup_id: d.action for d in result.decisions}


def test_a_future_dated_backup_does_not_cost_the_server_its_real_newest_backup() -> None:
    # Given a backup the provider dated decades ahead (clock skew, bad data) and two real ones
    bogus = Backup.model_validate(backup_json(9, days_old=-365 * 70))
    real = [Backup.model_validate(backup_json(2, days_old=1)), Backup.model_validate(backup_json(1, days_old=2))]
    # When the policy keeps the last backup only
    actions = plan([bogus, *real], RetentionPolicy(keep_last=1))
    # Then the newest backup that is not in the future is kept too: the server keeps a real one
    assert actions == {9: "keep", 2: "keep", 1: "delete"}


# -- payloads and settings that must be errors ------------------------------------------------------

SCHEDULED_EVENT = {
    "version": "0",
    "id": "e",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2025-01-20T03:00:00Z",
    "region": "eu-west-1",
    "resources": [],
    "detail": {},
}


@pytest.mark.parametrize(
    "event",
    [
        {**SCHEDULED_EVENT, "dry_run": True},
        {**SCHEDULED_EVENT, "server_ids": [12345]},
        {**SCHEDULED_EVENT, "detail": {"dry_run": True}},
    ],
)
def test_a_scheduled_event_carrying_run_options_is_refused_not_run_for_real(event: dict[str, Any]) -> None:
    # Someone tests with the console's scheduled-event template plus "dry_run": true: silently
    # dropping the option would make it a real run that deletes backups.
    with pytest.raises(InvalidPruneRequestError, match=r"dry_run|server_ids|detail"):
        parse_prune_request(event)


def test_a_plain_scheduled_event_is_still_a_full_run() -> None:
    request = parse_prune_request(SCHEDULED_EVENT)
    assert (request.trigger, request.dry_run, request.server_ids) == ("scheduled-event", False, None)


def test_a_keep_within_longer_than_the_calendar_keeps_everything() -> None:
    policy = parse_retention_policy('{"keep_within": "200000w"}')
    decisions = walked([(1, NOW), (2, NOW - timedelta(days=400))], policy, ZoneInfo("UTC"), now=NOW)
    assert [d.keep for d in decisions] == [True, True]


def test_an_absurd_duration_is_a_configuration_error_naming_the_variable() -> None:
    env = {"VPS_API_TOKEN_SECRET": "s", "STATE_TABLE_NAME": "t", "RETENTION_POLICY": '{"keep_within": "9999999999w"}'}
    with pytest.raises(ConfigurationError, match="RETENTION_POLICY"):
        load_settings(PruneSettings, env)


# -- a partial listing (pagination cut short) ------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    hours=st.lists(st.integers(-30, 24 * 120), min_size=1, max_size=30),
    policy=st.fixed_dictionaries(
        {
            "keep_last": st.integers(0, 4),
            "keep_hourly": st.integers(0, 4),
            "keep_daily": st.integers(0, 4),
            "keep_weekly": st.integers(0, 3),
            "keep_monthly": st.integers(0, 3),
            "keep_within": st.sampled_from([None, timedelta(hours=30), timedelta(days=10)]),
        }
    ),
    tz=st.sampled_from([ZoneInfo("UTC"), ZoneInfo("Europe/Madrid"), ZoneInfo("America/New_York")]),
    data=st.data(),
)
def test_a_partial_listing_never_deletes_what_the_full_listing_keeps(
    hours: list[int], policy: dict[str, Any], tz: ZoneInfo, data: st.DataObject
) -> None:
    if not any(policy.values()):
        policy["keep_last"] = 1
    backups = [Backup.model_validate(backup_json(i + 1, days_old=h / 24)) for i, h in enumerate(hours)]
    subset = data.draw(st.lists(st.sampled_from(backups), unique_by=lambda b: b.id))

    def to_delete(listing: list[Backup]) -> set[int]:
        result = plan_backups(
            listing,
            policy_for=RetentionPolicies(RetentionPolicy(**policy)),
            tz=tz,
            now=NOW,
            scope="managed",
            holds={},
            failed_grace=timedelta(hours=24),
            max_deletions=1000,
        )
        return {d.backup_id for d in result.to_delete}

    assert to_delete(subset) <= to_delete(backups)


# -- a hold that appears while a DELETE is being retried -------------------------------------------


class HoldAppearsAfterFirstCheck:
    """No hold when prune plans and first checks; a restore holds the backup during the retry wait."""

    def __init__(self) -> None:
        self.checks = 0

    def active_holds(self, now: datetime) -> dict[int, Hold]:
        return {}

    def active_hold(self, backup_id: int, now: datetime) -> Hold | None:
        self.checks += 1
        if self.checks == 1:
            return None
        return Hold(backup_id=backup_id, server_id=1, until=now + timedelta(days=7), reason="restore point")


def test_a_hold_placed_while_a_delete_waits_to_be_retried_stops_the_retry() -> None:
    # Given a listing where backup 1 is not retained, and an API that first answers its DELETE
    # with 429 Retry-After (the client waits, then re-sends)
    deletes: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            deletes.append(request.url.path)
            if len(deletes) == 1:
                return httpx.Response(429, headers={"Retry-After": "30"})
            return httpx.Response(204)
        page = {"next": None, "results": [backup_json(1, days_old=3), backup_json(2, days_old=1)]}
        return httpx.Response(200, json=page)

    client = VpsClient(BASE, Tokens(), retry=NO_WAIT, transport=httpx.MockTransport(handler))
    holds = HoldAppearsAfterFirstCheck()
    # When a restore holds backup 1 during that wait
    report = run_prune(PruneRequest(), options(RetentionPolicy(keep_last=1)), client=client, holds=holds, now=NOW)
    # Then the DELETE is not re-sent, and the run says so
    assert deletes == ["/api/v1/backups/1/"]
    result = report.outcome_of(1)
    assert result is not None
    assert result.outcome == "failed"
    assert "held" in result.detail
    assert result.stopped_by_hold
