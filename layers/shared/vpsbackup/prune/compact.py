"""The prune plan at fleet scale: a compact listing, and the same decisions in bounded memory.

A fleet of 10,000 servers × 30 backups is 300,000 backups. Kept as API models, with every
decision and its reasons, they do not fit a 256 MB Lambda. So the plan is made here, the only place
it is made (the prune job, the console's dry run and the report all come here):

- :class:`CompactListing` keeps per listed copy only what the plan reads — id, server, time,
  status, type, whether it carries this project's marker — in typed arrays (about 35 bytes a
  copy), plus a 64-bit fingerprint of the whole copy so that a backup listed twice with different
  data is still recognised (and left alone), and the copy's JSON, compressed, to report one copy
  of it whatever the listing order (the copy with the least JSON).
- :func:`plan_fleet` applies plan.py's rules one server at a time (every rule works per server),
  over the rows themselves (prune/compact_rules.py, with restic's walk over integer instants in
  prune/buckets.py: no model, datetime or decision object per backup), then the safety valve
  across the fleet. It keeps every decision only when asked (``keep_decisions``: runs limited to
  ``server_ids``, small fleets and tests); otherwise it keeps the counts by action and by reason,
  the deletions the valve lets through, and the oldest of those it defers, so its memory is
  bounded by ``max_deletions``, not by the fleet.

The one thing not kept is the listed time's UTC offset: times come back in UTC (the API sends UTC).
"""

from __future__ import annotations

import hashlib
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import groupby
from typing import Any

from vpsbackup.markers import is_managed
from vpsbackup.provider.models import Backup
from vpsbackup.prune.buckets import micros, moment
from vpsbackup.prune.compact_rules import Columns, RuleVerdicts, ServerRules
from vpsbackup.prune.plan import ACTIONS, Action, BackupDecision, PlanInputs, Scope, valve_note

# Rows whose JSON is compressed together.
_CHUNK = 1024
# Deferred deletions named in the report (oldest first); the rest are counted.
DEFERRED_SAMPLE = 20


