"""The prune job's orchestration: list → :func:`~vpsbackup.prune.compact.plan_fleet` → delete → report.

Decisions are all made (pure) by :func:`~vpsbackup.prune.compact.plan_fleet`, one server at a time
over a compact listing (:mod:`vpsbackup.prune.compact_rules`). This module does the effects, each given as an argument
so tests drive it with the simulator and moto, or with fakes:

- **listing**: one paginated sweep of ``GET /backups/?backup_type=manual`` for the whole fleet,
  in pages of ``VPS_API_PAGE_SIZE``, kept compact (a few dozen bytes per backup); a full run with
  ``PRUNE_SCOPE=managed`` lists only the servers whose plan may have changed instead
  (:mod:`vpsbackup.prune.incremental_run`, which hands its listing in as ``lister``).
  When a run is limited to ``server_ids`` (a manual invoke), one filtered listing per requested
  server instead: its cost is that of the servers asked about, not of the fleet, and the plan is
  the same because every rule works per server (the plan is still limited to those servers, so an
  API that ignored the filter could not widen the run). A listing that runs out of the
  invocation's time, or that cannot be read to its end (a ``next`` link that repeats a page or
  leaves the base URL's origin), is never planned on: the run deletes nothing, reports how far it
  got, emits ``ListingIncomplete`` and notifies; the next run starts afresh. Each listed item is
  validated on its own: one that does not validate is skipped, counted, logged with its id and the
  reason (``invalid_items`` in the report), never deleted; its server is left alone this run (no
  plan on a listing that misses one of its items), the others are planned;
- **holds**: read after the listing, just before planning; and read again for each backup right
  before its DELETE, so a restore that picks a backup while the run is under way (and holds it)
  is never left without it. A hold that cannot be read means no deletion of that backup;
- **deletions**: ``plan.to_delete`` in its order (oldest first) on a bounded thread pool. ``429``
  is retried by the client, the hold re-checked before each re-send; a ``404`` counts as done
  (already gone); any other error is recorded for that backup and the others go on; an
  authentication failure stops new deletions (every one would fail the same way); no deletion
  starts when less than ``margin`` seconds of the invocation are left; what was not started is
  reported and the next run picks it up;
- **report**: bounded at any fleet size — the return value under 1 MB, each log record under
  200 KB: totals, counts by reason, the deletions and their outcomes, the oldest deferred ones; every
  decision only when the run is limited to ``server_ids`` or the fleet is small
  (``FULL_PLAN_LIMIT``), logged in parts when it does not fit one record
  (:mod:`vpsbackup.prune.report_render` renders it). Metrics, and a notification only when
  something failed, the safety valve held deletions back or the listing ran out of time.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from vpsbackup.aws.notifications import Notifier, Routing
from vpsbackup.errors import ConfigurationError
from vpsbackup.observability import logger, metrics
from vpsbackup.provider.errors import (
    ApiTimeoutError,
    AuthenticationError,
    BackupAlreadyGoneError,
    ListingIncompleteError,
    RateLimitedError,
    VpsApiError,
)
from vpsbackup.provider.models import BACKUP_MANUAL, Backup, BackupPage, InvalidItem
from vpsbackup.provider.ratelimit import MAX_PROVIDER_WAIT_S
from vpsbackup.prune import report_render
from vpsbackup.prune.compact import CompactListing, FleetPlan, plan_fleet
from vpsbackup.prune.daily_budget import BudgetReport, BudgetUnavailableError, DailyDeletionBudget
from vpsbackup.prune.plan import BackupDecision, PlanInputs, Scope
from vpsbackup.prune.request import PruneRequest
from vpsbackup.prune.retention import RetentionPolicies
from vpsbackup.prune.settings import PruneSettings
from vpsbackup.records import Hold

# No deletion starts with less than this left of the invocation. It is larger than the client's
# own margin (runtime.DEFAULT_SAFETY_MARGIN_S), so a deletion that starts can still finish, retries
# included, and the run still has time to log, emit metrics and notify.
STOP_STARTING_MARGIN_S = 20.0

# Every decision is kept (and reported) for a run over at most this many listed copies, or limited
# to server_ids; above it, the plan keeps counts, the deletions and the oldest deferred ones.
FULL_PLAN_LIMIT = 5_000
# Invalid listed items named in the report (all are counted), and servers left alone named.
INVALID_SAMPLE = 20
LEFT_ALONE_SHOWN = 100

# What became of one planned deletion (a deploy has its DeployOutcome, a restore its RestoreOutcome).
DeletionOutcome = Literal["deleted", "already_gone", "failed", "not_started", "dry_run"]
DELETION_OUTCOMES: tuple[DeletionOutcome, ...] = ("deleted", "already_gone", "failed", "not_started", "dry_run")
Listing = Literal["fleet", "per-server"]
# A listing made by the caller: the listing, its kind, its progress, and the servers to plan (None: all).
Lister = Callable[[], tuple["CompactListing", Listing, "ListingProgress", frozenset[int] | None]]


class BackupsApi(Protocol):
    """The part of :class:`~vpsbackup.provider.client.VpsClient` the prune job uses."""

    def iter_backups(
        self,
        *,
        server_id: int | None = None,
        backup_type: str | None = None,
        every_copy: bool = False,
        on_page: Callable[[BackupPage], None] | None = None,
        on_invalid: Callable[[InvalidItem], None] | None = None,
    ) -> Iterator[Backup]: ...

    def delete_backup(self, backup_id: int, *, before_retry: Callable[[], None] | None = None) -> None: ...


class HoldSource(Protocol):
    """The part of :class:`~vpsbackup.aws.state.StateTable` the prune job uses."""

    def active_holds(self, now: datetime) -> Mapping[int, Hold]: ...

    def active_hold(self, backup_id: int, now: datetime) -> Hold | None: ...


@dataclass(frozen=True, slots=True)
class PruneOptions:
    """The settings one run works with (``DRY_RUN`` here; a request's ``dry_run`` adds to it)."""

    policies: RetentionPolicies
    tz: tzinfo
    scope: Scope
    failed_grace: timedelta
    max_deletions: int
    concurrency: int
    dry_run: bool
    keep_at_least: int = 1
    # PRUNE_VERIFY_EVERY (0: every full run is a fleet sweep) and the page size, for the
    # incremental runs (prune/incremental_run.py).
    verify_every: timedelta = timedelta(days=7)
    page_size: int = 100
    # MAX_DELETIONS_PER_DAY (prune/daily_budget.py); None: no daily budget (the console's dry runs).
    max_deletions_per_day: int | None = None

    def plan_inputs(self, *, now: datetime, holds: Mapping[int, Hold], max_deletions: int | None = None) -> PlanInputs:
        """What the plan decides from, with these settings (``max_deletions``: the valve's, unless given)."""
        return PlanInputs(
            policy_for=self.policies,
            tz=self.tz,
            now=now,
            scope=self.scope,
            holds=holds,
            failed_grace=self.failed_grace,
            max_deletions=self.max_deletions if max_deletions is None else max_deletions,
            keep_at_least=self.keep_at_least,
        )

    @classmethod
    def from_settings(cls, settings: PruneSettings) -> PruneOptions:
        return cls(
            policies=settings.retention_policies,
            tz=settings.retention_timezone,
            scope=settings.prune_scope,
            failed_grace=settings.failed_backup_grace,
            max_deletions=settings.max_deletions_per_run,
            concurrency=settings.prune_concurrency,
            dry_run=settings.dry_run,
            keep_at_least=settings.keep_at_least,
            verify_every=settings.prune_verify_every,
            page_size=settings.vps_api_page_size,
            max_deletions_per_day=settings.max_deletions_per_day,
        )


@dataclass(frozen=True, slots=True)
class DeletionResult:
    """What became of one planned deletion; ``detail`` says why in words (error, time, dry run), for
    people only: what code acts on is in the typed fields."""

    backup_id: int
    outcome: DeletionOutcome
    detail: str = ""
    # Not sent because MAX_DELETIONS_PER_DAY was reached (or unreadable): outcome "not_started".
    held_by_budget: bool = False
    # Stopped by the hold re-check right before (or between retries of) its DELETE: a hold placed
    # since the plan or one that could not be read ("not_started"), or a hold that appeared while
    # the DELETE waited to be re-sent ("failed"). The journal keeps these as ``deletion_refused``.
    stopped_by_hold: bool = False
    # Not done for now, and not for good: to be sent again after this many seconds (0: by the next
    # invocation). "not_started": never sent (no time left, its turn in the request budget past the
    # deadline, or after another deletion's 429); "failed": answered 429 once the client's retries
    # were spent (an earlier attempt of it may have been applied). None: this outcome is final.
    retry_in: float | None = None


@dataclass
class InvalidItems:
    """The listed items that did not validate: counted, the first :data:`INVALID_SAMPLE` kept, and
    the servers they belong to, each left alone this run (its listing misses one of its items)."""

    count: int = 0
    sample: list[InvalidItem] = field(default_factory=list)
    servers: set[int] = field(default_factory=set)

    def add(self, item: InvalidItem, *, servers: Sequence[int | None]) -> None:
        """One invalid item, of ``servers`` (the one listed, and the one it names; None: unknown)."""
        self.count += 1
        if len(self.sample) < INVALID_SAMPLE:
            self.sample.append(item)
        self.servers.update(s for s in servers if s is not None)

    def collector(self, listed: int | None = None) -> Callable[[InvalidItem], None]:
        """``on_invalid`` for a listing of server ``listed`` (None: the fleet): each item is counted
        against that server and the one it names."""

        def collect(item: InvalidItem) -> None:
            self.add(item, servers=(listed, item.server_id))
            if listed is None and item.owner_unknown:
                # A fleet listing missing an item of some live server, which one unknown: no
                # server's plan can be trusted, so the walk is incomplete and nothing is planned.
                problem = f"{item.describe()}; its server cannot be read, so any server's listing may miss it"
                raise ListingIncompleteError(f"the fleet's listing: {problem}", problem=problem, pages=0)

        return collect

    def to_dict(self) -> dict[str, Any]:
        left_alone = sorted(self.servers)
        return {
            "count": self.count,
            "items": [item.model_dump() for item in self.sample],
            "servers_left_alone": left_alone[:LEFT_ALONE_SHOWN],
            "servers_left_alone_count": len(left_alone),
        }


_PROGRESS_FIELDS = (
    "pages",
    "listed",
    "expected",
    "servers_listed",
    "servers_requested",
    "seconds",
    "stopped",
    "stopped_by",
)


@dataclass
class ListingProgress:
    """How far a listing got: pages read, copies listed, what the API said there were, and why it
    stopped if it did not finish (``stopped``: the error, in words; ``stopped_by``: ``time``, or
    ``incomplete`` for a walk whose next link could not be followed); the items that did not validate."""

    pages: int = 0
    listed: int = 0
    expected: int | None = None
    servers_listed: int = 0
    servers_requested: int | None = None
    seconds: float = 0.0
    stopped: str | None = None
    stopped_by: Literal["time", "incomplete"] | None = None
    invalid: InvalidItems = field(default_factory=InvalidItems)

    @property
    def complete(self) -> bool:
        return self.stopped is None

    def to_stored(self) -> dict[str, Any]:
        """Everything, for :meth:`from_stored` (a chunked run's report reads it, not every page again)."""
        invalid = self.invalid
        return {
            **{key: getattr(self, key) for key in _PROGRESS_FIELDS},
            "invalid": {
                "count": invalid.count,
                "sample": [item.model_dump(mode="json") for item in invalid.sample],
                "servers": sorted(invalid.servers),
            },
        }

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> ListingProgress:
        invalid = data["invalid"]
        return cls(
            **{key: data[key] for key in _PROGRESS_FIELDS},
            invalid=InvalidItems(
                count=int(invalid["count"]),
                sample=[InvalidItem.model_validate(item) for item in invalid["sample"]],
                servers={int(server) for server in invalid["servers"]},
            ),
        )

    def on_page(self, page: BackupPage, listed: int | None = None) -> None:
        """One more page (``listed``: its backups, when ``page`` holds only some of them)."""
        if page.previous is None and page.count is not None:
            # The first page of a walk counts the whole walk (per server, the walks add up).
            self.expected = (self.expected or 0) + page.count
        self.pages += 1
        self.listed += len(page.results) if listed is None else listed

    def to_dict(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "pages": self.pages,
            "listed": self.listed,
            "expected": self.expected,
            "servers_listed": self.servers_listed,
            "servers_requested": self.servers_requested,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
            "stopped_by": self.stopped_by,
        }


@dataclass(frozen=True)
class PruneReport:
    """One run: its request, the plan, and the outcome of each planned deletion (plan order). Data
    only: :mod:`vpsbackup.prune.report_render` renders it (return value, log records, notification).

    When the listing did not finish (``progress.complete`` false), ``plan`` is empty: nothing was
    planned on a partial listing, nothing was deleted.
    """

    request: PruneRequest
    dry_run: bool
    listing: Listing
    listed: int
    plan: FleetPlan
    results: tuple[DeletionResult, ...]
    progress: ListingProgress = field(default_factory=ListingProgress)
    timings: Mapping[str, float] = field(default_factory=dict)
    # A scheduled run's choice of servers (prune/incremental.py): mode, why, counts by trigger.
    selection: Mapping[str, Any] | None = None
    # What MAX_DELETIONS_PER_DAY did to the deletions (None: a dry run, nothing to delete, no budget).
    budget: BudgetReport | None = None
    _by_id: dict[int, DeletionResult] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {r.backup_id: r for r in self.results})

    def outcome_of(self, backup_id: int) -> DeletionResult | None:
        return self._by_id.get(backup_id)

    def with_outcome(self, outcome: DeletionOutcome) -> list[BackupDecision]:
        """The planned deletions that ended with ``outcome``, oldest first."""
        return [d for d in self.plan.to_delete if self._by_id[d.backup_id].outcome == outcome]

    @property
    def totals(self) -> dict[str, int]:
        """Counts of the plan's decisions and of the deletions' outcomes."""
        actions = self.plan.totals
        outcomes = Counter(r.outcome for r in self.results)
        return {
            "listed": self.listed,
            "kept": actions.get("keep", 0),
            "skipped": actions.get("skip", 0),
            "deferred": self.plan.deferred_count,
            "to_delete": len(self.plan.to_delete),
            **{outcome: outcomes.get(outcome, 0) for outcome in DELETION_OUTCOMES},
        }

    @property
    def listing_complete(self) -> bool:
        return self.progress.complete

    @property
    def needs_attention(self) -> bool:
        """True when people should hear about this run: the listing did not finish or had items that
        did not validate, a deletion failed, the valve tripped or the daily budget held deletions back
        (a dry run: only the first two)."""
        if not self.listing_complete or self.progress.invalid.count:
            return True
        if self.dry_run:
            return False
        held = self.budget is not None and self.budget.held_back > 0
        return held or self.plan.valve_tripped or any(r.outcome == "failed" for r in self.results)

    @property
    def listed_decisions(self) -> int:
        """How many decisions the plan made (kept or not)."""
        return sum(self.plan.totals.values())


