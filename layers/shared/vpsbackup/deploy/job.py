"""Backup on deploy (docs/backup-on-deploy.md): one manual backup per (deployment, server), recorded for restore.

:func:`back_up_deployment` walks the servers one by one through the claim protocol of
:mod:`vpsbackup.deploy.claims`; each server gets its own result and one failure never hides the others.
:func:`deployment_status` answers the CI's "are my backups done?" from the claims and the API.
Both get everything they need as arguments (client, tables, clock): no environment, no globals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aws_lambda_powertools.metrics import MetricUnit

from vpsbackup.aws.journal import Journal
from vpsbackup.aws.state import StateTable
from vpsbackup.deploy.claims import (
    DEFAULT_REMAINING,
    LEASE_MARGIN,
    QUEUE_PATIENCE,
    Action,
    Claim,
    ClaimStore,
    DeploymentMeta,
    decide,
    find_marked_backup,
)
from vpsbackup.deploy.request import DeployRequest, backup_description
from vpsbackup.errors import ConfigurationError
from vpsbackup.observability import logger, metrics, tracer
from vpsbackup.provider.client import NOT_APPLIED_STATUSES, VpsClient
from vpsbackup.provider.errors import (
    ApiConnectionError,
    ApiStatusError,
    NotFoundError,
    OutcomeUnknownError,
    ServerError,
    VpsApiError,
)
from vpsbackup.provider.models import BACKUP_MANUAL, STATUS_IN_PROGRESS, Backup
from vpsbackup.records import DEPLOYMENT_BACKUP_LATEST, DeploymentRecord, JournalEntry

# What the journal keeps of a deploy request, besides its id.
REQUEST_CONTEXT = ("environment", "repository", "ref", "commit", "actor", "url")

# What a deployment did for one server (a prune deletion has its DeletionOutcome).
DeployOutcome = Literal["created", "reconciled", "reused", "pending", "failed", "queued"]
STATUS_ERROR = "error"  # no backup: see the result's ``error``
STATUS_MISSING = "missing"  # a backup was recorded but the API no longer lists it


@dataclass(frozen=True)
class ServerResult:
    """What happened to one server of a deployment.

    ``outcome``: ``created`` (this delivery POSTed it), ``reconciled`` (an earlier delivery had made
    it; found by its marker), ``reused`` (already recorded), ``pending`` (another delivery is
    creating it right now), ``failed`` (no backup; ``error`` says why, ``http_status`` is 404 for a
    server that does not exist and 502 for an API failure), ``queued`` (a large deployment: the
    deploy queue's worker makes it, :mod:`vpsbackup.deploy.queue`).
    """

    server_id: int
    outcome: DeployOutcome
    status: str
    backup_id: int | None = None
    error: str | None = None
    http_status: int | None = None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"server_id": self.server_id, "backup_id": self.backup_id, "status": self.status}
        if self.error is not None:
            body["error"] = self.error
        return body


def http_status_for(results: list[ServerResult]) -> int:
    """201 if this delivery created a backup, 200 if nothing new was needed, 202 if servers were
    queued; 502 if any server met an API failure, else 404 if any server does not exist (the others'
    results still stand)."""
    failures = [r.http_status or 502 for r in results if r.outcome == "failed"]
    if failures:
        return 502 if any(code != 404 for code in failures) else 404
    if any(r.outcome == "queued" for r in results):
        return 202
    return 201 if any(r.outcome == "created" for r in results) else 200


@dataclass(frozen=True)
class DeploymentResult:
    deployment_id: str
    received_at: datetime
    servers: list[ServerResult]

    @property
    def http_status(self) -> int:
        return http_status_for(self.servers)

    @property
    def failed(self) -> list[ServerResult]:
        return [r for r in self.servers if r.outcome == "failed"]

    @property
    def pending(self) -> list[ServerResult]:
        """Servers another delivery was still creating: not known to be backed up yet."""
        return [r for r in self.servers if r.outcome == "pending"]

    def body(self) -> dict[str, Any]:
        """The response body (webhook) and return value (EventBridge)."""
        return {"deployment_id": self.deployment_id, "backups": [r.as_dict() for r in self.servers]}


class DeploymentBackupFailedError(Exception):
    """Raised for an EventBridge delivery after every server was tried, if any failed (or is still
    being created by another delivery, which may yet die), so Lambda's asynchronous retries and the
    failure destination see it; a retry reuses whatever was made."""

    def __init__(self, result: DeploymentResult) -> None:
        failed = ", ".join(f"{r.server_id}: {r.error}" for r in result.failed)
        message = f"deployment {result.deployment_id!r}: {len(result.failed)} server(s) failed ({failed})"
        if result.pending:
            pending = ", ".join(str(r.server_id) for r in result.pending)
            message += f"; still being created by another delivery: {pending}"
        super().__init__(message)
        self.result = result


@dataclass
class BackupOnDeploy:
    """The collaborators of one invocation. ``owner`` must be unique per invocation; ``lease`` must
    outlast it (:func:`vpsbackup.deploy.claims.lease_for`)."""

    client: VpsClient
    claims: ClaimStore
    state: StateTable
    owner: str
    lease: timedelta
    # How long a delivery waits for a concurrent duplicate's claim before answering "in progress".
    wait_for_claim: float = 10.0
    poll_interval: float = 0.1
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    sleep: Callable[[float], None] = field(default=time.sleep)
    # The journal of irreversible acts (each backup this delivery made or found), and what
    # delivered the request (``eventbridge``, ``webhook``), in its entries.
    journal: Journal | None = None
    trigger: str = ""
    # A server already backed up is answered with its backup's current status (one listing); the
    # deploy queue's worker answers nobody and skips that read.
    reuse_reads_status: bool = True


@tracer.capture_method
def back_up_deployment(
    request: DeployRequest, server_ids: list[int], deps: BackupOnDeploy, *, received_at: datetime | None = None
) -> DeploymentResult:
    """Make sure each server has its one backup for ``request.deployment_id``; record it all."""
    now = received_at or deps.clock()
    meta = deps.claims.register_deployment(request.deployment_id, server_ids, now)
    logger.info(
        "deploy request registered",
        extra={
            "deployment_id": request.deployment_id,
            "received_at": meta.received_at.isoformat(),
            "servers": server_ids,
            "deliveries": meta.deliveries,
            "first": meta.deliveries == 1,
        },
    )
    results = back_up_servers(request, server_ids, meta.received_at, deps)
    return DeploymentResult(request.deployment_id, meta.received_at, results)


def back_up_servers(
    request: DeployRequest,
    server_ids: list[int],
    received_at: datetime,
    deps: BackupOnDeploy,
    *,
    stop: Callable[[], bool] | None = None,
) -> list[ServerResult]:
    """Each server of a registered deployment (first received at ``received_at``) through the claim
    protocol, in order, until ``stop()`` says there is no time for another: the servers reached."""
    description = backup_description(request)
    log = {"deployment_id": request.deployment_id, "received_at": received_at.isoformat()}
    results = []
    for server_id in server_ids:
        if stop is not None and stop():
            break
        result = _back_up_server(request.deployment_id, server_id, description, received_at, deps)
        _warn_if_late(result, received_at, deps.clock(), log)
        if result.outcome != "pending":
            deps.state.put_deployment_record(
                DeploymentRecord(
                    deployment_id=request.deployment_id,
                    server_id=server_id,
                    received_at=received_at,
                    backup_id=result.backup_id,
                )
            )
        results.append(result)
    if deps.journal is not None:
        deps.journal.write_many(journal_entries(deps.journal, request, results, received_at, deps.trigger))
    return results


def _warn_if_late(result: ServerResult, received_at: datetime, now: datetime, log: dict[str, Any]) -> None:
    """A backup this delivery made longer than DEPLOYMENT_BACKUP_LATEST after the request was first
    received is recorded, but the restore job will not take it for the state before the deploy."""
    if result.outcome == "created" and now - received_at > DEPLOYMENT_BACKUP_LATEST:
        logger.warning(
            "backup made late: a restore on alarm will not use it as the state before this deploy",
            extra={
                **log,
                "server_id": result.server_id,
                "backup_id": result.backup_id,
                "after_request_s": int((now - received_at).total_seconds()),
                "limit_s": int(DEPLOYMENT_BACKUP_LATEST.total_seconds()),
            },
        )


def journal_entries(
    journal: Journal, request: DeployRequest, results: list[ServerResult], received_at: datetime, trigger: str
) -> Iterator[JournalEntry]:
    """One ``backup_created`` entry per server this delivery made a backup for (``created``), found
    the backup an earlier delivery made without an answer (``reconciled``), or failed to back up
    (``failed``, with the error); ``reused`` and ``pending`` servers were journaled by the delivery
    that made their backup."""
    context = {
        key: value
        for key, value in (("trigger", trigger), *((name, getattr(request, name)) for name in REQUEST_CONTEXT))
        if value
    }
    for result in results:
        if result.outcome not in ("created", "reconciled", "failed"):
            continue
        entry = journal.entry(
            "backup_created",
            by=f"deployment {request.deployment_id}",
            outcome=result.outcome,
            server_id=result.server_id,
            backup_id=result.backup_id,
            run=request.deployment_id,
            reasons=(why_journaled(request.deployment_id, result, received_at),),
            details={"status": result.status, "received_at": received_at.isoformat(), **context},
        )
        if entry is not None:
            yield entry


def why_journaled(deployment_id: str, result: ServerResult, received_at: datetime) -> str:
    """Why the entry's backup exists (or does not), in words."""
    made = f"the backup before deployment {deployment_id} (request received {received_at.isoformat()})"
    if result.outcome == "reconciled":
        return f"{made}, found by its marker: an earlier delivery made it and had no answer"
    if result.outcome == "failed":
        return f"no backup before deployment {deployment_id}: {result.error}"
    return made


def record_metrics(result: DeploymentResult) -> None:
    """backups_created, backups_reused (incl. reconciled), backups_failed."""
    outcomes = [r.outcome for r in result.servers]
    metrics.add_metric(name="backups_created", unit=MetricUnit.Count, value=outcomes.count("created"))
    metrics.add_metric(
        name="backups_reused", unit=MetricUnit.Count, value=outcomes.count("reused") + outcomes.count("reconciled")
    )
    metrics.add_metric(name="backups_failed", unit=MetricUnit.Count, value=outcomes.count("failed"))


def _back_up_server(
    deployment_id: str, server_id: int, description: str, received_at: datetime, deps: BackupOnDeploy
) -> ServerResult:
    """One server through the claim protocol: reuse, wait for another delivery, or claim and create."""
    log = {"deployment_id": deployment_id, "server_id": server_id, "owner": deps.owner}
    wait_until = time.monotonic() + deps.wait_for_claim
    while True:
        now = deps.clock()
        seen = deps.claims.get(deployment_id, server_id)
        action = decide(seen, now)
        if action == Action.REUSE:
            return _reuse(seen, server_id, deps, log)
        if action == Action.WAIT:
            pending = _wait_for_holder(seen, server_id, wait_until, deps, log)
            if pending is not None:
                return pending
            continue
        mine = _take_claim(action, seen, deployment_id, server_id, now, received_at, deps)
        if mine is None:
            logger.info("lost the race for the claim; reading it again", extra={**log, "action": str(action)})
            continue
        logger.info(
            "claimed",
            extra={**log, "action": str(action), "attempt": mine.attempts, "previous_state": seen and seen.state},
        )
        if action == Action.RECONCILE:
            settled = _reconcile_before_create(mine, seen, server_id, deps, log)
            if settled is not None:
                return settled
        return _create(mine, description, deps, log)


def _reuse(seen: Claim | None, server_id: int, deps: BackupOnDeploy, log: dict[str, Any]) -> ServerResult:
    """The claim already records the backup: report it with its current status, create nothing."""
    assert seen is not None
    assert seen.backup_id is not None
    current = _current_status(deps.client, server_id, seen.backup_id) if deps.reuse_reads_status else None
    status = current or seen.backup_status or "unknown"
    logger.info("reused: the backup already exists", extra={**log, "backup_id": seen.backup_id})
    return ServerResult(server_id, "reused", status, backup_id=seen.backup_id)


def _wait_for_holder(
    seen: Claim | None, server_id: int, wait_until: float, deps: BackupOnDeploy, log: dict[str, Any]
) -> ServerResult | None:
    """Another delivery holds the claim: ``pending`` once the wait is over, else None after one poll interval."""
    assert seen is not None
    if time.monotonic() >= wait_until:
        logger.info(
            "in progress: another delivery holds the claim; not creating",
            extra={**log, "holder": seen.owner, "lease_until": seen.lease_until.isoformat()},
        )
        return ServerResult(server_id, "pending", STATUS_IN_PROGRESS)
    deps.sleep(deps.poll_interval)
    return None


def _take_claim(
    action: Action,
    seen: Claim | None,
    deployment_id: str,
    server_id: int,
    now: datetime,
    received_at: datetime,
    deps: BackupOnDeploy,
) -> Claim | None:
    """A new claim (``CREATE``) or a take-over of the one seen; None if another delivery got there first."""
    if action == Action.CREATE:
        return deps.claims.claim_new(
            deployment_id, server_id, owner=deps.owner, now=now, lease=deps.lease, received_at=received_at
        )
    assert seen is not None
    return deps.claims.take_over(seen, owner=deps.owner, now=now, lease=deps.lease)


def _reconcile_before_create(
    mine: Claim, seen: Claim | None, server_id: int, deps: BackupOnDeploy, log: dict[str, Any]
) -> ServerResult | None:
    """After an earlier attempt: the backup it made if listed, a failure if it may still appear, else None (create)."""
    found = _reconcile(mine, deps, log, reason=f"previous attempt left the claim {seen and seen.state!r}")
    if isinstance(found, ServerResult):
        return found
    if found is not None:
        return _record(mine, found, "reconciled", deps, log)
    if mine.settles_at is not None and deps.clock() < mine.settles_at:
        # An earlier POST may still be in the provider's hands: not listed is not "not made".
        error = (
            "an earlier create's outcome is still unknown and its backup is not listed yet; "
            f"not creating another before {mine.settles_at.isoformat()} (send the request again then)"
        )
        deps.claims.mark_unknown(mine, error)
        logger.warning("not creating: an earlier create may still appear", extra=log)
        return ServerResult(server_id, "failed", STATUS_ERROR, error=error, http_status=502)
    return None


def _create(mine: Claim, description: str, deps: BackupOnDeploy, log: dict[str, Any]) -> ServerResult:
    server_id = mine.server_id
    try:
        created: Backup = deps.client.create_backup(server_id, description)
    except OutcomeUnknownError as exc:
        logger.warning("create outcome unknown: resolving by listing, never by a second POST", extra=log)
        error = f"create outcome unknown ({exc.cause}) and no backup found by listing; a retry looks again first"
        return _resolve_by_listing(mine, deps, log, reason=exc.message, error=error)
    except NotFoundError as exc:
        error = f"server {server_id} does not exist (API 404: {exc.api_message or 'not found'})"
        extra = {**log, "api_message": exc.api_message}
        return _failed(mine, deps, error, "failed: server does not exist", extra, http_status=404)
    except ServerError as exc:
        if exc.status_code in NOT_APPLIED_STATUSES:
            error = f"the API refused the backup: {_http_answer(exc)}"
            return _failed(mine, deps, error, "failed: the API refused the backup", {**log, "error": error})
        # A 500 and the like: the provider answered, but may have made the backup before failing.
        logger.warning("create answered a server error; resolving by listing", extra={**log, "error": exc.message})
        error = f"the API answered {_http_answer(exc)}; no backup found by listing; a retry looks again first"
        return _resolve_by_listing(mine, deps, log, reason=exc.message, error=error)
    except ApiStatusError as exc:
        error = f"the API refused the backup: {_http_answer(exc)}"
        extra = {**log, "status": exc.status_code, "error": error}
        return _failed(mine, deps, error, "failed: the API refused the backup", extra)
    except ApiConnectionError as exc:
        # For a POST the client raises this only when the request never left (see client): not applied.
        error = f"the API could not be reached: {exc.message}"
        return _failed(mine, deps, error, "failed: the API could not be reached", {**log, "error": exc.message})
    except VpsApiError as exc:
        # An answer we cannot read (e.g. a 201 with a bad body): the backup may exist; listing settles it.
        logger.warning("create answer unreadable; resolving by listing", extra={**log, "error": exc.message})
        return _resolve_by_listing(mine, deps, log, reason=exc.message, error=exc.message)
    except ConfigurationError:
        deps.claims.mark_failed(mine, "configuration error (see logs)")
        raise
    logger.info("created", extra={**log, "backup_id": created.id, "description": description})
    return _record(mine, created, "created", deps, log)


def _http_answer(exc: ApiStatusError) -> str:
    """``HTTP 409``, and the API's message when it gave one."""
    return f"HTTP {exc.status_code}" + (f": {exc.api_message}" if exc.api_message else "")


def _failed(
    mine: Claim, deps: BackupOnDeploy, error: str, why: str, extra: dict[str, Any], *, http_status: int = 502
) -> ServerResult:
    """A create the API did not apply: the claim marked failed (a retry may create), logged with ``why``."""
    deps.claims.mark_failed(mine, error)
    logger.warning(why, extra=extra)
    return ServerResult(mine.server_id, "failed", STATUS_ERROR, error=error, http_status=http_status)


def _resolve_by_listing(
    mine: Claim, deps: BackupOnDeploy, log: dict[str, Any], *, reason: str, error: str
) -> ServerResult:
    """After a create that may have been applied (no answer, a ``500``, an answer that cannot be
    read): record the backup if listed, else leave the claim ``unknown`` with its settle time (a
    retry lists again first, and creates nothing before ``settles_at``: the provider may still be
    making it without listing it yet) and report the server as failed."""
    mine = mine.model_copy(update={"settles_at": deps.clock() + LEASE_MARGIN})
    found = _reconcile(mine, deps, log, reason=reason)
    if isinstance(found, ServerResult):
        return found
    if found is not None:
        return _record(mine, found, "created", deps, log)
    deps.claims.mark_unknown(mine, error)
    logger.error("create outcome unknown and not found", extra={**log, "error": error})
    return ServerResult(mine.server_id, "failed", STATUS_ERROR, error=error, http_status=502)


def _reconcile(mine: Claim, deps: BackupOnDeploy, log: dict[str, Any], *, reason: str) -> Backup | ServerResult | None:
    """List the server's manual backups for the deployment's marker. A ServerResult if listing failed."""
    try:
        # A listing cut short is not "not there": it raises, and the claim stays unknown.
        backups = deps.client.list_backups(server_id=mine.server_id, backup_type=BACKUP_MANUAL)
    except VpsApiError as exc:
        error = f"could not list backups to check for an earlier attempt: {exc.message}"
        deps.claims.mark_unknown(mine, error)
        logger.error("reconcile failed: listing failed; the claim stays unknown", extra={**log, "error": exc.message})
        return ServerResult(mine.server_id, "failed", STATUS_ERROR, error=error, http_status=502)
    found = find_marked_backup(backups, mine.deployment_id, mine.server_id)
    logger.info(
        "reconciled by listing: found the backup" if found else "reconciled by listing: no backup yet",
        extra={**log, "reason": reason, "backup_id": found.id if found else None, "listed": len(backups)},
    )
    return found


def _record(
    mine: Claim, backup: Backup, outcome: DeployOutcome, deps: BackupOnDeploy, log: dict[str, Any]
) -> ServerResult:
    if not deps.claims.mark_created(mine, backup):
        # Only if this delivery outlived its lease; the take-over reconciles by listing, which finds this one.
        logger.error("the claim was taken over before the backup was recorded", extra={**log, "backup_id": backup.id})
    return ServerResult(mine.server_id, outcome, backup.status, backup_id=backup.id)


def _current_status(client: VpsClient, server_id: int, backup_id: int) -> str | None:
    """The backup's status as the API lists it now; None if it cannot be read (logged)."""
    try:
        backups = client.list_backups(server_id=server_id, backup_type=BACKUP_MANUAL)
    except VpsApiError as exc:
        logger.warning(
            "could not read the backup's current status", extra={"backup_id": backup_id, "error": exc.message}
        )
        return None
    return next((b.status for b in backups if b.id == backup_id), STATUS_MISSING)


# -- status endpoint ------------------------------------------------------------------------------


# A status call reads each backup's status with one listing per server up to this many backups,
# and with one listing of every manual backup above it (a large deployment: fewer requests).
PER_SERVER_STATUS_READS = 10


@dataclass(frozen=True)
class DeploymentStatus:
    deployment_id: str
    received_at: datetime
    backups: list[dict[str, Any]]
    api_failed: bool

    @property
    def http_status(self) -> int:
        return 502 if self.api_failed else 200

    def progress(self) -> dict[str, int]:
        """Servers with their backup made (``created``), with none and none to come without a new
        request (``failed``), and still to be made (``pending``: being created or queued)."""
        created = sum(1 for b in self.backups if b["backup_id"] is not None)
        failed = sum(1 for b in self.backups if b["backup_id"] is None and b["status"] == STATUS_ERROR)
        return {"created": created, "pending": len(self.backups) - created - failed, "failed": failed}

    def body(self) -> dict[str, Any]:
        return {
            "deployment_id": self.deployment_id,
            "received_at": self.received_at.isoformat(),
            "progress": self.progress(),
            "backups": self.backups,
        }


StatusReader = Callable[[int, int], str]
"""The API's status of a backup (server id, backup id); ``missing`` if not listed; raises VpsApiError."""


@tracer.capture_method
def deployment_status(
    deployment_id: str, client: VpsClient, claims: ClaimStore, *, now: datetime | None = None
) -> DeploymentStatus | None:
    """Each of the deployment's backups with its current status from the API; None if unknown.

    ``status`` is the API's (``in_progress``, ``completed``, ``failed``, ...), or ``in_progress``
    with no ``backup_id`` while a delivery is still creating it (or it waits in the deploy queue),
    ``missing`` if the recorded backup is no longer listed, ``error`` (with ``error``) if no backup
    could be made or the delivery making it died (sending the request again settles it).
    """
    now = now or datetime.now(UTC)
    meta, by_server = claims.load_deployment(deployment_id)
    if meta is None:
        return None
    made = sum(1 for claim in by_server.values() if claim.backup_id is not None)
    read = _status_by_server(client) if made <= PER_SERVER_STATUS_READS else _status_from_one_listing(client)
    entries: list[dict[str, Any]] = []
    api_failed = False
    for server_id in meta.server_ids:
        entry, failed = _server_status(server_id, by_server.get(server_id), meta, now, read)
        api_failed = api_failed or failed
        entries.append(entry)
    status = DeploymentStatus(deployment_id, meta.received_at, entries, api_failed)
    logger.info("deployment status", extra={"deployment_id": deployment_id, "progress": status.progress()})
    return status


def _status_by_server(client: VpsClient) -> StatusReader:
    def read(server_id: int, backup_id: int) -> str:
        backups = client.list_backups(server_id=server_id, backup_type=BACKUP_MANUAL)
        return next((b.status for b in backups if b.id == backup_id), STATUS_MISSING)

    return read


def _status_from_one_listing(client: VpsClient) -> StatusReader:
    """Every manual backup listed once, on the first read; a failed listing fails every read."""
    statuses: dict[int, str] = {}
    outcome: list[VpsApiError | None] = []

    def read(server_id: int, backup_id: int) -> str:
        if not outcome:
            try:
                for backup in client.iter_backups(backup_type=BACKUP_MANUAL):
                    statuses[backup.id] = backup.status
                outcome.append(None)
            except VpsApiError as exc:
                outcome.append(exc)
        if outcome[0] is not None:
            raise outcome[0]
        return statuses.get(backup_id, STATUS_MISSING)

    return read


def _server_status(
    server_id: int, claim: Claim | None, meta: DeploymentMeta, now: datetime, read: StatusReader
) -> tuple[dict[str, Any], bool]:
    """One server's entry of the status answer, and whether the API failed to say its backup's status."""
    entry: dict[str, Any] = {"server_id": server_id, "backup_id": None, "status": STATUS_IN_PROGRESS}
    problem = _claim_problem(claim, meta, now)
    if problem is not None:
        entry.update(status=STATUS_ERROR, error=problem.error)
        return entry, False
    if claim is None or claim.backup_id is None:
        return entry, False  # a delivery is still creating it
    entry["backup_id"] = claim.backup_id
    try:
        entry["status"] = read(server_id, claim.backup_id)
    except VpsApiError as exc:
        entry.update(status=STATUS_ERROR, error=f"could not read the status from the API: {exc.message}")
        return entry, True
    return entry, False


@dataclass(frozen=True)
class _ClaimProblem:
    error: str | None


def _claim_problem(claim: Claim | None, meta: DeploymentMeta, now: datetime) -> _ClaimProblem | None:
    """Why the server has no backup and will get none without a new request; None if it has or may still."""
    if claim is not None and claim.state in ("failed", "unknown"):
        return _ClaimProblem(claim.error)
    if claim is None and meta.queued_at is not None and now < meta.queued_at + QUEUE_PATIENCE:
        return None  # still in the deploy queue
    if claim is None and now >= meta.last_received_at + DEFAULT_REMAINING + LEASE_MARGIN:
        # Every delivery so far has surely ended (Lambda's longest timeout) without reaching it.
        return _ClaimProblem("no delivery started backing up this server; send the deploy request again")
    if claim is not None and claim.state == "claimed" and claim.lease_until <= now:
        return _ClaimProblem(
            "the delivery creating this backup stopped before it finished; send the deploy request again"
        )
    return None