def _instant(time: datetime | None) -> int | None:
    # Microseconds since the epoch: equal for equal instants whatever their UTC offset.
    return None if time is None else micros(time)


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
        "foreign",
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
        # with conflicting data, to report one copy whatever the order (the least JSON).
        self._chunks: list[bytes] = []
        self._pending: list[str] = []
        # A listing of one part of the fleet (:func:`server_part`): the ids it shares with the other
        # parts' rows, each with the least JSON of those copies (a copy naming another server).
        self.foreign: dict[int, str] = {}

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
        status, backup_type = self._word(backup.status), self._word(backup.backup_type)  # may refuse: first
        self._ids.append(backup.id)
        self._servers.append(backup.server_id)
        self._created.append(micros(backup.created_at))
        self._fingerprint.append(backup_fingerprint(backup))
        self._status.append(status)
        self._type.append(backup_type)
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

    def columns(self) -> Columns:
        """The rows' columns, as the plan's rules read them."""
        return Columns(self._ids, self._created, self._status, self._type, self._managed, self._words, self._servers)

    def by_server(self, server_ids: frozenset[int] | None = None) -> tuple[Iterator[tuple[int, list[int]]], set[int]]:
        """The selected servers in id order, each with its rows (one per backup) newest first, equal
        times by id highest first; and the ids listed with conflicting data (left alone by the plan).

        Copies are told apart across the whole listing, whatever server they name: the copy kept of
        a conflicting backup is the least JSON, of a backup listed twice alike the first listed.
        """
        rows, conflicting = self._unique_rows()
        servers = self._servers
        order = list(rows) if server_ids is None else [row for row in rows if servers[row] in server_ids]
        order.sort(key=servers.__getitem__)  # a C-level key: sorting rows by server costs little
        return (self._walk(server_id, rows) for server_id, rows in groupby(order, key=servers.__getitem__)), conflicting

    def _walk(self, server_id: int, rows: Iterable[int]) -> tuple[int, list[int]]:
        walk = list(rows)
        # Two stable sorts (reverse=True keeps equal keys in order): by id, then by time, newest first.
        walk.sort(key=self._ids.__getitem__, reverse=True)
        walk.sort(key=self._created.__getitem__, reverse=True)
        return server_id, walk

    def _unique_rows(self) -> tuple[Iterable[int], set[int]]:
        ids, foreign = self._ids, self.foreign
        if not foreign and len(set(ids)) == len(ids):
            return range(len(ids)), set()
        copies: dict[int, list[int]] = {}
        for row, backup_id in enumerate(ids):
            copies.setdefault(backup_id, []).append(row)
        rows: list[int] = []
        conflicting: set[int] = set()
        for backup_id, listed in copies.items():
            other = foreign.get(backup_id)
            if other is not None or len({self._fingerprint[r] for r in listed}) > 1:
                # Copies naming two servers, or one server with different data: left alone, and
                # reported once, as its least JSON (in another part when a foreign copy is less).
                conflicting.add(backup_id)
                least = min(listed, key=self._json)
                if other is None or self._json(least) < other:
                    rows.append(least)
            else:
                rows.append(listed[0])
        return rows, conflicting

    def decision(self, row: int, action: Action, reasons: tuple[str, ...]) -> BackupDecision:
        """The plan's decision on the backup of ``row``."""
        return BackupDecision(
            backup_id=self._ids[row],
            server_id=self._servers[row],
            created_at=moment(self._created[row]),
            status=self._words[self._status[row]],
            backup_type=self._words[self._type[row]],
            action=action,
            reasons=reasons,
        )


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

    ``to_delete`` is what to delete, oldest first, and ``deferred_count`` how many the valve held
    back; ``deferred`` names the oldest deferred ones (all of them when decisions are kept);
    ``by_reason`` counts ``(action, reason kind)`` over every decision's first reason (a deferred
    one's: the valve); ``decisions`` is every decision (by server id, then newest first) when
    ``keep_decisions`` was asked, else None.
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
    inputs: PlanInputs,
    *,
    server_ids: frozenset[int] | None = None,
    keep_decisions: bool = False,
) -> FleetPlan:
    """The plan: every backup of the listing (of ``server_ids`` only, when given) deleted, kept,
    skipped or deferred, and why, one server at a time (:class:`ServerRules`), then the safety valve
    across the fleet (``keep_decisions``: see the module)."""
    by_server, conflicting = listing.by_server(server_ids)
    rules = ServerRules(listing.columns(), inputs, conflicting)
    tally = _Tally(listing, inputs.max_deletions, keep_decisions)
    for server_id, walk in by_server:
        rules.plan(server_id, walk, tally.verdicts)
        tally.server_done()
    return tally.plan(now=inputs.now, scope=inputs.scope)


def server_part(server_id: int, parts: int) -> int:
    """Which of ``parts`` parts a server's backups are planned in (a run too large for one chunk
    plans its fleet a part at a time): a multiplicative hash, so that ids with a common stride
    (all even, say) still spread over the parts."""
    return (((server_id * 0x9E3779B97F4A7C15) & 0xFFFF_FFFF_FFFF_FFFF) >> 32) % parts if parts > 1 else 0


class PartReader:
    """One part's listing (``part`` of ``parts``, by :func:`server_part`) from every listed copy.

    Each copy is offered once (:meth:`add`); the part keeps its servers' copies, and only the id
    of the others (8 bytes each). A backup listed under servers of two parts is told apart as the
    whole listing tells it apart (conflicting copies, the least JSON kept): when :meth:`shared`
    finds such ids, every copy is offered again (:meth:`add_foreign`) for their foreign copies.
    """

    def __init__(self, part: int, parts: int) -> None:
        self.part, self.parts = part, parts
        self.listing = CompactListing()
        self._others = array("q")

    def add(self, backup: Backup) -> None:
        if server_part(backup.server_id, self.parts) == self.part:
            self.listing.add(backup)
        else:
            self._others.append(backup.id)

    def add_others(self, backup_ids: Iterable[int]) -> None:
        """Ids of copies of other parts' servers (read without their models)."""
        self._others.extend(backup_ids)

    def shared(self) -> set[int]:
        """The part's ids also listed in another part (none: no second pass needed)."""
        if not self._others:
            return set()
        mine = set(self.listing.columns().ids)
        return {backup_id for backup_id in self._others if backup_id in mine}

    def add_foreign(self, backup: Backup, shared: set[int]) -> None:
        if backup.id in shared and server_part(backup.server_id, self.parts) != self.part:
            text, foreign = backup.model_dump_json(), self.listing.foreign
            if backup.id not in foreign or text < foreign[backup.id]:
                foreign[backup.id] = text