def list_backups_to_plan(
    client: BackupsApi,
    server_ids: Sequence[int] | None,
    *,
    time_left: Callable[[], float | None] = lambda: None,
    margin: float = STOP_STARTING_MARGIN_S,
) -> tuple[CompactListing, Listing, ListingProgress]:
    """The manual backups the plan looks at: the fleet in one sweep, or each requested server's.

    Every listed copy is kept (``every_copy``): a backup whose status changed while the pages were
    read shows up twice, and the plan leaves it alone rather than trust one copy.

    Out of time — the client refuses a request or a wait that would pass the invocation's deadline
    (``ApiTimeoutError``), or any API error with less than ``margin`` seconds left — or a walk that
    cannot be followed to its end (``ListingIncompleteError``), the listing stops and
    ``progress.stopped`` says why; any other error propagates (nothing was deleted). An item that
    does not validate is skipped and counted in ``progress.invalid`` with its server (in a listing
    of one server, that server too: the API says the item is its).
    """
    listing = CompactListing()
    progress = ListingProgress(servers_requested=len(server_ids) if server_ids is not None else None)
    invalid = progress.invalid
    started = time.monotonic()
    try:
        if server_ids is None:
            listing.extend(
                client.iter_backups(
                    backup_type=BACKUP_MANUAL,
                    every_copy=True,
                    on_page=progress.on_page,
                    on_invalid=invalid.collector(),
                )
            )
        else:
            for server_id in server_ids:
                listing.extend(
                    client.iter_backups(
                        server_id=server_id,
                        backup_type=BACKUP_MANUAL,
                        every_copy=True,
                        on_page=progress.on_page,
                        on_invalid=invalid.collector(server_id),
                    )
                )
                progress.servers_listed += 1
    except ListingIncompleteError as exc:
        progress.stopped, progress.stopped_by = str(exc), "incomplete"
        logger.warning(
            "prune listing incomplete: nothing will be planned or deleted", extra={"progress": progress.to_dict()}
        )
    except VpsApiError as exc:
        left = time_left()
        if not isinstance(exc, ApiTimeoutError) and (left is None or left >= margin):
            raise
        progress.stopped, progress.stopped_by = str(exc), "time"
        logger.warning(
            "prune listing out of time: nothing will be planned or deleted",
            extra={"progress": progress.to_dict(), "seconds_left": left},
        )
    progress.seconds = time.monotonic() - started
    return listing, ("fleet" if server_ids is None else "per-server"), progress


