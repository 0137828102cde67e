"""The incremental choice's decisions an outside mutation run found untested (issue "tests that
catch a wrong decision"), through prune/incremental.py's public functions:

- the time to the next scheduled run is predicted from the longest recent gap, not the shortest
  (a shorter guess re-verifies too few servers: one could go unlisted past ``PRUNE_VERIFY_EVERY``);
- a backup is in scope when it is manual *and* (scope ``manual`` or it carries the marker);
- a server a run left with no backup in scope is forgotten, not written back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vpsbackup.prune.incremental import (
    ListedBackup,
    RunHistory,
    RunOutcome,
    ServerState,
    Settlement,
    next_states,
    select_servers,
    settle_server,
)
from vpsbackup.prune.plan import Scope

NOW = datetime(2025, 6, 1, 3, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def test_the_next_run_is_predicted_from_the_longest_recent_gap() -> None:
    # Given scheduled runs 1 hour, 2 days and 6 hours apart
    history = RunHistory(last_scheduled_at=NOW, gaps_s=(HOUR.total_seconds(), 2 * 86400.0, 6 * 3600.0))
    # Then the next one is expected in two days; with no gap seen yet, in one
    assert history.interval == 2 * DAY
    assert RunHistory().interval == DAY


def test_the_gaps_remembered_are_the_last_seven_scheduled_ones() -> None:
    # Given eight scheduled runs 1..8 hours apart, then a manual run
    history = RunHistory(last_scheduled_at=NOW)
    at = NOW
    for hours in range(1, 9):
        at += hours * HOUR
        history = history.after_run(at, scheduled=True, swept=None)
    history = history.after_run(at + HOUR, scheduled=False, swept=True)
    # Then the seven latest gaps are kept, the last scheduled run is the eighth, the sweep finished
    assert history.gaps_s == tuple(hours * 3600.0 for hours in range(2, 9))
    assert history.last_scheduled_at == at
    assert history.last_sweep_complete is True
    assert history.interval == 8 * HOUR


def test_a_server_due_before_the_run_after_the_longest_gap_is_verified_now() -> None:
    # Given 100 settled servers: 1 listed 5 days ago, 2-5 six days ago, the rest just now;
    # PRUNE_VERIFY_EVERY=7d, and scheduled runs 1 hour or 3 days apart
    def listed(sid: int) -> ServerState:
        ago = 5 * DAY if sid == 1 else 6 * DAY if sid <= 5 else timedelta(0)
        return ServerState(server_id=sid, listed_at=NOW - ago, settled=True, policy="p", backups=3)

    history = RunHistory(last_scheduled_at=NOW - HOUR, gaps_s=(3600.0, 3 * 86400.0), last_sweep_complete=True)
    # When the servers are selected
    selection = select_servers(
        {sid: listed(sid) for sid in range(1, 101)},
        now=NOW,
        policy_for=lambda _: "p",
        holds_for=lambda _: "",
        verify_every=7 * DAY,
        history=history,
        page_size=100,
    )
    # Then it is verified now: at the next run, 3 days away, it would be 8 days old
    assert selection.triggers.get(1) == "verify"


def backups(*specs: tuple[int, str, bool]) -> list[ListedBackup]:
    return [
        ListedBackup(backup_id, kind, "completed", NOW - backup_id * HOUR, managed)
        for backup_id, kind, managed in specs
    ]


@pytest.mark.parametrize(
    ("listed", "scope", "in_scope"),
    [
        (backups((1, "manual", True)), "managed", 1),
        (backups((1, "manual", False)), "managed", 0),
        (backups((1, "automatic", True)), "managed", 0),
        (backups((1, "automatic", False)), "manual", 0),
        (backups((1, "manual", False)), "manual", 1),
        (backups((1, "automatic", True), (2, "manual", False), (3, "manual", True)), "managed", 1),
        (backups((1, "automatic", True), (2, "manual", False), (3, "manual", True)), "manual", 2),
    ],
)
def test_a_backup_is_in_scope_when_manual_and_managed_or_the_scope_is_manual(
    listed: list[ListedBackup], scope: Scope, in_scope: int
) -> None:
    # When a server with these completed backups is settled
    settlement = settle_server(listed, now=NOW, scope=scope, failed_grace=DAY)
    # Then it counts the manual ones, marked or under PRUNE_SCOPE=manual
    assert settlement.settled
    assert settlement.managed == in_scope


def test_a_server_left_with_no_backup_in_scope_is_forgotten_and_the_others_written() -> None:
    # Given three known servers and one new, after a run: 1 settled with none in scope left,
    # 2 settled with two, 3 not settled with none, 4 (not known before) settled with none
    states = {sid: ServerState(server_id=sid, listed_at=NOW - DAY, recorded_at=NOW - HOUR) for sid in (1, 2, 3)}
    outcomes = [
        RunOutcome(1, Settlement(True, None, "settled", 0)),
        RunOutcome(2, Settlement(True, None, "settled", 2)),
        RunOutcome(3, Settlement(False, None, "1 planned deletion(s) not done", 0)),
        RunOutcome(4, Settlement(True, None, "settled", 0)),
    ]
    # When the states to write back are worked out
    changes = next_states(
        outcomes,
        states,
        listed_at=NOW,
        policy_for=lambda sid: f"p{sid}",
        holds_for=lambda _: "",
        backups_of=lambda sid: 10 * sid,
    )
    # Then 1 is forgotten, 4 is not written at all, 2 and 3 are written as listed now
    assert changes.forget == (1,)
    assert [state.server_id for state in changes.put] == [2, 3]
    two, three = changes.put
    assert (two.listed_at, two.settled, two.policy, two.backups, two.recorded_at) == (NOW, True, "p2", 20, NOW - HOUR)
    assert (three.settled, three.note, three.recorded_at) == (False, "1 planned deletion(s) not done", NOW - HOUR)


def test_the_policy_fingerprint_is_stable_across_releases_and_names_the_engine_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stored server states carry this digest: a different digest for the same settings re-lists the
    whole fleet at the next run. Pinned, so that it changes only on purpose (ENGINE_VERSION bumped
    because a rule changed), never by accident (a new setting's default, an encoding)."""
    from zoneinfo import ZoneInfo

    from vpsbackup.prune import incremental
    from vpsbackup.prune.retention import RetentionPolicy

    def digest() -> str:
        return incremental.policy_fingerprint(
            RetentionPolicy(keep_last=3, keep_daily=7),
            tz=ZoneInfo("Europe/Madrid"),
            scope="managed",
            failed_grace=timedelta(hours=24),
            keep_at_least=1,
        )

    assert digest() == "c96f43fc1ab29e9f"
    monkeypatch.setattr(incremental, "ENGINE_VERSION", incremental.ENGINE_VERSION + 1)
    assert digest() != "c96f43fc1ab29e9f"


