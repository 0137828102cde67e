"""The prune plan's rules 1-5 (docs/prune.md; their words in prune/plan.py), one server at a time.

:func:`~vpsbackup.prune.compact.plan_fleet` runs :class:`ServerRules` over each server's rows of
the compact listing. A backup is a row of the listing's columns (id, server, time in
microseconds, status, type, marker), a server's walk is its rows newest first:

1-3. triage (:meth:`ServerRules._triage_rows`): skipped, failed (deleted once past the grace), or a
     completed candidate;
4.   retention: restic's walk over the candidates (:func:`~vpsbackup.prune.buckets.walk_policy`);
5.   protections (:meth:`ServerRules._protections`): the newest completed backups, the
     ``KEEP_AT_LEAST`` floor and the holds in force keep a backup whatever 3-4 said.

Reasons are strings made once per run (one per bucket, per hold, per policy) and shared.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from vpsbackup.provider.models import STATUS_COMPLETED, STATUS_FAILED
from vpsbackup.prune.buckets import MICROSECOND, BucketCalendar, CompiledPolicy, MatchCache, micros, walk_policy
from vpsbackup.prune.plan import (
    REASON_CONFLICTING_COPIES,
    REASON_KEEP_AT_LEAST,
    REASON_NEWEST_COMPLETED,
    REASON_NEWEST_COMPLETED_CANDIDATE,
    REASON_NEWEST_NOT_FUTURE,
    Action,
    PlanInputs,
    failed_reasons,
    hold_reason,
    not_retained_reason,
    protected_reasons,
    skip_reason,
)
from vpsbackup.prune.retention import RetentionPolicy, RuleMatch
from vpsbackup.records import Hold

# One backup's decision before the valve: its row, what to do, and why.
Decided = tuple[int, Action, tuple[str, ...]]
# Rules 1-3 for one row: a completed candidate, a failed backup, or skipped (with its reason).
_CANDIDATE, _FAILED, _SKIP = 0, 1, 2
_Triage = tuple[int, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Columns:
    """A compact listing's rows as the rules read them: columns indexed by row, status and type as
    indexes into ``words``, ``managed`` 1 for a backup that carries this project's marker."""

    ids: Sequence[int]
    created: Sequence[int]
    status: Sequence[int]
    types: Sequence[int]
    managed: Sequence[int]
    words: Sequence[str]
    servers: Sequence[int]


class RuleVerdicts:
    """Where the rules put what they decide: every decision (``decided``, when asked for), the
    count of each action's decisions by first reason, and the would-be deletions (their rows, and
    their reasons) — no object per backup but the decisions asked for."""

    __slots__ = ("decided", "deleted", "deleted_reasons", "first")

    def __init__(self, keep_decisions: bool) -> None:
        self.decided: list[Decided] | None = [] if keep_decisions else None
        self.first: dict[Action, dict[str, int]] = {"keep": {}, "skip": {}}
        self.deleted: list[int] = []
        self.deleted_reasons: list[tuple[str, ...]] = []


