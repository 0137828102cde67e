"""Incremental runs delete what daily fleet sweeps delete: never earlier, at most PRUNE_VERIFY_EVERY later.

Two worlds start alike and see the same days: deploys making backups (in progress, finishing
later as completed or failed, some dated in the future by the provider's clock), holds placed,
released and expiring, and a policy change. In world A every daily run sweeps the fleet
(``run_prune``); in world B every daily run is ``run_incremental_prune`` over an in-memory
``StateTable`` of prune's items (the same ``StateStore`` protocol as ``prune/state_store.py``).
The provider is a fake in memory: the HTTP path is covered by the integration test.

When every backup is recorded by the deploy job, B deletes each backup on the very day A does. When
some are made out of band (not recorded), B deletes nothing A does not, never earlier, and at most
PRUNE_VERIFY_EVERY later, unless the policy changed inside that time: B learns of an out-of-band
backup only when the server is next verified, and by then the new policy may keep what a sweep
deleted under the old one (B then deletes it later or never, as sweeps under the new policy would).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vpsbackup.markers import describe_with_marker
from vpsbackup.provider.models import Backup, BackupPage
from vpsbackup.prune.incremental import RunHistory, ServerState
from vpsbackup.prune.incremental_run import run_incremental_prune
from vpsbackup.prune.job import PruneOptions, run_prune
from vpsbackup.prune.request import PruneRequest
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy
from vpsbackup.records import Hold

START = datetime(2025, 3, 1, 3, 30, tzinfo=UTC)
DAY = timedelta(days=1)
VERIFY_EVERY = timedelta(days=7)
SERVERS = (11, 12, 13)
POLICIES = (
    RetentionPolicy(keep_last=2, keep_daily=3),
    RetentionPolicy(keep_daily=2, keep_within=timedelta(days=2)),
    RetentionPolicy(keep_last=1, keep_weekly=2),
    RetentionPolicy(keep_within=timedelta(hours=30)),
)


@dataclass
class Made:
    """One backup in the fake provider: in progress until ``done_at``, then ``final``."""

    id: int
    server_id: int
    created_at: datetime
    done_at: datetime
    final: str

    def at(self, now: datetime) -> Backup:
        return Backup.model_validate(
            {
                "id": self.id,
                "server": {"id": self.server_id},
                "backup_type": "manual",
                "status": self.final if now >= self.done_at else "in_progress",
                "created_at": self.created_at,
                "description": describe_with_marker("Deploy", f"d-{self.id}"),
            }
        )


@dataclass
class World:
    """One provider: its backups, the day each was deleted, and the time of the run going on."""

    made: dict[int, Made] = field(default_factory=dict)
    deleted_on: dict[int, int] = field(default_factory=dict)
    server_of: dict[int, int] = field(default_factory=dict)  # of each deleted backup
    now: datetime = START
    day: int = 0
    filtered: list[int] = field(default_factory=list)
    sweeps: int = 0

    def iter_backups(
        self,
        *,
        server_id: int | None = None,
        backup_type: str | None = None,
        every_copy: bool = False,
        on_page: Callable[[BackupPage], None] | None = None,
        on_invalid: Any = None,
    ) -> Iterator[Backup]:
        if server_id is None:
            self.sweeps += 1
        else:
            self.filtered.append(server_id)
        listed = [m.at(self.now) for m in self.made.values() if server_id in (None, m.server_id)]
        if on_page is not None:
            on_page(BackupPage(count=len(listed), results=listed))
        yield from listed

    def delete_backup(self, backup_id: int, *, before_retry: Callable[[], None] | None = None) -> None:
        self.server_of[backup_id] = self.made.pop(backup_id).server_id
        self.deleted_on[backup_id] = self.day


@dataclass
class Holds:
    """The holds both worlds read (a hold names a backup id; a world without it ignores it)."""

    holds: dict[int, Hold] = field(default_factory=dict)
    now: datetime = START

    def active_holds(self, now: datetime) -> Mapping[int, Hold]:
        return {bid: h for bid, h in self.holds.items() if h.until > now}

    def active_hold(self, backup_id: int, now: datetime) -> Hold | None:
        hold = self.holds.get(backup_id)
        return hold if hold is not None and hold.until > self.now else None


@dataclass
class MemoryStore:
    """Prune's ``prune-state`` items in memory, with the semantics of ``PruneStateStore``."""

    states: dict[int, ServerState] = field(default_factory=dict)
    recorded: dict[int, datetime] = field(default_factory=dict)
    history: RunHistory = field(default_factory=RunHistory)

    def record(self, server_id: int, at: datetime) -> None:
        if server_id not in self.recorded or self.recorded[server_id] < at:
            self.recorded[server_id] = at

    def load(self) -> tuple[dict[int, ServerState], RunHistory]:
        out = {sid: replace(s, recorded_at=self.recorded.get(sid)) for sid, s in self.states.items()}
        for sid, at in self.recorded.items():
            out.setdefault(sid, ServerState(server_id=sid, recorded_at=at))
        return dict(sorted(out.items())), self.history

    def save(
        self,
        put: Sequence[ServerState],
        *,
        forget: Sequence[tuple[int, datetime]] = (),
        history: RunHistory | None = None,
    ) -> None:
        for state in put:
            self.states[state.server_id] = replace(state, recorded_at=None)
        for sid, listed_at in forget:
            self.states.pop(sid, None)
            if sid in self.recorded and self.recorded[sid] < listed_at:
                del self.recorded[sid]
        if history is not None:
            self.history = history


