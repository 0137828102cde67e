"""The error tree of the shared package.

``VpsApiError`` is the base of everything the provider client raises:

- ``ApiStatusError`` — the API answered with an error status; carries ``status_code`` and the
  API's message (``detail`` or field errors). Subclasses per status: ``BadRequestError`` (400),
  ``AuthenticationError`` (401, after one token re-read), ``NotFoundError`` (404; on delete the
  subclass ``BackupAlreadyGoneError``), ``ConflictError`` (409), ``RateLimitedError`` (429),
  ``ServerError`` (5xx).
- ``ApiConnectionError`` — no usable answer (connection refused, timeout); ``ApiTimeoutError``.
- ``ListingIncompleteError`` — a listing that could not be read to its end (a ``next`` link that
  repeats a page, names another scheme, host or port; an item that does not validate): never
  taken as the whole listing, so never as "the backup does not exist".
- ``OutcomeUnknownError`` — a non-idempotent request (POST) may have been applied but no answer
  came back. It is never re-sent: the caller reconciles by looking.

``ConfigurationError`` is a bad setting or an unreadable secret; it names the variable.
No error text ever contains the API token.
"""

from __future__ import annotations

from typing import Any

from vpsbackup.errors import VpsBackupError


class VpsApiError(VpsBackupError):
    """Base of the provider client's errors."""

    def __init__(self, message: str, *, method: str | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.path = path


class ApiStatusError(VpsApiError):
    """The API answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        api_message: str | None = None,
        body: Any = None,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.status_code = status_code
        self.api_message = api_message
        self.body = body
        self.retry_after = retry_after


class BadRequestError(ApiStatusError):
    """400: the API rejected the parameters (or, for some endpoints, a concurrent operation)."""


class AuthenticationError(ApiStatusError):
    """401 even after the token was re-read from Secrets Manager."""


class NotFoundError(ApiStatusError):
    """404: the server or backup does not exist."""


class BackupAlreadyGoneError(NotFoundError):
    """404 on ``DELETE /backups/{id}/``: the backup is already gone, which a caller may count as done."""


class ConflictError(ApiStatusError):
    """409: a backup or restore is already running on that server."""


class RateLimitedError(ApiStatusError):
    """429 after the retry budget (attempts or the deadline) ran out."""


class ServerError(ApiStatusError):
    """5xx after the retry budget ran out (or at once, for a status that is not retried)."""


class ApiConnectionError(VpsApiError):
    """No answer could be had: connection refused or dropped, DNS, TLS."""


class ApiTimeoutError(ApiConnectionError):
    """The request timed out; or, with ``not_sent``, it was never sent: its turn in the request
    budget (``wait``: how long until it, when known) or the deadline came first. ``exhausted``:
    it timed out on every attempt the retry policy allows (not cut short by the deadline)."""

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        not_sent: bool = False,
        wait: float | None = None,
        exhausted: bool = False,
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.not_sent = not_sent
        self.wait = wait
        self.exhausted = exhausted


class ListingIncompleteError(VpsApiError):
    """A listing that could not be read to its end; ``problem`` says why, ``pages`` how many were read.

    Nothing irreversible is decided on it: no restore, no deletion, no "it was not created"."""

    def __init__(
        self, message: str, *, problem: str, pages: int, method: str | None = None, path: str | None = None
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.problem = problem
        self.pages = pages


class OutcomeUnknownError(VpsApiError):
    """A POST may have been applied by the API but its answer was lost (timeout, dropped
    connection, 502/504). It was not re-sent; reconcile by listing before doing anything else."""

    def __init__(self, message: str, *, method: str | None = None, path: str | None = None, cause: str = "") -> None:
        super().__init__(message, method=method, path=path)
        self.cause = cause


def error_for_status(status_code: int) -> type[ApiStatusError]:
    """The most specific error class for an HTTP status."""
    return {
        400: BadRequestError,
        401: AuthenticationError,
        404: NotFoundError,
        409: ConflictError,
        429: RateLimitedError,
    }.get(status_code, ServerError if status_code >= 500 else ApiStatusError)