def without_servers_left_alone(
    listing: CompactListing, planned: frozenset[int] | None, invalid: InvalidItems
) -> frozenset[int] | None:
    """The servers to plan (None: every listed one) less those whose listing missed an invalid item."""
    if not invalid.servers:
        return planned
    listed = planned if planned is not None else frozenset(listing.columns().servers)
    logger.warning(
        "servers left alone this run: their listing misses an item that did not validate",
        extra={"invalid_items": invalid.to_dict()},
    )
    return listed - invalid.servers


class _HeldWhileRetrying(Exception):
    """A hold appeared on a backup while its DELETE waited to be re-sent."""


# How long a run in chunks waits after a 429 that named no Retry-After.
RATE_LIMITED_WAIT_S = 60.0


def _rate_limited(
    backup_id: int, exc: RateLimitedError, lock: threading.Lock, stop_reason: list[tuple[str, float | None]]
) -> DeletionResult:
    """A DELETE answered 429 once the client's retries were spent: "failed" (its last attempt was
    refused, an earlier one may have been applied), to be sent again after the Retry-After. The
    deletions not started yet are not sent either (they would be refused too): they wait as long."""
    # (a Retry-After of 0, or a date gone by, still waits a second: the run counts it as refused)
    wait = min(max(exc.retry_after, 1.0), MAX_PROVIDER_WAIT_S) if exc.retry_after is not None else RATE_LIMITED_WAIT_S
    later = "sent again by a later chunk of the run, or the next run"
    with lock:
        stop_reason.append((f"not sent: the provider answered 429 (Retry-After {wait:.0f} s); {later}", wait))
    logger.warning("deletion refused with 429: the others wait", extra={"backup_id": backup_id, "retry_after": wait})
    detail = f"rate limited: the provider answered 429 (Retry-After {wait:.0f} s); {later}"
    return DeletionResult(backup_id, "failed", detail, retry_in=wait)