# One day's events: ("deploy", server, hours after the run, hours to finish, final status, recorded)
# ("future", server, hours ahead); ("hold", server, nth newest, days); ("release", nth hold).
deploy = st.tuples(
    st.just("deploy"),
    st.sampled_from(SERVERS),
    st.integers(1, 23),
    st.sampled_from([0, 0, 1, 30]),
    st.sampled_from(["completed", "completed", "completed", "failed"]),
    st.booleans(),
)
future = st.tuples(st.just("future"), st.sampled_from(SERVERS), st.integers(1, 40))
hold = st.tuples(st.just("hold"), st.sampled_from(SERVERS), st.integers(0, 6), st.integers(1, 5))
release = st.tuples(st.just("release"), st.integers(0, 5))
events = st.lists(st.one_of(deploy, deploy, deploy, future, hold, release), max_size=5)


@st.composite
def scenarios(draw: st.DrawFn, *, unrecorded: bool) -> tuple[list[list[tuple[object, ...]]], int, int, int]:
    days = draw(st.lists(events, min_size=12, max_size=20))
    if not unrecorded:  # every deploy backup recorded
        days = [[e if e[0] != "deploy" else (*e[:5], True) for e in day] for day in days]
    first = draw(st.integers(0, len(POLICIES) - 1))
    second = draw(st.integers(0, len(POLICIES) - 1))
    change_day = draw(st.integers(1, len(days)))
    return days, first, second, change_day


def options(policy: RetentionPolicy, keep_at_least: int) -> PruneOptions:
    return PruneOptions(
        policies=RetentionPolicies(policy),
        tz=UTC,
        scope="managed",
        failed_grace=timedelta(hours=20),
        max_deletions=10_000,
        concurrency=1,
        dry_run=False,
        keep_at_least=keep_at_least,
        verify_every=VERIFY_EVERY,
        # One backup a page: a sweep costs as many requests as the fleet has backups, so listing
        # the few servers that changed is the cheaper way and the per-server path is exercised.
        page_size=1,
    )


def apply(
    event: tuple[object, ...],
    at: datetime,
    ids: Iterator[int],
    worlds: tuple[World, World],
    holds: Holds,
    store: MemoryStore,
) -> None:
    a, b = worlds
    kind = event[0]
    if kind in ("deploy", "future"):
        server_id = int(str(event[1]))
        if kind == "deploy":
            _, _, _, finish, final, recorded = event
            made = Made(next(ids), server_id, at, at + timedelta(hours=int(str(finish))), str(final))
        else:
            made = Made(next(ids), server_id, at + timedelta(hours=int(str(event[2]))), at, "completed")
            recorded = True
        for world in worlds:
            world.made[made.id] = replace(made)
        if recorded:
            store.record(server_id, at + timedelta(seconds=5))
    elif kind == "hold":
        mine = sorted((m for m in a.made.values() if m.server_id == event[1]), key=lambda m: m.created_at)
        if mine:
            target = mine[-1 - int(str(event[2])) % len(mine)]
            holds.holds[target.id] = Hold(
                backup_id=target.id,
                server_id=target.server_id,
                until=at + int(str(event[3])) * DAY - timedelta(hours=2),
            )
    elif kind == "release" and holds.holds:
        del holds.holds[sorted(holds.holds)[int(str(event[1])) % len(holds.holds)]]
    del b  # both worlds were changed above


