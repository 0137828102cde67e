"""Which servers a scheduled prune run lists, decided without I/O (``PRUNE_SCOPE=managed``).

Under restic's rules a server's plan is a function of its own backups, its holds, the settings
(policy, ``KEEP_AT_LEAST``, scope, ``FAILED_BACKUP_GRACE``) and of "now" at a few known instants
only. After a run has planned a server and carried out every deletion the plan asked for, the
server is *settled*: planned again on the same backups, holds and settings it deletes nothing, until
the first instant at which "now" changes a decision (:func:`settle_server`'s ``stable_until``):

- a ``failed`` backup within the grace period becomes deletable just after ``created_at + grace``;
- a hold stops counting at its ``until``;
- a backup dated in the future stops being "in the future" at its ``created_at``, which moves
  ``keep_within``'s window and the "newest not dated in the future" protection.

Those are the plan's own rules that read the clock, and their instants come from the plan's engine
(:func:`~vpsbackup.prune.compact_rules.time_changes`); the other rules (buckets, ``keep_last``,
``KEEP_AT_LEAST``) do not depend on "now". So a run need not list a
settled server again until one of these :data:`TRIGGERS` says its plan may have changed:

``never_listed``    the server is known (the deploy job recorded a backup) but no run has listed it;
``backup_recorded`` the deploy job recorded a backup for it since its last listing;
``unsettled``       its last listing left something open: a deletion not done (failed, not
                    started, deferred by the valve, a dry run), a backup ``in_progress`` or of an
                    unknown status, a backup listed twice with different data;
``stable_until``    "now" has reached its ``stable_until`` (grace, hold expiry, future date);
``holds``           its holds in force are not those its last plan saw (placed, released, expired);
``policy``          its policy fingerprint changed (policy, override, time zone, scope, grace,
                    ``KEEP_AT_LEAST``, or :data:`ENGINE_VERSION`);
``verify``          the rolling re-verification: every run lists the servers listed longest ago, a
                    slice of the fleet sized so that each is listed again within ``PRUNE_VERIFY_EVERY``.

What no trigger sees — a backup made or deleted outside this project on a known server, one made
by the deploy job without its record (a crash between the two) — is seen at the server's next
verification, at most ``PRUNE_VERIFY_EVERY`` later. :func:`select_servers` also decides between
listing the selected servers one by one (``?server_id=``) and one fleet sweep, whichever needs
fewer requests (estimated from the page size and the backups each server had last time).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal

from vpsbackup.markers import is_managed
from vpsbackup.provider.models import BACKUP_MANUAL, STATUS_COMPLETED, STATUS_FAILED, Backup
from vpsbackup.prune.compact_rules import time_changes
from vpsbackup.prune.plan import Scope
from vpsbackup.prune.retention import RetentionPolicy
from vpsbackup.records import Hold

# Bumped when a change to the plan's rules (prune/compact_rules.py, prune/buckets.py) could change a
# decision on the same backups: every server's policy fingerprint changes, so every server is listed.
ENGINE_VERSION = 1

Trigger = Literal["never_listed", "backup_recorded", "unsettled", "stable_until", "holds", "policy", "verify"]
# In the order a per-server listing takes them: the most urgent first.
TRIGGERS: tuple[Trigger, ...] = (
    "backup_recorded",
    "unsettled",
    "stable_until",
    "holds",
    "policy",
    "never_listed",
    "verify",
)
Mode = Literal["fleet", "per-server"]

# When no scheduled gap has been seen yet, runs are taken to be this far apart (the default schedule).
DEFAULT_INTERVAL = timedelta(days=1)
# Gaps between scheduled runs remembered, to predict the next one (the longest is taken).
GAPS_KEPT = 7
# Server ids named per trigger in the report (the counts are always complete).
IDS_SHOWN = 20


@dataclass(frozen=True, slots=True)
class ListedBackup:
    """What settling a server reads of one listed backup (``managed``: it carries this project's
    marker)."""

    id: int
    backup_type: str
    status: str
    created_at: datetime
    managed: bool

    @classmethod
    def of(cls, backup: Backup) -> ListedBackup:
        return cls(backup.id, backup.backup_type, backup.status, backup.created_at, is_managed(backup.description))


@dataclass(frozen=True, slots=True)
class ServerState:
    """What ``StateTable`` knows of one server for prune (docs/prune.md, "Incremental runs").

    ``recorded_at`` is written by the deploy job (the last time it recorded a backup for the
    server); the rest by prune: when the server was last listed, whether that left it settled and
    until when, the fingerprints of the policy and of the holds its plan saw, and how many manual
    backups it had (to estimate the cost of listing it).
    """

    server_id: int
    listed_at: datetime | None = None
    settled: bool = False
    stable_until: datetime | None = None
    policy: str = ""
    holds: str = ""
    backups: int = 0
    recorded_at: datetime | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class RunHistory:
    """The fleet-wide part: when the last scheduled runs were, and whether the last sweep finished."""

    last_scheduled_at: datetime | None = None
    gaps_s: tuple[float, ...] = ()
    last_sweep_complete: bool | None = None

    @property
    def interval(self) -> timedelta:
        """The expected time to the next scheduled run: the longest recent gap (a day when unknown)."""
        return timedelta(seconds=max(self.gaps_s)) if self.gaps_s else DEFAULT_INTERVAL

    def after_run(self, now: datetime, *, scheduled: bool, swept: bool | None) -> RunHistory:
        """The history once this run is done (``swept``: whether its fleet sweep finished; None: none)."""
        gaps = self.gaps_s
        last = self.last_scheduled_at
        if scheduled:
            if last is not None and now > last:
                gaps = (*gaps, (now - last).total_seconds())[-GAPS_KEPT:]
            last = now
        return RunHistory(
            last_scheduled_at=last,
            gaps_s=gaps,
            last_sweep_complete=self.last_sweep_complete if swept is None else swept,
        )


def policy_fingerprint(
    policy: RetentionPolicy, *, tz: tzinfo, scope: Scope, failed_grace: timedelta, keep_at_least: int
) -> str:
    """A short digest of every setting one server's plan depends on (and of :data:`ENGINE_VERSION`)."""
    canonical = json.dumps(
        {
            "engine": ENGINE_VERSION,
            "policy": policy.model_dump(mode="json", exclude_none=True),
            "tz": str(tz),
            "scope": scope,
            "grace_s": failed_grace.total_seconds(),
            "keep_at_least": keep_at_least,
        },
        sort_keys=True,
    )
    return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


