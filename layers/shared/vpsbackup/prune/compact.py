"""The prune plan at fleet scale: a compact listing, and the same decisions in bounded memory.

A fleet of 10,000 servers × 30 backups is 300,000 backups. Kept as API models, with every
decision and its reasons, they do not fit a 256 MB Lambda. Two things change here, none of the
decisions:

- :class:`CompactListing` keeps per listed copy only what the plan reads — id, server, time,
  status, type, whether it carries this project's marker — in typed arrays (about 35 bytes a
  copy), plus a 64-bit fingerprint of the whole copy so that a backup listed twice with different
  data is still recognised (and left alone) as :func:`~vpsbackup.prune.plan.plan_prune` does, and
  the copy's JSON, compressed, to report the same copy of it as ``plan_prune`` does.
- :func:`plan_fleet` runs the very engine of :mod:`vpsbackup.prune.plan` one server at a time
  (every rule works per server), then the safety valve across the fleet. It keeps every decision
  only when asked (``keep_decisions``: runs limited to ``server_ids``, small fleets and tests);
  otherwise it keeps the counts by action and by reason, the deletions the valve lets through, and
  the oldest of those it defers, so its memory is bounded by ``max_deletions``, not by the fleet.

Same engine, same decisions: a property test compares this path with ``plan_prune`` backup by
backup, reasons included. The one thing not kept is the listed time's UTC offset: times come back
in UTC (the API sends UTC).
"""

from __future__ import annotations

import hashlib
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, cast

from vpsbackup.markers import is_managed, make_marker
from vpsbackup.provider.models import Backup
from vpsbackup.prune.plan import ACTIONS, Action, BackupDecision, Scope, check_keep_at_least, plan_servers, valve_note
from vpsbackup.prune.retention import RetentionPolicy
from vpsbackup.records import Hold

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# The marker a materialised copy carries when the listed one did: the engine only asks is_managed().
_MANAGED = make_marker("listed")
# Rows whose JSON is compressed together.
_CHUNK = 1024
# Deferred deletions named in the report (oldest first); the rest are counted.
DEFERRED_SAMPLE = 20


def _instant(moment: datetime | None) -> int | None:
    # Microseconds since the epoch: equal for equal instants whatever their UTC offset.
    return None if moment is None else (moment - _EPOCH) // _US


def backup_fingerprint(backup: Backup) -> int:
    """A stable 64-bit digest of everything one listed copy of a backup says.

    Two copies have the same fingerprint exactly when they are equal as models (times compared as
    instants), but for a 2**-64 chance; the same in every process (no per-process hash seed), so the
    copy the plan reports of a conflicting backup never depends on the run or the listing order.
    """
    canonical = repr(
        (
            backup.id,
            backup.server.id,
            backup.server.name,
            backup.backup_type,
            backup.status,
            backup.size_mb,
            _instant(backup.created_at),
            _instant(backup.expires_at),
            backup.description,
        )
    )
    return int.from_bytes(hashlib.blake2b(canonical.encode(), digest_size=8).digest(), "big")


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _US


class _Listed:
    """One backup as the plan engine reads it: the attributes of :class:`Backup` it uses."""

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