def simulate(
    days: list[list[tuple[object, ...]]], first: int, second: int, change_day: int
) -> tuple[World, World, int]:
    a, b, holds, store = World(), World(), Holds(), MemoryStore()
    ids = iter(range(1_000, 100_000))
    # Each server starts with a history of settled backups, made before the first run.
    for server_id in SERVERS:
        for n in range(6):
            created = START - (n + 1) * DAY + timedelta(hours=server_id % 5)
            for world in (a, b):
                world.made[1 + 10 * server_id + n] = Made(
                    1 + 10 * server_id + n, server_id, created, created, "completed"
                )
        store.record(server_id, START - DAY)
    total = len(days) + 10  # quiet days at the end, for the late ones to catch up
    for day in range(total):
        now = START + day * DAY
        policy, keep = (POLICIES[first], 1) if day < change_day else (POLICIES[second], 2)
        for world in (a, b):
            world.now, world.day = now, day
        holds.now = now
        request = PruneRequest(trigger="schedule")
        run_prune(request, options(policy, keep), client=a, holds=holds, now=now)
        run_incremental_prune(request, options(policy, keep), client=b, holds=holds, store=store, now=now)
        for event in days[day] if day < len(days) else []:
            hours = int(str(event[2])) if event[0] == "deploy" else 12
            apply(event, now + timedelta(hours=hours), ids, (a, b), holds, store)
    return a, b, total


FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(scenarios(unrecorded=False))
def test_with_every_backup_recorded_incremental_runs_delete_exactly_what_sweeps_delete(
    scenario: tuple[list[list[tuple[object, ...]]], int, int, int],
) -> None:
    a, b, _ = simulate(*scenario)
    assert b.deleted_on == a.deleted_on


@FAST
@given(scenarios(unrecorded=True))
@example(  # B lagged on out-of-band backups of server 11 when the policy changed on day 15: it deletes 111
    (
        [[] for _ in range(10)]
        + [
            [("deploy", 11, 1, 0, "completed", True)],
            [
                ("deploy", 11, 1, 0, "completed", True),
                ("future", 11, 21),
                ("future", 11, 1),
                ("deploy", 11, 1, 0, "completed", False),
                ("deploy", 11, 1, 0, "completed", False),
            ],
            [],
            [("deploy", 11, 1, 0, "completed", False)] * 3,
            [],
            [],
            [],
        ],
        2,
        3,
        15,
    )
)
def test_out_of_band_backups_are_deleted_never_earlier_and_at_most_verify_every_later(
    scenario: tuple[list[list[tuple[object, ...]]], int, int, int],
) -> None:
    a, b, total = simulate(*scenario)
    late = VERIFY_EVERY // DAY
    change_day = scenario[3]

    def policy_changed_before_b_could_know(swept_on: int) -> bool:
        # A sweep deleted it under the old policy; the server was not due in B before the new one
        # took effect, and the new policy may keep it (for good, or until newer backups come).
        return swept_on < change_day <= swept_on + late

    def b_still_had_what_a_deleted(server_id: int, day: int) -> bool:
        # B's listing of the server on `day` held backups A had deleted before (B learns of
        # out-of-band backups late): its plan is the policy over another set of backups, and may
        # let go of an old one A keeps (a KEEP_AT_LEAST floor or a bucket that newer ones fill in B).
        return any(
            a.server_of[x] == server_id and a_day < day <= b.deleted_on.get(x, total)
            for x, a_day in a.deleted_on.items()
        )

    for backup_id, day in b.deleted_on.items():
        swept_on = a.deleted_on.get(backup_id)
        if swept_on is None or day < swept_on:
            # earlier than a sweep (or never by one): only on another set of backups than A's
            assert b_still_had_what_a_deleted(b.server_of[backup_id], day), (
                f"backup {backup_id} deleted by the incremental run earlier than a sweep would, on the same backups"
            )
            continue
        assert day <= swept_on + late or policy_changed_before_b_could_know(swept_on), backup_id
    for backup_id, day in a.deleted_on.items():
        assert backup_id in b.deleted_on or day > total - 1 - late or policy_changed_before_b_could_know(day), (
            f"backup {backup_id} never deleted"
        )


def test_a_quiet_fleet_is_listed_a_slice_at_a_time() -> None:
    """No change at all: after the first sweep, each daily run lists about a seventh of the fleet, and
    every server is listed again within PRUNE_VERIFY_EVERY."""
    a, b, total = simulate([[] for _ in range(15)], 0, 0, 99)
    assert b.sweeps == 1
    per_day = len(b.filtered) / (total - 1)
    assert len(SERVERS) / 7 <= per_day <= len(SERVERS) / 7 + 1
    assert set(b.filtered) == set(SERVERS)
    assert b.deleted_on == a.deleted_on


def test_a_released_hold_lets_the_next_run_delete_what_it_kept() -> None:
    """The hold on server 11's oldest backup keeps it past its turn; released on day 2, it goes on
    day 3 in both worlds (not on day 5, when the hold would have ended)."""
    days: list[list[tuple[object, ...]]] = [
        [("hold", 11, 2, 5)],
        [("deploy", 11, 2, 0, "completed", True)],
        [("release", 0)],
        *([] for _ in range(9)),
    ]
    a, b, _ = simulate(days, 0, 0, 99)
    held = min(bid for bid, day in a.deleted_on.items() if day > 0)
    assert a.deleted_on[held] == 3
    assert b.deleted_on == a.deleted_on
