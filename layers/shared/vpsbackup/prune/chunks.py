"""A prune run in chunks: one invocation of the prune function a chunk, driven by the state
machine ``statemachines/prune.asl.json`` (docs/prune.md, "Runs in chunks").

The phases, each worked in as many chunks as it needs, each chunk well inside the invocation:

- **start**: take the run lock (one run at a time: a start while a run holds it does nothing and
  says so), record the request. A run the incremental choice covers (``PRUNE_SCOPE=managed``, no
  ``server_ids``: :func:`~vpsbackup.prune.incremental_run.is_incremental`) chooses its servers here,
  once (:func:`~vpsbackup.prune.incremental_run.choose_servers`, the single pass's rules), and
  stores them (the servers due, in listing order; or one fleet sweep) for the chunks that follow;
- **list**: up to ``PRUNE_CHUNK_PAGES`` pages of the listing, each stored as it is read; the cursor
  keeps the link to read next and the due (or requested) server reached. A walk that cannot be
  followed (``ListingIncompleteError``) ends the listing: nothing is planned, the report says why;
  in an incremental run, one server's walk that fails (bar a refused token, time, a wait) leaves that
  server for the next run and the others go on, as a single pass does. A 429 whose ``Retry-After``
  is longer than the client waits ends the chunk and the state machine waits that long;
- **plan**: once every page is stored, the plan over all of them (the rules of a single pass,
  :func:`~vpsbackup.prune.job.plan_listing`), stored before any deletion;
- **delete**: up to ``PRUNE_CHUNK_DELETIONS`` of the plan's deletions, in its order; each one marked
  ``started`` before its DELETE, its outcome stored after (a retry never re-sends one whose outcome
  is known; a 404 on one only started is the earlier attempt's deletion);
- **report**: an incremental run writes back what it left of each server it planned and the run
  history (:func:`~vpsbackup.prune.incremental_run.write_back`); then the run's one report and, when
  it needs people, one notification (as a single pass: :func:`~vpsbackup.prune.job.publish_report`),
  the journal, the lock freed.

A chunk killed anywhere (timeout, memory, a crash) is retried by the state machine with the same
cursor: what it redoes writes the same items again, and nothing is planned before the listing is
complete.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from vpsbackup.aws.notifications import Notifier
from vpsbackup.aws.state import StateTable
from vpsbackup.observability import count, logger
from vpsbackup.provider.errors import (
    ApiTimeoutError,
    AuthenticationError,
    ListingIncompleteError,
    RateLimitedError,
    VpsApiError,
)
from vpsbackup.provider.models import BACKUP_MANUAL, BackupPage, InvalidItem
from vpsbackup.provider.ratelimit import MAX_PROVIDER_WAIT_S
from vpsbackup.prune.compact import CompactListing, FleetPlan, PartReader, merge_plans, plan_part, server_part
from vpsbackup.prune.cursor import (
    ChunkEvent,
    Cursor,
    advance,
    partial_from_dict,
    partial_to_dict,
    plan_from_dict,
    plan_to_dict,
    run_id,
)
from vpsbackup.prune.daily_budget import BudgetReport, DailyDeletionBudget
from vpsbackup.prune.incremental_run import (
    RememberedHolds,
    choose_servers,
    is_incremental,
    listed_from,
    write_back_history,
    write_back_servers,
)
from vpsbackup.prune.job import (
    RATE_LIMITED_WAIT_S,
    STOP_STARTING_MARGIN_S,
    BackupsApi,
    DeletionResult,
    InvalidItems,
    Listing,
    ListingProgress,
    PruneOptions,
    PruneReport,
    delete_within_budget,
    execute_deletions,
    plan_listing,
    publish_report,
    without_servers_left_alone,
)
from vpsbackup.prune.plan import BackupDecision
from vpsbackup.prune.request import PruneRequest, parse_prune_request
from vpsbackup.prune.run_store import PruneRunStore, StoredOutcome, StoredPage
from vpsbackup.prune.state_store import PruneStateStore
from vpsbackup.records import Hold

# How long the lock outlives a chunk's last sign of life: longer than one invocation (15 min) and
# the state machine's retries of a killed chunk; a run stopped or failed and not redriven within it
# no longer blocks the next start.
LOCK_LEASE = timedelta(minutes=45)
# The listing stops reading pages with less than this left of the invocation (the page in flight,
# storing it, returning).
LIST_MARGIN_S = STOP_STARTING_MARGIN_S + 10.0
# One per chunk; and 1 from each chunk of a run not yet done (the dashboard's runs in progress).
CHUNKS_METRIC = "PruneChunks"
RUNS_IN_PROGRESS_METRIC = "PruneRunInProgress"
# Chunks in a row that read no page, or deleted nothing, and were told to wait (the provider
# refusing every request, or the request budget holding them back): then the run ends and reports
# what it did not do, rather than holding the lock for ever.
MAX_STALLED_CHUNKS = 5
# What a run that gave up on its deletions says of each one it did not make.
GIVEN_UP = (
    "not sent: the run gave up after {n} delete chunks in a row were refused or held back; the next run plans it again"
)
# The walk of a run limited to server_ids: the link of its first page, stored with each first page.
_FIRST = "first"


class PagesApi(BackupsApi, Protocol):
    """The part of the client a chunked listing reads pages with."""

    def iter_backup_pages(
        self,
        *,
        start: str | None = None,
        server_id: int | None = None,
        backup_type: str | None = None,
        on_invalid: Callable[[InvalidItem], None] | None = None,
    ) -> Iterator[BackupPage]: ...


@dataclass
class ChunkContext:
    """What a chunk works with: the client, the table, the run's items, the settings, the effects."""

    client: PagesApi
    state: StateTable
    store: PruneRunStore
    options: PruneOptions
    notifier: Notifier
    chunk_pages: int
    chunk_deletions: int
    # Chunks an execution runs before it goes on as a new one (PRUNE_CHUNKS_PER_EXECUTION).
    chunks_per_execution: int = 1000
    time_left: Callable[[], float | None] = lambda: None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # The run's end (journal, report): given by the handler, which owns the journal's wiring.
    journal: Callable[[PruneReport, str, datetime], None] = lambda report, run, at: None
    # Called once the run has completed and reported (PRUNE_HEARTBEAT_URL).
    heartbeat: Callable[[], None] = lambda: None
    # MAX_DELETIONS_PER_DAY, across every run (None: no daily budget).
    budget: DailyDeletionBudget | None = None
    # A listing of more backups is planned and written back in parts (PLAN_PART_BACKUPS).
    part_backups: int = field(default_factory=lambda: PLAN_PART_BACKUPS)

    def time_short(self, margin: float) -> bool:
        left = self.time_left()
        return left is not None and left < margin