class CompactListing:
    """Listed backups, one row per copy as listed, in typed arrays. Not thread-safe (one listing)."""

    __slots__ = (
        "_chunks",
        "_created",
        "_fingerprint",
        "_ids",
        "_managed",
        "_pending",
        "_servers",
        "_status",
        "_type",
        "_words",
        "pages",
    )

    def __init__(self) -> None:
        self._ids = array("q")
        self._servers = array("q")
        self._created = array("q")
        self._fingerprint = array("Q")
        self._status = array("H")
        self._type = array("H")
        self._managed = array("b")
        # Status and type strings, each stored once: an unknown status is data, kept as it is.
        self._words: list[str] = []
        # Every copy's JSON, compressed _CHUNK rows at a time: read back only for a backup listed
        # with conflicting data, to report the copy plan_prune reports (the least JSON).
        self._chunks: list[bytes] = []
        self._pending: list[str] = []
        self.pages = 0

    def __len__(self) -> int:
        return len(self._ids)

    def _word(self, text: str) -> int:
        try:
            return self._words.index(text)
        except ValueError:
            if len(self._words) >= 65_535:
                raise ValueError("too many distinct statuses and types in one listing") from None
            self._words.append(text)
            return len(self._words) - 1

    def add(self, backup: Backup) -> None:
        """One listed copy (the same backup may be added again, with the same or other data)."""
        self._ids.append(backup.id)
        self._servers.append(backup.server_id)
        self._created.append(_micros(backup.created_at))
        self._fingerprint.append(backup_fingerprint(backup))
        self._status.append(self._word(backup.status))
        self._type.append(self._word(backup.backup_type))
        self._managed.append(1 if is_managed(backup.description) else 0)
        self._pending.append(backup.model_dump_json())
        if len(self._pending) == _CHUNK:
            self._chunks.append(zlib.compress("\n".join(self._pending).encode(), 1))
            self._pending = []

    def _json(self, row: int) -> str:
        chunk, offset = divmod(row, _CHUNK)
        if chunk < len(self._chunks):
            return zlib.decompress(self._chunks[chunk]).decode().split("\n")[offset]
        return self._pending[offset]

    def extend(self, backups: Iterable[Backup]) -> None:
        for backup in backups:
            self.add(backup)

    def memory_bytes(self) -> int:
        """What the rows take (the arrays' buffers), for the report."""
        columns = (self._ids, self._servers, self._created, self._fingerprint, self._status, self._type, self._managed)
        rows = sum(column.buffer_info()[1] * column.itemsize for column in columns)
        return rows + sum(len(chunk) for chunk in self._chunks) + sum(len(text) for text in self._pending)

    def _materialise(self, row: int) -> Backup:
        listed = _Listed(
            self._ids[row],
            self._servers[row],
            self._words[self._type[row]],
            self._words[self._status[row]],
            _EPOCH + self._created[row] * _US,
            _MANAGED if self._managed[row] else None,
        )
        # The engine reads only these attributes of a Backup; a pydantic model per row would cost
        # a third of the planning time at 300,000 backups.
        return cast(Backup, listed)

    def by_server(self, server_ids: frozenset[int] | None = None) -> Iterator[tuple[int, list[Backup], set[int]]]:
        """Per server, in id order: its backups (one copy each) and the ids listed with conflicting data.

        The copy kept of a conflicting backup is the one plan_prune reports: the least JSON.
        """
        order = sorted(range(len(self._ids)), key=self._ids.__getitem__)
        order.sort(key=self._servers.__getitem__)  # stable: by server, then by id
        start = 0
        while start < len(order):
            server_id = self._servers[order[start]]
            end = start
            while end < len(order) and self._servers[order[end]] == server_id:
                end += 1
            if server_ids is None or server_id in server_ids:
                yield server_id, *self._one_server(order[start:end])
            start = end

    def _one_server(self, rows: list[int]) -> tuple[list[Backup], set[int]]:
        backups: list[Backup] = []
        conflicting: set[int] = set()
        i = 0
        while i < len(rows):
            backup_id = self._ids[rows[i]]
            j = i
            while j < len(rows) and self._ids[rows[j]] == backup_id:
                j += 1
            copies = rows[i:j]
            prints = {self._fingerprint[r] for r in copies}
            if len(prints) > 1:
                conflicting.add(backup_id)
                chosen = min(copies, key=self._json)
            else:
                chosen = copies[0]
            backups.append(self._materialise(chosen))
            i = j
        return backups, conflicting