def _listed(server_id: int, ago: timedelta) -> ServerState:
    return ServerState(server_id=server_id, listed_at=NOW - ago, settled=True, policy="p")


def test_verify_slice_takes_the_fleets_share_of_one_interval_oldest_first() -> None:
    from vpsbackup.prune.incremental import verify_slice

    # Given 8 servers listed an hour to 8 hours ago, runs every 6 hours, verification every day
    states = [_listed(sid, sid * HOUR) for sid in range(1, 9)]
    chosen = verify_slice(states, known=8, now=NOW, verify_every=DAY, interval=6 * HOUR)
    # Then a quarter of the fleet (ceil(8 × 6 h / 24 h) = 2), the longest ago first
    assert [s.server_id for s in chosen] == [8, 7]


def test_verify_every_zero_verifies_every_known_server_every_run() -> None:
    from vpsbackup.prune.incremental import verify_slice

    states = [_listed(sid, sid * HOUR) for sid in range(1, 5)]
    chosen = verify_slice(states, known=4, now=NOW, verify_every=timedelta(0), interval=DAY)
    assert sorted(s.server_id for s in chosen) == [1, 2, 3, 4]


def test_a_server_exactly_verify_every_old_at_the_next_run_waits_and_one_a_microsecond_older_is_due() -> None:
    from vpsbackup.prune.incremental import verify_slice

    interval, week = DAY, 7 * DAY
    on_time = _listed(1, week - interval)  # exactly verify_every old at the next run: not late yet
    late = _listed(2, week - interval + timedelta(microseconds=1))
    never = ServerState(server_id=3)  # never listed: not due for re-verification (its own trigger)
    fresh = [_listed(sid, HOUR) for sid in range(10, 80)]
    chosen = verify_slice([on_time, late, never, *fresh], known=73, now=NOW, verify_every=week, interval=interval)
    # The share is ceil(73 / 7) = 11 servers: the never-listed one and the two oldest come first
    # anyway; what matters is that the late one is due even when the share is smaller
    small = verify_slice([on_time, late], known=0, now=NOW, verify_every=week, interval=interval)
    assert [s.server_id for s in small] == [2]
    assert {2, 1, 3} <= {s.server_id for s in chosen}


def test_listing_no_backup_still_costs_one_request() -> None:
    from vpsbackup.prune.incremental import requests_for

    assert (requests_for(0, 50), requests_for(50, 50), requests_for(51, 50)) == (1, 1, 2)