def _timed_out(backup_id: int, exc: ApiTimeoutError) -> DeletionResult:
    """Never sent (its turn in the request budget, or the deadline, came first): not started, to be
    sent again once that wait is over. Sent and timed out: failed, final (it may have been applied;
    the next run finds it gone or deletes it)."""
    if exc.not_sent:
        return DeletionResult(backup_id, "not_started", str(exc), retry_in=min(exc.wait or 0.0, MAX_PROVIDER_WAIT_S))
    return DeletionResult(backup_id, "failed", str(exc))


def execute_deletions(
    client: BackupsApi,
    to_delete: Sequence[BackupDecision],
    *,
    holds: HoldSource,
    concurrency: int,
    time_left: Callable[[], float | None],
    margin: float = STOP_STARTING_MARGIN_S,
) -> tuple[DeletionResult, ...]:
    """Delete ``to_delete`` with at most ``concurrency`` requests in flight, started in its order.

    Returns one result per backup, in the same order. Never raises for one backup's failure.
    ``time_left`` gives the invocation's remaining seconds (None: unbounded); a deletion whose turn
    comes with less than ``margin`` left is not started.
    """
    if not to_delete:
        return ()
    lock = threading.Lock()
    # Once the token is refused or the provider says wait: the detail and retry_in of every
    # deletion not started after it.
    stop_reason: list[tuple[str, float | None]] = []

    def delete(decision: BackupDecision) -> DeletionResult:
        backup_id = decision.backup_id
        with lock:
            stopped = stop_reason[0] if stop_reason else None
        if stopped is not None:
            return DeletionResult(backup_id, "not_started", stopped[0], retry_in=stopped[1])
        left = time_left()
        if left is not None and left < margin:
            return DeletionResult(
                backup_id,
                "not_started",
                f"time: less than {margin:.0f} s of the invocation left; next run",
                retry_in=0.0,
            )
        try:
            hold = holds.active_hold(backup_id, datetime.now(UTC))
        except Exception as exc:  # unreadable: the backup may be held, so it is not deleted
            logger.exception("could not re-check the backup's hold; not deleting it", extra={"backup_id": backup_id})
            return DeletionResult(
                backup_id, "failed", f"hold not checked ({type(exc).__name__}): not deleted", stopped_by_hold=True
            )
        if hold is not None:
            logger.info("backup held since the plan was made; not deleting it", extra={"backup_id": backup_id})
            detail = f"held since the plan: {hold.reason or 'restore hold'}"
            return DeletionResult(backup_id, "not_started", detail, stopped_by_hold=True)

        def still_not_held() -> None:
            # The client may wait (Retry-After, backoff) before re-sending: a restore may have held
            # the backup meanwhile. The first attempt may have been applied, hence "failed", not "held".
            if holds.active_hold(backup_id, datetime.now(UTC)) is not None:
                raise _HeldWhileRetrying

        try:
            client.delete_backup(backup_id, before_retry=still_not_held)
        except _HeldWhileRetrying:
            logger.warning("backup held while its deletion was retried; not re-sending", extra={"backup_id": backup_id})
            return DeletionResult(
                backup_id,
                "failed",
                "held while the deletion was being retried: not re-sent (check it is still there)",
                stopped_by_hold=True,
            )
        except BackupAlreadyGoneError:
            return DeletionResult(backup_id, "already_gone", "404: already gone, counted as done")
        except (AuthenticationError, ConfigurationError) as exc:
            with lock:
                stop_reason.append((f"stopped: the API token was refused or unreadable ({type(exc).__name__})", None))
            return DeletionResult(backup_id, "failed", str(exc))
        except RateLimitedError as exc:
            return _rate_limited(backup_id, exc, lock, stop_reason)
        except ApiTimeoutError as exc:
            return _timed_out(backup_id, exc)
        except VpsApiError as exc:
            return DeletionResult(backup_id, "failed", str(exc))
        except Exception as exc:  # one backup's surprise must not hide the others' outcomes
            logger.exception("unexpected error deleting a backup", extra={"backup_id": backup_id})
            return DeletionResult(backup_id, "failed", f"{type(exc).__name__}: {exc}")
        return DeletionResult(backup_id, "deleted")

    with ThreadPoolExecutor(max_workers=min(concurrency, len(to_delete)), thread_name_prefix="prune") as pool:
        # map() submits in order and the pool's queue is FIFO: deletions start oldest first.
        return tuple(pool.map(delete, to_delete))


