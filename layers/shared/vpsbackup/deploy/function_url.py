"""The Function URL trigger: ``POST`` a deploy request, ``GET ?deployment_id=`` its status.

Every call is signed (:mod:`vpsbackup.deploy.webhook`: the method, path, query and body) with the
key in Secrets Manager (``WEBHOOK_SECRET``, cached ``WEBHOOK_KEY_MAX_AGE_S`` seconds; during a
rotation the previous key too). Every answer is JSON: ``400`` for a
malformed request (naming the field), ``401`` for a bad signature (without saying what is wrong),
``405`` for another method, ``500`` when the key cannot be read, ``404`` for an unknown deployment,
otherwise the deployment's own status.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import ValidationError
from aws_lambda_powertools.utilities.parser.models import LambdaFunctionUrlModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from vpsbackup.aws import runtime
from vpsbackup.deploy.claims import ClaimStore
from vpsbackup.deploy.job import deployment_status
from vpsbackup.deploy.request import InvalidDeployRequestError, parse_deploy_body, resolve_servers
from vpsbackup.deploy.run import back_up
from vpsbackup.deploy.settings import BackupOnDeploySettings
from vpsbackup.deploy.webhook import (
    SignedRequest,
    WebhookKeys,
    WebhookSecretError,
    decode_body,
    parse_webhook_secret,
    request_target,
    verify_signature,
)
from vpsbackup.observability import logger, metrics

WEBHOOK_KEY_MAX_AGE_S = 300


def on_function_url(
    event: dict[str, Any], context: LambdaContext, config: BackupOnDeploySettings, *, max_wait_for_claim: float
) -> dict[str, Any]:
    """The Function URL response (status code, JSON headers and body) for one request."""
    try:
        request = LambdaFunctionUrlModel.model_validate(event)
        raw_body = _raw_body(request)
    except (ValidationError, ValueError):
        logger.warning("malformed Function URL event")
        metrics.add_metric(name="requests_rejected", unit=MetricUnit.Count, value=1)
        return respond(400, {"error": "bad_request", "message": "malformed request", "fields": ["body"]})
    method = request.requestContext.http.method
    if method not in ("POST", "GET"):
        metrics.add_metric(name="requests_rejected", unit=MetricUnit.Count, value=1)
        return respond(405, {"error": "method_not_allowed", "message": "use POST or GET"})
    if method == "GET" and raw_body:
        # The status call signs an empty body; one with a body could be another call's signature
        # replayed with the target's tail moved into the body (vpsbackup.deploy.webhook).
        metrics.add_metric(name="requests_rejected", unit=MetricUnit.Count, value=1)
        return respond(
            400, {"error": "bad_request", "message": "body: a status call (GET) has no body", "fields": ["body"]}
        )
    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        keys = webhook_keys(config)
    except WebhookKeyUnavailableError:
        return respond(500, {"error": "internal_error", "message": "the webhook key cannot be read (see logs)"})
    signed = SignedRequest(method, request_target(request.rawPath, request.rawQueryString), raw_body)
    check = verify_signature(keys, headers, signed, now=time.time(), max_skew=config.webhook_max_skew_seconds)
    if not check.ok:
        # The log says why; the answer never does. A steady stream of these usually means CI signs
        # with an old key or the retired scheme, or has a skewed clock.
        logger.warning(
            "webhook rejected: missing, wrong or stale signature",
            extra={"method": method, "path": request.rawPath[:200], "why": check.problem},
        )
        metrics.add_metric(name="webhook_rejected", unit=MetricUnit.Count, value=1)
        return respond(401, {"error": "unauthorized"})
    if check.key == "previous":
        logger.info("webhook signed with the previous key: CI has not switched to the current one yet")
    if method == "GET":
        metrics.add_metric(name="status_checks", unit=MetricUnit.Count, value=1)
        return _status(request, context, config)
    try:
        deploy_request = parse_deploy_body(raw_body)
        servers = resolve_servers(deploy_request, config.server_groups)
    except InvalidDeployRequestError as exc:
        logger.info("deploy request rejected", extra={"fields": exc.fields, "reason": exc.message})
        metrics.add_metric(name="requests_rejected", unit=MetricUnit.Count, value=1)
        return respond(400, {"error": "bad_request", "message": exc.message, "fields": exc.fields})
    result = back_up(deploy_request, servers, context, config, max_wait_for_claim=max_wait_for_claim, trigger="webhook")
    return respond(result.http_status, result.body())


def _status(request: LambdaFunctionUrlModel, context: LambdaContext, config: BackupOnDeploySettings) -> dict[str, Any]:
    deployment_id = (request.queryStringParameters or {}).get("deployment_id", "")
    if not 1 <= len(deployment_id) <= 128:
        return respond(
            400,
            {
                "error": "bad_request",
                "message": "deployment_id: give ?deployment_id=<1 to 128 characters>",
                "fields": ["deployment_id"],
            },
        )
    logger.append_keys(deployment_id=deployment_id)
    client = runtime.api_client_for(config, "deploy")
    client.set_deadline(runtime.remaining_seconds(context))
    status = deployment_status(deployment_id, client, ClaimStore(runtime.state_table(config.state_table_name)))
    if status is None:
        return respond(404, {"error": "not_found", "message": f"no deployment {deployment_id!r} was received"})
    return respond(status.http_status, status.body())


def _raw_body(request: LambdaFunctionUrlModel) -> bytes:
    body = request.body
    if body is not None and not isinstance(body, str):
        raise ValueError("unexpected body type")
    return decode_body(body, base64_encoded=bool(request.isBase64Encoded))


class WebhookKeyUnavailableError(Exception):
    """WEBHOOK_SECRET is set but cannot be read: our fault, not the caller's (500, logged)."""


def webhook_keys(config: BackupOnDeploySettings) -> WebhookKeys | None:
    """The HMAC keys, cached ``WEBHOOK_KEY_MAX_AGE_S`` seconds; None (every call refused) if unset."""
    if not config.webhook_secret:
        logger.warning("WEBHOOK_SECRET is not set: every webhook call is refused")
        return None
    # Imported at the first webhook call, not at import: the EventBridge trigger never needs it.
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    try:
        value = parameters.get_secret(config.webhook_secret, max_age=WEBHOOK_KEY_MAX_AGE_S)
    except GetParameterError as exc:
        logger.error(
            "cannot read the webhook key (WEBHOOK_SECRET)",
            extra={"secret_id": config.webhook_secret, "error": type(exc.__cause__ or exc).__name__},
        )
        raise WebhookKeyUnavailableError from None
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_webhook_secret(value)
    except WebhookSecretError as exc:
        logger.error(
            "the webhook key's secret (WEBHOOK_SECRET) is malformed",
            extra={"secret_id": config.webhook_secret, "why": str(exc)},
        )
        raise WebhookKeyUnavailableError from None


def respond(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """A Function URL response with a JSON body."""
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}
