"""The daily incremental run (``PRUNE_SCOPE=managed``, no sweep) in chunks: the first chunk chooses
the servers due, the chunks list them a slice at a time, the run plans, deletes and writes back what
it left of each server as one single pass does; the real handler over the simulator and moto.

The oracle is the pure plan (``plan_backups``) over the provider's own view of the servers the
choice lists (those with a deploy backup recorded since their last listing, then the ones to
re-verify): a single pass and every way of cutting the run into chunks delete exactly that. The
state machine's real definition runs the same chunks in the last tests.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import prune_backups
from devtools.simulator import Fault, Simulator
from tests.conftest import AwsEnv, FakeLambdaContext, load_event
from tests.integration.test_prune_backups import prune_env, remaining_ids
from tests.integration.test_prune_chunks import (
    EXECUTION,
    KILL_POINTS,
    KILLS,
    delete_counts,
    drive,
    kill_at,
    start_event,
)
from tests.integration.test_prune_incremental import listings
from tests.integration.test_prune_state_machine import history, machine, output, run_to_end
from tests.unit.prune.strategies import plan_backups
from vpsbackup.aws.state import StateTable
from vpsbackup.markers import describe_with_marker
from vpsbackup.provider.models import Backup
from vpsbackup.prune import chunks
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy
from vpsbackup.prune.run_store import PruneRunStore
from vpsbackup.prune.state_store import PruneStateStore
from vpsbackup.records import DeploymentRecord

pytestmark = pytest.mark.integration
__all__ = ["machine", "prune_env"]

SERVERS = tuple(range(401, 413))
RECORDED = SERVERS[::2]  # a deploy backed these up since the last run
# Re-verified: the fleet's share of one day of PRUNE_VERIFY_EVERY=7d (ceil(12/7)), listed longest
# ago (all at once, so the lowest ids) of the servers with no other trigger.
VERIFIED = SERVERS[1:5:2]
DUE = frozenset(RECORDED + VERIFIED)
# A backup no record tells of, on a server not due: a sweep would delete it, this run does not list it.
UNSEEN_ON = SERVERS[-1]
POLICY = {"keep_last": 1, "keep_daily": 4}


@pytest.fixture
def inc_env(prune_env: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsEnv]:
    monkeypatch.setenv("RETENTION_POLICY", json.dumps(POLICY))
    monkeypatch.setenv("VPS_API_PAGE_SIZE", "2")
    prune_backups.settings.cache_clear()
    yield prune_env
    prune_backups.settings.cache_clear()


def schedule() -> dict[str, Any]:
    return load_event("prune-scheduler.json")


def settled_fleet(sim: Simulator, env: AwsEnv) -> StateTable:
    """12 servers × 5 daily deploy backups, pruned once by a scheduled run (a sweep: every server
    becomes known, settled); then a deploy backs up every other server twice (the deploy job's own
    records), and a backup no record tells of lands on :data:`UNSEEN_ON`."""
    now = datetime.now(UTC)
    for server_id in SERVERS:
        sim.add_server(server_id, f"web-{server_id}")
        for day in range(5):
            at = now - timedelta(days=day, hours=1, minutes=server_id % 50)
            sim.add_backup(server_id, created_at=at, description=describe_with_marker("Deploy", f"d-{server_id}-{day}"))
    first = prune_backups.handler(schedule(), FakeLambdaContext())
    assert first["selection"]["mode"] == "fleet"
    state = StateTable.from_name(env.table_name)
    for server_id in (*RECORDED, UNSEEN_ON):
        newest = max(datetime.fromisoformat(b["created_at"]) for b in sim.backups if b["server"]["id"] == server_id)
        for n in (1, 2):
            made = sim.add_backup(
                server_id,
                created_at=newest + timedelta(minutes=n),  # the same day as the newest: it replaces it
                description=describe_with_marker("Deploy", f"new-{server_id}-{n}"),
            )
            if server_id != UNSEEN_ON:
                record = DeploymentRecord(
                    deployment_id=f"new-{server_id}-{n}",
                    server_id=server_id,
                    received_at=datetime.now(UTC),
                    backup_id=made["id"],
                )
                state.put_deployment_record(record)
    sim.clear_requests()
    return state


def pure_plan(sim: Simulator, state: StateTable, servers: frozenset[int] | None, *, max_deletions: int) -> list[int]:
    """The plan's deletions, oldest first, over the provider's view of ``servers`` (None: all)."""
    now = datetime.now(UTC)
    plan = plan_backups(
        [Backup.model_validate(b) for b in sim.backups],
        server_ids=servers,
        policy_for=RetentionPolicies(RetentionPolicy.model_validate(POLICY)),
        tz=UTC,
        now=now,
        scope="managed",
        holds=state.active_holds(now),
        failed_grace=timedelta(hours=24),
        max_deletions=max_deletions,
    )
    return [d.backup_id for d in plan.to_delete]


def run_once(how: str, lambda_context: FakeLambdaContext) -> tuple[str, int]:
    """The daily run, as a single pass (a direct invoke) or in chunks; its report's words, and how
    many chunks listed."""
    if how == "single pass":
        report = prune_backups.handler(schedule(), lambda_context)
        return ", ".join(f"{key} {value}" for key, value in report["totals"].items() if value), 1
    cursors = drive(schedule(), lambda_context)
    assert all(len(json.dumps(c)) < 1000 for c in cursors)
    note: str = cursors[-1]["note"]
    return note, Counter(c["phase"] for c in cursors)["list"]


@pytest.mark.parametrize(
    ("how", "pages", "deletions", "max_deletions"),
    [
        pytest.param("single pass", 100, 100, 1000, id="single pass"),
        pytest.param("single pass", 100, 100, 5, id="single pass, valve at 5"),
        pytest.param("chunks", 1, 1, 1000, id="chunks of 1 page, 1 deletion"),
        pytest.param("chunks", 3, 2, 5, id="chunks of 3 pages, 2 deletions, valve at 5"),
        pytest.param("chunks", 50, 100, 1000, id="one listing chunk"),
        pytest.param("chunks in parts", 3, 2, 5, id="chunks of 3 pages, planned in parts, valve at 5"),
        pytest.param("chunks in parts", 2, 3, 1000, id="chunks of 2 pages, planned in parts"),
    ],
)
def test_the_daily_run_in_chunks_lists_the_servers_due_and_deletes_what_a_single_pass_does(
    inc_env: AwsEnv,
    simulator: Simulator,
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    pages: int,
    deletions: int,
    max_deletions: int,
) -> None:
    # Given a fleet pruned once, some servers backed up since, and the pure plan of the servers due
    state = settled_fleet(simulator, inc_env)
    monkeypatch.setenv("PRUNE_CHUNK_PAGES", str(pages))
    monkeypatch.setenv("PRUNE_CHUNK_DELETIONS", str(deletions))
    monkeypatch.setenv("MAX_DELETIONS_PER_RUN", str(max_deletions))
    prune_backups.settings.cache_clear()
    before = remaining_ids(simulator)
    expected = pure_plan(simulator, state, DUE, max_deletions=max_deletions)
    unseen = set(pure_plan(simulator, state, frozenset({UNSEEN_ON}), max_deletions=1000))
    assert len(expected) == min(max_deletions, 2 * len(RECORDED)) and unseen
    states_before, _ = PruneStateStore(state).load()

    if how == "chunks in parts":  # planned, and written back, a part of the servers at a time
        monkeypatch.setattr(chunks, "PLAN_PART_BACKUPS", 15)

    # When the daily run goes
    note, listing_chunks = run_once(how.removesuffix(" in parts"), lambda_context)
    assert listing_chunks >= 2 or pages > 20  # more due servers than one chunk lists

    # Then it listed each server due once, by server, and never swept the fleet
    filtered, sweeps = listings(simulator)
    assert sweeps == 0
    assert sorted(filtered) == sorted(DUE)
    # ... and deleted exactly the pure plan of those servers (the valve's oldest first), each once
    assert before - remaining_ids(simulator) == set(expected)
    assert max(delete_counts(simulator).values()) == 1
    assert f"deleted {len(expected)}" in note, note
    # ... and wrote back each server due: listed now, settled unless the valve left it deletions
    states, _ = PruneStateStore(state).load()
    wanted = set(pure_plan(simulator, state, DUE, max_deletions=1000))
    for server_id in DUE:
        assert states[server_id].listed_at > states_before[server_id].listed_at  # type: ignore[operator]
        pending = {b["id"] for b in simulator.backups if b["server"]["id"] == server_id} & wanted
        assert states[server_id].settled == (not pending), (server_id, states[server_id].note)
    assert states[UNSEEN_ON] == states_before[UNSEEN_ON]


@pytest.mark.parametrize("part_backups", [None, 10], ids=["whole", "in parts"])
def test_the_first_daily_run_in_chunks_sweeps_and_every_server_becomes_known(
    inc_env: AwsEnv,
    simulator: Simulator,
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
    part_backups: int | None,
) -> None:
    # Given servers prune has never seen (no state yet), planned and written back whole or a part
    # of the servers at a time
    if part_backups is not None:
        monkeypatch.setattr(chunks, "PLAN_PART_BACKUPS", part_backups)
    monkeypatch.setenv("PRUNE_CHUNK_PAGES", "3")
    monkeypatch.setenv("PRUNE_CHUNK_DELETIONS", "7")
    prune_backups.settings.cache_clear()
    for server_id in SERVERS[:6]:
        simulator.add_server(server_id, f"web-{server_id}")
        for day in range(6):
            at = datetime.now(UTC) - timedelta(days=day, hours=1)
            simulator.add_backup(
                server_id, created_at=at, description=describe_with_marker("D", f"d-{server_id}-{day}")
            )
    state = StateTable.from_name(inc_env.table_name)
    expected = set(pure_plan(simulator, state, None, max_deletions=1000))
    before = remaining_ids(simulator)

    cursors = drive(schedule(), lambda_context)
    assert (cursors[-1]["parts"] > 1) == (part_backups is not None)

    # Then one fleet sweep, in chunks, deleted the plan, and every server is known and settled
    assert listings(simulator) == ([], 1)
    assert before - remaining_ids(simulator) == expected
    states, run_history = PruneStateStore(state).load()
    assert sorted(states) == list(SERVERS[:6]) and all(s.settled for s in states.values())
    assert run_history.last_sweep_complete is True and run_history.last_scheduled_at is not None


@pytest.mark.parametrize("how", ["single pass", "chunks"])
def test_a_due_server_whose_listing_fails_is_left_for_the_next_run_the_others_go_on(
    inc_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    # Given the first due server's listing answered with a 400 (the most urgent: recorded, lowest id)
    state = settled_fleet(simulator, inc_env)
    monkeypatch.setenv("PRUNE_CHUNK_PAGES", "2")
    monkeypatch.setenv("PRUNE_CHUNK_DELETIONS", "3")
    prune_backups.settings.cache_clear()
    failing = RECORDED[0]
    expected = set(pure_plan(simulator, state, DUE - {failing}, max_deletions=1000))
    before = remaining_ids(simulator)
    states_before, _ = PruneStateStore(state).load()
    simulator.inject(Fault("status", method="GET", path_prefix="/backups/", status=400, times=1))

    run_once(how, lambda_context)

    # Then the others are planned and pruned; that one is not planned, its state stays (due again)
    assert before - remaining_ids(simulator) == expected
    states, _ = PruneStateStore(state).load()
    assert states[failing] == states_before[failing]


def test_a_retried_listing_chunk_lists_again_a_server_its_killed_attempt_found_failing(
    inc_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a due server's listing that fails once, and the chunk killed right after storing that
    state = settled_fleet(simulator, inc_env)
    monkeypatch.setenv("PRUNE_CHUNK_PAGES", "4")
    prune_backups.settings.cache_clear()
    expected = set(pure_plan(simulator, state, DUE, max_deletions=1000))
    before = remaining_ids(simulator)
    simulator.inject(Fault("status", method="GET", path_prefix="/backups/", status=400, times=1))
    kill_at(monkeypatch, "listing: after a failed server is stored", INC_KILL_POINTS)

    drive(schedule(), lambda_context)

    # Then the retry listed it whole, so it was planned and pruned with the others
    assert before - remaining_ids(simulator) == expected


INC_KILL_POINTS = {
    "start: before the servers due are stored": (PruneRunStore, "put_selection", 1, "before"),
    "start: after the servers due are stored": (PruneRunStore, "put_selection", 1, "after"),
    "listing: after a failed server is stored": (PruneRunStore, "put_failed", 1, "after"),
    "planning: after the holds seen are stored": (PruneRunStore, "put_holds", 1, "after"),
    "reporting: before the servers' state is written": (PruneStateStore, "save", 1, "before"),
    "reporting: after the servers' state is written": (PruneStateStore, "save", 1, "after"),
}
ALL_KILL_POINTS = {**KILL_POINTS, **INC_KILL_POINTS}
# Besides the sweep's own (tests/integration/test_prune_chunks.py: the same list, plan, delete and
# report phases), the points an incremental run adds, and one of each phase.
KILLED_IN_INCREMENTAL = [
    *(p for p in INC_KILL_POINTS if p != "start: before the servers due are stored"),
    "listing: after a page is stored",
    "deleting: after a DELETE was made",
]


@pytest.mark.parametrize("point", [p for p in KILLED_IN_INCREMENTAL if "failed server" not in p])
def test_an_incremental_chunk_killed_anywhere_is_retried_no_deletion_twice_none_lost(
    inc_env: AwsEnv,
    simulator: Simulator,
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
    point: str,
) -> None:
    # Given the daily run's due servers and their pure plan, 4 pages and 4 deletions a chunk
    state = settled_fleet(simulator, inc_env)
    monkeypatch.setenv("PRUNE_CHUNK_PAGES", "4")
    monkeypatch.setenv("PRUNE_CHUNK_DELETIONS", "4")
    prune_backups.settings.cache_clear()
    before = remaining_ids(simulator)
    expected = set(pure_plan(simulator, state, DUE, max_deletions=1000))
    # ... and a chunk that dies at this point once
    kill_at(monkeypatch, point, ALL_KILL_POINTS)
    killed = KILLS["killed"]

    cursors = drive(schedule(), lambda_context)

    # Then it did die there; exactly the plan is gone, none twice; every due server written back
    assert KILLS["killed"] == killed + 1
    assert before - remaining_ids(simulator) == expected
    assert max(delete_counts(simulator).values()) == 1
    assert f"deleted {len(expected)}" in cursors[-1]["note"], cursors[-1]["note"]
    states, _ = PruneStateStore(state).load()
    assert all(states[sid].settled for sid in DUE)
    assert PruneRunStore(state).lock_holder() is None


# -- the state machine's real definition -----------------------------------------------------------


def test_the_state_machine_runs_the_daily_run_in_chunks_to_the_single_pass_plan(
    machine: str, inc_env: AwsEnv, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a fleet pruned once and the servers due since, 2 pages and 8 deletions a chunk
    state = settled_fleet(simulator, inc_env)
    prune_backups.settings.cache_clear()
    before = remaining_ids(simulator)
    expected = set(pure_plan(simulator, state, DUE, max_deletions=1000))

    # When the schedule starts the daily run
    [described] = run_to_end(machine, schedule())

    # Then the execution listed the due servers over many chunks and deleted exactly their plan
    assert described["status"] == "SUCCEEDED", described
    assert output(described)["incremental"] and output(described)["chunks"] >= 8
    filtered, sweeps = listings(simulator)
    assert sweeps == 0 and sorted(filtered) == sorted(DUE)
    assert before - remaining_ids(simulator) == expected
    assert max(delete_counts(simulator).values()) == 1
    # ... its report once, and the state of every due server written back
    assert f"deleted {len(expected)}" in output(described)["note"]
    states, _ = PruneStateStore(state).load()
    assert all(states[sid].settled for sid in DUE)


@pytest.mark.parametrize("point", ["reporting: before the servers' state is written"])
def test_the_state_machine_retries_a_killed_incremental_chunk(
    machine: str, inc_env: AwsEnv, simulator: Simulator, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    state = settled_fleet(simulator, inc_env)
    prune_backups.settings.cache_clear()
    before = remaining_ids(simulator)
    expected = set(pure_plan(simulator, state, DUE, max_deletions=1000))
    kill_at(monkeypatch, point, ALL_KILL_POINTS)

    [described] = run_to_end(machine, schedule())

    assert described["status"] == "SUCCEEDED", described
    failures = [e for e in history(described["executionArn"]) if e["type"] == "TaskFailed"]
    assert [f["taskFailedEventDetails"]["error"] for f in failures] == ["Killed"]
    assert before - remaining_ids(simulator) == expected
    assert max(delete_counts(simulator).values()) == 1


def test_one_daily_run_at_a_time_a_second_start_while_it_runs_does_nothing(
    inc_env: AwsEnv, simulator: Simulator, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = settled_fleet(simulator, inc_env)
    monkeypatch.setenv("PRUNE_CHUNK_PAGES", "2")
    prune_backups.settings.cache_clear()
    expected = set(pure_plan(simulator, state, DUE, max_deletions=1000))
    before = remaining_ids(simulator)
    # Given a daily run started, its servers chosen
    first = prune_backups.handler(start_event(schedule()), lambda_context)
    assert first["incremental"] and not first["done"]

    # When the schedule (or a person) starts another run while it is in progress
    second = drive(schedule(), lambda_context, execution=EXECUTION + "-2")

    # Then that one does nothing and says so; the first goes on to its end alone
    assert len(second) == 1 and "in progress" in second[0]["note"] and first["run"] in second[0]["note"]
    assert PruneRunStore(state).selection(second[0]["run"]) is None
    cursor = first
    while not cursor["done"]:
        cursor = prune_backups.handler(
            {"prune_chunk": {"step": "next", "cursor": cursor, "execution": EXECUTION}}, lambda_context
        )
    assert before - remaining_ids(simulator) == expected