def holds_fingerprint(holds: Iterable[Hold], now: datetime) -> str:
    """A short digest of the holds in force at ``now`` (backup and end), ``""`` when there are none."""
    active = sorted({(h.backup_id, h.until.timestamp()) for h in holds if h.until > now})
    if not active:
        return ""
    return hashlib.blake2b(repr(active).encode(), digest_size=8).hexdigest()


def holds_by_server(holds: Mapping[int, Hold]) -> dict[int, list[Hold]]:
    """The holds (by backup id, as the plan takes them) grouped by the server they name."""
    out: dict[int, list[Hold]] = {}
    for hold in holds.values():
        out.setdefault(hold.server_id, []).append(hold)
    return out


# -- which servers to list -------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """What a run lists and why: ``servers`` in listing order, each with its first trigger."""

    mode: Mode
    why: str
    servers: tuple[int, ...]
    triggers: Mapping[int, Trigger]
    known: int
    per_server_requests: int
    sweep_requests: int

    @property
    def counts(self) -> dict[Trigger, int]:
        counted = Counter(self.triggers.values())
        return {trigger: counted[trigger] for trigger in TRIGGERS if counted[trigger]}

    def to_dict(self) -> dict[str, Any]:
        shown: dict[str, list[int]] = {}
        for server_id in self.servers:
            ids = shown.setdefault(self.triggers[server_id], [])
            if len(ids) < IDS_SHOWN:
                ids.append(server_id)
        return {
            "mode": self.mode,
            "why": self.why,
            "known_servers": self.known,
            "selected": len(self.servers),
            "by_trigger": self.counts,
            "servers_by_trigger": shown,
            "estimate": {"per_server_requests": self.per_server_requests, "sweep_requests": self.sweep_requests},
        }