def run_chunk(event: ChunkEvent, ctx: ChunkContext) -> dict[str, Any]:
    """One chunk: the cursor to hand the next one (``done``: the run is over)."""
    if event.step == "start":
        cursor = _start(event, ctx)
    else:
        if event.cursor is None:
            raise ValueError("prune_chunk.cursor: required for step next")
        cursor = _next(event.cursor, event.execution, ctx)
    if not cursor.done and cursor.execution_chunks >= ctx.chunks_per_execution:
        cursor = cursor.model_copy(update={"continue_as_new": True})
    count(CHUNKS_METRIC)
    count(RUNS_IN_PROGRESS_METRIC, int(not cursor.done))
    logger.info("prune chunk done", extra={"cursor": cursor.model_dump()})
    return cursor.model_dump()


def _start(event: ChunkEvent, ctx: ChunkContext) -> Cursor:
    request = parse_prune_request(event.request)  # a bad payload fails here, naming the field
    run = run_id(event.execution)
    now = ctx.now()
    holder = ctx.store.take_lock(run, event.execution, now, now + LOCK_LEASE)
    if holder is not None:
        note = (
            f"a prune run is in progress (run {holder.run}, execution {holder.execution}, since "
            f"{holder.since.isoformat()}): this start does nothing"
        )
        logger.warning(note, extra={"request": event.request})
        return Cursor(run=run, phase="done", execution=event.execution, done=True, note=note)
    ctx.store.put_meta(run, now, event.request or {})
    incremental = is_incremental(request, ctx.options)
    if incremental:
        states, history = PruneStateStore(ctx.state).load()
        selection = choose_servers(request, ctx.options, holds=ctx.state, states=states, history=history, now=now)
        servers = None if selection.mode == "fleet" else list(selection.servers)
        ctx.store.put_selection(run, {"servers": servers, "chosen": selection.to_dict()}, now)
    logger.info("prune run started", extra={"run": run, "incremental": incremental, "request": event.request})
    return advance(Cursor(run=run, phase="list", incremental=incremental), execution=event.execution)


@dataclass(frozen=True)
class _Walked:
    """The servers a run walks one by one (None: the fleet's walk), and an incremental run's choice."""

    servers: Sequence[int] | None
    chosen: dict[str, Any] | None = None


def _walked(cursor: Cursor, request: PruneRequest, ctx: ChunkContext) -> _Walked:
    if not cursor.incremental:
        return _Walked(request.server_ids)
    stored = ctx.store.selection(cursor.run)
    if stored is None:
        raise RuntimeError(f"prune run {cursor.run}: its choice of servers is not stored")
    servers = stored["servers"]
    return _Walked(None if servers is None else [int(sid) for sid in servers], stored["chosen"])


def _next(cursor: Cursor, execution: str, ctx: ChunkContext) -> Cursor:
    if cursor.done:
        return cursor
    now = ctx.now()
    if not ctx.store.renew_lock(cursor.run, execution, now, now + LOCK_LEASE):
        note = "another prune run holds the lock (this run's lease ran out): this run stops, nothing more deleted"
        logger.warning(note, extra={"run": cursor.run})
        return advance(cursor, execution=execution, phase="done", done=True, note=note)
    meta = ctx.store.meta(cursor.run)
    if meta is None:
        raise RuntimeError(f"prune run {cursor.run}: its items are gone (older than their expiry?)")
    _, raw_request = meta
    request = parse_prune_request(raw_request)
    step = _PHASES[cursor.phase]
    following = step(cursor, request, execution, ctx)
    if not following.done:
        later = ctx.now()
        ctx.store.renew_lock(
            cursor.run, execution, later, later + timedelta(seconds=following.wait_seconds) + LOCK_LEASE
        )
    return following


