"""BackupOnDeployFunction: a CI deploy hook makes one manual backup per deployment and server.

Two triggers (docs/backup-on-deploy.md): an EventBridge ``Deployment Started`` event from ``ci.deploy``
(:mod:`vpsbackup.deploy.eventbridge`), and the Lambda Function URL (``POST`` a deploy request,
``GET ?deployment_id=`` its status; :mod:`vpsbackup.deploy.function_url`), both signed with
HMAC-SHA256. This module only tells the triggers apart and hands each to its module.
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from vpsbackup.deploy.eventbridge import on_eventbridge
from vpsbackup.deploy.function_url import on_function_url
from vpsbackup.deploy.run import work_on_queue
from vpsbackup.deploy.settings import BackupOnDeploySettings
from vpsbackup.observability import logger, metrics, tracer
from vpsbackup.settings import load_settings

# The longest a delivery waits for another one's claim on a server (and at most a quarter of the time left).
MAX_WAIT_FOR_CLAIM_S = 10.0


@functools.cache
def settings() -> BackupOnDeploySettings:
    """Validated once per execution environment; a bad variable fails the cold start, named."""
    return load_settings(BackupOnDeploySettings)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config = settings()
    if "Records" in event:  # the deploy queue: its worker (large deployments)
        return work_on_queue(event, context, config, max_wait_for_claim=MAX_WAIT_FOR_CLAIM_S)
    if "detail-type" in event:
        return on_eventbridge(event, context, config, max_wait_for_claim=MAX_WAIT_FOR_CLAIM_S)
    if isinstance(event.get("requestContext"), dict) and "http" in event["requestContext"]:
        return on_function_url(event, context, config, max_wait_for_claim=MAX_WAIT_FOR_CLAIM_S)
    raise ValueError(
        "unsupported event: expected an EventBridge deploy event, a Function URL request or deploy queue messages"
    )
