"""The provider's Backups API over httpx: typed, bounded, and honest about uncertain outcomes.

Retry policy (documented here because callers rely on it):

- Retried, with capped exponential backoff and full jitter, honouring ``Retry-After``:
  ``429``, ``502``, ``503``, ``504`` and connection errors — for GET and DELETE.
- A POST (create a backup, restore a server) is retried only when the API cannot have applied
  it: after ``429``/``503`` and after a connection that failed to open. A read timeout, a
  connection dropped after the request was sent, or a ``502``/``504`` raise
  :class:`OutcomeUnknownError` at once: the caller reconciles by listing, never by re-sending.
- A ``401`` re-reads the token once (it may have been rotated), then fails with
  :class:`AuthenticationError`.
- Bounded twice: by ``RetryPolicy.max_attempts`` and by the deadline (the Lambda's remaining time):
  no sleep or request is started that would end after it.
- Paced: every attempt waits for its turn in the client's request budget (``VPS_API_MAX_RPS``,
  shared by all threads; see :mod:`vpsbackup.provider.ratelimit`), which also follows the
  provider's ``RateLimit-*`` / ``X-RateLimit-*`` headers and holds every request after a ``429``'s
  ``Retry-After``. Then, with ``VPS_API_RATE_LIMIT``, it waits for a slot of the quota every
  function shares (:mod:`vpsbackup.provider.shared_quota`), which learns the provider's holds too.
  A turn that would come after the deadline is not waited for: ApiTimeoutError.

Metrics (the operations dashboard shows them per function): ``api_throttled`` counts every ``429``
answer, retried or not; ``api_errors`` counts every request that ended in an error (no answer, an
uncertain outcome, or an error status), except a ``404`` to a DELETE (the backup is already gone).

The token lives only in the ``Authorization`` header of each request; it is never logged, never
part of an error message or a repr; it goes only to the base URL's origin (scheme, host and port),
which must be ``https://`` (plain ``http://`` only for a loopback address: the simulator).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypedDict, TypeVar, Unpack
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from vpsbackup.errors import ConfigurationError
from vpsbackup.observability import count, logger
from vpsbackup.provider.errors import (
    ApiConnectionError,
    ApiStatusError,
    ApiTimeoutError,
    BackupAlreadyGoneError,
    ListingIncompleteError,
    OutcomeUnknownError,
    VpsApiError,
    error_for_status,
)
from vpsbackup.provider.models import Backup, BackupPage, CreatedBackup, InvalidItem, PageEnvelope, RestoreAccepted
from vpsbackup.provider.ratelimit import MAX_PROVIDER_WAIT_S, BudgetExhaustedError, RequestBudget
from vpsbackup.provider.shared_quota import SharedQuota
from vpsbackup.provider.token import TokenProvider
from vpsbackup.settings import is_safe_api_url

ModelT = TypeVar("ModelT", bound=BaseModel)

API_ERRORS_METRIC = "api_errors"
API_THROTTLED_METRIC = "api_throttled"

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# Statuses after which the API has certainly not applied a request: a POST may be re-sent.
NOT_APPLIED_STATUSES = frozenset({429, 503})
# Connection errors raised before any byte of the request left: a POST may be re-sent.
_NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class BackupFilters(TypedDict, total=False):
    """The keywords of :meth:`VpsClient.list_backups`: those of :meth:`VpsClient.iter_backups` that
    make sense for a list (each optional, with iter_backups' default)."""

    server_id: int | None
    backup_type: str | None
    distinct_copies: bool


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. ``sleep`` and ``random`` are injectable for tests."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    # A Retry-After longer than this is not waited for: the request fails instead.
    max_retry_after: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    random: Callable[[], float] = field(default=random.random, repr=False)

    def backoff(self, attempt: int) -> float:
        """Full jitter: a random delay in [0, min(max_delay, base_delay * 2**attempt)]."""
        return self.random() * min(self.max_delay, self.base_delay * (2.0**attempt))


NO_WAIT = RetryPolicy(sleep=lambda _s: None, random=lambda: 0.0)
"""A policy that retries at once: for tests."""

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _api_message(body: Any) -> str | None:
    """DRF error bodies: ``{"detail": "..."}`` or field errors ``{"field": ["..."]}``."""
    if isinstance(body, dict):
        if isinstance(body.get("detail"), str):
            return str(body["detail"])
        parts = []
        for key, val in body.items():
            msgs = val if isinstance(val, list) else [val]
            parts.append(f"{key}: {' '.join(str(m) for m in msgs)}")
        return "; ".join(parts) or None
    if isinstance(body, list):
        return " ".join(str(m) for m in body) or None
    if isinstance(body, str):
        return body[:500] or None
    return None


class VpsClient:
    """A client of the provider's Backups API. Create once per cold start and reuse (keep-alive)."""

    def __init__(
        self,
        base_url: str,
        token_provider: TokenProvider,
        *,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        page_size: int | None = None,
    ) -> None:
        if page_size is not None and page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        self.page_size = page_size
        self.base_url = base_url.rstrip("/")
        if not is_safe_api_url(self.base_url):
            # The token goes with every request: never in clear off this machine.
            raise ConfigurationError(
                "VPS_API_BASE_URL: must be an https:// URL (plain http:// only for a loopback address)"
            )
        self._origin = _origin_parts(self.base_url)
        self._tokens = token_provider
        self.retry = retry or RetryPolicy()
        self._clock = clock
        self._deadline: float | None = None
        # Every attempt of every request waits for its turn here (provider/ratelimit.py); waits go
        # through the retry policy's sleep, so a test's or benchmark's clock governs them too.
        self.budget = RequestBudget(None, clock=clock, sleep=lambda seconds: self.retry.sleep(seconds))
        # The quota every function shares (VPS_API_RATE_LIMIT), waited for after the budget; None: none.
        self.quota: SharedQuota | None = None
        self._retry_sleep = threading.local()
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "vps-backup-automation/0.1"},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"VpsClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> VpsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def configure(
        self,
        *,
        page_size: int | None,
        max_rps: float | None,
        burst: int | None = None,
        quota: SharedQuota | None = None,
    ) -> None:
        """Apply ``VPS_API_PAGE_SIZE``, ``VPS_API_MAX_RPS`` and the shared quota (``VPS_API_RATE_LIMIT``,
        built by the caller for its job; None: none); handlers call it per invocation.

        The budget is replaced only when its rate or burst change, so a warm invocation inherits
        what the provider said to the previous one (a Retry-After, a spent window).
        """
        if page_size is not None and page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        self.page_size = page_size
        self.quota = quota
        wanted_burst = burst if burst is not None else max(1, int(max_rps or 1))
        if self.budget.max_rps != max_rps or self.budget.burst != wanted_burst:
            self.budget = RequestBudget(
                max_rps, burst=burst, clock=self._clock, sleep=lambda seconds: self.retry.sleep(seconds)
            )
        # A restore's requests are spaced by the shared quota alone, restores first; the provider's
        # spent window and Retry-After still hold it (vpsbackup.provider.ratelimit).
        self.budget.paced = quota is None or quota.job != "restore"

    # -- deadline ----------------------------------------------------------------------------

    def set_deadline(self, seconds_from_now: float | None) -> None:
        """Bound all further work (requests and backoff sleeps) to ``seconds_from_now``; None: no bound.

        Handlers call it per invocation with the Lambda's remaining time minus a safety margin.
        """
        self._deadline = None if seconds_from_now is None else self._clock() + max(0.0, seconds_from_now)

    def remaining(self) -> float | None:
        """Seconds left before the deadline, or None when unbounded."""
        return None if self._deadline is None else self._deadline - self._clock()

    # -- endpoints -----------------------------------------------------------------------------

    def iter_backups(
        self,
        *,
        server_id: int | None = None,
        backup_type: str | None = None,
        distinct_copies: bool = False,
        every_copy: bool = False,
        on_page: Callable[[BackupPage], None] | None = None,
        on_invalid: Callable[[InvalidItem], None] | None = None,
    ) -> Iterator[Backup]:
        """Every backup matching the filters, following ``next`` links; each id yielded once.

        With ``distinct_copies``, a later copy of a backup that differs from every copy already
        yielded (its status changed while the pages were read) is yielded too, so a caller that must
        not act on stale data (prune) sees the disagreement; identical copies are still yielded once.
        With ``every_copy``, every listed item is yielded as it comes and nothing is remembered (the
        caller dedupes: prune's compact listing, whose memory must not grow with copies of models).
        ``on_page`` is called with each page as it is read (for progress), before its backups.

        Pages of ``page_size`` (``VPS_API_PAGE_SIZE``) are asked for with ``?page_size=``; the
        ``next`` links carry it on (a server that does not know it ignores it, as DRF's do).

        The whole listing or an error: a ``next`` link that repeats a page already read, or whose
        scheme, host or port is not the base URL's, raises :class:`ListingIncompleteError` (logged)
        and is never requested (the token goes only to the base URL's origin). Each item is
        validated on its own; one that does not validate (``created_at`` null, ``server`` null, ...)
        is logged with its id and the reason and raises ListingIncompleteError too, unless
        ``on_invalid`` takes it: then it is handed there, skipped, and the walk goes on (prune,
        which leaves that item's server alone).
        """
        params = self._listing_params(server_id, backup_type)
        pages = self._iter_pages(params, on_page=on_page, on_invalid=on_invalid)
        if every_copy:
            for page in pages:
                yield from page.results
            return
        seen_ids: set[int] = set()
        seen_copies: set[Backup] = set()
        for page in pages:
            for backup in page.results:
                if backup.id not in seen_ids:
                    seen_ids.add(backup.id)
                    seen_copies.add(backup)
                    yield backup
                elif distinct_copies and backup not in seen_copies:
                    seen_copies.add(backup)
                    yield backup

    def iter_backup_pages(
        self,
        *,
        start: str | None = None,
        server_id: int | None = None,
        backup_type: str | None = None,
        on_invalid: Callable[[InvalidItem], None] | None = None,
    ) -> Iterator[BackupPage]:
        """The pages of :meth:`iter_backups`' walk, from its first or from ``start`` (a ``next`` link
        a page of the same walk gave): a walk read in several invocations (prune's chunks). The
        filters are those of the first page (``next`` links carry them); ``start`` must be of the
        base URL's origin (:class:`ListingIncompleteError` otherwise, never requested)."""
        params = self._listing_params(server_id, backup_type)
        if start is not None and not self._same_origin(start):
            raise self._incomplete(f"next link {_origin_of(start)} is not the base URL's origin", pages=0)
        return self._iter_pages(params, on_page=None, on_invalid=on_invalid, start=start)

    def _listing_params(self, server_id: int | None, backup_type: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if server_id is not None:
            params["server_id"] = server_id
        if backup_type is not None:
            params["backup_type"] = backup_type
        if self.page_size is not None:
            params["page_size"] = self.page_size
        return params

    def _iter_pages(
        self,
        params: dict[str, Any],
        *,
        on_page: Callable[[BackupPage], None] | None,
        on_invalid: Callable[[InvalidItem], None] | None,
        start: str | None = None,
    ) -> Iterator[BackupPage]:
        """The pages of ``GET /backups/`` with ``params``, following ``next`` (see iter_backups)."""
        url: str | None = start or f"{self.base_url}/backups/"
        seen_urls: set[str] = set()
        pages = listed = 0
        while url is not None:
            seen_urls.add(url)
            response = self._request("GET", url, params=params if pages == 0 and start is None else None)
            pages += 1
            page = BackupPage.of(self._parse(PageEnvelope, response))
            listed += len(page.results)
            for item in page.invalid:
                self._invalid_item(item, pages=pages, on_invalid=on_invalid)
            if on_page is not None:
                on_page(page)
            yield page
            url = self._next_page(page.next, seen_urls, pages=pages)
        logger.debug("listed backups", extra={"pages": pages, "listed": listed, "filters": params})

    def _invalid_item(self, item: InvalidItem, *, pages: int, on_invalid: Callable[[InvalidItem], None] | None) -> None:
        """Log an item that does not validate; hand it to ``on_invalid``, or end the listing."""
        logger.warning(
            "listed item skipped: not a valid backup",
            extra={"backup_id": item.backup_id, "server_id": item.server_id, "reason": item.reason, "page": pages},
        )
        if on_invalid is not None:
            on_invalid(item)
            return
        raise self._incomplete(item.describe(), pages=pages)

    def _next_page(self, url: str | None, seen_urls: set[str], *, pages: int) -> str | None:
        """The next page to read, or None at the end; ListingIncompleteError for a link that must not
        be followed (logged)."""
        if url is None:
            return None
        problem = None
        if not self._same_origin(url):
            problem = f"next link {_origin_of(url)} is not the base URL's origin {_origin_of(self.base_url)}"
        elif url in seen_urls:
            problem = "next link repeats a page already read"
        if problem is None:
            return url
        logger.warning(f"pagination stopped: {problem}", extra={"pages": pages})
        raise self._incomplete(problem, pages=pages)

    def _same_origin(self, url: str) -> bool:
        """Same scheme, host and port as the base URL: the only place the token may go."""
        try:
            return _origin_parts(url) == self._origin
        except ValueError:  # an unreadable port
            return False

    def _incomplete(self, problem: str, *, pages: int) -> ListingIncompleteError:
        path = urlsplit(self.base_url).path + "/backups/"
        return ListingIncompleteError(
            f"GET {path}: listing incomplete after {pages} page(s): {problem}",
            problem=problem,
            pages=pages,
            method="GET",
            path=path,
        )

    def list_backups(self, **filters: Unpack[BackupFilters]) -> list[Backup]:
        """All backups matching the filters (see :meth:`iter_backups`), in the API's order."""
        return list(self.iter_backups(**filters))

    def create_backup(self, server_id: int, description: str | None = None) -> CreatedBackup:
        """Start a manual backup. Raises OutcomeUnknownError when it may or may not have been created."""
        body: dict[str, Any] = {"server_id": server_id}
        if description is not None:
            body["description"] = description
        response = self._request("POST", f"{self.base_url}/backups/", json=body)
        return self._parse(CreatedBackup, response)

    def delete_backup(self, backup_id: int, *, before_retry: Callable[[], None] | None = None) -> None:
        """Delete a backup. Raises BackupAlreadyGoneError on 404 (callers may count it as done).

        ``before_retry`` runs before each re-send (after a wait that may be long); whatever it raises
        ends the deletion (prune re-checks the backup's hold there).
        """
        try:
            self._request("DELETE", f"{self.base_url}/backups/{backup_id}/", before_retry=before_retry)
        except ApiStatusError as exc:
            if exc.status_code == 404:
                raise BackupAlreadyGoneError(
                    f"backup {backup_id} does not exist (already deleted?)",
                    status_code=404,
                    api_message=exc.api_message,
                    body=exc.body,
                    method="DELETE",
                    path=exc.path,
                ) from None
            raise

    def restore_server(self, server_id: int, backup_id: int) -> RestoreAccepted:
        """Ask the API to restore ``server_id`` from ``backup_id``; any 2xx is accepted.

        Raises OutcomeUnknownError when the restore may have started but no answer came back, and
        ApiStatusError on any other non-2xx answer: redirects are not followed, so a ``3xx`` is not
        an accepted restore (it must never be reported as "restored").
        """
        response = self._request("POST", f"{self.base_url}/servers/{server_id}/restore/", json={"backup_id": backup_id})
        if not 200 <= response.status_code < 300:
            status, path = response.status_code, response.request.url.path
            answer = _safe_json(response)
            message = _api_message(answer)
            raise ApiStatusError(
                f"POST {path}: HTTP {status}, not a 2xx: the restore was not accepted"
                + (f": {message}" if message else ""),
                status_code=status,
                api_message=message,
                body=answer,
                method="POST",
                path=path,
            )
        body: dict[str, Any] | None = None
        if response.content:
            try:
                parsed = response.json()
            except ValueError:
                parsed = None
            body = parsed if isinstance(parsed, dict) else None
        return RestoreAccepted(server_id=server_id, backup_id=backup_id, status_code=response.status_code, body=body)

    # -- core ----------------------------------------------------------------------------------

    def _parse(self, model: type[ModelT], response: httpx.Response) -> ModelT:
        try:
            return model.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise VpsApiError(
                f"the API answered {response.request.method} {response.request.url.path} with a body that is not "
                f"a valid {model.__name__}: {type(exc).__name__}",
                method=response.request.method,
                path=response.request.url.path,
            ) from None

    def _request(
        self, method: str, url: str, *, before_retry: Callable[[], None] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One logical request: retries, token refresh and error mapping per the module's policy.

        ``before_retry`` is called before every attempt but the first; an exception from it propagates.
        """
        path = urlsplit(url).path
        refreshed_token = False
        attempt = 0
        while True:
            if attempt > 0 and before_retry is not None:
                before_retry()
            attempt += 1
            response = self._send_once(method, url, path, attempt, kwargs)
            if response is None:  # a transport error after which a retry was waited for
                continue
            status = response.status_code
            if status < 400:
                return response
            body = _safe_json(response)
            if status == 401 and not refreshed_token:
                self._refresh_token(path)
                refreshed_token = True
                attempt -= 1  # the retry after a refresh does not spend the retry budget
                continue
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if status == 429:
                count(API_THROTTLED_METRIC)
            if self._retry_after_status(method, path, status, attempt, retry_after):
                continue
            if not (status == 404 and method == "DELETE"):  # a backup already gone is an answer, not an error
                count(API_ERRORS_METRIC)
            raise self._status_error(method, path, status, body, retry_after)

    def _send_once(
        self, method: str, url: str, path: str, attempt: int, kwargs: dict[str, Any]
    ) -> httpx.Response | None:
        """One attempt: the response, whatever its status, or None after a transport error worth retrying
        (the wait already done). Raises when the deadline passed or the error ends the request."""
        self._check_time(method, path, needed=0.0, first=attempt == 1)
        self._wait_for_budget(method, path, first=attempt == 1)
        token = self._tokens.get_token()
        timeout = self._timeout_for_deadline()
        started = time.monotonic()
        try:
            response = self._http.request(
                method,
                url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=timeout,
                **kwargs,
            )
        except httpx.TransportError as exc:
            self._after_transport_error(
                exc, method, path, attempt, elapsed_ms=round((time.monotonic() - started) * 1000)
            )
            return None
        logger.debug(
            "api request",
            extra={
                "method": method,
                "path": path,
                "status": response.status_code,
                "attempt": attempt,
                "ms": round((time.monotonic() - started) * 1000),
            },
        )
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if status == 429 else None
        limit = self.budget.observe(response.headers, status=status, retry_after=retry_after)
        if self.quota is not None:
            self._share_hold(
                retry_after if status == 429 else None, limit.hold_s if limit and limit.remaining <= 0 else None
            )
        return response

    def _share_hold(self, *waits: float | None) -> None:
        """A 429's Retry-After or a spent window holds every function, not only this client."""
        longest = max((w for w in waits if w is not None), default=None)
        if longest is not None and self.quota is not None:
            self.quota.hold_until(time.time() + min(longest, MAX_PROVIDER_WAIT_S))

    def _wait_for_budget(self, method: str, path: str, *, first: bool = True) -> None:
        """Wait for this attempt's turn in the request budget, then for a slot of the shared quota;
        ApiTimeoutError if either comes after the deadline (``not_sent`` when this is the request's
        ``first`` attempt: nothing of it reached the provider)."""
        remaining = self.remaining()
        waited_out, self._retry_sleep.hold = getattr(self._retry_sleep, "hold", -math.inf), -math.inf
        try:
            waited = self.budget.acquire(
                max_wait=None if remaining is None else max(0.0, remaining - 0.5), waited_out=waited_out
            )
            if self.quota is not None:
                remaining = self.remaining()
                waited += self.quota.acquire(max_wait=None if remaining is None else max(0.0, remaining - 0.5))
        except BudgetExhaustedError as exc:
            logger.warning(
                "request not started: its turn in the request budget comes after the deadline",
                extra={"method": method, "path": path, "wait_s": round(exc.wait, 1), "remaining_s": remaining},
            )
            raise ApiTimeoutError(
                f"{method} {path}: not started, the request budget (VPS_API_MAX_RPS, VPS_API_RATE_LIMIT, "
                f"the provider's rate limit) would wait {exc.wait:.1f} s, past the deadline",
                method=method,
                path=path,
                not_sent=first,
                wait=exc.wait,
            ) from None
        if waited > 0:
            logger.debug("waited for the request budget", extra={"method": method, "path": path, "wait_s": waited})

    def _after_transport_error(
        self, exc: httpx.TransportError, method: str, path: str, attempt: int, *, elapsed_ms: int
    ) -> None:
        """Returns after waiting for a retry; raises if the request may have been applied (a POST
        that left), or when the retries or the time are used up."""
        kind = type(exc).__name__
        if method == "POST" and not isinstance(exc, _NOT_SENT_ERRORS):
            count(API_ERRORS_METRIC)
            logger.warning(
                "POST outcome unknown: no answer after the request was sent; not re-sending",
                extra={"method": method, "path": path, "error": kind, "attempt": attempt, "ms": elapsed_ms},
            )
            raise OutcomeUnknownError(
                f"{method} {path}: no answer after the request was sent ({kind}); it may have been applied",
                method=method,
                path=path,
                cause=kind,
            ) from None
        logger.info(
            "request failed, may retry",
            extra={"method": method, "path": path, "error": kind, "attempt": attempt, "ms": elapsed_ms},
        )
        exhausted = attempt >= self.retry.max_attempts
        if exhausted or not self._sleep_before_retry(attempt, None):
            count(API_ERRORS_METRIC)
            message = f"{method} {path}: {kind} after {attempt} attempt(s)"
            if isinstance(exc, httpx.TimeoutException):
                raise ApiTimeoutError(message, method=method, path=path, exhausted=exhausted) from None
            raise ApiConnectionError(message, method=method, path=path) from None

    def _refresh_token(self, path: str) -> None:
        # The token may have been rotated: re-read the secret once, then try again.
        logger.info("API answered 401: re-reading the token secret once", extra={"path": path})
        self._tokens.get_token(force_refresh=True)

    def _retry_after_status(self, method: str, path: str, status: int, attempt: int, retry_after: float | None) -> bool:
        """True after waiting for a retry of a retryable status; False if the status is final or the
        retries or time are used up. Raises for a POST the API may have applied (``502``/``504``)."""
        if status not in RETRYABLE_STATUSES:
            return False
        if method == "POST" and status not in NOT_APPLIED_STATUSES:
            count(API_ERRORS_METRIC)
            logger.warning(
                "POST outcome unknown: gateway error; not re-sending",
                extra={"method": method, "path": path, "status": status},
            )
            raise OutcomeUnknownError(
                f"{method} {path}: the API answered {status}; the request may have been applied",
                method=method,
                path=path,
                cause=f"HTTP {status}",
            )
        logger.info(
            "API answered a retryable status",
            extra={"method": method, "path": path, "status": status, "attempt": attempt, "retry_after": retry_after},
        )
        return attempt < self.retry.max_attempts and self._sleep_before_retry(attempt, retry_after)

    @staticmethod
    def _status_error(method: str, path: str, status: int, body: Any, retry_after: float | None) -> ApiStatusError:
        """The error a final non-2xx answer raises: its class per status, with the API's message."""
        message = _api_message(body)
        hint = " (after re-reading the token secret)" if status == 401 else ""
        return error_for_status(status)(
            f"{method} {path}: HTTP {status}{hint}" + (f": {message}" if message else ""),
            status_code=status,
            api_message=message,
            body=body,
            method=method,
            path=path,
            retry_after=retry_after,
        )

    def _sleep_before_retry(self, attempt: int, retry_after: float | None) -> bool:
        """Sleep before the next attempt; False if the wait would pass the deadline or is too long."""
        if retry_after is not None:
            if retry_after > self.retry.max_retry_after:
                return False
            delay = max(retry_after, self.retry.backoff(attempt - 1))
        else:
            delay = self.retry.backoff(attempt - 1)
        remaining = self.remaining()
        # Keep room for the request itself after the sleep.
        if remaining is not None and delay + 0.5 >= remaining:
            return False
        # This sleep waits out the Retry-After the budget holds everyone to: this thread's next
        # attempt does not wait for it a second time (a later hold, another thread's, still applies).
        self._retry_sleep.hold = self.budget.hold()
        self.retry.sleep(delay)
        return True

    def _check_time(self, method: str, path: str, *, needed: float, first: bool = False) -> None:
        remaining = self.remaining()
        if remaining is not None and remaining <= needed:
            raise ApiTimeoutError(
                f"{method} {path}: not started, the deadline has passed", method=method, path=path, not_sent=first
            )

    def _timeout_for_deadline(self) -> httpx.Timeout | Any:
        remaining = self.remaining()
        if remaining is None:
            return httpx.USE_CLIENT_DEFAULT
        base = self._http.timeout
        cap = max(0.1, remaining)

        def capped(value: float | None) -> float:
            return cap if value is None else min(value, cap)

        return httpx.Timeout(
            connect=capped(base.connect), read=capped(base.read), write=capped(base.write), pool=capped(base.pool)
        )


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_parts(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, the port made explicit for http and https. Raises
    ValueError for an unreadable port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def _origin_of(url: str) -> str:
    """``scheme://host:port`` of ``url`` for a message (never its path, query or credentials)."""
    try:
        scheme, host, port = _origin_parts(url)
    except ValueError:
        return "(unreadable)"
    return f"{scheme}://{host}:{port}"


def _safe_json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text[:500]