def run_prune(
    request: PruneRequest,
    options: PruneOptions,
    *,
    client: BackupsApi,
    holds: HoldSource,
    now: datetime | None = None,
    time_left: Callable[[], float | None] = lambda: None,
    margin: float = STOP_STARTING_MARGIN_S,
    lister: Lister | None = None,
    budget: DailyDeletionBudget | None = None,
) -> PruneReport:
    """List, plan and (unless a dry run) delete; the report says what happened to every backup.

    ``budget`` (``MAX_DELETIONS_PER_DAY``): the deletions sent are at most the slots it grants, the
    oldest first; the others are reported not started, with when the budget frees.

    ``lister`` replaces the listing (a scheduled run's choice of servers, prune/incremental_run.py).
    A listing out of time is reported, not raised: nothing is planned or deleted. Other errors
    before the plan (listing, holds) propagate: nothing has been deleted then.
    """
    now = now or datetime.now(UTC)
    dry_run = options.dry_run or request.dry_run
    if lister is None:
        listing, mode, progress = list_backups_to_plan(client, request.server_ids, time_left=time_left, margin=margin)
        planned = frozenset(request.server_ids) if request.server_ids is not None else None
    else:
        listing, mode, progress, planned = lister()
    timings = {"list_s": progress.seconds}

    def report(
        plan: FleetPlan, results: tuple[DeletionResult, ...], budget_report: BudgetReport | None = None
    ) -> PruneReport:
        return PruneReport(
            request=request,
            dry_run=dry_run,
            listing=mode,
            listed=len(listing),
            plan=plan,
            results=results,
            progress=progress,
            timings=timings,
            budget=budget_report,
        )

    if not progress.complete:
        return report(FleetPlan.empty(now=now, scope=options.scope, max_deletions=options.max_deletions), ())
    plan = plan_listing(listing, progress, planned, request, options, holds=holds, now=now, timings=timings)
    started = time.monotonic()
    budget_report = None
    if dry_run:
        results = tuple(DeletionResult(d.backup_id, "dry_run", "dry run: not deleted") for d in plan.to_delete)
    else:

        def send(to_delete: Sequence[BackupDecision]) -> tuple[DeletionResult, ...]:
            return execute_deletions(
                client, to_delete, holds=holds, concurrency=options.concurrency, time_left=time_left, margin=margin
            )

        results, budget_report = delete_within_budget(plan.to_delete, budget, send)
    timings["delete_s"] = time.monotonic() - started
    return report(plan, results, budget_report)


