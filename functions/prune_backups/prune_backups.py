"""PruneBackupsFunction: delete the manual backups the retention policy no longer keeps (docs/prune.md).

Triggers: the prune state machine (``statemachines/prune.asl.json``), one chunk an invocation
(``{"prune_chunk": ...}``, :mod:`vpsbackup.prune.chunks`), which the schedule and people start; or a
direct invoke, one single pass, ``{"dry_run": true, "server_ids": [12345]}`` (and the schedule's and
a classic scheduled event's payloads). This module only wires: settings (validated once, at the
first invocation), the request, the client's deadline, then :mod:`vpsbackup.prune.job` lists,
plans, deletes and reports, and :mod:`vpsbackup.prune.journal` writes each deletion to the journal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from vpsbackup.aws import runtime
from vpsbackup.aws.journal import Journal
from vpsbackup.aws.state import StateTable
from vpsbackup.observability import logger, metrics, tracer
from vpsbackup.prune import heartbeat, report_render
from vpsbackup.prune.chunks import ChunkContext, run_chunk
from vpsbackup.prune.cursor import ChunkEvent
from vpsbackup.prune.daily_budget import DailyDeletionBudget
from vpsbackup.prune.incremental_run import is_incremental, run_incremental_prune
from vpsbackup.prune.job import STOP_STARTING_MARGIN_S, BackupsApi, PruneOptions, PruneReport, publish_report, run_prune
from vpsbackup.prune.journal import journal_run
from vpsbackup.prune.request import PruneRequest, parse_prune_request
from vpsbackup.prune.run_store import PruneRunStore
from vpsbackup.prune.settings import PruneSettings
from vpsbackup.prune.state_store import DeletionBudgetStore, PruneStateStore
from vpsbackup.settings import load_settings


@functools.cache
def settings() -> PruneSettings:
    """Validated once per execution environment; a bad variable fails the invocation, named."""
    return load_settings(PruneSettings)


def _single_pass(
    request: PruneRequest,
    options: PruneOptions,
    *,
    client: BackupsApi,
    state: StateTable,
    time_left: Callable[[], float | None],
    budget: DailyDeletionBudget,
) -> PruneReport:
    config = settings()
    if is_incremental(request, options):  # PRUNE_SCOPE=managed, a full run: only the servers that changed
        return run_incremental_prune(
            request,
            options,
            client=client,
            holds=state,
            store=PruneStateStore(state),
            time_left=time_left,
            margin=STOP_STARTING_MARGIN_S,
            seconds_per_request=1.0 / config.api_requests_per_second,  # time kept for the deletions, at least
            budget=budget,
        )
    return run_prune(request, options, client=client, holds=state, time_left=time_left, budget=budget)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    """A chunk's cursor (the state machine's invocations), or a single pass's report, under 1 MB at any
    fleet size: totals, counts by reason, each deletion's outcome, and every decision with its reasons
    when the run is limited to server_ids or the fleet is small."""
    config = settings()
    chunk = ChunkEvent.model_validate(event["prune_chunk"]) if event and "prune_chunk" in event else None
    request = None if chunk is not None else parse_prune_request(event)  # a bad payload fails here, named
    client = runtime.api_client_for(config, "prune")
    client.set_deadline(runtime.remaining_seconds(context))
    state = runtime.state_table(config.state_table_name)
    options = PruneOptions.from_settings(config)
    time_left = functools.partial(runtime.remaining_seconds, context, margin=0.0)
    journal = Journal(state, source="prune-backups", retention=config.journal_retention)
    budget = DailyDeletionBudget(DeletionBudgetStore(state), config.max_deletions_per_day)

    def write_journal(report: PruneReport, run: str, at: datetime | None = None) -> None:
        journal_run(report, options.policies, journal=journal, run=run, time_left=time_left, at=at)

    def ping() -> None:
        if config.heartbeat_url:  # the run completed: tell the outside monitor (never fails the run)
            heartbeat.ping(config.heartbeat_url)

    if chunk is not None:
        logger.append_keys(trigger="state-machine", dry_run=config.dry_run)
        ctx = ChunkContext(
            client=client,
            state=state,
            store=PruneRunStore(state),
            options=options,
            notifier=runtime.notifier(config.notify_topic_arn, config.notify_format),
            chunk_pages=config.prune_chunk_pages,
            chunk_deletions=config.prune_chunk_deletions,
            chunks_per_execution=config.prune_chunks_per_execution,
            time_left=time_left,
            journal=write_journal,
            heartbeat=ping,
            budget=budget,
        )
        return run_chunk(chunk, ctx)
    assert request is not None
    logger.append_keys(trigger=request.trigger, dry_run=request.dry_run or config.dry_run)
    report = _single_pass(request, options, client=client, state=state, time_left=time_left, budget=budget)
    write_journal(report, getattr(context, "aws_request_id", None) or report.plan.now.isoformat())
    publish_report(report, notifier=runtime.notifier(config.notify_topic_arn, config.notify_format))
    ping()
    return report_render.result_record(report)