# -- list -----------------------------------------------------------------------------------------


@dataclass
class _Walk:
    """How far this chunk's listing got: pages stored, the link to read next, the server reached."""

    pages: int
    link: str | None
    server_index: int
    rows: int = 0
    read: int = 0


FailedServer = Callable[[int, int, VpsApiError], None]


def _read_pages(
    walk: _Walk, cursor: Cursor, servers: Sequence[int] | None, ctx: ChunkContext, on_failed: FailedServer | None
) -> bool:
    """Read and store pages until the chunk's share is read (False) or the listing ends (True).
    ``on_failed``: one server's walk failed (its index, its id, the error), the others go on."""
    while servers is None or walk.server_index < len(servers):
        server = None if servers is None else servers[walk.server_index]
        try:
            if not _read_walk(walk, cursor, server, ctx):
                return False
        except VpsApiError as exc:
            if on_failed is None or server is None or not _fails_one_server(exc):
                raise
            logger.warning("could not list one server; it waits for the next run", extra={"server_id": server})
            on_failed(walk.server_index, server, exc)
        walk.link = None
        if servers is None:
            return True
        walk.server_index += 1
        if walk.server_index < len(servers) and _chunk_full(walk, ctx):
            return False
    return True


def _read_walk(walk: _Walk, cursor: Cursor, server: int | None, ctx: ChunkContext) -> bool:
    """One walk's pages (``server``'s, or the fleet's), from the cursor's link, until the chunk's
    share is read (False) or the walk ends (True)."""
    pages = ctx.client.iter_backup_pages(
        start=walk.link, server_id=server, backup_type=BACKUP_MANUAL, on_invalid=InvalidItems().collector(server)
    )
    for page in pages:
        walk.pages += 1
        walk.read += 1
        walk.rows += len(page.results)
        ctx.store.put_page(cursor.run, walk.pages, walk.link or _FIRST, page, ctx.now(), walk_server=server)
        walk.link = page.next
        if walk.link is not None and _chunk_full(walk, ctx):
            return False
    return True


def _fails_one_server(exc: VpsApiError) -> bool:
    """An error that leaves one server of an incremental run for the next run (a single pass's
    rule): not a refused token (it fails the run), not a request never sent nor a wait (the next
    chunk goes on)."""
    return not isinstance(exc, AuthenticationError) and _pause(exc) is None


def _pause(exc: VpsApiError) -> float | None:
    """How long the listing pauses for this error before the next chunk goes on from the last page
    stored: a request whose retries the deadline cut short, or whose turn in the request budget came
    after it, for that turn's wait (0: at once); a 429 (or an answer with a Retry-After) the client
    would not wait for, for the Retry-After (a minute when a 429 names none). None: not a pause (a
    page that timed out on every attempt ends the walk like any other failure)."""
    if isinstance(exc, ApiTimeoutError):
        return None if exc.exhausted else (exc.wait or 0.0)
    wait: float | None = getattr(exc, "retry_after", None)
    if wait is None and isinstance(exc, RateLimitedError):
        return RATE_LIMITED_WAIT_S
    return None if wait is None else max(wait, 1.0)  # a refusal waits a second at least: it counts


def _wait_seconds(wait: float) -> int:
    """The state machine's wait before the next chunk: the provider's, at most an hour (as the
    client holds it: a longer one is not believed)."""
    return math.ceil(min(wait, MAX_PROVIDER_WAIT_S))


def _paused(cursor: Cursor, walk: _Walk, wait: float) -> tuple[bool, int]:
    # Out of this invocation's time, or told to wait longer than the client waits: the next chunk
    # goes on from the last page stored (after the provider's Retry-After).
    logger.info("prune listing paused", extra={"run": cursor.run, "pages": walk.pages, "retry_after": wait})
    return False, _wait_seconds(wait)


def _chunk_full(walk: _Walk, ctx: ChunkContext) -> bool:
    return walk.read >= ctx.chunk_pages or ctx.time_short(LIST_MARGIN_S)