def delete_within_budget(
    to_delete: Sequence[BackupDecision],
    budget: DailyDeletionBudget | None,
    send: Callable[[Sequence[BackupDecision]], tuple[DeletionResult, ...]],
) -> tuple[tuple[DeletionResult, ...], BudgetReport | None]:
    """Send (``send``) the oldest deletions the daily budget grants; the rest are not started, each
    ``held_by_budget``. A budget that cannot be read or written sends nothing. The slots of the
    deletions ``send`` did not start (time, a hold since the plan) are given back."""
    if budget is None or not to_delete:
        return send(to_delete), None
    try:
        reservation = budget.reserve(len(to_delete))
    except BudgetUnavailableError as exc:
        logger.exception("daily deletion budget unreadable: no deletion sent", extra={"asked": len(to_delete)})
        budget_report = BudgetReport(budget.limit, len(to_delete), 0, error=str(exc))
        held = tuple(DeletionResult(d.backup_id, "not_started", budget_report.reason(), True) for d in to_delete)
        return held, budget_report
    budget_report = BudgetReport.of(reservation)
    if reservation.short:
        logger.warning(
            "daily deletion budget reached: the oldest deletions are sent, the others wait",
            extra={"daily_budget": budget_report.to_dict()},
        )
    results = send(to_delete[: reservation.granted])
    unsent = sum(1 for r in results if r.outcome == "not_started")
    if not budget.release(reservation, unsent):
        logger.warning("could not give back the daily budget's unused slots", extra={"unsent": unsent})
    reason = budget_report.reason()
    held = tuple(DeletionResult(d.backup_id, "not_started", reason, True) for d in to_delete[reservation.granted :])
    return results + held, budget_report


