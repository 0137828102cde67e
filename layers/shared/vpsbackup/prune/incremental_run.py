"""A full prune run with ``PRUNE_SCOPE=managed``: list only the servers whose plan may have changed.

The decisions are :mod:`vpsbackup.prune.incremental` (which servers, why, sweep or not; what a
listing leaves); this module does the effects around :func:`vpsbackup.prune.job.run_prune`:

1. read prune's items from ``StateTable`` (:mod:`vpsbackup.prune.state_store`) and the holds;
2. choose the servers (logged, with the counts by trigger), then list them one by one
   (``?server_id=``, most urgent first, stopping while time is left for the deletions: a server is
   planned only once its own listing is whole), or sweep the fleet;
3. plan and delete exactly as any run (``run_prune``, restricted to the servers listed);
4. write back what each listed server's plan and deletions left (settled or not, until when).

Runs limited to ``server_ids``, ``PRUNE_SCOPE=manual`` and ``PRUNE_VERIFY_EVERY=0`` go straight to
``run_prune`` (a fleet sweep, as before) and write nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from vpsbackup.observability import logger
from vpsbackup.provider.errors import ApiTimeoutError, AuthenticationError, VpsApiError
from vpsbackup.provider.models import BACKUP_MANUAL, Backup
from vpsbackup.prune.buckets import moment
from vpsbackup.prune.compact import CompactListing, deletions_by_server
from vpsbackup.prune.daily_budget import DailyDeletionBudget
from vpsbackup.prune.incremental import (
    IDS_SHOWN,
    ListedBackup,
    RunHistory,
    RunOutcome,
    Selection,
    ServerState,
    StateChanges,
    holds_by_server,
    holds_fingerprint,
    next_states,
    policy_fingerprint,
    select_servers,
    settle_server,
)
from vpsbackup.prune.job import (
    STOP_STARTING_MARGIN_S,
    BackupsApi,
    HoldSource,
    Listing,
    ListingProgress,
    PruneOptions,
    PruneReport,
    list_backups_to_plan,
    run_prune,
)
from vpsbackup.prune.request import PruneRequest
from vpsbackup.records import Hold

_GONE = ("deleted", "already_gone")


class StateStore(Protocol):
    """The part of :class:`~vpsbackup.prune.state_store.PruneStateStore` a run uses."""

    def load(self) -> tuple[dict[int, ServerState], RunHistory]: ...

    def save(
        self,
        put: Sequence[ServerState],
        *,
        forget: Sequence[tuple[int, datetime]] = (),
        history: RunHistory | None = None,
    ) -> None: ...


def is_incremental(request: PruneRequest, options: PruneOptions) -> bool:
    """Whether this run chooses its servers from ``StateTable`` (else: ``run_prune`` as it is)."""
    return options.scope == "managed" and request.server_ids is None and options.verify_every > timedelta(0)


class RememberedHolds:
    """The hold source, remembering the holds in force the plan was made with."""

    def __init__(self, inner: HoldSource) -> None:
        self.inner = inner
        self.seen: Mapping[int, Hold] = {}

    def active_holds(self, now: datetime) -> Mapping[int, Hold]:
        self.seen = self.inner.active_holds(now)
        return self.seen

    def active_hold(self, backup_id: int, now: datetime) -> Hold | None:
        return self.inner.active_hold(backup_id, now)


@dataclasses.dataclass
class ListedServers:
    """What the listing step left for the write-back (a single pass's, or a chunked run's, read back
    from its stored pages): the servers listed whole, those that failed, those left alone."""

    listing: CompactListing = dataclasses.field(default_factory=CompactListing)
    mode: Listing = "per-server"
    servers: list[int] = dataclasses.field(default_factory=list)
    complete: bool = True
    cut_short: str | None = None
    failed: dict[int, str] = dataclasses.field(default_factory=dict)
    # Servers whose listing missed an item that did not validate: not planned, their state not written.
    left_alone: frozenset[int] = frozenset()


def listed_from(
    listing: CompactListing,
    progress: ListingProgress,
    servers: Sequence[int] | None,
    failed: Mapping[int, str],
) -> ListedServers:
    """A chunked run's listing as :func:`list_servers` (or a single pass's sweep) leaves it: the due
    ``servers`` (None: a fleet sweep) less those whose listing ``failed`` or missed an item that
    did not validate."""
    if servers is None:
        left_alone = frozenset(progress.invalid.servers)
        return ListedServers(listing=listing, mode="fleet", complete=progress.complete, left_alone=left_alone)
    failures = dict(failed)
    for server_id in servers:
        if server_id in progress.invalid.servers and server_id not in failures:
            failures[server_id] = "an item of its listing did not validate (invalid_items)"
    whole = [sid for sid in servers if sid not in failures]
    return ListedServers(listing=listing, servers=whole, complete=progress.complete, failed=failures)


def list_servers(
    client: BackupsApi,
    server_ids: Sequence[int],
    *,
    time_left: Callable[[], float | None],
    margin: float,
    reserve_requests: int = 0,
    seconds_per_request: float = 0.0,
) -> tuple[ListedServers, ListingProgress]:
    """Each server's manual backups, in order, while time is left for ``reserve_requests`` more
    requests (the deletions) plus ``margin`` seconds.

    The pace of those requests is the listing's own so far (a provider slower than the budget shows
    there), at least ``seconds_per_request``; the reserve is at most a third of the time there was.
    A server is kept only when its own listing is whole; one that fails (bar a refused token, which
    fails the run), or whose listing has an item that does not validate (counted in
    ``progress.invalid``), is left for the next run, and the others go on.
    """
    listed = ListedServers()
    progress = ListingProgress(servers_requested=len(server_ids))
    started = time.monotonic()
    first = time_left()
    for server_id in server_ids:
        stop_at = margin + _reserve(first, time_left(), progress.pages, reserve_requests, seconds_per_request)
        left = time_left()
        if left is not None and left < stop_at:
            listed.cut_short = f"less than {stop_at:.0f} s left: the rest wait for the next run"
            break
        invalid_before = progress.invalid.count
        try:
            backups: list[Backup] = list(
                client.iter_backups(
                    server_id=server_id,
                    backup_type=BACKUP_MANUAL,
                    every_copy=True,
                    on_page=progress.on_page,
                    on_invalid=progress.invalid.collector(server_id),
                )
            )
        except AuthenticationError:
            raise
        except ApiTimeoutError as exc:
            listed.cut_short = f"out of time listing server {server_id}: {exc}"
            break
        except VpsApiError as exc:
            logger.warning("could not list one server; it waits for the next run", extra={"server_id": server_id})
            listed.failed[server_id] = str(exc)
            continue
        if progress.invalid.count > invalid_before:
            listed.failed[server_id] = "an item of its listing did not validate (invalid_items)"
            continue
        listed.listing.extend(backups)
        listed.servers.append(server_id)
        progress.servers_listed += 1
    progress.seconds = time.monotonic() - started
    return listed, progress


def _reserve(first: float | None, left: float | None, pages: int, requests: int, floor: float) -> float:
    """Seconds kept for ``requests`` more requests at the pace seen so far (at least ``floor`` each)."""
    if first is None or left is None:
        return 0.0
    pace = max(floor, (first - left) / pages) if pages else floor
    return min(requests * pace, first / 3)


def run_incremental_prune(
    request: PruneRequest,
    options: PruneOptions,
    *,
    client: BackupsApi,
    holds: HoldSource,
    store: StateStore,
    now: datetime | None = None,
    time_left: Callable[[], float | None] = lambda: None,
    margin: float = STOP_STARTING_MARGIN_S,
    seconds_per_request: float = 0.0,
    budget: DailyDeletionBudget | None = None,
) -> PruneReport:
    """Choose the servers, list them, plan and delete as ``run_prune`` does, write back their state.

    A per-server listing stops while there is time for ``MAX_DELETIONS_PER_RUN`` requests at the
    listing's pace (at least ``seconds_per_request``: the request budget) plus ``margin``.
    """
    now = now or datetime.now(UTC)
    states, history = store.load()
    selection = choose_servers(request, options, holds=holds, states=states, history=history, now=now)
    listed = ListedServers()
    remembered = RememberedHolds(holds)

    def lister() -> tuple[CompactListing, Listing, ListingProgress, frozenset[int] | None]:
        nonlocal listed
        if selection.mode == "fleet":
            listing, _, progress = list_backups_to_plan(client, None, time_left=time_left, margin=margin)
            left_alone = frozenset(progress.invalid.servers)
            listed = ListedServers(listing=listing, mode="fleet", complete=progress.complete, left_alone=left_alone)
            return listing, "fleet", progress, None
        listed, progress = list_servers(
            client,
            selection.servers,
            time_left=time_left,
            margin=margin,
            reserve_requests=options.max_deletions,
            seconds_per_request=seconds_per_request,
        )
        return listed.listing, "per-server", progress, frozenset(listed.servers)

    report = run_prune(
        request,
        options,
        client=client,
        holds=remembered,
        now=now,
        time_left=time_left,
        margin=margin,
        lister=lister,
        budget=budget,
    )
    return write_back(
        report,
        listed,
        store=store,
        states=states,
        history=history,
        request=request,
        options=options,
        holds=remembered.seen,
        now=now,
        chosen=selection.to_dict(),
    )


def choose_servers(
    request: PruneRequest,
    options: PruneOptions,
    *,
    holds: HoldSource,
    states: Mapping[int, ServerState],
    history: RunHistory,
    now: datetime,
) -> Selection:
    """The servers due now, in listing order, and whether one fleet sweep is cheaper
    (:func:`~vpsbackup.prune.incremental.select_servers` over prune's items and the holds); logged."""
    fingerprints = _Fingerprints(options)
    current = holds_by_server(holds.active_holds(now))
    selection = select_servers(
        states,
        now=now,
        policy_for=fingerprints,
        holds_for=lambda sid: holds_fingerprint(current.get(sid, ()), now),
        verify_every=options.verify_every,
        history=history,
        page_size=options.page_size,
        sweep=request.sweep,
    )
    logger.info(f"prune servers chosen: {selection.why}", extra={"selection": selection.to_dict()})
    return selection


def write_back(
    report: PruneReport,
    listed: ListedServers,
    *,
    store: StateStore,
    states: Mapping[int, ServerState],
    history: RunHistory,
    request: PruneRequest,
    options: PruneOptions,
    holds: Mapping[int, Hold],
    now: datetime,
    chosen: Mapping[str, Any],
    listed_at: datetime | None = None,
) -> PruneReport:
    """Write back what the run left of each listed server (settled or not, until when) and the run
    history; the report with the selection's summary. ``now`` is the plan's, ``listed_at`` when the
    run began (its choice of servers; default ``now``): a backup recorded after it is listed again."""
    started = listed_at or now
    written = write_back_servers(
        report, listed, store=store, states=states, options=options, holds=holds, now=now, listed_at=started
    )
    return write_back_history(
        report, listed, [written], store=store, history=history, request=request, chosen=chosen, listed_at=started
    )


def write_back_servers(
    report: PruneReport,
    listed: ListedServers,
    *,
    store: StateStore,
    states: Mapping[int, ServerState],
    options: PruneOptions,
    holds: Mapping[int, Hold],
    now: datetime,
    listed_at: datetime,
) -> dict[str, Any]:
    """:func:`write_back`'s servers (all of them, or one part's: ``listed`` and ``states`` of that
    part's servers alone), written; what was written, counted (:func:`write_back_history` adds the
    parts up)."""
    changes, unknown_seen = _write_back(
        report, listed, states, now=now, options=options, holds=holds, listed_at=listed_at
    )
    store.save(list(changes.put) + unknown_seen, forget=[(sid, listed_at) for sid in changes.forget])
    settled = [s for s in changes.put if s.settled]
    opened = sorted((s.server_id, s.note) for s in changes.put if not s.settled)
    return {
        "settled": len(settled),
        "open": len(changes.put) - len(settled),
        "forgotten": len(changes.forget),
        "found_by_partial_sweep": len(unknown_seen),
        "open_servers": [[sid, note] for sid, note in opened[:IDS_SHOWN]],
    }


def write_back_history(
    report: PruneReport,
    listed: ListedServers,
    written: Sequence[Mapping[str, Any]],
    *,
    store: StateStore,
    history: RunHistory,
    request: PruneRequest,
    chosen: Mapping[str, Any],
    listed_at: datetime,
) -> PruneReport:
    """The run history after the run, written; the report with the selection's summary (what
    :func:`write_back_servers` wrote, over every part)."""
    history = history.after_run(
        listed_at,
        scheduled=request.trigger != "manual",
        swept=listed.complete if listed.mode == "fleet" else None,
    )
    store.save([], history=history)
    summary = _summary(chosen, listed, written)
    logger.info("prune state written", extra={"selection": summary})
    return dataclasses.replace(report, selection=summary)


class _Fingerprints:
    """Each server's policy fingerprint, computed once per distinct policy."""

    def __init__(self, options: PruneOptions) -> None:
        self.options = options
        self._by_policy: dict[str, str] = {}

    def __call__(self, server_id: int) -> str:
        policy = self.options.policies(server_id)
        key = policy.model_dump_json()
        if key not in self._by_policy:
            self._by_policy[key] = policy_fingerprint(
                policy,
                tz=self.options.tz,
                scope=self.options.scope,
                failed_grace=self.options.failed_grace,
                keep_at_least=self.options.keep_at_least,
            )
        return self._by_policy[key]


def _pending_by_server(
    report: PruneReport, listed: ListedServers, *, options: PruneOptions, holds: Mapping[int, Hold]
) -> tuple[Counter[int], set[int]]:
    """Per server, the planned deletions not done (failed, not started, deferred, a dry run); and the
    backups gone. When the valve deferred deletions the report does not name (a large run keeps
    counts, not every decision), the listed servers' would-be deletions are counted again (the
    rules once more, with no valve and no decision object) to find the servers they belong to."""
    pending: Counter[int] = Counter()
    gone: set[int] = set()
    planned: Counter[int] = Counter()
    for decision in report.plan.to_delete:
        planned[decision.server_id] += 1
        result = report.outcome_of(decision.backup_id)
        if result is not None and result.outcome in _GONE:
            gone.add(decision.backup_id)
        else:
            pending[decision.server_id] += 1
    if report.plan.decisions is None:
        if report.plan.deferred_count > 0:
            for server_id, would in _would_delete(listed, now=report.plan.now, options=options, holds=holds).items():
                pending[server_id] += max(0, would - planned[server_id])
        return pending, gone
    ids = {d.backup_id for d in report.plan.to_delete}
    for decision in report.plan.decisions:
        if decision.action in ("delete", "defer") and decision.backup_id not in ids:
            pending[decision.server_id] += 1
    return pending, gone


def _would_delete(
    listed: ListedServers, *, now: datetime, options: PruneOptions, holds: Mapping[int, Hold]
) -> Counter[int]:
    """The listed servers' would-be deletions before the valve, counted per server."""
    inputs = options.plan_inputs(now=now, holds=holds, max_deletions=len(listed.listing))
    servers = None if listed.mode == "fleet" else frozenset(listed.servers)
    return deletions_by_server(listed.listing, inputs, server_ids=servers)


def listed_by_server(
    listing: CompactListing, server_ids: frozenset[int] | None
) -> tuple[Iterator[tuple[int, list[ListedBackup]]], set[int]]:
    """The listing's servers, each with its backups (one copy each), and the ids listed with
    conflicting data."""
    by_server, conflicting = listing.by_server(server_ids)
    columns = listing.columns()

    def backups(rows: list[int]) -> list[ListedBackup]:
        return [
            ListedBackup(
                id=columns.ids[row],
                backup_type=columns.words[columns.types[row]],
                status=columns.words[columns.status[row]],
                created_at=moment(columns.created[row]),
                managed=bool(columns.managed[row]),
            )
            for row in rows
        ]

    return ((server_id, backups(rows)) for server_id, rows in by_server), conflicting


def _write_back(
    report: PruneReport,
    listed: ListedServers,
    states: Mapping[int, ServerState],
    *,
    now: datetime,
    options: PruneOptions,
    holds: Mapping[int, Hold],
    listed_at: datetime,
) -> tuple[StateChanges, list[ServerState]]:
    """The states to write: every planned server's settlement; after a whole sweep, known servers it
    did not show are settled with nothing; after a sweep cut short, the servers it showed become
    known (to be listed one by one by the next runs)."""
    fingerprints = _Fingerprints(options)
    server_holds = holds_by_server(holds)
    if not report.listing_complete:
        seen, _ = listed_by_server(listed.listing, None)
        unknown = [
            ServerState(server_id=sid, backups=len(backups), note="seen by a fleet sweep cut short")
            for sid, backups in seen
            if sid not in states and any(b.managed for b in backups)
        ]
        return StateChanges(), unknown
    pending, gone = _pending_by_server(report, listed, options=options, holds=holds)
    outcomes: list[RunOutcome] = []
    counts: dict[int, int] = {}
    by_server, conflicting = listed_by_server(
        listed.listing, None if listed.mode == "fleet" else frozenset(listed.servers)
    )
    for server_id, backups in by_server:
        if server_id in listed.left_alone:  # its listing misses an item: nothing known, nothing written
            continue
        counts[server_id] = len(backups)
        settlement = settle_server(
            backups,
            conflicting=conflicting,
            gone=gone,
            pending=pending[server_id],
            holds=server_holds.get(server_id, ()),
            now=now,
            scope=options.scope,
            failed_grace=options.failed_grace,
        )
        outcomes.append(RunOutcome(server_id, settlement))
    empty = [
        sid
        for sid in (states if listed.mode == "fleet" else listed.servers)
        if sid not in counts and sid not in listed.left_alone
    ]
    for server_id in empty:  # listed, and no manual backup at all: nothing to prune there
        outcomes.append(
            RunOutcome(server_id, settle_server([], now=now, scope=options.scope, failed_grace=options.failed_grace))
        )
    changes = next_states(
        outcomes,
        states,
        listed_at=listed_at,
        policy_for=fingerprints,
        holds_for=lambda sid: holds_fingerprint(server_holds.get(sid, ()), now),
        backups_of=lambda sid: counts.get(sid, 0),
    )
    return changes, []


def _summary(chosen: Mapping[str, Any], listed: ListedServers, written: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    summary = dict(chosen)
    if listed.mode == "per-server":
        summary["servers_listed"] = len(listed.servers)
        summary["servers_not_reached"] = int(chosen["selected"]) - len(listed.servers) - len(listed.failed)
    summary["cut_short"] = listed.cut_short
    if listed.failed:
        summary["listing_failed"] = dict(list(listed.failed.items())[:IDS_SHOWN])
        summary["listing_failed_count"] = len(listed.failed)
    summary["written"] = {
        key: sum(int(part[key]) for part in written)
        for key in ("settled", "open", "forgotten", "found_by_partial_sweep")
    }
    # The first open servers by id (each part names its first).
    opened = sorted((int(sid), str(note)) for part in written for sid, note in part["open_servers"])
    summary["open_servers"] = dict(opened[:IDS_SHOWN])
    return summary