def _list(cursor: Cursor, request: PruneRequest, execution: str, ctx: ChunkContext) -> Cursor:
    walk = _Walk(cursor.pages, cursor.next, cursor.server_index, cursor.rows)
    walked = _walked(cursor, request, ctx)
    on_failed: FailedServer | None = None
    if cursor.incremental and walked.servers is not None:
        ctx.store.forget_failed(cursor.run, cursor.server_index)  # an attempt cut short wrote them

        def on_failed(index: int, server: int, exc: VpsApiError) -> None:
            ctx.store.put_failed(cursor.run, index, server, str(exc), ctx.now())

    try:
        finished = _read_pages(walk, cursor, walked.servers, ctx, on_failed)
    except VpsApiError as exc:
        wait = _pause(exc)
        if wait is None and not isinstance(exc, (ListingIncompleteError, ApiTimeoutError)):
            raise
        if wait is None:  # a walk that cannot be followed, or a page that timed out on every attempt
            logger.warning("prune listing incomplete: nothing will be planned or deleted", extra={"run": cursor.run})
            pages, link = walk.pages, walk.link
            return advance(
                cursor, execution=execution, phase="report", pages=pages, next=link, rows=walk.rows, stopped=str(exc)
            )
        finished, wait_seconds = _paused(cursor, walk, wait)
    else:
        wait_seconds = 0
    stalled = 0 if walk.read or not wait_seconds else cursor.stalled + 1
    if stalled >= MAX_STALLED_CHUNKS:
        why = f"the listing was refused or held back {stalled} chunks in a row (each after its wait)"
        logger.warning(f"prune listing given up: {why}; nothing will be planned or deleted", extra={"run": cursor.run})
        return advance(
            cursor, execution=execution, phase="report", pages=walk.pages, next=walk.link, rows=walk.rows, stopped=why
        )
    return advance(
        cursor,
        execution=execution,
        phase="plan" if finished else "list",
        pages=walk.pages,
        next=walk.link,
        server_index=walk.server_index,
        rows=walk.rows,
        wait_seconds=wait_seconds,
        stalled=stalled,
    )


# -- plan -----------------------------------------------------------------------------------------


@dataclass
class _Listed:
    listing: CompactListing
    progress: ListingProgress
    problem: str | None


# A listing of more backups than this is planned, and its servers' state written back, a part of
# its servers at a time (each chunk keeps one part's backups: about 200 bytes each, all told).
PLAN_PART_BACKUPS = 300_000

StoredPages = Callable[[Callable[[int], bool] | None], Iterable[StoredPage]]


def read_listing(
    pages: StoredPages, expected_pages: int, servers: Sequence[int] | None, part: int = 0, parts: int = 1
) -> _Listed:
    """The run's stored pages as one listing (of part ``part`` of ``parts`` of its servers:
    :func:`~vpsbackup.prune.compact.server_part`), with the whole listing's progress; ``problem``
    when they are not the whole walk (a page missing, a link read twice): then nothing may be
    planned on them.

    The pages are read one at a time, in their order, and none is kept: only the listing's compact
    rows are (a sweep of millions of backups is tens of thousands of pages)."""
    reader = PartReader(part, parts)
    keep = None if parts <= 1 else (lambda server_id: server_part(server_id, parts) == part)
    progress = ListingProgress(servers_requested=None if servers is None else len(servers))
    walk = _WalkCheck()
    for item in pages(keep):
        if item.n > expected_pages:
            continue  # written by an attempt cut short, then read again under another number
        walk.saw(item)
        page = item.page
        for invalid in page.invalid:
            progress.invalid.add(invalid, servers=(item.walk_server, invalid.server_id))
        progress.on_page(page, None if keep is None else item.listed)
        if item.url == _FIRST and servers is not None:
            progress.servers_listed += 1
        for backup in page.results:
            reader.add(backup)
        reader.add_others(item.others)
    shared = reader.shared()
    if shared:  # a backup listed under servers of two parts: its other copies, read again
        for item in pages(None):
            if item.n <= expected_pages:
                for backup in item.page.results:
                    reader.add_foreign(backup, shared)
    return _Listed(reader.listing, progress, walk.problem(expected_pages))


class _WalkCheck:
    """Whether the stored pages are the whole walk: each the next number, no link read twice."""

    def __init__(self) -> None:
        self.numbered = 0  # pages of the walk read, while each is the next number
        self.in_order = True
        self.links: set[tuple[int | None, str]] = set()
        self.looped = False

    def saw(self, item: StoredPage) -> None:
        self.numbered += 1
        self.in_order = self.in_order and item.n == self.numbered
        link = (item.walk_server, item.url)
        self.looped = self.looped or link in self.links
        self.links.add(link)

    def problem(self, expected_pages: int) -> str | None:
        if self.looped:
            return "the listing read a next link twice (pagination loops)"
        if not self.in_order or self.numbered != expected_pages:
            return f"the run's stored listing has {self.numbered} of its {expected_pages} pages"
        return None


def _stored_pages(cursor: Cursor, ctx: ChunkContext) -> StoredPages:
    return lambda keep: ctx.store.pages(cursor.run, keep)


def _parts(cursor: Cursor, request: PruneRequest, ctx: ChunkContext) -> int:
    """In how many parts the run's listing is planned and written back (1: whole). A run limited
    to server_ids keeps every decision: it is planned whole."""
    if cursor.parts:
        return cursor.parts
    if request.server_ids is not None:
        return 1
    return max(1, math.ceil(cursor.rows / ctx.part_backups))


