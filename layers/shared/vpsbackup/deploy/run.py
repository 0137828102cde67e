"""One invocation's backups: the job's dependencies built from the Lambda context and the settings.

Both triggers (:mod:`vpsbackup.deploy.eventbridge`, :mod:`vpsbackup.deploy.function_url`) end here:
the API client gets the invocation's deadline, the claims get a lease that outlives it, then
:func:`vpsbackup.deploy.job.back_up_deployment` runs and its outcome is counted and logged.
"""

from __future__ import annotations

import functools
import uuid
from datetime import timedelta
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from vpsbackup.aws import runtime
from vpsbackup.aws.journal import Journal
from vpsbackup.deploy.claims import ClaimStore, lease_for
from vpsbackup.deploy.job import BackupOnDeploy, DeploymentResult, back_up_deployment, record_metrics
from vpsbackup.deploy.queue import (
    INLINE_SERVERS,
    WORKER_STOP_MARGIN_S,
    DeployQueue,
    parse_message,
    queue_deployment,
    work_on,
)
from vpsbackup.deploy.request import DeployRequest
from vpsbackup.deploy.settings import BackupOnDeploySettings
from vpsbackup.errors import ConfigurationError
from vpsbackup.observability import logger


def back_up(
    request: DeployRequest,
    servers: list[int],
    context: LambdaContext,
    config: BackupOnDeploySettings,
    *,
    max_wait_for_claim: float,
    trigger: str,
) -> DeploymentResult:
    """Back up ``servers`` for ``request``; waits at most ``max_wait_for_claim`` s (and a quarter of
    the time left) for another delivery's claim on a server. ``trigger`` (``eventbridge``,
    ``webhook``) is what delivered the request, for the journal. With a deploy queue, a deployment of
    more than INLINE_SERVERS servers is registered and queued instead (each server ``queued``)."""
    logger.append_keys(deployment_id=request.deployment_id)
    deps = _dependencies(context, config, max_wait_for_claim=max_wait_for_claim, trigger=trigger)
    if config.deploy_queue_url and len(servers) > INLINE_SERVERS:
        meta = deps.claims.register_deployment(request.deployment_id, servers, deps.clock())
        queue = DeployQueue(runtime.sqs_client(), config.deploy_queue_url)
        queued = queue_deployment(request, servers, meta.received_at, deps.claims, queue)
        result = DeploymentResult(request.deployment_id, meta.received_at, queued)
    else:
        result = back_up_deployment(request, servers, deps)
        record_metrics(result)
    logger.info("deploy request done", extra={"http_status": result.http_status, "result": result.body()})
    return result


def work_on_queue(
    event: dict[str, Any], context: LambdaContext, config: BackupOnDeploySettings, *, max_wait_for_claim: float
) -> dict[str, Any]:
    """The deploy queue's worker: each SQS record's servers (deploy/queue.py). A record that fails
    (an unknown deployment, a StateTable or queue error) is reported for SQS to deliver again
    (``batchItemFailures``); a bad message too, until SQS moves it to the failed-invocations queue."""
    if not config.deploy_queue_url:
        raise ConfigurationError("DEPLOY_QUEUE_URL: not set, but the deploy queue invoked the function")
    queue = DeployQueue(runtime.sqs_client(), config.deploy_queue_url)
    failures = []
    for record in event.get("Records", []):
        message_id = str(record.get("messageId", ""))
        try:
            message = parse_message(str(record.get("body", "")))
            logger.append_keys(deployment_id=message.deployment_id)
            deps = _dependencies(context, config, max_wait_for_claim=max_wait_for_claim, trigger="queue")
            deps.reuse_reads_status = False
            results = work_on(message, deps, queue, stop=functools.partial(_out_of_time, context))
            record_metrics(DeploymentResult(message.deployment_id, deps.clock(), results))
        except Exception as exc:  # any failure: SQS delivers the record again
            logger.exception("deploy queue message failed; SQS delivers it again", extra={"message_id": message_id})
            failures.append({"itemIdentifier": message_id})
            if isinstance(exc, ConfigurationError):
                raise
    return {"batchItemFailures": failures}


def _out_of_time(context: LambdaContext) -> bool:
    """Less than WORKER_STOP_MARGIN_S left of the invocation: start no other server."""
    left = runtime.remaining_seconds(context, margin=WORKER_STOP_MARGIN_S)
    return left is not None and left <= 0


def _dependencies(
    context: LambdaContext, config: BackupOnDeploySettings, *, max_wait_for_claim: float, trigger: str
) -> BackupOnDeploy:
    """The job's collaborators for this invocation: the client bound to its deadline, the claims
    with a lease that outlives it, the journal."""
    remaining = runtime.remaining_seconds(context)
    client = runtime.api_client_for(config, "deploy")
    client.set_deadline(remaining)
    state = runtime.state_table(config.state_table_name)
    lambda_left = timedelta(milliseconds=context.get_remaining_time_in_millis())
    return BackupOnDeploy(
        client=client,
        claims=ClaimStore(state),
        state=state,
        owner=f"{getattr(context, 'aws_request_id', 'local')}/{uuid.uuid4().hex[:12]}",
        lease=lease_for(lambda_left),
        wait_for_claim=min(max_wait_for_claim, (remaining or max_wait_for_claim) / 4),
        journal=Journal(state, source="backup-on-deploy", retention=config.journal_retention),
        trigger=trigger,
    )
