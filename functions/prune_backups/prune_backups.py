"""PruneBackupsFunction: delete the manual backups the retention policy no longer keeps (docs/prune.md).

Triggers: the EventBridge Scheduler schedule (daily by default), a classic EventBridge scheduled
event, or a manual invoke ``{"dry_run": true, "server_ids": [12345]}``. This module only wires:
settings (validated once, at the first invocation), the request, the client's deadline, then
:mod:`vpsbackup.prune.job` lists, plans, deletes and reports, and :mod:`vpsbackup.prune.journal`
writes each deletion to the journal.
"""

from __future__ import annotations

import functools
from typing import Any

from vpsbackup.aws import runtime
from vpsbackup.aws.journal import Journal
from vpsbackup.observability import logger, metrics, tracer
from vpsbackup.prune import heartbeat
from vpsbackup.prune.daily_budget import DailyDeletionBudget
from vpsbackup.prune.incremental_run import is_incremental, run_incremental_prune
from vpsbackup.prune.job import STOP_STARTING_MARGIN_S, PruneOptions, publish_report, run_prune
from vpsbackup.prune.journal import journal_run
from vpsbackup.prune.request import parse_prune_request
from vpsbackup.prune.settings import PruneSettings
from vpsbackup.prune.state_store import DeletionBudgetStore, PruneStateStore
from vpsbackup.settings import load_settings


@functools.cache
def settings() -> PruneSettings:
    """Validated once per execution environment; a bad variable fails the invocation, named."""
    return load_settings(PruneSettings)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    """Returns the run's report, under 1 MB at any fleet size: totals, counts by reason, each deletion's
    outcome, and every decision with its reasons when the run is limited to server_ids or the fleet is small."""
    config = settings()
    request = parse_prune_request(event)  # a bad payload fails here, naming the field, before any API call
    logger.append_keys(trigger=request.trigger, dry_run=request.dry_run or config.dry_run)
    client = runtime.api_client_for(config, "prune")
    client.set_deadline(runtime.remaining_seconds(context))
    state = runtime.state_table(config.state_table_name)
    options = PruneOptions.from_settings(config)
    time_left = functools.partial(runtime.remaining_seconds, context, margin=0.0)
    budget = DailyDeletionBudget(DeletionBudgetStore(state), config.max_deletions_per_day)
    if is_incremental(request, options):  # PRUNE_SCOPE=managed, a full run: only the servers that changed
        report = run_incremental_prune(
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
    else:
        report = run_prune(request, options, client=client, holds=state, time_left=time_left, budget=budget)
    journal_run(
        report,
        options.policies,
        journal=Journal(state, source="prune-backups", retention=config.journal_retention),
        run=getattr(context, "aws_request_id", None) or report.plan.now.isoformat(),
        time_left=time_left,
    )
    publish_report(report, notifier=runtime.notifier(config.notify_topic_arn, config.notify_format))
    if config.heartbeat_url:  # the run completed: tell the outside monitor (never fails the run)
        heartbeat.ping(config.heartbeat_url)
    return report.to_dict()
