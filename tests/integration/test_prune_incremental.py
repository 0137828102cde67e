"""PruneBackupsFunction's incremental runs over the simulator (real HTTP) and moto's StateTable.

The first scheduled run knows no server yet: it sweeps the fleet and writes each server's state.
Then two servers get a deploy backup (recorded by the deploy job's own StateTable write) and a
hold on a third is released. The next run lists those three, plus one server to re-verify, each
with ``?server_id=``; it does not sweep; and it deletes exactly what a sweep would have deleted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import prune_backups
from devtools.simulator import Simulator
from tests.conftest import AwsEnv, FakeLambdaContext, load_event
from tests.unit.prune.strategies import plan_backups
from vpsbackup.aws import runtime
from vpsbackup.aws.state import StateTable
from vpsbackup.markers import describe_with_marker
from vpsbackup.provider.client import RetryPolicy
from vpsbackup.provider.models import Backup
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy
from vpsbackup.prune.state_store import PruneStateStore
from vpsbackup.records import DeploymentRecord, Hold

pytestmark = pytest.mark.integration

SERVERS = (301, 302, 303, 304, 305, 306)
POLICY = {"keep_last": 1, "keep_daily": 4}


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch, shared_env: AwsEnv, simulator: Simulator) -> Iterator[Simulator]:
    """6 servers × 8 daily deploy backups; pages of 2, so a sweep (about 24 requests after the first
    prune) costs more than listing a few servers (4 requests each)."""
    now = datetime.now(UTC)
    for server_id in SERVERS:
        simulator.add_server(server_id, f"web-{server_id}")
        for day in range(8):
            simulator.add_backup(
                server_id,
                created_at=now - timedelta(days=day, hours=1, minutes=server_id % 50),
                description=describe_with_marker("Deploy", f"d-{server_id}-{day}"),
            )
    monkeypatch.setenv("RETENTION_POLICY", json.dumps(POLICY))
    monkeypatch.setenv("MAX_DELETIONS_PER_RUN", "1000")
    monkeypatch.setenv("MAX_DELETIONS_PER_DAY", "10000")
    monkeypatch.setenv("VPS_API_PAGE_SIZE", "2")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "prune-backups")
    prune_backups.settings.cache_clear()
    runtime.api_client(simulator.base_url, shared_env.secret_id).retry = RetryPolicy(sleep=lambda _: None)
    yield simulator
    prune_backups.settings.cache_clear()


def listings(sim: Simulator, since: int = 0) -> tuple[list[int], int]:
    """The servers listed with ?server_id= (one per walk: its first page), and the fleet sweeps."""
    gets = [r for r in sim.requests[since:] if r.method == "GET" and r.path.endswith("/backups/")]
    first_pages = [r for r in gets if r.query.get("page", "1") == "1"]
    filtered = [int(r.query["server_id"]) for r in first_pages if "server_id" in r.query]
    return filtered, sum(1 for r in first_pages if "server_id" not in r.query)


def sweep_would_delete(sim: Simulator, state: StateTable) -> set[int]:
    """What one fleet sweep would delete now: the plan over everything the provider has."""
    now = datetime.now(UTC)
    plan = plan_backups(
        [Backup.model_validate(b) for b in sim.backups],
        policy_for=RetentionPolicies(RetentionPolicy.model_validate(POLICY)),
        tz=UTC,
        now=now,
        scope="managed",
        holds=state.active_holds(now),
        failed_grace=timedelta(hours=24),
        max_deletions=1000,
    )
    return {d.backup_id for d in plan.to_delete}


def deleted_ids(sim: Simulator, since: int) -> set[int]:
    return {int(r.path.rstrip("/").rsplit("/", 1)[1]) for r in sim.requests[since:] if r.method == "DELETE"}


def run(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = prune_backups.handler(event, FakeLambdaContext())
    return result


def test_a_daily_run_lists_only_the_servers_that_changed_and_deletes_what_a_sweep_would(
    fleet: Simulator, shared_env: AwsEnv
) -> None:
    sim = fleet
    state = StateTable.from_name(shared_env.table_name)
    schedule = load_event("prune-scheduler.json")
    # Given server 303's oldest backup held (a restore picked it)
    oldest_303 = min((b for b in sim.backups if b["server"]["id"] == 303), key=lambda b: b["created_at"])
    state.put_hold(Hold(backup_id=oldest_303["id"], server_id=303, until=datetime.now(UTC) + timedelta(days=3)))
    # When the first scheduled run goes: no server is known to prune yet, so it sweeps the fleet
    expected = sweep_would_delete(sim, state)
    first = run(schedule)
    assert first["selection"]["mode"] == "fleet"
    assert deleted_ids(sim, 0) == expected
    assert listings(sim) == ([], 1)
    states, _ = PruneStateStore(state).load()
    assert sorted(states) == list(SERVERS)
    assert all(s.settled for s in states.values())
    assert states[303].stable_until is not None  # the hold's end

    # Given a deploy backs up 301 and 302 (the deploy job's own record) and the hold is released
    for server_id in (301, 302):
        newest = max(b["created_at"] for b in sim.backups if b["server"]["id"] == server_id)
        made = sim.add_backup(
            server_id,
            created_at=datetime.fromisoformat(newest) + timedelta(minutes=1),  # the same day as the newest
            description=describe_with_marker("Deploy", f"new-{server_id}"),
        )
        state.put_deployment_record(
            DeploymentRecord(
                deployment_id=f"new-{server_id}",
                server_id=server_id,
                received_at=datetime.now(UTC),
                backup_id=made["id"],
            )
        )
    assert state.delete_hold(oldest_303["id"], "restore")
    mark = len(sim.requests)
    expected = sweep_would_delete(sim, state)
    # (each new backup replaces its server's newest of today, and the released one goes)
    assert oldest_303["id"] in expected and len(expected) == 3
    # When the next scheduled run goes
    second = run(schedule)
    # Then it listed 301 and 302 (backup recorded), 303 (its holds changed) and one server to
    # re-verify, each filtered by server, and never swept the fleet
    filtered, sweeps = listings(sim, mark)
    assert sweeps == 0
    assert sorted(filtered) == [301, 302, 303, 304]
    assert second["selection"]["mode"] == "per-server"
    assert second["selection"]["by_trigger"] == {"backup_recorded": 2, "holds": 1, "verify": 1}
    # ... and deleted exactly what a sweep would have deleted
    assert deleted_ids(sim, mark) == expected
    assert second["totals"]["deleted"] == len(expected)