def _plan(cursor: Cursor, request: PruneRequest, execution: str, ctx: ChunkContext) -> Cursor:
    parts = _parts(cursor, request, ctx)
    if parts > 1:
        return _plan_part(cursor, request, execution, ctx, parts)
    servers = _walked(cursor, request, ctx).servers
    listed = read_listing(_stored_pages(cursor, ctx), cursor.pages, servers)
    if listed.problem is not None:
        return _not_planned(cursor, execution, listed.problem)
    now = ctx.now()
    planned = None if servers is None else frozenset(servers) - _failed(cursor, ctx).keys()
    timings: dict[str, float] = {}
    holds = RememberedHolds(ctx.state)
    plan = plan_listing(
        listed.listing, listed.progress, planned, request, ctx.options, holds=holds, now=now, timings=timings
    )
    return _planned(cursor, request, execution, ctx, plan, listed.progress, holds.seen)


def _not_planned(cursor: Cursor, execution: str, problem: str) -> Cursor:
    logger.warning(f"prune listing incomplete: {problem}", extra={"run": cursor.run})
    return advance(cursor, execution=execution, phase="report", stopped=problem, part=0)


def _planned(
    cursor: Cursor,
    request: PruneRequest,
    execution: str,
    ctx: ChunkContext,
    plan: FleetPlan,
    progress: ListingProgress,
    holds: Mapping[int, Hold],
) -> Cursor:
    """The plan stored (with the listing's progress, and an incremental run's holds); the next phase."""
    now = ctx.now()
    if cursor.incremental:  # the write-back settles each server on the holds its plan saw
        ctx.store.put_holds(cursor.run, [hold.model_dump(mode="json") for hold in holds.values()], now)
    ctx.store.put_progress(cursor.run, progress.to_stored(), now)
    ctx.store.put_plan(cursor.run, plan_to_dict(plan), now)
    dry_run = ctx.options.dry_run or request.dry_run
    following = "report" if dry_run or not plan.to_delete else "delete"
    return advance(cursor, execution=execution, phase=following, deleted=0, part=0)


def _plan_part(cursor: Cursor, request: PruneRequest, execution: str, ctx: ChunkContext, parts: int) -> Cursor:
    """One part of a large listing planned (its servers' backups, read from every stored page), its
    would-be deletions stored; after the last, the parts merged under the valve: the plan."""
    servers = _walked(cursor, request, ctx).servers
    listed = read_listing(_stored_pages(cursor, ctx), cursor.pages, servers, cursor.part, parts)
    if listed.problem is not None:
        return _not_planned(cursor, execution, listed.problem)
    now, holds = _plan_base(cursor, ctx)
    planned = None if servers is None else frozenset(servers) - _failed(cursor, ctx).keys()
    planned = without_servers_left_alone(listed.listing, planned, listed.progress.invalid)
    partial = plan_part(listed.listing, ctx.options.plan_inputs(now=now, holds=holds), server_ids=planned)
    logger.info(
        f"prune plan: part {cursor.part + 1} of {parts} made",
        extra={"run": cursor.run, "listed": len(listed.listing), "servers": partial.servers},
    )
    ctx.store.put_part(cursor.run, "plan", cursor.part, partial_to_dict(partial), ctx.now())
    if cursor.part + 1 < parts:
        return advance(cursor, execution=execution, phase="plan", part=cursor.part + 1, parts=parts)
    stored = [ctx.store.part(cursor.run, "plan", n) for n in range(parts)]
    if any(part is None for part in stored):
        raise RuntimeError(f"prune run {cursor.run}: a part of its plan is not stored")
    plan = merge_plans(
        [partial_from_dict(part) for part in stored],
        now=now,
        scope=ctx.options.scope,
        max_deletions=ctx.options.max_deletions,
    )
    logger.info("prune plan made", extra={"run": cursor.run, "parts": parts, "totals": dict(plan.totals)})
    return _planned(cursor, request, execution, ctx, plan, listed.progress, holds)


def _plan_base(cursor: Cursor, ctx: ChunkContext) -> tuple[datetime, Mapping[int, Hold]]:
    """The instant and the holds in force every part of a plan is made with: read by its first
    part, stored for the others."""
    if cursor.part == 0:
        now = ctx.now()
        holds = ctx.state.active_holds(now)
        base = {"now": now.isoformat(), "holds": [hold.model_dump(mode="json") for hold in holds.values()]}
        ctx.store.put_part(cursor.run, "plan", -1, base, now)
        return now, holds
    stored = ctx.store.part(cursor.run, "plan", -1)
    if stored is None:
        raise RuntimeError(f"prune run {cursor.run}: its plan's instant is not stored")
    held = (Hold.model_validate(hold) for hold in stored["holds"])
    return datetime.fromisoformat(str(stored["now"])), {hold.backup_id: hold for hold in held}


# -- delete ---------------------------------------------------------------------------------------


