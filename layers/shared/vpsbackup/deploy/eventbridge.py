"""The EventBridge trigger: a ``Deployment Started`` event from ``ci.deploy`` → the backups.

A bad event raises (naming the field), so that it lands in the failure destination for a person;
so does a run with a failed or still pending server, so that Lambda retries it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from vpsbackup.deploy.job import DeploymentBackupFailedError
from vpsbackup.deploy.request import InvalidDeployRequestError, parse_deploy_request, resolve_servers
from vpsbackup.deploy.run import back_up
from vpsbackup.deploy.settings import BackupOnDeploySettings
from vpsbackup.observability import logger, metrics

DEPLOY_SOURCE = "ci.deploy"
DEPLOY_DETAIL_TYPE = "Deployment Started"


def on_eventbridge(
    event: dict[str, Any], context: LambdaContext, config: BackupOnDeploySettings, *, max_wait_for_claim: float
) -> dict[str, Any]:
    """The deployment's result body; raises for a bad event and for a run to retry."""
    envelope = parse(event=event, model=EventBridgeModel)
    if envelope.source != DEPLOY_SOURCE or envelope.detail_type != DEPLOY_DETAIL_TYPE:
        raise ValueError(f"not a deploy event: source {envelope.source!r}, detail-type {envelope.detail_type!r}")
    try:
        request = parse_deploy_request(envelope.detail)
        servers = resolve_servers(request, config.server_groups)
    except InvalidDeployRequestError as exc:
        # Retrying cannot help, but raising puts the event in the failure destination for a person.
        logger.error(
            "deploy event rejected", extra={"fields": exc.fields, "reason": exc.message, "event_id": envelope.id}
        )
        metrics.add_metric(name="requests_rejected", unit=MetricUnit.Count, value=1)
        raise
    result = back_up(request, servers, context, config, max_wait_for_claim=max_wait_for_claim, trigger="eventbridge")
    body = result.body()
    if result.failed or result.pending:
        # A pending server is another delivery's, which may still die: only a retry can tell.
        logger.error("some servers were not backed up; failing the invocation for retry", extra={"result": body})
        raise DeploymentBackupFailedError(result)
    return body
