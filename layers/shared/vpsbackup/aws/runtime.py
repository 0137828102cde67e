"""Objects that live for the life of a Lambda execution environment (warm invocations reuse them).

Handlers call these after their settings are validated, never at import time. Each is cached per
argument, so a warm invocation reuses the HTTP connection pool, the token cache and boto3 clients.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

from vpsbackup.aws.notifications import Notifier
from vpsbackup.aws.quota_store import DynamoQuotaStore
from vpsbackup.aws.state import StateTable
from vpsbackup.provider.client import VpsClient
from vpsbackup.provider.quota import Job, QuotaParams
from vpsbackup.provider.shared_quota import SharedQuota
from vpsbackup.provider.token import SecretsManagerTokenProvider
from vpsbackup.settings import NotifyFormat, SharedSettings

# Work stops this long before Lambda's own timeout, so there is time to report what is left.
DEFAULT_SAFETY_MARGIN_S = 10.0


class LambdaContextLike(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


@functools.cache
def api_client(base_url: str, token_secret_id: str) -> VpsClient:
    """The provider client for this environment: one connection pool, one token cache."""
    return VpsClient(base_url, SecretsManagerTokenProvider(token_secret_id))


@functools.cache
def sqs_client() -> Any:
    """The SQS client (the deploy queue)."""
    import boto3

    return boto3.client("sqs")


@functools.cache
def state_table(table_name: str) -> StateTable:
    return StateTable.from_name(table_name)


@functools.cache
def notifier(topic_arn: str | None, notify_format: NotifyFormat = "text") -> Notifier:
    return Notifier(topic_arn, notify_format=notify_format)


@functools.cache
def shared_quota(table_name: str, token_secret_id: str, job: Job, rate: float, restore_share: float) -> SharedQuota:
    """``job``'s slots of the quota every function shares (kept across warm invocations, with the
    slots of its last batch)."""
    store = DynamoQuotaStore(state_table(table_name), token_secret_id)
    return SharedQuota(store, QuotaParams(rate, restore_share), job)


def api_client_for(settings: SharedSettings, job: Job | None = None) -> VpsClient:
    """This environment's provider client, set to the settings' page size and request budget, and
    with ``VPS_API_RATE_LIMIT`` to ``job``'s place in the shared quota."""
    client = api_client(settings.vps_api_base_url, settings.vps_api_token_secret)
    quota = None
    if job is not None and settings.vps_api_rate_limit > 0:
        quota = shared_quota(
            settings.state_table_name,
            settings.vps_api_token_secret,
            job,
            settings.vps_api_rate_limit,
            settings.vps_api_restore_share,
        )
    client.configure(page_size=settings.vps_api_page_size, max_rps=settings.vps_api_max_rps, quota=quota)
    return client


def remaining_seconds(context: LambdaContextLike | Any, margin: float = DEFAULT_SAFETY_MARGIN_S) -> float | None:
    """The invocation's remaining time minus ``margin``, or None when there is no Lambda context."""
    getter = getattr(context, "get_remaining_time_in_millis", None)
    if getter is None:
        return None
    return max(0.0, float(getter()) / 1000.0 - margin)


def reset() -> None:
    """Forget every cached object (tests; a new mock AWS account)."""
    for cached in (api_client, state_table, notifier, shared_quota, sqs_client):
        cached.cache_clear()