def plan_listing(
    listing: CompactListing,
    progress: ListingProgress,
    planned: frozenset[int] | None,
    request: PruneRequest,
    options: PruneOptions,
    *,
    holds: HoldSource,
    now: datetime,
    timings: dict[str, float],
) -> FleetPlan:
    """The plan over a complete listing (the servers whose listing missed an invalid item left
    alone), the holds read just before; ``timings`` gets ``holds_s`` and ``plan_s``."""
    planned = without_servers_left_alone(listing, planned, progress.invalid)
    started = time.monotonic()
    active_holds = holds.active_holds(now)
    timings["holds_s"] = time.monotonic() - started  # a StateTable read, apart from the planning
    started = time.monotonic()
    inputs = options.plan_inputs(now=now, holds=active_holds)
    plan = plan_fleet(
        listing,
        inputs,
        server_ids=planned,
        keep_decisions=request.server_ids is not None or len(listing) <= FULL_PLAN_LIMIT,
    )
    timings["plan_s"] = time.monotonic() - started
    logger.info(
        "prune plan made",
        extra={"listed": len(listing), "servers": plan.servers, "totals": dict(plan.totals), **timings},
    )
    return plan


_METRICS: tuple[tuple[str, Callable[[PruneReport], int]], ...] = (
    ("BackupsListed", lambda r: r.listed),
    ("BackupsKept", lambda r: r.totals["kept"]),
    ("BackupsSkipped", lambda r: r.totals["skipped"]),
    ("BackupsDeferred", lambda r: r.totals["deferred"]),
    ("BackupsPlannedForDeletion", lambda r: r.totals["to_delete"]),
    ("BackupsDeleted", lambda r: r.totals["deleted"]),
    ("BackupsAlreadyGone", lambda r: r.totals["already_gone"]),
    ("DeletionsFailed", lambda r: r.totals["failed"]),
    ("DeletionsNotStarted", lambda r: r.totals["not_started"]),
    ("ValveTripped", lambda r: int(r.plan.valve_tripped)),
    ("DeletionsHeldByDailyBudget", lambda r: r.budget.held_back if r.budget else 0),
    ("ListingIncomplete", lambda r: int(not r.listing_complete)),
    ("ListedItemsInvalid", lambda r: r.progress.invalid.count),
    ("ServersLeftAlone", lambda r: len(r.progress.invalid.servers)),
    ("DryRun", lambda r: int(r.dry_run)),
    # One per run that completed (this report exists): the stack's heartbeat alarm watches it.
    ("RunsCompleted", lambda r: 1),
)


