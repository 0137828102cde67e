"""PruneBackupsFunction end to end: the real handler over the local API simulator and moto.

The fleet: 3 servers × 90 days of this project's daily manual backups (``describe_with_marker``),
a daily automatic backup, people's manual backups, in-progress, failed and unknown-status ones;
the simulator serves them in unsorted pages of 10.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import prune_backups
from devtools.simulator import Fault, Simulator
from tests.conftest import AwsEnv, FakeLambdaContext, load_event
from tests.unit.prune.strategies import plan_backups
from vpsbackup.aws import runtime
from vpsbackup.aws.state import StateTable
from vpsbackup.errors import ConfigurationError
from vpsbackup.markers import describe_with_marker
from vpsbackup.observability import logger
from vpsbackup.provider.client import RetryPolicy
from vpsbackup.provider.models import Backup
from vpsbackup.prune.compact import FleetPlan
from vpsbackup.prune.request import InvalidPruneRequestError
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy
from vpsbackup.records import Hold

pytestmark = pytest.mark.integration

SERVERS = (12345, 12346, 12347)
DAYS = 90
POLICY = {"keep_last": 3, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6}
# Retries at once: the simulator's Retry-After is honoured but the test never really sleeps.
FAST = RetryPolicy(max_attempts=8, sleep=lambda _s: None, random=lambda: 0.0)
LISTING_PATH = "/api/v1/backups/"


@dataclass
class Fleet:
    """What was seeded, by kind, as the simulator shows it."""

    managed: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # completed, per server
    in_progress: list[int] = field(default_factory=list)
    failed_old: list[int] = field(default_factory=list)
    failed_recent: list[int] = field(default_factory=list)
    unknown_status: list[int] = field(default_factory=list)
    people: list[int] = field(default_factory=list)
    automatic: list[int] = field(default_factory=list)

    @property
    def manual_count(self) -> int:
        completed = sum(len(b) for b in self.managed.values())
        others = (self.in_progress, self.failed_old, self.failed_recent, self.unknown_status, self.people)
        return completed + sum(len(ids) for ids in others)


def seed_fleet(sim: Simulator, now: datetime) -> Fleet:
    """3 servers × 90 days, every kind of backup the prune job must tell apart."""
    sim.add_server(12347, "db-server-01")
    fleet = Fleet()
    today = now.replace(hour=2, minute=0, second=0, microsecond=0)
    if today > now:
        today -= timedelta(days=1)
    for index, server in enumerate(SERVERS):
        fleet.managed[server] = []
        for day in range(DAYS):
            at = today - timedelta(days=day, minutes=7 * index)
            description = describe_with_marker(f"Release {day}", f"gh-{server}-{day}")
            if day == 0:  # today's deploy backup is still running
                fleet.in_progress.append(sim.add_backup(server, "manual", "in_progress", at, description)["id"])
            else:
                fleet.managed[server].append(sim.add_backup(server, "manual", "completed", at, description))
            automatic = sim.add_backup(server, "automatic", "completed", at + timedelta(hours=1), "Automatic daily")
            fleet.automatic.append(automatic["id"])
        for day in (3, 17, 40, 70):
            at = (today - timedelta(days=day)).replace(hour=15, minute=30)
            fleet.people.append(sim.add_backup(server, "manual", "completed", at, "Before the upgrade")["id"])
        for day in (2, 30):
            at = (today - timedelta(days=day)).replace(hour=11)
            description = describe_with_marker("Release (failed)", f"gh-{server}-failed-{day}")
            fleet.failed_old.append(sim.add_backup(server, "manual", "failed", at, description)["id"])
        recent = describe_with_marker("Release (failed, recent)", f"gh-{server}-failed-now")
        fleet.failed_recent.append(sim.add_backup(server, "manual", "failed", now - timedelta(hours=2), recent)["id"])
        at = (today - timedelta(days=50)).replace(hour=13)
        strange = describe_with_marker("Release (deleting)", f"gh-{server}-deleting")
        fleet.unknown_status.append(sim.add_backup(server, "manual", "deleting", at, strange)["id"])
    return fleet


def oracle_kept(times: list[datetime], policy: dict[str, int]) -> set[datetime]:
    """What a restic-style policy keeps of one backup a day, computed plainly: the newest of each
    of the N most recent buckets per rule, and the oldest backup while a rule has budget left."""
    newest_first = sorted(times, reverse=True)
    kept = set(newest_first[: policy.get("keep_last", 0)])
    buckets: dict[str, Callable[[datetime], object]] = {
        "keep_daily": lambda t: t.date(),
        "keep_weekly": lambda t: t.isocalendar()[:2],
        "keep_monthly": lambda t: (t.year, t.month),
    }
    for rule, bucket in buckets.items():
        budget = policy.get(rule, 0)
        seen: list[object] = []
        for moment in newest_first:
            if bucket(moment) not in seen and len(seen) < budget:
                seen.append(bucket(moment))
                kept.add(moment)
        if 0 < len(seen) < budget:
            kept.add(newest_first[-1])
    return kept


def as_backups(raw: list[dict[str, Any]]) -> list[Backup]:
    return [Backup.model_validate(item) for item in raw]


def remaining_ids(sim: Simulator) -> set[int]:
    return {b["id"] for b in sim.backups}


def deletes(sim: Simulator) -> list[Any]:
    return [r for r in sim.requests if r.method == "DELETE"]


@pytest.fixture
def prune_env(
    monkeypatch: pytest.MonkeyPatch, shared_env: AwsEnv, simulator: Simulator, atomic_moto: None
) -> Iterator[AwsEnv]:
    """The prune function's environment (template defaults, the valve wide open) and a fast client.
    moto's DynamoDB serialised (``atomic_moto``): the concurrent deletions' threads write their marks
    and read the holds at once, which moto, unlike DynamoDB, cannot take (a query failed with
    "dictionary changed size during iteration", read as an unreadable hold)."""
    monkeypatch.setenv("RETENTION_POLICY", json.dumps(POLICY))
    monkeypatch.setenv("MAX_DELETIONS_PER_RUN", "1000")
    monkeypatch.setenv("MAX_DELETIONS_PER_DAY", "10000")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "prune-backups")
    prune_backups.settings.cache_clear()
    # The handler gets this very (cached) client from runtime: same pool, fast retries.
    runtime.api_client(simulator.base_url, shared_env.secret_id).retry = FAST
    yield shared_env
    prune_backups.settings.cache_clear()


def invoke(event: dict[str, Any] | None, context: FakeLambdaContext) -> dict[str, Any]:
    result: dict[str, Any] = prune_backups.handler(event, context)
    return result


def expected_plan(sim: Simulator, *, max_deletions: int = 1000, holds: dict[int, Hold] | None = None) -> FleetPlan:
    """The plan computed independently, from the simulator's own view of the fleet."""
    return plan_backups(
        as_backups(sim.backups),
        policy_for=RetentionPolicies(RetentionPolicy.model_validate(POLICY)),
        tz=ZoneInfo("UTC"),
        now=datetime.now(UTC),
        scope="managed",
        holds=holds or {},
        failed_grace=timedelta(hours=24),
        max_deletions=max_deletions,
    )