class ServerRules:
    """Rules 1-5 of one run (its settings compiled once), applied to one server's rows at a time."""

    def __init__(self, columns: Columns, inputs: PlanInputs, conflicting: set[int]) -> None:
        now, keep_at_least = inputs.now, inputs.keep_at_least
        self._columns = columns
        self._policy_for = inputs.policy_for
        self._now = micros(now)
        self._scope = inputs.scope
        self._grace = inputs.failed_grace // timedelta(microseconds=1)
        old, young = failed_reasons(inputs.failed_grace)
        self._failed = ((old,), (young,))
        self._conflicting = conflicting
        self._keep_at_least = keep_at_least
        self._floor = f"{REASON_KEEP_AT_LEAST} {keep_at_least}"
        self._holds = {b: hold_reason(hold) for b, hold in inputs.holds.items() if hold_in_force(hold.until, now)}
        self._calendar = BucketCalendar(inputs.tz)
        self._matches = MatchCache()
        # A policy object (RetentionPolicies hands out the same one to most servers) -> compiled.
        self._policies: dict[int, tuple[RetentionPolicy, CompiledPolicy, tuple[str]]] = {}
        self._triage = self._triage_rows(columns)
        words = columns.words
        self._completed = words.index(STATUS_COMPLETED) if STATUS_COMPLETED in words else -1

    def plan(self, server_id: int, walk: Sequence[int], into: RuleVerdicts) -> None:
        """The server's decisions before the valve, newest first, put ``into`` the outcome
        (``walk``: its rows, one per backup, newest first, equal times by id highest first)."""
        created = self._columns.created
        triage = self._triage
        triaged = [triage[row] for row in walk]
        retained = [pos for pos, (kind, _) in enumerate(triaged) if kind == _CANDIDATE]
        _, compiled, not_retained = self._policy(server_id)
        kept = walk_policy(
            [created[walk[pos]] for pos in retained], compiled, self._calendar, self._matches, now=self._now
        )
        retention = {retained[nr]: matches for nr, matches in kept.items()}
        self._decide(walk, triaged, retention, self._protections(walk, retained), not_retained, into)

    def _decide(
        self,
        walk: Sequence[int],
        triaged: list[_Triage],
        retention: dict[int, list[RuleMatch]],
        protect: dict[int, list[str]],
        not_retained: tuple[str],
        into: RuleVerdicts,
    ) -> None:
        """Each backup's action and reasons (rules 3-5 over what triage and retention found), recorded."""
        created = self._columns.created
        now, grace, (failed_old, failed_young) = self._now, self._grace, self._failed
        decided, deleted, deleted_reasons = into.decided, into.deleted, into.deleted_reasons
        keep_counts, skip_counts = into.first["keep"], into.first["skip"]
        for pos, row in enumerate(walk):
            kind, reasons = triaged[pos]
            action: Action = "skip"
            if kind == _CANDIDATE:
                matches = retention.get(pos)
                action, reasons = ("keep", tuple([m.text for m in matches])) if matches else ("delete", not_retained)
            elif kind == _FAILED:
                action, reasons = (
                    ("delete", failed_old) if past_grace(now - created[row], grace) else ("keep", failed_young)
                )
            if kind != _SKIP and pos in protect:
                action, reasons = "keep", protected_reasons(protect[pos], reasons)
            if decided is not None:
                decided.append((row, action, reasons))
            if action == "delete":
                deleted.append(row)
                deleted_reasons.append(reasons)
            else:
                counts = keep_counts if action == "keep" else skip_counts
                first = reasons[0] if reasons else ""
                counts[first] = counts.get(first, 0) + 1

    def _policy(self, server_id: int) -> tuple[RetentionPolicy, CompiledPolicy, tuple[str]]:
        policy = self._policy_for(server_id)
        compiled = self._policies.get(id(policy))
        if compiled is None:
            # The policy is kept with its id, so the id cannot be reused by another object meanwhile.
            compiled = self._policies[id(policy)] = (policy, CompiledPolicy.of(policy), (not_retained_reason(policy),))
        return compiled

    def _triage_rows(self, columns: Columns) -> list[_Triage]:
        """Rules 1-3 for every row (plan.py's skip_reason), worked out once per (type, status, marker)."""
        words = columns.words
        known: dict[tuple[int, int, int], _Triage] = {}
        # The rows are zipped twice rather than kept as a list of tuples: 20 MB at 300,000 backups.
        for backup_type, status, managed in set(zip(columns.types, columns.status, columns.managed, strict=True)):
            in_scope = self._scope == "manual" or bool(managed)
            reason = skip_reason(words[backup_type], words[status], in_scope=in_scope)
            if reason is not None:
                known[(backup_type, status, managed)] = (_SKIP, (reason,))
            else:
                known[(backup_type, status, managed)] = (_FAILED if words[status] == STATUS_FAILED else _CANDIDATE, ())
        triage = [known[row] for row in zip(columns.types, columns.status, columns.managed, strict=True)]
        if self._conflicting:
            for row, backup_id in enumerate(columns.ids):
                if backup_id in self._conflicting:
                    triage[row] = (_SKIP, (REASON_CONFLICTING_COPIES,))
        return triage

    def _protections(self, walk: Sequence[int], retained: list[int]) -> dict[int, list[str]]:
        """Rule 5, by position in ``walk``: the newest backups, the ``keep_at_least`` floor, and the
        holds in force, their notes in that order."""
        protect = self._newest(walk, retained)
        for pos in retained[1 : self._keep_at_least]:
            protect.setdefault(pos, []).append(self._floor)
        if self._holds:
            ids, holds = self._columns.ids, self._holds
            for pos, row in enumerate(walk):
                reason = holds.get(ids[row])
                if reason is not None:
                    protect.setdefault(pos, []).append(reason)
        return protect

    def _newest(self, walk: Sequence[int], retained: list[int]) -> dict[int, list[str]]:
        """The newest completed backup (any type, any scope), the newest completed candidate, and
        the newest of each dated before now when the newest is dated after it."""
        status, completed_word = self._columns.status, self._completed
        completed = [pos for pos, row in enumerate(walk) if status[row] == completed_word]
        if self._conflicting:
            ids = self._columns.ids
            completed = [pos for pos in completed if ids[walk[pos]] not in self._conflicting]
        protect: dict[int, list[str]] = {}
        newest = completed[0] if completed else None
        if newest is not None:
            protect[newest] = [REASON_NEWEST_COMPLETED]
        if retained and retained[0] != newest:
            protect.setdefault(retained[0], []).append(REASON_NEWEST_COMPLETED_CANDIDATE)
        for pool in (completed, retained):
            past = self._newest_not_future(walk, pool)
            if past is not None:
                notes = protect.setdefault(past, [])
                if REASON_NEWEST_NOT_FUTURE not in notes:
                    notes.append(REASON_NEWEST_NOT_FUTURE)
        return protect

    def _newest_not_future(self, walk: Sequence[int], pool: list[int]) -> int | None:
        """When the newest of ``pool`` (positions, newest first) is dated after now: the newest dated before it."""
        created = self._columns.created
        if pool and dated_in_future(created[walk[pool[0]]], self._now):
            return next((pos for pos in pool if not dated_in_future(created[walk[pos]], self._now)), None)
        return None