def listing_part(copies: Callable[[], Iterable[Backup]], part: int, parts: int) -> CompactListing:
    """One part's listing of the copies ``copies()`` gives (asked again only when a backup is listed
    under servers of two parts)."""
    reader = PartReader(part, parts)
    for backup in copies():
        reader.add(backup)
    shared = reader.shared()
    if shared:
        for backup in copies():
            reader.add_foreign(backup, shared)
    return reader.listing


@dataclass(frozen=True)
class PartialPlan:
    """One part's plan before the fleet-wide valve: its would-be deletions (``would_delete``), the
    oldest ``max_deletions + DEFERRED_SAMPLE`` of them as decisions, oldest first (enough for the
    valve over every part: :func:`merge_plans`), and its counts."""

    servers: int
    deletions: tuple[BackupDecision, ...]
    would_delete: int
    kept: int
    skipped: int
    by_reason: Mapping[tuple[Action, str], int]


def plan_part(listing: CompactListing, inputs: PlanInputs, *, server_ids: frozenset[int] | None = None) -> PartialPlan:
    """:func:`plan_fleet`'s rules over one part's listing (of ``server_ids`` only, when given), the
    valve left to :func:`merge_plans`."""
    by_server, conflicting = listing.by_server(server_ids)
    rules = ServerRules(listing.columns(), inputs, conflicting)
    tally = _Tally(listing, inputs.max_deletions, keep_decisions=False)
    for server_id, walk in by_server:
        rules.plan(server_id, walk, tally.verdicts)
        tally.server_done()
    return tally.partial()


def merge_plans(parts: Iterable[PartialPlan], *, now: datetime, scope: Scope, max_deletions: int) -> FleetPlan:
    """The fleet's plan from its parts' (each server in one part): the valve across them all, the
    oldest deletions go now (the same plan :func:`plan_fleet` makes of the whole listing, without
    its decisions)."""
    parts = list(parts)
    cut = max_deletions
    oldest = sorted((d for part in parts for d in part.deletions), key=lambda d: (d.created_at, d.backup_id))
    note = valve_note(cut)
    to_delete = tuple(oldest[:cut])
    deferred = tuple(replace(d, action="defer", reasons=(*d.reasons, note)) for d in oldest[cut:][:DEFERRED_SAMPLE])
    deferred_count = max(0, sum(part.would_delete for part in parts) - cut)
    by_reason: Counter[tuple[Action, str]] = Counter()
    for part in parts:
        by_reason.update(part.by_reason)
    for decision in to_delete:
        by_reason[("delete", _kind(decision))] += 1
    if deferred_count:
        by_reason[("defer", reason_kind(note))] += deferred_count
    kept, skipped = sum(part.kept for part in parts), sum(part.skipped for part in parts)
    return FleetPlan(
        now=now,
        scope=scope,
        max_deletions=cut,
        servers=sum(part.servers for part in parts),
        to_delete=to_delete,
        deferred=deferred,
        deferred_count=deferred_count,
        totals={"delete": len(to_delete), "keep": kept, "skip": skipped, "defer": deferred_count},
        by_reason=dict(by_reason),
        decisions=None,
    )


def deletions_by_server(
    listing: CompactListing, inputs: PlanInputs, *, server_ids: frozenset[int] | None = None
) -> Counter[int]:
    """Per server, how many of its backups the rules delete before the valve: :func:`plan_fleet`'s
    would-be deletions counted, with no decision object (a fleet's deferred deletions may be many)."""
    by_server, conflicting = listing.by_server(server_ids)
    rules = ServerRules(listing.columns(), inputs, conflicting)
    counts: Counter[int] = Counter()
    for server_id, walk in by_server:
        verdicts = RuleVerdicts(keep_decisions=False)
        rules.plan(server_id, walk, verdicts)
        if verdicts.deleted:
            counts[server_id] = len(verdicts.deleted)
    return counts