# -- the fleet ---------------------------------------------------------------------------------


def test_a_fleet_of_three_servers_over_90_days_is_pruned_as_the_policy_says(
    prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext
) -> None:
    # Given the fleet, and the plan computed independently from the simulator's own data
    fleet = seed_fleet(simulator, datetime.now(UTC))
    before = remaining_ids(simulator)
    expected = expected_plan(simulator)

    # When the scheduled run happens
    result = invoke(load_event("prune-scheduler.json"), lambda_context)

    # Then exactly the planned backups are gone, and they are the ones an independent plan names
    deleted = before - remaining_ids(simulator)
    assert deleted == {d.backup_id for d in expected.to_delete}
    assert result["to_delete"] == [d.backup_id for d in expected.to_delete]
    assert result["totals"]["deleted"] == len(deleted) > 200
    assert result["totals"]["failed"] == result["totals"]["not_started"] == 0
    assert not result["valve_tripped"]
    # ... automatic, people's, in-progress, unknown-status and recently failed backups all stay
    left = remaining_ids(simulator)
    for kept in (fleet.automatic, fleet.people, fleet.in_progress, fleet.unknown_status, fleet.failed_recent):
        assert set(kept) <= left
    # ... failed backups past the 24h grace go
    assert not set(fleet.failed_old) & left
    # ... per server, what stays of its completed managed backups is what the policy says, no more
    for server, managed in fleet.managed.items():
        times = {datetime.fromisoformat(b["created_at"]): b["id"] for b in managed}
        assert {times[t] for t in oracle_kept(list(times), POLICY)} == {b["id"] for b in managed} & left
        newest = max(managed, key=lambda b: b["created_at"])
        assert newest["id"] in left, f"server {server} lost its newest completed backup"
    # ... and every decision says why
    decisions = {d["backup_id"]: d for d in result["decisions"]}
    assert all(d["reasons"] for d in decisions.values())
    assert decisions[fleet.people[0]]["reasons"] == ["not made by this project"]
    assert all(decisions[i]["outcome"] == "deleted" for i in deleted)