# -- the rules that read "now" ---------------------------------------------------------------------
# Every other rule decides on the backups alone. Three read the clock, each through one comparison
# below, and each names the first instant from which it decides otherwise: ServerRules asks the
# comparisons, and :func:`time_changes` gives those instants to prune/incremental.py, which leaves a
# settled server unlisted until the earliest.


def past_grace(age: int, grace: int) -> bool:
    """Rule 3: a failed backup ``age`` old (microseconds) is past its grace: deleted, else kept."""
    return age > grace


def hold_in_force(until: datetime, now: datetime) -> bool:
    """Rule 5: a hold keeps its backup while its ``until`` is after now."""
    return until > now


def dated_in_future(created: int, now: int) -> bool:
    """Rule 5: a backup dated after now (microseconds) is the newest only on paper: the newest dated
    before it is kept too. (Rule 4's ``keep_within`` counts back from the newest backup dated strictly
    before now: prune/buckets.py's window.)"""
    return created > now


class _Dated(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


def time_changes(
    candidates: Iterable[_Dated],
    remaining: Iterable[_Dated],
    holds: Iterable[Hold],
    *,
    now: datetime,
    failed_grace: timedelta,
) -> list[tuple[datetime, str]]:
    """The instants from which "now" may change a server's plan, each with why: a failed candidate
    leaving its grace (:func:`past_grace`), a completed backup dated after now reaching its date
    (:func:`dated_in_future`; ``keep_within``'s window a microsecond later, so a backup dated
    exactly now still counts), a hold in force ending (:func:`hold_in_force`)."""
    instants: list[tuple[datetime, str]] = []
    for backup in candidates:
        if backup.status == STATUS_FAILED:
            ends = backup.created_at + failed_grace + MICROSECOND
            instants.append((ends, f"failed backup {backup.id} leaves its grace"))
    for backup in remaining:
        if backup.status == STATUS_COMPLETED and backup.created_at >= now:
            moment = backup.created_at if backup.created_at > now else backup.created_at + MICROSECOND
            instants.append((moment, f"backup {backup.id} is dated in the future"))
    for hold in holds:
        if hold_in_force(hold.until, now):
            instants.append((hold.until, f"the hold on backup {hold.backup_id} ends"))
    return instants
