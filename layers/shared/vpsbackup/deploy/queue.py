"""Deploys of any size: the deploy queue and its worker (docs/backup-on-deploy.md, large deployments).

A deployment of more than :data:`INLINE_SERVERS` servers is not backed up by the delivery that
received it: the delivery registers it, puts its servers on the deploy queue (``DEPLOY_QUEUE_URL``,
:data:`SERVERS_PER_MESSAGE` to a message) and answers ``202`` at once. The same function, invoked by
the queue, is the worker: it takes one message at a time through the claim protocol of
:mod:`vpsbackup.deploy.claims` (exactly once, as for a delivery), inside the shared provider quota.

A worker short of time stops before the next server and puts the servers it did not reach back on
the queue as a new message; a server another invocation holds goes back with a delay, until its
claim is settled. A worker that dies leaves its message to SQS, which delivers it again after the
visibility timeout; the claims make the repeat harmless. Each progress moves the deployment's
``queued_at``, which the status endpoint reads (a server no worker has reached an hour after the
last progress is reported as an error).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from vpsbackup.deploy.claims import ClaimStore
from vpsbackup.deploy.job import BackupOnDeploy, ServerResult, back_up_servers
from vpsbackup.deploy.request import DeployRequest
from vpsbackup.observability import logger
from vpsbackup.provider.models import STATUS_IN_PROGRESS

# A deployment of up to this many servers is backed up by the delivery that received it (its answer
# says each backup); a larger one goes to the deploy queue (answered 202).
INLINE_SERVERS = 10
SERVERS_PER_MESSAGE = 10
# SQS takes at most 10 messages a SendMessageBatch request.
_BATCH = 10
# A server another invocation holds is looked at again this much later (SQS's longest delay is 900 s).
HELD_DELAY_S = 300
# The worker starts no server with less than this left of its invocation.
WORKER_STOP_MARGIN_S = 20.0


class QueuedServers(BaseModel):
    """One message of the deploy queue: some servers of a registered deployment."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    deployment_id: str = Field(min_length=1, max_length=128)
    request: dict[str, Any]
    server_ids: list[PositiveInt] = Field(min_length=1, max_length=SERVERS_PER_MESSAGE)


def messages_for(request: DeployRequest, server_ids: Iterable[int]) -> Iterator[QueuedServers]:
    """The messages that carry ``server_ids``, :data:`SERVERS_PER_MESSAGE` to a message."""
    servers = list(server_ids)
    body = request.model_dump(mode="json", exclude_none=True)
    for start in range(0, len(servers), SERVERS_PER_MESSAGE):
        chunk = servers[start : start + SERVERS_PER_MESSAGE]
        yield QueuedServers(deployment_id=request.deployment_id, request=body, server_ids=chunk)


class DeployQueue:
    """The deploy queue (an SQS queue URL and a boto3 SQS client)."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self.sqs = sqs
        self.queue_url = queue_url

    def put(self, request: DeployRequest, server_ids: Iterable[int], *, delay_s: int = 0) -> int:
        """Queue ``server_ids`` of a registered deployment; the number of messages sent. Raises if
        SQS refused any (the caller fails: nothing is lost, the claims make a repeat harmless)."""
        messages = list(messages_for(request, server_ids))
        for start in range(0, len(messages), _BATCH):
            entries = [
                {"Id": str(index), "MessageBody": message.model_dump_json(), "DelaySeconds": delay_s}
                for index, message in enumerate(messages[start : start + _BATCH])
            ]
            response = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            if response.get("Failed"):
                raise RuntimeError(f"the deploy queue refused {len(response['Failed'])} message(s)")
        return len(messages)


def queue_deployment(
    request: DeployRequest, server_ids: list[int], received_at: datetime, claims: ClaimStore, queue: DeployQueue
) -> list[ServerResult]:
    """Put a registered deployment's servers on the deploy queue: each is ``queued``."""
    sent = queue.put(request, server_ids)
    claims.mark_queued(request.deployment_id, datetime.now(UTC))
    logger.info(
        "deployment queued: the deploy queue's worker makes its backups",
        extra={"deployment_id": request.deployment_id, "servers": len(server_ids), "messages": sent},
    )
    return [ServerResult(server_id, "queued", STATUS_IN_PROGRESS) for server_id in server_ids]


def work_on(
    message: QueuedServers, deps: BackupOnDeploy, queue: DeployQueue, *, stop: Callable[[], bool]
) -> list[ServerResult]:
    """Back up one message's servers; queue again those not reached (``stop``) or held by another
    invocation. Raises when the deployment is unknown (the message then goes back to SQS)."""
    request = DeployRequest.model_validate(message.request)
    meta = deps.claims.get_deployment(message.deployment_id)
    if meta is None:
        raise LookupError(f"deployment {message.deployment_id!r} is not registered")
    log = {"deployment_id": message.deployment_id}
    results = back_up_servers(request, list(message.server_ids), meta.received_at, deps, stop=stop)
    reached = {r.server_id for r in results}
    left = [server for server in message.server_ids if server not in reached]
    held = [r.server_id for r in results if r.outcome == "pending"]
    if left:
        queue.put(request, left)
        logger.info("worker short of time: servers queued again", extra={**log, "servers": left})
    if held:
        queue.put(request, held, delay_s=HELD_DELAY_S)
        logger.info("servers held by another invocation: queued again, delayed", extra={**log, "servers": held})
    deps.claims.mark_queued(message.deployment_id, deps.clock())
    return results


def parse_message(body: str) -> QueuedServers:
    """A deploy queue message's body; raises ValueError (pydantic's) if it is not one."""
    return QueuedServers.model_validate(json.loads(body))
