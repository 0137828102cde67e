"""BackupOnDeployFunction: a CI deploy hook makes one manual backup per deployment and server.

Two triggers (docs/backup-on-deploy.md): an EventBridge ``Deployment Started`` event from ``ci.deploy``, and the
Lambda Function URL (``POST`` a deploy request, ``GET ?deployment_id=`` its status), both signed
with HMAC-SHA256. This module only parses the trigger, calls :mod:`vpsbackup.deploy.job` and shapes
the answer.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import time
import uuid
from datetime import timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, LambdaFunctionUrlModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from vpsbackup.aws import runtime
from vpsbackup.deploy.claims import ClaimStore, lease_for
from vpsbackup.deploy.job import (
    BackupOnDeploy,
    DeploymentBackupFailedError,
    DeploymentResult,
    back_up_deployment,
    deployment_status,
    record_metrics,
)
from vpsbackup.deploy.request import (
    DeployRequest,
    InvalidDeployRequestError,
    parse_deploy_body,
    parse_deploy_request,
    resolve_servers,
)
from vpsbackup.deploy.settings import BackupOnDeploySettings
from vpsbackup.deploy.webhook import verify_signature
from vpsbackup.observability import logger, metrics, tracer
from vpsbackup.settings import load_settings

DEPLOY_SOURCE = "ci.deploy"
DEPLOY_DETAIL_TYPE = "Deployment Started"
WEBHOOK_KEY_MAX_AGE_S = 300
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
    if "detail-type" in event:
        return _on_eventbridge(event, context, config)
    if isinstance(event.get("requestContext"), dict) and "http" in event["requestContext"]:
        return _on_function_url(event, context, config)
    raise ValueError("unsupported event: expected an EventBridge deploy event or a Function URL request")


# -- EventBridge -----------------------------------------------------------------------------------


def _on_eventbridge(event: dict[str, Any], context: LambdaContext, config: BackupOnDeploySettings) -> dict[str, Any]:
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
    result = _back_up(request, servers, context, config)
    body = result.body()
    if result.failed or result.pending:
        # A pending server is another delivery's, which may still die: only a retry can tell.
        logger.error("some servers were not backed up; failing the invocation for retry", extra={"result": body})
        raise DeploymentBackupFailedError(result)
    return body


# -- Function URL ----------------------------------------------------------------------------------


def _on_function_url(event: dict[str, Any], context: LambdaContext, config: BackupOnDeploySettings) -> dict[str, Any]:
    try:
        request = LambdaFunctionUrlModel.model_validate(event)
        raw_body = _raw_body(request)
    except (ValidationError, ValueError):
        logger.warning("malformed Function URL event")
        metrics.add_metric(name="requests_rejected", unit=MetricUnit.Count, value=1)
        return _respond(400, {"error": "bad_request", "message": "malformed request", "fields": ["body"]})
    method = request.requestContext.http.method
    if method not in ("POST", "GET"):
        metrics.add_metric(name="requests_rejected", unit=MetricUnit.Count, value=1)
        return _respond(405, {"error": "method_not_allowed", "message": "use POST or GET"})
    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        key = _webhook_key(config)
    except _WebhookKeyUnavailableError:
        return _respond(500, {"error": "internal_error", "message": "the webhook key cannot be read (see logs)"})
    if not verify_signature(key, headers, raw_body, now=time.time(), max_skew=config.webhook_max_skew_seconds):
        logger.warning("webhook rejected: missing, wrong or stale signature", extra={"method": method})
        # A steady stream of these usually means CI signs with an old key or a skewed clock.
        metrics.add_metric(name="webhook_rejected", unit=MetricUnit.Count, value=1)
        return _respond(401, {"error": "unauthorized"})
    if method == "GET":
        metrics.add_metric(name="status_checks", unit=MetricUnit.Count, value=1)
        return _status(request, context, config)
    try:
        deploy_request = parse_deploy_body(raw_body)
        servers = resolve_servers(deploy_request, config.server_groups)
    except InvalidDeployRequestError as exc:
        logger.info("deploy request rejected", extra={"fields": exc.fields, "reason": exc.message})
        metrics.add_metric(name="requests_rejected", unit=MetricUnit.Count, value=1)
        return _respond(400, {"error": "bad_request", "message": exc.message, "fields": exc.fields})
    result = _back_up(deploy_request, servers, context, config)
    return _respond(result.http_status, result.body())


def _status(request: LambdaFunctionUrlModel, context: LambdaContext, config: BackupOnDeploySettings) -> dict[str, Any]:
    deployment_id = (request.queryStringParameters or {}).get("deployment_id", "")
    if not 1 <= len(deployment_id) <= 128:
        return _respond(
            400,
            {
                "error": "bad_request",
                "message": "deployment_id: give ?deployment_id=<1 to 128 characters>",
                "fields": ["deployment_id"],
            },
        )
    logger.append_keys(deployment_id=deployment_id)
    client = runtime.api_client(config.vps_api_base_url, config.vps_api_token_secret)
    client.set_deadline(runtime.remaining_seconds(context))
    status = deployment_status(deployment_id, client, ClaimStore(runtime.state_table(config.state_table_name)))
    if status is None:
        return _respond(404, {"error": "not_found", "message": f"no deployment {deployment_id!r} was received"})
    return _respond(status.http_status, status.body())


def _raw_body(request: LambdaFunctionUrlModel) -> bytes:
    body = request.body
    if body is None:
        return b""
    if not isinstance(body, str):
        raise ValueError("unexpected body type")
    if request.isBase64Encoded:
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error:
            raise ValueError("body is not valid base64") from None
    return body.encode("utf-8")


class _WebhookKeyUnavailableError(Exception):
    """WEBHOOK_SECRET is set but cannot be read: our fault, not the caller's (500, logged)."""


