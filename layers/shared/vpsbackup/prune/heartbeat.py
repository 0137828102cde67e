"""The heartbeat: each completed prune run calls ``HEARTBEAT_URL`` with a GET (healthchecks.io,
Cronitor), so a service outside AWS notices when runs stop (docs/operations.md#the-heartbeat).

It never blocks or fails the run: one GET with a short timeout, no retry, every error logged and
swallowed. The URL's path and query often hold the check's secret, so only its host is logged.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from vpsbackup.observability import logger

TIMEOUT_S = 5.0


def ping(url: str, *, get: Callable[..., httpx.Response] | None = None, timeout_s: float = TIMEOUT_S) -> bool:
    """GET ``url`` once (with ``get``, by default ``httpx.get``); True when it answered 2xx. Never raises."""
    host = urlsplit(url).hostname or "?"
    try:
        answer = (get or httpx.get)(url, timeout=timeout_s, follow_redirects=False)
    except Exception as exc:  # a timeout, DNS, TLS, anything: the run is done regardless
        logger.warning("heartbeat not sent", extra={"host": host, "error": type(exc).__name__})
        return False
    if not answer.is_success:
        logger.warning("heartbeat refused", extra={"host": host, "status": answer.status_code})
        return False
    logger.info("heartbeat sent", extra={"host": host, "status": answer.status_code})
    return True
