"""The prune job's orchestration: list → :func:`~vpsbackup.prune.plan.plan_prune` → delete → report.

Decisions are all in :mod:`vpsbackup.prune.plan` (pure). This module does the effects, each given as
an argument so tests drive it with the simulator and moto, or with fakes:

- **listing**: one paginated sweep of ``GET /backups/?backup_type=manual`` for the whole fleet.
  When a run is limited to ``server_ids`` (a manual invoke), one filtered listing per requested
  server instead: its cost is that of the servers asked about, not of the fleet, and the plan is
  the same because every rule works per server (the plan is still limited to those servers, so an
  API that ignored the filter could not widen the run);
- **holds**: read after the listing, just before planning; and read again for each backup right
  before its DELETE, so a restore that picks a backup while the run is under way (and holds it)
  is never left without it. A hold that cannot be read means no deletion of that backup;
- **deletions**: ``plan.to_delete`` in its order (oldest first) on a bounded thread pool. ``429``
  is retried by the client, the hold re-checked before each re-send; a ``404`` counts as done
  (already gone); any other error is recorded for that backup and the others go on; an
  authentication failure stops new deletions (every one would fail the same way); no deletion
  starts when less than ``margin`` seconds of the invocation are left; what was not started is
  reported and the next run picks it up;
- **report**: one structured log record with the plan and the outcomes, metrics, and a
  notification only when something failed or the safety valve held deletions back.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from vpsbackup.aws.notifications import Notifier, Routing
from vpsbackup.errors import ConfigurationError
from vpsbackup.observability import logger, metrics
from vpsbackup.provider.errors import AuthenticationError, BackupAlreadyGoneError, VpsApiError
from vpsbackup.provider.models import BACKUP_MANUAL, Backup
from vpsbackup.prune import messages
from vpsbackup.prune.plan import BackupDecision, PrunePlan, Scope, plan_prune
from vpsbackup.prune.request import PruneRequest
from vpsbackup.prune.retention import RetentionPolicies
from vpsbackup.prune.settings import PruneSettings
from vpsbackup.records import Hold

# No deletion starts with less than this left of the invocation. It is larger than the client's
# own margin (runtime.DEFAULT_SAFETY_MARGIN_S), so a deletion that starts can still finish, retries
# included, and the run still has time to log, emit metrics and notify.
STOP_STARTING_MARGIN_S = 20.0

# CloudWatch Logs takes events up to 256 KB: above this, the log record lists only the decisions
# that change something (delete, defer) and counts the others.
_LOG_RECORD_LIMIT = 200_000

Outcome = Literal["deleted", "already_gone", "failed", "not_started", "dry_run"]
OUTCOMES: tuple[Outcome, ...] = ("deleted", "already_gone", "failed", "not_started", "dry_run")
Listing = Literal["fleet", "per-server"]


class BackupsApi(Protocol):
    """The part of :class:`~vpsbackup.provider.client.VpsClient` the prune job uses."""

    def list_backups(
        self, *, server_id: int | None = None, backup_type: str | None = None, distinct_copies: bool = False
    ) -> list[Backup]: ...

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
        )


@dataclass(frozen=True, slots=True)
class DeletionResult:
    """What became of one planned deletion; ``detail`` says why in words (error, time, dry run)."""

    backup_id: int
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True)
class PruneReport:
    """One run: its request, the plan, and the outcome of each planned deletion (plan order)."""

    request: PruneRequest
    dry_run: bool
    listing: Listing
    listed: int
    plan: PrunePlan
    results: tuple[DeletionResult, ...]
    _by_id: dict[int, DeletionResult] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {r.backup_id: r for r in self.results})

    def outcome_of(self, backup_id: int) -> DeletionResult | None:
        return self._by_id.get(backup_id)

    def with_outcome(self, outcome: Outcome) -> list[BackupDecision]:
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
            "deferred": actions.get("defer", 0),
            "to_delete": len(self.plan.to_delete),
            **{outcome: outcomes.get(outcome, 0) for outcome in OUTCOMES},
        }

    @property
    def needs_attention(self) -> bool:
        """True when people should hear about this run: a deletion failed or the valve tripped."""
        return not self.dry_run and (self.plan.valve_tripped or any(r.outcome == "failed" for r in self.results))

    def to_dict(self) -> dict[str, Any]:
        """The return value: the whole plan, each deletion's outcome, and the totals (JSON-able)."""
        plan = self.plan.to_dict()
        for decision in plan["decisions"]:
            result = self._by_id.get(decision["backup_id"])
            if result is not None:
                decision["outcome"] = result.outcome
                if result.detail:
                    decision["detail"] = result.detail
        return {
            "dry_run": self.dry_run,
            "trigger": self.request.trigger,
            "server_ids": self.request.server_ids,
            "scheduled_time": self.request.scheduled_time.isoformat() if self.request.scheduled_time else None,
            "listing": self.listing,
            **{key: value for key, value in plan.items() if key not in ("totals", "decisions")},
            "totals": self.totals,
            "deletions": [
                {
                    "backup_id": decision.backup_id,
                    "server_id": decision.server_id,
                    "created_at": decision.created_at.isoformat(),
                    "outcome": self._by_id[decision.backup_id].outcome,
                    "detail": self._by_id[decision.backup_id].detail,
                }
                for decision in self.plan.to_delete
            ],
            "decisions": plan["decisions"],
        }

    def to_log(self) -> dict[str, Any]:
        """:meth:`to_dict`, with only the decisions that change something when the whole would be too big."""
        record = self.to_dict()
        if len(json.dumps(record, separators=(",", ":"))) > _LOG_RECORD_LIMIT:
            kept = [d for d in record["decisions"] if d["action"] in ("delete", "defer")]
            record["decisions_omitted"] = len(record["decisions"]) - len(kept)
            record["decisions"] = kept
        return record

    def notification(self) -> tuple[str, str] | None:
        """Subject and text for people, or None when the run needs no attention."""
        if not self.needs_attention:
            return None
        return messages.needs_a_look(
            self.request,
            self.plan,
            self.totals,
            failed=[(d, self._by_id[d.backup_id].detail) for d in self.with_outcome("failed")],
            not_started=[(d, self._by_id[d.backup_id].detail) for d in self.with_outcome("not_started")],
        )