def publish_report(report: PruneReport, *, notifier: Notifier) -> None:
    """The run's one structured log record, its metrics, and a notification if it needs attention."""
    record, parts = report_render.log_records(report)
    log = logger.warning if report.needs_attention else logger.info
    log("prune run finished", extra={"prune": record})
    for part in parts:
        logger.info(f"prune run finished: part {part['part']} of {part['parts']}", extra={"prune": part})
    for name, value in _METRICS:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value(report))
    message = report_render.notification(report)
    if message is not None:
        subject, text = message
        notifier.publish(subject, text, routing=report_routing(report))


def report_routing(report: PruneReport) -> Routing:
    """The attributes of a run's notification: failed deletions and an unreadable daily budget are an
    error, a listing cut short (time, pagination), invalid items, the daily budget and the valve a
    warning; ``server_id`` when the run was for one server."""
    servers = report.request.server_ids
    server_id = servers[0] if servers and len(set(servers)) == 1 else None
    if not report.listing_complete:
        return Routing("prune", "listing_incomplete", "warning", server_id)
    if any(r.outcome == "failed" for r in report.results):
        return Routing("prune", "deletions_failed", "error", server_id)
    if report.budget is not None and report.budget.error is not None:
        return Routing("prune", "daily_budget", "error", server_id)
    if report.progress.invalid.count:
        return Routing("prune", "invalid_items", "warning", server_id)
    if report.budget is not None and report.budget.held_back and not report.plan.valve_tripped:
        return Routing("prune", "daily_budget", "warning", server_id)
    return Routing("prune", "valve", "warning", server_id)