def trigger_of(state: ServerState, *, now: datetime, policy: str, holds: str) -> Trigger | None:
    """The first reason (in :data:`TRIGGERS` order, bar ``verify``) to list ``state``'s server now."""
    if state.listed_at is None:
        return "never_listed"
    if state.recorded_at is not None and state.recorded_at >= state.listed_at:
        return "backup_recorded"
    if not state.settled:
        return "unsettled"
    if state.stable_until is not None and now >= state.stable_until:
        return "stable_until"
    if holds != state.holds:
        return "holds"
    if policy != state.policy:
        return "policy"
    return None


def verify_slice(
    candidates: Sequence[ServerState], *, known: int, now: datetime, verify_every: timedelta, interval: timedelta
) -> list[ServerState]:
    """The servers re-verified this run, listed longest ago first: every one that would otherwise be
    older than ``verify_every`` at the next run (``interval`` away), and at least the fleet's share
    of one interval (``known × interval / verify_every``), so the work spreads over the runs."""
    ordered = sorted(candidates, key=lambda s: (s.listed_at or datetime.min.replace(tzinfo=now.tzinfo), s.server_id))
    share = math.ceil(known * min(1.0, interval / verify_every)) if verify_every > timedelta(0) else known
    due = [s for s in ordered if s.listed_at is not None and now - s.listed_at + interval > verify_every]
    return ordered[: max(len(due), share)]


def requests_for(backups: int, page_size: int) -> int:
    """GETs to list ``backups`` in pages of ``page_size``: at least one, even for none."""
    return max(1, math.ceil(backups / page_size))


def select_servers(
    states: Mapping[int, ServerState],
    *,
    now: datetime,
    policy_for: Callable[[int], str],
    holds_for: Callable[[int], str],
    verify_every: timedelta,
    history: RunHistory,
    page_size: int,
    sweep: bool = False,
) -> Selection:
    """Which known servers to list now and why, and whether one fleet sweep is the cheaper way.

    ``policy_for`` and ``holds_for`` give a server's current fingerprints. A sweep is chosen when
    asked (``sweep``), when no server is known yet or no sweep has ever run (the first run: a
    sweep finds them, those backed up before this version's records included), or when
    it needs no more requests than the selected servers' own listings — unless the last sweep did
    not finish (it would not now either: the servers are then listed one by one, most urgent first,
    as many as the invocation allows).
    """
    triggers: dict[int, Trigger] = {}
    quiet: list[ServerState] = []
    for server_id in sorted(states):
        state = states[server_id]
        trigger = trigger_of(state, now=now, policy=policy_for(server_id), holds=holds_for(server_id))
        if trigger is None:
            quiet.append(state)
        else:
            triggers[server_id] = trigger
    for state in verify_slice(quiet, known=len(states), now=now, verify_every=verify_every, interval=history.interval):
        triggers[state.server_id] = "verify"
    rank = {trigger: n for n, trigger in enumerate(TRIGGERS)}
    order = sorted(
        triggers,
        key=lambda sid: (rank[triggers[sid]], _listed_key(states[sid]) if triggers[sid] == "verify" else 0.0, sid),
    )
    per_server = sum(requests_for(states[sid].backups, page_size) for sid in order)
    sweep_cost = requests_for(sum(s.backups for s in states.values()), page_size)
    mode, why = _mode(sweep=sweep, known=len(states), per_server=per_server, sweep_cost=sweep_cost, history=history)
    return Selection(
        mode=mode,
        why=why,
        servers=tuple(order),
        triggers=triggers,
        known=len(states),
        per_server_requests=per_server,
        sweep_requests=sweep_cost,
    )


def _listed_key(state: ServerState) -> float:
    return state.listed_at.timestamp() if state.listed_at is not None else 0.0