def reason_kind(reason: str) -> str:
    """A reason without its particulars, for counting: ``"daily 2025-01-14"`` → ``"daily"``,
    ``"hold until …: restore"`` → ``"hold"``, ``"no retention rule keeps it (…)"`` → that sentence."""
    if reason.startswith("deferred (valve)"):
        return "deferred (valve)"
    head = reason.split(" (", 1)[0]
    words = head.split()
    if words and words[0] == "oldest" and len(words) > 1:
        return f"oldest {words[1]}"
    if words and words[0] in ("hourly", "daily", "weekly", "monthly", "yearly", "within"):
        return words[0]
    if head.startswith("hold until"):
        return "hold"
    return head


@dataclass(frozen=True)
class FleetPlan:
    """What :func:`plan_fleet` decided, in memory bounded by ``max_deletions`` (see the module).

    ``to_delete`` (oldest first) and ``deferred_count`` are those of ``plan_prune``; ``deferred``
    names the oldest deferred ones (all of them when decisions are kept); ``by_reason`` counts
    ``(action, reason kind)`` over every decision's first reason (a deferred one's: the valve);
    ``decisions`` is every decision
    in ``plan_prune``'s order when ``keep_decisions`` was asked, else None.
    """

    now: datetime
    scope: Scope
    max_deletions: int
    servers: int
    to_delete: tuple[BackupDecision, ...]
    deferred: tuple[BackupDecision, ...]
    deferred_count: int
    totals: Mapping[Action, int]
    by_reason: Mapping[tuple[Action, str], int]
    decisions: tuple[BackupDecision, ...] | None = None

    @classmethod
    def empty(cls, *, now: datetime, scope: Scope, max_deletions: int) -> FleetPlan:
        """No plan at all (a listing that did not finish is never planned on)."""
        return cls(
            now=now,
            scope=scope,
            max_deletions=max_deletions,
            servers=0,
            to_delete=(),
            deferred=(),
            deferred_count=0,
            totals=dict.fromkeys(ACTIONS, 0),
            by_reason={},
            decisions=(),
        )

    @property
    def valve_tripped(self) -> bool:
        return self.deferred_count > 0

    def reason_counts(self) -> list[dict[str, Any]]:
        """``by_reason`` as JSON-able rows, most frequent first."""
        rows = sorted(self.by_reason.items(), key=lambda item: (-item[1], item[0]))
        return [{"action": action, "reason": reason, "backups": n} for (action, reason), n in rows]


def plan_fleet(
    listing: CompactListing,
    *,
    policy_for: Callable[[int], RetentionPolicy],
    tz: tzinfo,
    now: datetime,
    scope: Scope,
    holds: Mapping[int, Hold],
    failed_grace: timedelta,
    max_deletions: int,
    server_ids: frozenset[int] | None = None,
    keep_at_least: int = 1,
    keep_decisions: bool = False,
) -> FleetPlan:
    """``plan_prune``'s decisions over a compact listing, one server at a time (same arguments)."""
    if max_deletions < 0:
        raise ValueError(f"max_deletions must be >= 0, got {max_deletions}")
    check_keep_at_least(keep_at_least)
    tally = _Tally(max_deletions, keep_decisions)
    for server_id, backups, conflicting in listing.by_server(server_ids):
        tally.servers += 1
        for decision in plan_servers(
            {server_id: backups},
            policy_for=policy_for,
            tz=tz,
            now=now,
            scope=scope,
            holds=holds,
            failed_grace=failed_grace,
            conflicting=conflicting,
            keep_at_least=keep_at_least,
        ):
            tally.add(decision)
    return tally.plan(now=now, scope=scope)


def _kind(decision: BackupDecision) -> str:
    return reason_kind(decision.reasons[0]) if decision.reasons else ""


class _Tally:
    """What plan_fleet keeps while the servers are planned: counts, and the oldest would-be deletions
    as (created_at, id, decision) — every one when decisions are kept, else trimmed back to the
    ``max_deletions + DEFERRED_SAMPLE`` oldest whenever the list doubles."""

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
        """The valve across the fleet, as plan_prune applies it: the oldest deletions go now."""
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
    # Oldest first, equal times by id: the order plan_prune's valve uses.
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