class _MarkingClient:
    """The client, marking each backup ``started`` in the run's items before its DELETE is sent, and
    removing the mark of one never sent after all (its turn in the request budget came too late),
    before its daily-budget slot is given back: the next chunk sends it as a new deletion, under a
    new slot. A backup already in doubt (marked by an attempt cut short) keeps its mark."""

    def __init__(self, client: BackupsApi, run: str, in_doubt: set[int], ctx: ChunkContext) -> None:
        self._client = client
        self._run = run
        self._in_doubt = in_doubt
        self._ctx = ctx

    def iter_backups(self, **kwargs: Any) -> Any:
        return self._client.iter_backups(**kwargs)

    def delete_backup(self, backup_id: int, *, before_retry: Callable[[], None] | None = None) -> None:
        store = self._ctx.store
        store.deletion_started(self._run, backup_id, self._ctx.now())
        try:
            self._client.delete_backup(backup_id, before_retry=before_retry)
        except ApiTimeoutError as exc:
            if exc.not_sent and backup_id not in self._in_doubt:
                store.forget_started(self._run, [backup_id])
            raise


def _final(result: DeletionResult) -> bool:
    """An outcome the next chunk must not redo: all but a deletion left for later (``retry_in``:
    never sent, or answered 429 once the client's retries were spent)."""
    return result.retry_in is None


def _send_batch(
    run: str, chunk: int, pending: Sequence[BackupDecision], in_doubt: set[int], ctx: ChunkContext
) -> list[DeletionResult]:
    """Each pending deletion's result, in order: first the ones in doubt (marked by an attempt cut
    short, or answered 429: each already took its slot), then the fresh ones within the daily
    budget, each marked ``started`` before its DELETE — unless a re-send was told to wait: then the
    fresh ones wait as long, not started, their slots not taken."""
    marking = _MarkingClient(ctx.client, run, in_doubt, ctx)

    def send(decisions: Sequence[BackupDecision]) -> tuple[DeletionResult, ...]:
        return execute_deletions(
            marking, decisions, holds=ctx.state, concurrency=ctx.options.concurrency, time_left=ctx.time_left
        )

    again = send([d for d in pending if d.backup_id in in_doubt])
    fresh_decisions = [d for d in pending if d.backup_id not in in_doubt]
    told_to_wait = next((r for r in again if r.retry_in is not None), None)
    if told_to_wait is not None:
        detail = "not sent: a deletion sent again before it was told to wait; sent again later"
        fresh = tuple(
            DeletionResult(d.backup_id, "not_started", detail, retry_in=told_to_wait.retry_in) for d in fresh_decisions
        )
    else:
        fresh, budget = delete_within_budget(fresh_decisions, ctx.budget, send)
        held = [r.backup_id for r in fresh if r.held_by_budget]
        if budget is not None and held:
            # Kept for the run's report: the budget's words, and which deletions it held back.
            ctx.store.put_budget_hold(run, chunk, budget.to_dict(), held, ctx.now())
    by_id = {r.backup_id: r for r in (*fresh, *again)}
    return [by_id[d.backup_id] for d in pending]


@dataclass
class _DeleteStep:
    """What a delete chunk's results leave: the final outcomes to store, where the next chunk
    starts, how long it waits."""

    reached: int
    wait: float = 0.0
    done: list[tuple[int, StoredOutcome]] = field(default_factory=list)

    def add(
        self, decision: BackupDecision, result: DeletionResult, in_doubt: set[int], to_delete: Sequence[BackupDecision]
    ) -> None:
        backup_id = decision.backup_id
        if not _final(result):
            self.reached = min(self.reached, to_delete.index(decision))
            self.wait = max(self.wait, result.retry_in or 0.0)
            return
        if result.outcome == "already_gone" and backup_id in in_doubt:
            # Sent by an attempt cut short after its DELETE: that attempt deleted it.
            result = DeletionResult(backup_id, "deleted", "deleted by an attempt cut short (its re-send: 404)")
        self.done.append((backup_id, _stored(result)))


def _delete(cursor: Cursor, request: PruneRequest, execution: str, ctx: ChunkContext) -> Cursor:
    stored = ctx.store.plan(cursor.run)
    if stored is None:
        raise RuntimeError(f"prune run {cursor.run}: its plan is not stored")
    to_delete = plan_from_dict(stored).to_delete
    batch = to_delete[cursor.deleted : cursor.deleted + ctx.chunk_deletions]
    known = ctx.store.outcomes(cursor.run)
    in_doubt = {backup_id for backup_id, stored in known.items() if stored.outcome == "started"}
    pending = [d for d in batch if d.backup_id not in known or d.backup_id in in_doubt]
    results = _send_batch(cursor.run, cursor.deleted, pending, in_doubt, ctx)
    step = _DeleteStep(reached=cursor.deleted + len(batch))
    for decision, result in zip(pending, results, strict=True):
        step.add(decision, result, in_doubt, to_delete)
    done, reached, wait = step.done, step.reached, step.wait
    ctx.store.put_outcomes(cursor.run, done, ctx.now())
    following = "report" if reached >= len(to_delete) else "delete"
    stalled = 0 if reached > cursor.deleted or not wait else cursor.stalled + 1
    if stalled >= MAX_STALLED_CHUNKS:
        # Every deletion of this many chunks in a row refused or held back, each after its wait: the
        # run ends, reporting what it did not delete; the next run plans them again.
        logger.warning(
            "prune deletions given up: refused or held back chunk after chunk",
            extra={"run": cursor.run, "deleted": reached, "chunks": stalled, "retry_after": wait},
        )
        return advance(cursor, execution=execution, phase="report", deleted=reached, stalled=stalled)
    if wait:  # the state machine waits the provider's Retry-After before the next chunk
        logger.info("prune deletions paused", extra={"run": cursor.run, "deleted": reached, "retry_after": wait})
    return advance(
        cursor, execution=execution, phase=following, deleted=reached, wait_seconds=_wait_seconds(wait), stalled=stalled
    )