def _webhook_key(config: BackupOnDeploySettings) -> str | None:
    """The HMAC key, cached ``WEBHOOK_KEY_MAX_AGE_S`` seconds; None (every call refused) if unset."""
    if not config.webhook_secret:
        logger.warning("WEBHOOK_SECRET is not set: every webhook call is refused")
        return None
    try:
        value = parameters.get_secret(config.webhook_secret, max_age=WEBHOOK_KEY_MAX_AGE_S)
    except GetParameterError as exc:
        logger.error(
            "cannot read the webhook key (WEBHOOK_SECRET)",
            extra={"secret_id": config.webhook_secret, "error": type(exc.__cause__ or exc).__name__},
        )
        raise _WebhookKeyUnavailableError from None
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return value if isinstance(value, str) and value else None


# -- shared ----------------------------------------------------------------------------------------


def _back_up(
    request: DeployRequest, servers: list[int], context: LambdaContext, config: BackupOnDeploySettings
) -> DeploymentResult:
    logger.append_keys(deployment_id=request.deployment_id)
    remaining = runtime.remaining_seconds(context)
    client = runtime.api_client(config.vps_api_base_url, config.vps_api_token_secret)
    client.set_deadline(remaining)
    state = runtime.state_table(config.state_table_name)
    lambda_left = timedelta(milliseconds=context.get_remaining_time_in_millis())
    deps = BackupOnDeploy(
        client=client,
        claims=ClaimStore(state),
        state=state,
        owner=f"{getattr(context, 'aws_request_id', 'local')}/{uuid.uuid4().hex[:12]}",
        lease=lease_for(lambda_left),
        wait_for_claim=min(MAX_WAIT_FOR_CLAIM_S, (remaining or MAX_WAIT_FOR_CLAIM_S) / 4),
    )
    result = back_up_deployment(request, servers, deps)
    record_metrics(result)
    logger.info("deploy request done", extra={"http_status": result.http_status, "result": result.body()})
    return result


def _respond(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}
