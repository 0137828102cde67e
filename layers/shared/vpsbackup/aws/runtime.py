"""Objects that live for the life of a Lambda execution environment (warm invocations reuse them).

Handlers call these after their settings are validated, never at import time. Each is cached per
argument, so a warm invocation reuses the HTTP connection pool, the token cache and boto3 clients.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

from vpsbackup.aws.notifications import Notifier
from vpsbackup.aws.state import StateTable
from vpsbackup.provider.client import VpsClient
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
def state_table(table_name: str) -> StateTable:
    return StateTable.from_name(table_name)


@functools.cache
def notifier(topic_arn: str | None, notify_format: NotifyFormat = "text") -> Notifier:
    return Notifier(topic_arn, notify_format=notify_format)


def api_client_for(settings: SharedSettings) -> VpsClient:
    """This environment's provider client, set to the settings' page size and request budget."""
    client = api_client(settings.vps_api_base_url, settings.vps_api_token_secret)
    client.configure(page_size=settings.vps_api_page_size, max_rps=settings.vps_api_max_rps)
    return client


def remaining_seconds(context: LambdaContextLike | Any, margin: float = DEFAULT_SAFETY_MARGIN_S) -> float | None:
    """The invocation's remaining time minus ``margin``, or None when there is no Lambda context."""
    getter = getattr(context, "get_remaining_time_in_millis", None)
    if getter is None:
        return None
    return max(0.0, float(getter()) / 1000.0 - margin)


def reset() -> None:
    """Forget every cached object (tests; a new mock AWS account)."""
    for cached in (api_client, state_table, notifier):
        cached.cache_clear()