# -- report ---------------------------------------------------------------------------------------


def _failed(cursor: Cursor, ctx: ChunkContext) -> dict[int, str]:
    """An incremental run's servers whose listing failed, and why (none for any other run)."""
    if not cursor.incremental:
        return {}
    return {server: why for server, why in ctx.store.failed(cursor.run).values()}


def _listing_read(
    cursor: Cursor, walked: _Walked, planned: bool, ctx: ChunkContext, parts: int
) -> _Listed | ListingProgress:
    """What the report needs of the listing: its progress as the plan chunk stored it; the stored
    pages read again (a part of their servers, when the listing is planned in parts) only for an
    incremental run's write-back (it settles each server on its backups), a listing never planned,
    or a plan stored before the progress was."""
    stored = ctx.store.progress(cursor.run) if planned and walked.chosen is None else None
    if stored is not None:
        return ListingProgress.from_stored(stored)
    part = cursor.part if walked.chosen is not None else 0
    return read_listing(_stored_pages(cursor, ctx), cursor.pages, walked.servers, part, parts)


def _report(cursor: Cursor, request: PruneRequest, execution: str, ctx: ChunkContext) -> Cursor:
    walked = _walked(cursor, request, ctx)
    stored = None if cursor.stopped else ctx.store.plan(cursor.run)
    parts = _parts(cursor, request, ctx)
    listed = _listing_read(cursor, walked, stored is not None, ctx, parts)
    progress = listed if isinstance(listed, ListingProgress) else listed.progress
    if stored is None:
        progress.stopped, progress.stopped_by = cursor.stopped or "the listing was not planned", "incomplete"
        plan = FleetPlan.empty(now=ctx.now(), scope=ctx.options.scope, max_deletions=ctx.options.max_deletions)
    else:
        plan = plan_from_dict(stored)
    dry_run = ctx.options.dry_run or request.dry_run
    results, budget = _results(cursor, plan, ctx, dry_run=dry_run)
    mode: Listing = "fleet" if walked.servers is None else "per-server"
    report = PruneReport(
        request=request,
        dry_run=dry_run,
        listing=mode,
        listed=progress.listed,
        plan=plan,
        results=results,
        progress=progress,
        timings={"chunks": float(cursor.chunks + 1)},
        budget=budget,
    )
    if walked.chosen is not None and isinstance(listed, _Listed):
        settled = _settle(cursor, request, report, listed, walked, ctx, parts)
        if settled is None:  # one part of the servers written back: the next part in the next chunk
            return advance(cursor, execution=execution, phase="report", part=cursor.part + 1, parts=parts)
        report = settled
    return _finish(cursor, report, execution, ctx)


def _results(
    cursor: Cursor, plan: FleetPlan, ctx: ChunkContext, *, dry_run: bool
) -> tuple[tuple[DeletionResult, ...], BudgetReport | None]:
    """Each planned deletion's outcome as the delete chunks stored it, and the daily budget's report."""
    known = ctx.store.outcomes(cursor.run)
    results = tuple(_result(d.backup_id, known, dry_run=dry_run) for d in plan.to_delete)
    budget, held = (None, set[int]()) if dry_run else _budget_held(cursor.run, len(results), ctx)
    results = tuple(replace(r, held_by_budget=r.backup_id in held and r.outcome == "not_started") for r in results)
    if cursor.stalled >= MAX_STALLED_CHUNKS and cursor.stopped is None:
        results = _given_up(results, known, cursor.stalled)
    return results, budget


def _given_up(
    results: tuple[DeletionResult, ...], known: dict[int, StoredOutcome], stalled: int
) -> tuple[DeletionResult, ...]:
    """A run that gave up on its deletions: each one it never reached (no outcome stored: not one a
    hold stopped, nor one the daily budget held back) fails with the reason, so the report says it
    and people hear of it."""
    why = GIVEN_UP.format(n=stalled)
    return tuple(
        DeletionResult(r.backup_id, "failed", why)
        if r.backup_id not in known and r.outcome == "not_started" and not r.held_by_budget
        else r
        for r in results
    )