def test_the_fleet_is_listed_in_one_sweep_of_manual_backups(
    prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext
) -> None:
    # Given the fleet (its manual backups fill several unsorted pages of 10)
    fleet = seed_fleet(simulator, datetime.now(UTC))
    simulator.clear_requests()
    # When the scheduled run happens
    invoke(load_event("prune-scheduler.json"), lambda_context)
    # Then the listing is one walk over the manual backups, without a server filter, a page a request
    listings = [r for r in simulator.requests if r.method == "GET"]
    assert len(listings) == math.ceil(fleet.manual_count / 10) > 1
    assert all(r.path == LISTING_PATH and r.status == 200 for r in listings)
    assert all(r.query.get("backup_type") == "manual" and "server_id" not in r.query for r in listings)


# -- rate limits, gone backups, failures -----------------------------------------------------------


def test_a_429_burst_during_deletions_is_survived(
    prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext
) -> None:
    # Given the fleet, and an API that throttles the first five deletions
    seed_fleet(simulator, datetime.now(UTC))
    before = remaining_ids(simulator)
    expected = expected_plan(simulator)
    simulator.inject(Fault(kind="status", status=429, method="DELETE", retry_after=0, times=5))
    # When the run happens
    result = invoke({}, lambda_context)
    # Then the 429s really happened, yet every planned deletion was done
    assert len([r for r in deletes(simulator) if r.status == 429]) == 5
    assert before - remaining_ids(simulator) == {d.backup_id for d in expected.to_delete}
    assert result["totals"]["failed"] == 0
    assert result["totals"]["deleted"] == len(expected.to_delete)


def test_a_backup_gone_before_its_delete_counts_as_done(
    prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext
) -> None:
    # Given the fleet, and someone deleting the oldest planned backup in the provider's panel
    # right after the listing (between the plan and its deletion)
    seed_fleet(simulator, datetime.now(UTC))
    victim = expected_plan(simulator).to_delete[0].backup_id
    client = runtime.api_client(simulator.base_url, prune_env.secret_id)
    real_list = client.iter_backups

    def list_then_lose_one(**kwargs: Any) -> Iterator[Backup]:
        yield from real_list(**kwargs)
        simulator.remove_backup(victim)

    client.iter_backups = list_then_lose_one  # type: ignore[method-assign]
    # When the run happens
    result = invoke({}, lambda_context)
    # Then the API's 404 is counted as done, not as a failure, and no one is told
    assert [r.status for r in deletes(simulator) if r.path.endswith(f"/{victim}/")] == [404]
    outcome = next(d for d in result["deletions"] if d["backup_id"] == victim)
    assert outcome["outcome"] == "already_gone"
    assert result["totals"]["already_gone"] == 1
    assert result["totals"]["failed"] == 0
    assert prune_env.notifications() == []


def test_a_failed_deletion_is_reported_the_others_go_on_and_people_are_told(
    prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext
) -> None:
    # Given the fleet, and an API that keeps failing the deletion of one backup
    seed_fleet(simulator, datetime.now(UTC))
    expected = expected_plan(simulator)
    stuck = expected.to_delete[3].backup_id
    simulator.inject(Fault(kind="status", status=500, method="DELETE", path_prefix=f"/backups/{stuck}/", times=None))
    # When the run happens
    result = invoke({}, lambda_context)
    # Then that one is reported failed with the API's answer, and every other one was deleted
    outcome = next(d for d in result["deletions"] if d["backup_id"] == stuck)
    assert outcome["outcome"] == "failed"
    assert "500" in outcome["detail"]
    assert result["totals"]["failed"] == 1
    assert result["totals"]["deleted"] == len(expected.to_delete) - 1
    assert stuck in remaining_ids(simulator)
    # ... and people are told, in words, which backup and what happens next
    (note,) = prune_env.notifications()
    assert note["Subject"] == "VPS backup prune: 1 deletion failed"
    assert f"backup {stuck} of server" in note["Message"]
    assert "the next run will try again" in note["Message"]