def _mode(*, sweep: bool, known: int, per_server: int, sweep_cost: int, history: RunHistory) -> tuple[Mode, str]:
    if sweep:
        return "fleet", "a fleet sweep was asked for"
    if known == 0:
        return "fleet", "no server known yet: one fleet sweep finds them"
    if history.last_sweep_complete is None:
        return "fleet", "no fleet sweep has run yet: one finds the servers backed up before prune kept state"
    if per_server == 0:
        return "per-server", "no server's plan may have changed and none is due for verification"
    if history.last_sweep_complete is False:
        return "per-server", "the last fleet sweep did not finish in time: servers are listed one by one"
    if sweep_cost <= per_server:
        return (
            "fleet",
            f"a fleet sweep (about {sweep_cost} requests) costs no more than {per_server} per-server requests",
        )
    return "per-server", f"{per_server} per-server requests cost less than a fleet sweep (at least {sweep_cost})"


# -- what a listing and its deletions leave ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settlement:
    """Whether a server is settled after this run, until when, and why (in words)."""

    settled: bool
    stable_until: datetime | None
    note: str
    managed: int


def settle_server(
    backups: Sequence[ListedBackup],
    *,
    conflicting: Iterable[int] = (),
    gone: Iterable[int] = (),
    pending: int = 0,
    holds: Iterable[Hold] = (),
    now: datetime,
    scope: Scope,
    failed_grace: timedelta,
) -> Settlement:
    """A server's state once its planned deletions were carried out.

    ``backups`` is what its listing showed (manual backups), ``gone`` the ones this run deleted (or
    found gone), ``pending`` how many of its planned deletions were not done (failed, not started,
    deferred, a dry run), ``holds`` the holds in force its plan saw. ``managed`` counts the
    remaining candidates (in scope): a server with none has nothing to prune.
    """
    gone_ids = set(gone)
    remaining = [b for b in backups if b.id not in gone_ids]
    candidates = [b for b in remaining if b.backup_type == BACKUP_MANUAL and (scope == "manual" or b.managed)]
    open_reason = _open_reason(remaining, set(conflicting), pending)
    if open_reason is not None:
        return Settlement(False, None, open_reason, len(candidates))
    instants = time_changes(candidates, remaining, holds, now=now, failed_grace=failed_grace)
    if not instants:
        return Settlement(True, None, "settled: nothing to delete until a change", len(candidates))
    until, why = min(instants, key=lambda item: item[0])
    return Settlement(True, until, f"settled until {until.isoformat()}: {why}", len(candidates))


def _open_reason(remaining: Sequence[ListedBackup], conflicting: set[int], pending: int) -> str | None:
    if pending:
        return f"{pending} planned deletion(s) not done"
    if conflicting & {b.id for b in remaining}:
        return "a backup listed twice with different data"
    for backup in remaining:
        if backup.status not in (STATUS_COMPLETED, STATUS_FAILED):
            return f"backup {backup.id} is {backup.status}"
    return None


@dataclass(frozen=True)
class RunOutcome:
    """One listed server after the run: its settlement (planned), or why it was not planned."""

    server_id: int
    settlement: Settlement


@dataclass(frozen=True)
class StateChanges:
    """What to write back: the states of servers listed, and the servers to forget (nothing to prune)."""

    put: tuple[ServerState, ...] = ()
    forget: tuple[int, ...] = ()


def next_states(
    outcomes: Iterable[RunOutcome],
    states: Mapping[int, ServerState],
    *,
    listed_at: datetime,
    policy_for: Callable[[int], str],
    holds_for: Callable[[int], str],
    backups_of: Callable[[int], int],
) -> StateChanges:
    """The new state of every server this run planned. A server left with no backup in scope is
    forgotten (the deploy job's next record makes it known again); the others keep the deploy
    job's ``recorded_at`` as read."""
    put: list[ServerState] = []
    forget: list[int] = []
    for outcome in outcomes:
        sid = outcome.server_id
        settlement = outcome.settlement
        if settlement.settled and settlement.managed == 0:
            if sid in states:
                forget.append(sid)
            continue
        old = states.get(sid)
        put.append(
            ServerState(
                server_id=sid,
                listed_at=listed_at,
                settled=settlement.settled,
                stable_until=settlement.stable_until,
                policy=policy_for(sid),
                holds=holds_for(sid),
                backups=backups_of(sid),
                recorded_at=old.recorded_at if old is not None else None,
                note=settlement.note,
            )
        )
    return StateChanges(put=tuple(put), forget=tuple(forget))
