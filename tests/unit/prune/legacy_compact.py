"""FROZEN REFERENCE, not product code: the fleet plan as it was before its own engine.

:func:`plan_fleet` here runs the very engine of ``plan_prune`` (prune/plan.py's per-server steps)
one server at a time over a compact listing, materialising every row, as prune/compact.py did
before prune/compact_rules.py and prune/buckets.py replaced it. ``test_compact_plan.py`` checks the
new path against it (and against ``plan_prune``), and ``devtools/bench_plan.py`` measures the new
path against it in the same run. Do not edit it to make a test pass. One known difference, carried
as it was: a backup id listed under two servers is deduplicated per server here, across the whole
listing by ``plan_prune`` (and by the new path).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import cast

from vpsbackup.markers import make_marker
from vpsbackup.provider.models import Backup
from vpsbackup.prune.compact import DEFERRED_SAMPLE, CompactListing, FleetPlan, reason_kind
from vpsbackup.prune.plan import (
    ACTIONS,
    Action,
    BackupDecision,
    PlanInputs,
    Scope,
    _plan_server,
    valve_note,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_MANAGED = make_marker("listed")


class _Listed:
    __slots__ = ("backup_type", "created_at", "description", "id", "server_id", "status")

    def __init__(
        self, id: int, server_id: int, backup_type: str, status: str, created_at: datetime, description: str | None
    ) -> None:
        self.id = id
        self.server_id = server_id
        self.backup_type = backup_type
        self.status = status
        self.created_at = created_at
        self.description = description


def _materialise(listing: CompactListing, row: int) -> Backup:
    words = listing._words
    listed = _Listed(
        listing._ids[row],
        listing._servers[row],
        words[listing._type[row]],
        words[listing._status[row]],
        _EPOCH + listing._created[row] * _US,
        _MANAGED if listing._managed[row] else None,
    )
    return cast(Backup, listed)


def _by_server(
    listing: CompactListing, server_ids: frozenset[int] | None
) -> Iterator[tuple[int, list[Backup], set[int]]]:
    ids, servers = listing._ids, listing._servers
    order = sorted(range(len(ids)), key=ids.__getitem__)
    order.sort(key=servers.__getitem__)
    start = 0
    while start < len(order):
        server_id = servers[order[start]]
        end = start
        while end < len(order) and servers[order[end]] == server_id:
            end += 1
        if server_ids is None or server_id in server_ids:
            yield server_id, *_one_server(listing, order[start:end])
        start = end


def _one_server(listing: CompactListing, rows: list[int]) -> tuple[list[Backup], set[int]]:
    backups: list[Backup] = []
    conflicting: set[int] = set()
    ids = listing._ids
    i = 0
    while i < len(rows):
        backup_id = ids[rows[i]]
        j = i
        while j < len(rows) and ids[rows[j]] == backup_id:
            j += 1
        copies = rows[i:j]
        if len({listing._fingerprint[r] for r in copies}) > 1:
            conflicting.add(backup_id)
            chosen = min(copies, key=listing._json)
        else:
            chosen = copies[0]
        backups.append(_materialise(listing, chosen))
        i = j
    return backups, conflicting


def plan_fleet(
    listing: CompactListing,
    inputs: PlanInputs,
    *,
    server_ids: frozenset[int] | None = None,
    keep_decisions: bool = False,
) -> FleetPlan:
    # The arguments as the new path takes them (one PlanInputs); the engine is plan.py's per server.
    tally = _Tally(inputs.max_deletions, keep_decisions)
    for server_id, backups, conflicting in _by_server(listing, server_ids):
        tally.servers += 1
        for backup, action, reasons in _plan_server(server_id, backups, inputs, conflicting):
            tally.add(
                BackupDecision(
                    backup_id=backup.id,
                    server_id=backup.server_id,
                    created_at=backup.created_at,
                    status=backup.status,
                    backup_type=backup.backup_type,
                    action=action,
                    reasons=reasons,
                )
            )
    return tally.plan(now=inputs.now, scope=inputs.scope)


def _kind(decision: BackupDecision) -> str:
    return reason_kind(decision.reasons[0]) if decision.reasons else ""


class _Tally:
    def __init__(self, max_deletions: int, keep_decisions: bool) -> None:
        self.max_deletions = max_deletions
        self.window = max_deletions + DEFERRED_SAMPLE
        self.oldest: list[tuple[datetime, int, BackupDecision]] = []
        self.would_delete = 0
        self.servers = 0
        self.counts: Counter[Action] = Counter()
        self.by_reason: Counter[tuple[Action, str]] = Counter()
        self.decisions: list[BackupDecision] | None = [] if keep_decisions else None

    def add(self, decision: BackupDecision) -> None:
        if self.decisions is not None:
            self.decisions.append(decision)
        if decision.action != "delete":
            self.counts[decision.action] += 1
            self.by_reason[(decision.action, _kind(decision))] += 1
            return
        self.would_delete += 1
        self.oldest.append((decision.created_at, decision.backup_id, decision))
        if self.decisions is None and len(self.oldest) >= 2 * self.window + 64:
            self.oldest.sort(key=_age)
            del self.oldest[self.window :]

    def plan(self, *, now: datetime, scope: Scope) -> FleetPlan:
        self.oldest.sort(key=_age)
        note = valve_note(self.max_deletions)
        to_delete = tuple(item[2] for item in self.oldest[: self.max_deletions])
        deferred = tuple(_deferred(item[2], note) for item in self.oldest[self.max_deletions :])
        deferred_count = max(0, self.would_delete - self.max_deletions)
        for decision in to_delete:
            self.by_reason[("delete", _kind(decision))] += 1
        if deferred_count:
            self.by_reason[("defer", reason_kind(note))] += deferred_count
        self.counts["delete"] = len(to_delete)
        self.counts["defer"] = deferred_count
        decisions = None
        if self.decisions is not None:
            replaced = {d.backup_id: d for d in deferred}
            decisions = tuple(replaced.get(d.backup_id, d) for d in self.decisions)
        return FleetPlan(
            now=now,
            scope=scope,
            max_deletions=self.max_deletions,
            servers=self.servers,
            to_delete=to_delete,
            deferred=deferred if decisions is not None else deferred[:DEFERRED_SAMPLE],
            deferred_count=deferred_count,
            totals={action: self.counts.get(action, 0) for action in ACTIONS},
            by_reason=dict(self.by_reason),
            decisions=decisions,
        )


def _age(item: tuple[datetime, int, BackupDecision]) -> tuple[datetime, int]:
    return item[0], item[1]


def _deferred(decision: BackupDecision, note: str) -> BackupDecision:
    return BackupDecision(
        backup_id=decision.backup_id,
        server_id=decision.server_id,
        created_at=decision.created_at,
        status=decision.status,
        backup_type=decision.backup_type,
        action="defer",
        reasons=(*decision.reasons, note),
    )