def test_the_report_names_twenty_servers_per_trigger_and_counts_them_all() -> None:
    from vpsbackup.prune.incremental import Selection

    servers = tuple(range(1, 26))
    triggers = {sid: ("verify" if sid <= 21 else "backup_recorded") for sid in servers}
    shown = Selection("per-server", "why", servers, triggers, 100, 25, 60).to_dict()
    assert shown["servers_by_trigger"] == {"verify": list(range(1, 21)), "backup_recorded": [22, 23, 24, 25]}
    assert shown["by_trigger"] == {"backup_recorded": 4, "verify": 21}


def test_the_holds_fingerprint_covers_the_holds_in_force_only() -> None:
    from vpsbackup.prune.incremental import holds_fingerprint
    from vpsbackup.records import Hold

    def hold(backup_id: int, until: datetime) -> Hold:
        return Hold(backup_id=backup_id, server_id=1, until=until, reason="r")

    assert holds_fingerprint([], NOW) == ""
    assert holds_fingerprint([hold(5, NOW - HOUR), hold(6, NOW)], NOW) == ""  # ended, and ending now
    one = holds_fingerprint([hold(5, NOW + HOUR)], NOW)
    assert len(one) == 16 and one == holds_fingerprint([hold(5, NOW + HOUR), hold(6, NOW)], NOW)
    assert one != holds_fingerprint([hold(5, NOW + 2 * HOUR)], NOW)  # a hold extended changes it


def test_the_run_mode_when_nothing_is_due_and_when_a_sweep_costs_exactly_the_per_server_listing() -> None:
    from vpsbackup.prune.incremental import _mode

    done = RunHistory(last_sweep_complete=True)
    assert _mode(sweep=False, known=10, per_server=0, sweep_cost=3, history=done) == (
        "per-server",
        "no server's plan may have changed and none is due for verification",
    )
    mode, why = _mode(sweep=False, known=10, per_server=5, sweep_cost=5, history=done)
    assert mode == "fleet" and why.startswith("a fleet sweep (about 5 requests) costs no more than 5")
    assert _mode(sweep=False, known=10, per_server=5, sweep_cost=6, history=done)[0] == "per-server"


def test_a_server_with_deletions_still_pending_stays_open_and_says_how_many() -> None:
    from vpsbackup.prune.incremental import _open_reason

    assert _open_reason([], set(), 2) == "2 planned deletion(s) not done"
    assert _open_reason([], set(), 0) is None


def test_a_server_whose_remaining_backup_was_listed_twice_with_different_data_stays_open() -> None:
    from vpsbackup.prune.incremental import _open_reason

    remaining = [ListedBackup(5, "manual", "completed", NOW - HOUR, True)]
    assert _open_reason(remaining, {5}, 0) == "a backup listed twice with different data"
    assert _open_reason(remaining, {6}, 0) is None


def _sweep_requests(states: dict[int, ServerState]) -> int:
    """What the run estimates a fleet sweep costs, in pages of 50."""
    selection = select_servers(
        states,
        now=NOW,
        policy_for=lambda _: "p",
        holds_for=lambda _: "",
        verify_every=7 * DAY,
        history=RunHistory(last_sweep_complete=True),
        page_size=50,
    )
    return selection.sweep_requests


def test_a_server_known_but_never_listed_adds_no_backups_to_the_sweeps_estimated_cost() -> None:
    # Given one server listed with 50 backups and 99 known but never listed (recorded by deploy only)
    states = {1: ServerState(1, listed_at=NOW - HOUR, settled=True, policy="p", backups=50)}
    states.update({sid: ServerState(sid, recorded_at=NOW - HOUR) for sid in range(2, 101)})
    # Then a sweep is estimated at one page: the never-listed servers count no backups of their own
    assert _sweep_requests(states) == 1
    # (nor fewer than none: 101 listed backups and one never-listed server are three pages)
    fewer = {1: ServerState(1, listed_at=NOW - HOUR, settled=True, policy="p", backups=101), 2: ServerState(2)}
    assert _sweep_requests(fewer) == 3


def test_a_run_at_the_very_instant_of_the_last_one_adds_no_gap() -> None:
    # Given a history whose last scheduled run was at NOW, after gaps of 1 and 2 hours
    history = RunHistory(last_scheduled_at=NOW, gaps_s=(3600.0, 7200.0))
    # When a scheduled run at that same instant is done (a redelivered trigger)
    after = history.after_run(NOW, scheduled=True, swept=None)
    # Then no gap of 0 is added (it would not lengthen the expected interval, but it would push a
    # real gap out of those kept), and a run an hour later adds one of an hour
    assert after.gaps_s == (3600.0, 7200.0)
    assert after.after_run(NOW + HOUR, scheduled=True, swept=None).gaps_s == (3600.0, 7200.0, 3600.0)