def _settle(
    cursor: Cursor,
    request: PruneRequest,
    report: PruneReport,
    listed: _Listed,
    walked: _Walked,
    ctx: ChunkContext,
    parts: int,
) -> PruneReport | None:
    """An incremental run's write-back, as its single pass makes it: each server planned, settled
    or not, on the holds its plan saw, listed as of the run's start; the run history. A listing in
    parts is written back a part of its servers at a time (None: a part written, not the last)."""
    meta = ctx.store.meta(cursor.run)
    started = meta[0] if meta is not None else report.plan.now
    servers = listed_from(listed.listing, listed.progress, walked.servers, _failed(cursor, ctx))
    if walked.servers is not None:
        listed.progress.servers_listed = len(servers.servers)
    holds = {hold.backup_id: hold for hold in (Hold.model_validate(h) for h in ctx.store.holds(cursor.run))}
    store = PruneStateStore(ctx.state)

    def mine(server_id: int) -> bool:
        return server_part(server_id, parts) == cursor.part

    states, _ = store.load(keep=mine if parts > 1 else None)
    ours = replace(servers, servers=[sid for sid in servers.servers if mine(sid)]) if parts > 1 else servers
    written = write_back_servers(
        report,
        ours,
        store=store,
        states=states,
        options=ctx.options,
        holds=holds,
        now=report.plan.now,
        listed_at=started,
    )
    written_parts = [written] if parts == 1 else _written_parts(cursor, written, parts, ctx)
    if written_parts is None:
        return None
    return write_back_history(
        report,
        servers,
        written_parts,
        store=store,
        history=store.history(),
        request=request,
        chosen=walked.chosen or {},
        listed_at=started,
    )


def _written_parts(
    cursor: Cursor, written: dict[str, Any], parts: int, ctx: ChunkContext
) -> list[dict[str, Any]] | None:
    """This part's write-back recorded; after the last part, every part's (None before it)."""
    ctx.store.put_part(cursor.run, "written", cursor.part, written, ctx.now())
    if cursor.part + 1 < parts:
        return None
    every = [ctx.store.part(cursor.run, "written", n) for n in range(parts)]
    if any(part is None for part in every):
        raise RuntimeError(f"prune run {cursor.run}: a part of its write-back is not recorded")
    return [part for part in every if part is not None]


def _budget_held(run: str, asked: int, ctx: ChunkContext) -> tuple[BudgetReport | None, set[int]]:
    """What ``MAX_DELETIONS_PER_DAY`` did to the run's deletions, over its delete chunks (as a single
    pass reports it), and the deletions it held back; (None, empty) when it held none back."""
    holds = ctx.store.budget_holds(run)
    if not holds:
        return None, set()
    held = {backup_id for _, ids in holds for backup_id in ids}
    frees = [str(b["frees_at"]) for b, _ in holds if b.get("frees_at")]
    error = next((str(b["error"]) for b, _ in holds if b.get("error")), None)
    limit = int(holds[-1][0]["limit"])
    frees_at = datetime.fromisoformat(frees[-1]) if frees else None
    return BudgetReport(limit, asked, asked - len(held), frees_at, error), held


def _stored(result: DeletionResult) -> StoredOutcome:
    return StoredOutcome(result.outcome, result.detail, result.stopped_by_hold)


def _result(backup_id: int, known: dict[int, StoredOutcome], *, dry_run: bool) -> DeletionResult:
    if dry_run:
        return DeletionResult(backup_id, "dry_run", "dry run: not deleted")
    stored = known.get(backup_id, StoredOutcome("not_started", "not reached by the run"))
    if stored.outcome == "started":
        return DeletionResult(backup_id, "failed", "sent, outcome unknown: check it is gone")
    return DeletionResult(
        backup_id,
        stored.outcome,  # type: ignore[arg-type]
        stored.detail,
        stopped_by_hold=stored.stopped_by_hold,
    )


def _finish(cursor: Cursor, report: PruneReport, execution: str, ctx: ChunkContext) -> Cursor:
    """The journal (written again by a retried attempt: the same entries), the report and its
    notification (once: an attempt retried after publishing it does not publish it again), the lock
    freed."""
    ctx.journal(report, cursor.run, ctx.store.report_started(cursor.run, ctx.now()))
    if ctx.store.reported(cursor.run):
        logger.info("prune run's report already published by an attempt cut short", extra={"run": cursor.run})
    else:
        publish_report(report, notifier=ctx.notifier)
        try:
            ctx.store.put_reported(cursor.run, ctx.now())
        except Exception:  # published: failing the chunk now would publish it again on each retry
            logger.exception("could not record the prune report as published", extra={"run": cursor.run})
    ctx.heartbeat()
    ctx.store.release_lock(cursor.run)
    totals = report.totals
    note = ", ".join(f"{key} {value}" for key, value in totals.items() if value)
    return advance(cursor, execution=execution, phase="done", done=True, note=note or "nothing to do")


_PHASES: dict[str, Callable[[Cursor, PruneRequest, str, ChunkContext], Cursor]] = {
    "list": _list,
    "plan": _plan,
    "delete": _delete,
    "report": _report,
    "done": lambda cursor, request, execution, ctx: cursor,
}