# -- the safety valve, dry runs, holds -------------------------------------------------------------


def test_the_valve_deletes_exactly_n_the_oldest_and_tells_people(
    prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the fleet and a valve of 25 deletions per run
    monkeypatch.setenv("MAX_DELETIONS_PER_RUN", "25")
    seed_fleet(simulator, datetime.now(UTC))
    before = {b["id"]: b for b in simulator.backups}
    wanted = expected_plan(simulator).to_delete  # everything the policy would delete, oldest first
    # When the run happens
    result = invoke({}, lambda_context)
    # Then exactly 25 are deleted: the 25 oldest of those the policy would delete
    deleted = set(before) - remaining_ids(simulator)
    assert deleted == {d.backup_id for d in wanted[:25]}
    oldest_left = min(before[d.backup_id]["created_at"] for d in wanted[25:])
    assert all(before[i]["created_at"] <= oldest_left for i in deleted)
    assert result["valve_tripped"] is True
    assert result["deferred"] == [d.backup_id for d in wanted[25:]]
    assert result["totals"]["deferred"] == len(wanted) - 25
    # ... and people are told what the valve did and what to check
    (note,) = prune_env.notifications()
    assert note["Subject"] == f"VPS backup prune: safety valve held back {len(wanted) - 25} deletions"
    assert "MAX_DELETIONS_PER_RUN" in note["Message"]
    assert "RETENTION_POLICY" in note["Message"]


def test_a_dry_run_deletes_nothing_and_plans_what_a_real_run_then_deletes(
    prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext
) -> None:
    # Given the fleet
    seed_fleet(simulator, datetime.now(UTC))
    before = remaining_ids(simulator)
    # When a dry run is invoked by hand for server 12345
    dry = invoke(load_event("prune-manual-dry-run.json"), lambda_context)
    # Then nothing is deleted, yet the plan is there, with its deletions marked as not done
    assert deletes(simulator) == []
    assert remaining_ids(simulator) == before
    assert dry["dry_run"] is True
    assert dry["to_delete"]
    assert {d["outcome"] for d in dry["deletions"]} == {"dry_run"}
    assert {d["server_id"] for d in dry["decisions"]} == {12345}
    # When the same run is made for real
    real = invoke({"server_ids": [12345]}, lambda_context)
    # Then it deletes exactly what the dry run said it would
    assert real["dry_run"] is False
    assert real["to_delete"] == dry["to_delete"]
    assert before - remaining_ids(simulator) == set(dry["to_delete"])
    assert prune_env.notifications() == []


def test_dry_run_setting_makes_every_run_a_dry_run(
    prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given DRY_RUN=true in the function's environment
    monkeypatch.setenv("DRY_RUN", "true")
    seed_fleet(simulator, datetime.now(UTC))
    # When the schedule fires, asking nothing about dry runs
    result = invoke(load_event("prune-scheduler.json"), lambda_context)
    # Then nothing is deleted, and the plan is the same a real run would carry out
    assert deletes(simulator) == []
    assert result["dry_run"] is True
    assert result["to_delete"] == [d.backup_id for d in expected_plan(simulator).to_delete]


def test_a_hold_keeps_its_backup(prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext) -> None:
    # Given the fleet, and a hold (from a recent restore) on a backup the policy would delete
    seed_fleet(simulator, datetime.now(UTC))
    before = remaining_ids(simulator)
    target = expected_plan(simulator).to_delete[10]
    hold = Hold(
        backup_id=target.backup_id,
        server_id=target.server_id,
        until=datetime.now(UTC) + timedelta(days=7),
        reason="restored on alarm web-down",
    )
    StateTable.from_name(prune_env.table_name).put_hold(hold)
    expected = expected_plan(simulator, holds={target.backup_id: hold})
    # When the run happens
    result = invoke({}, lambda_context)
    # Then that backup is still there, kept because of the hold, and the rest of the plan went ahead
    assert target.backup_id in remaining_ids(simulator)
    decision = next(d for d in result["decisions"] if d["backup_id"] == target.backup_id)
    assert decision["action"] == "keep"
    assert any(reason.startswith("hold until") and "web-down" in reason for reason in decision["reasons"])
    assert before - remaining_ids(simulator) == {d.backup_id for d in expected.to_delete}


# -- time, settings, payloads --------------------------------------------------------------------


@dataclass
class ShrinkingContext(FakeLambdaContext):
    """A Lambda context whose remaining time drops by 10 s with every deletion the API receives."""

    simulator: Simulator | None = None
    start_ms: int = 60_000

    def get_remaining_time_in_millis(self) -> int:
        assert self.simulator is not None
        done = len([r for r in self.simulator.requests if r.method == "DELETE"])
        return self.start_ms - 10_000 * done


def test_little_remaining_time_stops_new_deletions_and_reports_the_rest(
    prune_env: AwsEnv, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the fleet, one deletion at a time, and an invocation with 60 s left that each deletion
    # shortens by 10 s (no deletion starts with less than 20 s left)
    monkeypatch.setenv("PRUNE_CONCURRENCY", "1")
    seed_fleet(simulator, datetime.now(UTC))
    wanted = expected_plan(simulator).to_delete
    context = ShrinkingContext(simulator=simulator)
    # When the run happens
    result = invoke({}, context)
    # Then the five oldest are deleted (with 60, 50, 40, 30 and 20 s left), and none after them (10 s)
    assert [int(r.path.split("/")[-2]) for r in deletes(simulator)] == [d.backup_id for d in wanted[:5]]
    outcomes = [d["outcome"] for d in result["deletions"]]
    assert outcomes == ["deleted"] * 5 + ["not_started"] * (len(wanted) - 5)
    assert result["totals"]["not_started"] == len(wanted) - 5
    assert "time" in result["deletions"][5]["detail"]


def test_too_little_time_from_the_start_deletes_nothing_and_reports_everything(
    prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext
) -> None:
    # Given the fleet, and an invocation with 15 s left (under the 20 s margin)
    seed_fleet(simulator, datetime.now(UTC))
    lambda_context.remaining_ms = 15_000
    # When the run happens
    result = invoke({}, lambda_context)
    # Then the plan is made, but no deletion started: all are reported, for the next run
    assert deletes(simulator) == []
    assert result["to_delete"]
    assert result["totals"]["not_started"] == len(result["to_delete"])


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
@pytest.mark.parametrize(
    ("policy", "words"),
    [
        ("{}", "empty retention policy"),
        ("   ", "Field required"),
        ('{"keep_dayly": 7}', "keep_dayly"),
        ("keep_daily=7", "Invalid JSON"),
        ('{"keep_daily": 0}', "empty retention policy"),
    ],
)
def test_an_empty_or_invalid_retention_policy_fails_at_load_and_deletes_nothing(
    prune_env: AwsEnv,
    simulator: Simulator,
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
    policy: str,
    words: str,
) -> None:
    # Given the fleet and a bad RETENTION_POLICY
    seed_fleet(simulator, datetime.now(UTC))
    monkeypatch.setenv("RETENTION_POLICY", policy)
    # When the schedule fires
    with pytest.raises(ConfigurationError) as info:
        invoke(load_event("prune-scheduler.json"), lambda_context)
    # Then the run fails naming the variable, before any request to the API
    assert "RETENTION_POLICY" in str(info.value)
    assert words in str(info.value)
    assert simulator.requests == []


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
@pytest.mark.parametrize(
    ("event", "field_name"),
    [
        ({"dry-run": True}, "dry-run"),
        ({"dry_run": "yes"}, "dry_run"),
        ({"server_ids": [0]}, "server_ids.0"),
        ({"server_ids": "12345"}, "server_ids"),
    ],
)
def test_a_bad_payload_fails_naming_the_field_before_any_api_call(
    prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, event: dict[str, Any], field_name: str
) -> None:
    # Given the fleet
    seed_fleet(simulator, datetime.now(UTC))
    # When the function is invoked with a bad payload
    with pytest.raises(InvalidPruneRequestError) as info:
        invoke(event, lambda_context)
    # Then it fails naming the field, and the API was never called
    assert field_name in str(info.value)
    assert simulator.requests == []


def test_a_run_for_some_servers_lists_and_prunes_only_those(
    prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext
) -> None:
    # Given the fleet
    fleet = seed_fleet(simulator, datetime.now(UTC))
    before = {b["id"]: b for b in simulator.backups}
    simulator.clear_requests()
    # When a run is invoked by hand for two of the three servers
    result = invoke({"server_ids": [12347, 12345]}, lambda_context)
    # Then each of them is listed on its own (filtered), and only their backups are touched
    listings = [r for r in simulator.requests if r.method == "GET"]
    assert {r.query.get("server_id") for r in listings} == {"12345", "12347"}
    assert all(r.query.get("backup_type") == "manual" for r in listings)
    deleted = set(before) - remaining_ids(simulator)
    assert deleted
    assert {before[i]["server"]["id"] for i in deleted} == {12345, 12347}
    assert {b["id"] for b in fleet.managed[12346]} <= remaining_ids(simulator)
    assert result["server_ids"] == [12345, 12347]
    assert result["listing"] == "per-server"


def test_scope_manual_prunes_peoples_backups_too(
    prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given PRUNE_SCOPE=manual and one server with people's old manual backups beside ours
    monkeypatch.setenv("PRUNE_SCOPE", "manual")
    monkeypatch.setenv("RETENTION_POLICY", '{"keep_last": 2}')
    now = datetime.now(UTC)
    ours = [
        simulator.add_backup(12345, created_at=now - timedelta(days=d), description=describe_with_marker("R", f"d{d}"))
        for d in (1, 2)
    ]
    theirs = [simulator.add_backup(12345, created_at=now - timedelta(days=d), description="by hand") for d in (5, 6)]
    # When the run happens
    invoke({}, lambda_context)
    # Then people's older manual backups are pruned like ours would be
    left = remaining_ids(simulator)
    assert {b["id"] for b in ours} <= left
    assert not {b["id"] for b in theirs} & left


@pytest.mark.parametrize("sample", ["prune-scheduler.json", "prune-scheduled-event.json", "prune-manual-dry-run.json"])
def test_every_sample_event_runs_and_logs_the_plan_once(
    prune_env: AwsEnv,
    simulator: Simulator,
    lambda_context: FakeLambdaContext,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    sample: str,
) -> None:
    # Given the fleet
    seed_fleet(simulator, datetime.now(UTC))
    caplog.clear()
    capsys.readouterr()
    # When the function gets the sample event
    result = invoke(load_event(sample), lambda_context)
    # Then it answers with a plan, and writes exactly one log record carrying it, as JSON
    assert result["to_delete"]
    (record,) = [r for r in caplog.records if r.getMessage() == "prune run finished"]
    logged = json.loads(logger.registered_formatter.format(record))
    assert logged["prune"]["to_delete"] == result["to_delete"]
    assert logged["prune"]["totals"] == result["totals"]
    assert logged["trigger"] == result["trigger"]
    # ... and the metrics are emitted in the same invocation (CloudWatch embedded metric format)
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert len(emf) == 1
    assert emf[0]["BackupsPlannedForDeletion"] == [len(result["to_delete"])]
    assert emf[0]["ValveTripped"] == [0]


def test_the_oracle_itself() -> None:
    # Given one backup a day for 30 days, When the oracle applies keep 3 daily and 2 monthly,
    # Then it keeps the 3 newest days and the newest of the previous month
    days = [datetime(2025, 1, 25, 2, tzinfo=UTC) - timedelta(days=n) for n in range(30)]
    kept = oracle_kept(days, {"keep_daily": 3, "keep_monthly": 2})
    assert {d.date() for d in kept} == {date(2025, 1, 25), date(2025, 1, 24), date(2025, 1, 23), date(2024, 12, 31)}


# -- the daily deletion budget (MAX_DELETIONS_PER_DAY) ---------------------------------------------


def test_the_daily_budget_caps_deletions_across_runs_and_tells_when_it_frees(
    prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the fleet, a wide-open valve and a budget of 10 deletions a day
    monkeypatch.setenv("MAX_DELETIONS_PER_DAY", "10")
    prune_backups.settings.cache_clear()
    seed_fleet(simulator, datetime.now(UTC))
    before = {b["id"]: b for b in simulator.backups}
    wanted = expected_plan(simulator).to_delete
    assert len(wanted) > 10
    # When the run happens
    first = invoke({}, lambda_context)
    # Then the 10 oldest the policy would delete are deleted, and no more
    deleted = set(before) - remaining_ids(simulator)
    assert deleted == {d.backup_id for d in wanted[:10]}
    assert len(deletes(simulator)) == 10
    budget = first["daily_budget"]
    assert (budget["limit"], budget["asked"], budget["granted"], budget["held_back"]) == (
        10,
        len(wanted),
        10,
        len(wanted) - 10,
    )
    assert first["totals"]["not_started"] == len(wanted) - 10
    frees_at = datetime.fromisoformat(budget["frees_at"])
    assert timedelta(hours=23) < frees_at - datetime.now(UTC) <= timedelta(hours=24)
    # ... people hear what the budget held back and when it frees, as a warning
    (note,) = prune_env.notifications()
    assert note["Subject"] == f"VPS backup prune: daily deletion budget held back {len(wanted) - 10} deletions"
    assert "MAX_DELETIONS_PER_DAY" in note["Message"] and frees_at.strftime("%Y-%m-%d %H:%M UTC") in note["Message"]
    assert note["MessageAttributes"]["outcome"]["Value"] == "daily_budget"
    assert note["MessageAttributes"]["severity"]["Value"] == "warning"
    # When a second run comes the same day (by hand)
    second = invoke({"sweep": True}, lambda_context)
    # Then it deletes nothing more: the budget is spent for 24 hours, across runs
    assert len(deletes(simulator)) == 10
    assert second["daily_budget"]["granted"] == 0
    # ... and the budget is one item in its own partition, written by prune
    item = prune_env.table().get_item(Key={"pk": "prune-budget", "sk": "deletions"})["Item"]
    assert len(item["sent"]) == 10


def test_a_budget_prune_cannot_read_deletes_nothing_and_is_an_error(
    prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a budget item that no longer reads as a budget (a broken write by hand)
    seed_fleet(simulator, datetime.now(UTC))
    prune_env.table().put_item(Item={"pk": "prune-budget", "sk": "deletions", "sent": ["not a time"], "version": 1})
    # When the run happens
    result = invoke({}, lambda_context)
    # Then nothing is deleted, every planned deletion is reported not started, and people hear it as an error
    assert deletes(simulator) == []
    assert result["daily_budget"]["error"]
    assert result["totals"]["not_started"] == result["totals"]["to_delete"] > 0
    (note,) = prune_env.notifications()
    assert note["Subject"] == "VPS backup prune: daily deletion budget unreadable, nothing deleted"
    assert note["MessageAttributes"]["severity"]["Value"] == "error"


# -- the heartbeat ---------------------------------------------------------------------------------

HEARTBEAT = "https://hc-ping.com/0b7f7c3e-5f1a-4d4e-9d1c-2f8a1b0c9d7e"


def test_a_completed_run_calls_the_heartbeat_url_once_and_a_failing_one_does_not_fail_it(
    prune_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    # Given HEARTBEAT_URL, and a monitor that first answers, then times out
    monkeypatch.setenv("HEARTBEAT_URL", HEARTBEAT)
    calls: list[str] = []

    def monitor(url: str, **kwargs: Any) -> httpx.Response:
        calls.append(url)
        if len(calls) > 1:
            raise httpx.ReadTimeout("the monitor is slow")
        return httpx.Response(200, request=httpx.Request("GET", url))

    monkeypatch.setattr(httpx, "get", monitor)
    seed_fleet(simulator, datetime.now(UTC))

    # When the schedule runs prune twice
    first = invoke(load_event("prune-scheduler.json"), lambda_context)
    second = invoke(load_event("prune-scheduler.json"), lambda_context)

    # Then each completed run called it once; the timeout was only logged, the run's answer is whole
    assert calls == [HEARTBEAT, HEARTBEAT]
    assert first["totals"]["deleted"] > 0
    assert "totals" in second

    # When a run fails (a request the function refuses), Then the monitor is not told it completed
    with pytest.raises(Exception, match="dry_run"):
        invoke({"dry_run": "yes"}, lambda_context)
    assert len(calls) == 2