def list_backups_to_plan(client: BackupsApi, server_ids: Sequence[int] | None) -> tuple[list[Backup], Listing]:
    """The manual backups the plan looks at: the fleet in one sweep, or each requested server's.

    Every distinct copy of a backup is kept (``distinct_copies``): a backup whose status changed
    while the pages were read shows up twice, and the plan leaves it alone rather than trust one copy.
    """
    if server_ids is None:
        return client.list_backups(backup_type=BACKUP_MANUAL, distinct_copies=True), "fleet"
    backups: list[Backup] = []
    for server_id in server_ids:
        backups.extend(client.list_backups(server_id=server_id, backup_type=BACKUP_MANUAL, distinct_copies=True))
    return backups, "per-server"


class _HeldWhileRetrying(Exception):
    """A hold appeared on a backup while its DELETE waited to be re-sent."""


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
    stop_reason: list[str] = []

    def delete(decision: BackupDecision) -> DeletionResult:
        backup_id = decision.backup_id
        with lock:
            stopped = stop_reason[0] if stop_reason else None
        if stopped is not None:
            return DeletionResult(backup_id, "not_started", stopped)
        left = time_left()
        if left is not None and left < margin:
            return DeletionResult(
                backup_id, "not_started", f"time: less than {margin:.0f} s of the invocation left; next run"
            )
        try:
            hold = holds.active_hold(backup_id, datetime.now(UTC))
        except Exception as exc:  # unreadable: the backup may be held, so it is not deleted
            logger.exception("could not re-check the backup's hold; not deleting it", extra={"backup_id": backup_id})
            return DeletionResult(backup_id, "failed", f"hold not checked ({type(exc).__name__}): not deleted")
        if hold is not None:
            logger.info("backup held since the plan was made; not deleting it", extra={"backup_id": backup_id})
            return DeletionResult(backup_id, "not_started", f"held since the plan: {hold.reason or 'restore hold'}")

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
                backup_id, "failed", "held while the deletion was being retried: not re-sent (check it is still there)"
            )
        except BackupAlreadyGoneError:
            return DeletionResult(backup_id, "already_gone", "404: already gone, counted as done")
        except (AuthenticationError, ConfigurationError) as exc:
            with lock:
                stop_reason.append(f"stopped: the API token was refused or unreadable ({type(exc).__name__})")
            return DeletionResult(backup_id, "failed", str(exc))
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
) -> PruneReport:
    """List, plan and (unless a dry run) delete; the report says what happened to every backup.

    Errors before the plan (listing, holds) propagate: nothing has been deleted then.
    """
    now = now or datetime.now(UTC)
    dry_run = options.dry_run or request.dry_run
    backups, listing = list_backups_to_plan(client, request.server_ids)
    plan = plan_prune(
        backups,
        policy_for=options.policies,
        tz=options.tz,
        now=now,
        scope=options.scope,
        holds=holds.active_holds(now),
        failed_grace=options.failed_grace,
        max_deletions=options.max_deletions,
        server_ids=frozenset(request.server_ids) if request.server_ids is not None else None,
        keep_at_least=options.keep_at_least,
    )
    if dry_run:
        results = tuple(DeletionResult(d.backup_id, "dry_run", "dry run: not deleted") for d in plan.to_delete)
    else:
        results = execute_deletions(
            client, plan.to_delete, holds=holds, concurrency=options.concurrency, time_left=time_left, margin=margin
        )
    return PruneReport(
        request=request, dry_run=dry_run, listing=listing, listed=len(backups), plan=plan, results=results
    )


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
    ("DryRun", lambda r: int(r.dry_run)),
)


def publish_report(report: PruneReport, *, notifier: Notifier) -> None:
    """The run's one structured log record, its metrics, and a notification if it needs attention."""
    record = report.to_log()
    log = logger.warning if report.needs_attention else logger.info
    log("prune run finished", extra={"prune": record})
    for name, value in _METRICS:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value(report))
    message = report.notification()
    if message is not None:
        subject, text = message
        notifier.publish(subject, text, routing=report_routing(report))


def report_routing(report: PruneReport) -> Routing:
    """The attributes of a run's notification: failed deletions are an error, the valve a warning;
    ``server_id`` when the run was for one server."""
    servers = report.request.server_ids
    server_id = servers[0] if servers and len(set(servers)) == 1 else None
    if any(r.outcome == "failed" for r in report.results):
        return Routing("prune", "deletions_failed", "error", server_id)
    return Routing("prune", "valve", "warning", server_id)