class _Tally:
    """What plan_fleet keeps while the servers are planned (an :class:`RuleVerdicts`): counts by first
    reason, and the would-be deletions — every one when decisions are kept, else trimmed back to
    the ``max_deletions + DEFERRED_SAMPLE`` oldest whenever they double (or reach 4,096). Decision
    objects are made only of what is reported."""

    def __init__(self, listing: CompactListing, max_deletions: int, keep_decisions: bool) -> None:
        self.listing = listing
        columns = listing.columns()
        self.created, self.ids = columns.created, columns.ids
        self.max_deletions = max_deletions
        self.window = max_deletions + DEFERRED_SAMPLE
        self.verdicts = RuleVerdicts(keep_decisions)
        self.trimmed = 0
        self.servers = 0

    def server_done(self) -> None:
        self.servers += 1
        verdicts = self.verdicts
        if verdicts.decided is None and len(verdicts.deleted) >= max(2 * self.window + 64, 4096):
            oldest = self._oldest_first()[: self.window]
            self.trimmed += len(verdicts.deleted) - len(oldest)
            verdicts.deleted[:] = [verdicts.deleted[i] for i in oldest]
            verdicts.deleted_reasons[:] = [verdicts.deleted_reasons[i] for i in oldest]

    def _oldest_first(self) -> list[int]:
        # Oldest first, equal times by id: the valve's order (two stable sorts).
        created, ids, deleted = self.created, self.ids, self.verdicts.deleted
        by_id = sorted(range(len(deleted)), key=[ids[row] for row in deleted].__getitem__)
        return sorted(by_id, key=[created[row] for row in deleted].__getitem__)

    def partial(self) -> PartialPlan:
        """What was decided, before the valve (the oldest would-be deletions as decisions)."""
        verdicts, listing = self.verdicts, self.listing
        oldest = self._oldest_first()[: self.window]
        deletions = tuple(listing.decision(verdicts.deleted[i], "delete", verdicts.deleted_reasons[i]) for i in oldest)
        return PartialPlan(
            servers=self.servers,
            deletions=deletions,
            would_delete=self.trimmed + len(verdicts.deleted),
            kept=sum(verdicts.first["keep"].values()),
            skipped=sum(verdicts.first["skip"].values()),
            by_reason=self._first_reasons(),
        )

    def _first_reasons(self) -> Counter[tuple[Action, str]]:
        by_reason: Counter[tuple[Action, str]] = Counter()
        for action, counts in self.verdicts.first.items():
            for first, n in counts.items():
                by_reason[(action, reason_kind(first))] += n
        return by_reason

    def plan(self, *, now: datetime, scope: Scope) -> FleetPlan:
        """The valve across the fleet, the oldest deletions go now."""
        cut = self.max_deletions
        if self.verdicts.decided is None:
            return merge_plans([self.partial()], now=now, scope=scope, max_deletions=cut)
        verdicts, listing = self.verdicts, self.listing
        oldest = [(verdicts.deleted[i], verdicts.deleted_reasons[i]) for i in self._oldest_first()]
        note = valve_note(cut)
        to_delete = tuple(listing.decision(row, "delete", reasons) for row, reasons in oldest[:cut])
        deferred = tuple(listing.decision(row, "defer", (*reasons, note)) for row, reasons in oldest[cut:])
        deferred_count = max(0, len(oldest) - cut)
        by_reason = self._first_reasons()
        for decision in to_delete:
            by_reason[("delete", _kind(decision))] += 1
        if deferred_count:
            by_reason[("defer", reason_kind(note))] += deferred_count
        kept, skipped = (sum(verdicts.first[action].values()) for action in ("keep", "skip"))
        return FleetPlan(
            now=now,
            scope=scope,
            max_deletions=cut,
            servers=self.servers,
            to_delete=to_delete,
            deferred=deferred,
            deferred_count=deferred_count,
            totals={"delete": len(to_delete), "keep": kept, "skip": skipped, "defer": deferred_count},
            by_reason=dict(by_reason),
            decisions=self._decisions(deferred),
        )

    def _decisions(self, deferred: tuple[BackupDecision, ...]) -> tuple[BackupDecision, ...] | None:
        if self.verdicts.decided is None:
            return None
        replaced = {d.backup_id: d for d in deferred}
        ids, listing = self.ids, self.listing
        return tuple(
            replaced.get(ids[row]) or listing.decision(row, action, reasons)
            for row, action, reasons in self.verdicts.decided
        )


def _kind(decision: BackupDecision) -> str:
    return reason_kind(decision.reasons[0]) if decision.reasons else ""
