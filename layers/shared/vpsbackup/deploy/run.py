"""One invocation's backups: the job's dependencies built from the Lambda context and the settings.

Both triggers (:mod:`vpsbackup.deploy.eventbridge`, :mod:`vpsbackup.deploy.function_url`) end here:
the API client gets the invocation's deadline, the claims get a lease that outlives it, then
:func:`vpsbackup.deploy.job.back_up_deployment` runs and its outcome is counted and logged.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from aws_lambda_powertools.utilities.typing import LambdaContext

from vpsbackup.aws import runtime
from vpsbackup.aws.journal import Journal
from vpsbackup.deploy.claims import ClaimStore, lease_for
from vpsbackup.deploy.job import BackupOnDeploy, DeploymentResult, back_up_deployment, record_metrics
from vpsbackup.deploy.request import DeployRequest
from vpsbackup.deploy.settings import BackupOnDeploySettings
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
    ``webhook``) is what delivered the request, for the journal."""
    logger.append_keys(deployment_id=request.deployment_id)
    remaining = runtime.remaining_seconds(context)
    client = runtime.api_client_for(config, "deploy")
    client.set_deadline(remaining)
    state = runtime.state_table(config.state_table_name)
    lambda_left = timedelta(milliseconds=context.get_remaining_time_in_millis())
    deps = BackupOnDeploy(
        client=client,
        claims=ClaimStore(state),
        state=state,
        owner=f"{getattr(context, 'aws_request_id', 'local')}/{uuid.uuid4().hex[:12]}",
        lease=lease_for(lambda_left),
        wait_for_claim=min(max_wait_for_claim, (remaining or max_wait_for_claim) / 4),
        journal=Journal(state, source="backup-on-deploy", retention=config.journal_retention),
        trigger=trigger,
    )
    result = back_up_deployment(request, servers, deps)
    record_metrics(result)
    logger.info("deploy request done", extra={"http_status": result.http_status, "result": result.body()})
    return result
