"""The webhook's HMAC signature: how CI signs a call, how the function checks it, and the signed bytes.

Signature, scheme ``v1`` (the CI side is in docs/backup-on-deploy.md)::

    X-Signature-Timestamp: <unix seconds>
    X-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<METHOD>.<request target>.<raw body>">

The request target is the path, followed by ``?`` and the raw query string when there is one
(``/``, ``/?deployment_id=gh-8812-1``): what the HTTP request line carries. So a signature made
for one call verifies for no other method, path, query or body. (A dot in the target signs the
same bytes as a shorter target and a longer body; the function refuses a ``GET`` with a body, and
a deploy body is a JSON object, none of which starts right after a dot of another one.) A
timestamp may be at most ``max_skew`` seconds old and at most :data:`MAX_FUTURE_SKEW_SECONDS` ahead.

The key comes from the secret ``WEBHOOK_SECRET``: a plain string (the key), or during a key
rotation ``{"current": "<key>", "previous": "<key>"}``, when a signature made with either verifies.

The first scheme (``sha256=`` over ``"<timestamp>.<body>"``) is refused: a captured status call
could be replayed against any deployment. Its refusal is logged as such, so a CI not yet upgraded
is told apart from a wrong key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TIMESTAMP_HEADER = "x-signature-timestamp"
SIGNATURE_HEADER = "x-signature"
SIGNATURE_PREFIX = "v1="
RETIRED_PREFIX = "sha256="  # the first scheme, over "<timestamp>.<body>" only: refused
DEFAULT_MAX_SKEW_SECONDS = 300
MAX_FUTURE_SKEW_SECONDS = 60
_MAX_TIMESTAMP_DIGITS = 12


class WebhookSecretError(ValueError):
    """The secret's value is not a key nor ``{"current": ..., "previous": ...}`` (the message says why)."""


@dataclass(frozen=True)
class WebhookKeys:
    """The keys a signature may be made with: the current one, and during a rotation the previous one."""

    current: str
    previous: str | None = None

    def named(self) -> tuple[tuple[str, str], ...]:
        """(name, key) of each key, the current one first."""
        keys = [("current", self.current)]
        if self.previous:
            keys.append(("previous", self.previous))
        return tuple(keys)


def parse_webhook_secret(value: str) -> WebhookKeys:
    """The keys in the secret's value: a plain string is the only key (the first shape, still read);
    a JSON object must have a non-empty string ``current`` and may have a string ``previous``."""
    try:
        data = json.loads(value)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        if not value:
            raise WebhookSecretError("the secret is empty")
        return WebhookKeys(value)
    unknown = sorted(set(data) - {"current", "previous"})
    if unknown:
        raise WebhookSecretError(f"the secret's JSON has unknown keys {unknown}: only 'current' and 'previous'")
    current, previous = data.get("current"), data.get("previous")
    if not isinstance(current, str) or not current:
        raise WebhookSecretError("current: the secret's JSON needs the key in a non-empty string 'current'")
    if previous is not None and not isinstance(previous, str):
        raise WebhookSecretError("previous: must be a string (the key before the rotation), or left out")
    return WebhookKeys(current, previous or None)


def request_target(path: str, query: str) -> str:
    """``/`` or ``/?deployment_id=gh-1``: the path, and the raw query string after ``?`` when there is one."""
    return f"{path}?{query}" if query else path


@dataclass(frozen=True)
class SignedRequest:
    """What a signature covers besides the timestamp: the method, the request target and the body."""

    method: str
    target: str
    body: bytes = b""

    def signing_input(self, timestamp: str) -> bytes:
        """``"<timestamp>.<METHOD>.<target>.<body>"``, the bytes the HMAC is taken of."""
        head = f"{timestamp}.{self.method.upper()}.{self.target}."
        return head.encode("utf-8") + self.body


def signature_for(key: str, timestamp: str, request: SignedRequest) -> str:
    """``v1=<hex>``: the HMAC-SHA256 of :meth:`SignedRequest.signing_input` keyed with ``key``."""
    mac = hmac.new(key.encode("utf-8"), request.signing_input(timestamp), hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def signed_headers(key: str, request: SignedRequest, now: float) -> dict[str, str]:
    """The two signature headers for ``request`` at ``now`` (for CI tools, tests and ``make invoke``)."""
    timestamp = str(int(now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature_for(key, timestamp, request)}


@dataclass(frozen=True)
class SignatureCheck:
    """Whether a call is signed right; ``problem`` says why not, for the log only (the caller's
    answer never says which part failed); ``key`` is which key verified it (``current``, ``previous``)."""

    ok: bool
    problem: str | None = None
    key: str | None = None


def verify_signature(
    keys: WebhookKeys | None,
    headers: Mapping[str, str],
    request: SignedRequest,
    *,
    now: float,
    max_skew: int = DEFAULT_MAX_SKEW_SECONDS,
) -> SignatureCheck:
    """Verified only for a well-formed, fresh ``v1`` signature of ``request`` with one of ``keys``.

    ``headers`` must have lower-case names (as Function URL events do). Every digest is computed and
    compared with :func:`hmac.compare_digest` whatever the timestamp or the scheme, so the time
    taken does not tell a bad timestamp from a bad digest, nor which key was tried.
    """
    timestamp = headers.get(TIMESTAMP_HEADER, "").strip()
    provided = headers.get(SIGNATURE_HEADER, "").strip().lower().encode("utf-8")
    timestamp_ok = timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_TIMESTAMP_DIGITS
    signed_at = int(timestamp) if timestamp_ok else 0
    matched = None
    for name, key in keys.named() if keys is not None else ():
        expected = signature_for(key, timestamp if timestamp_ok else "0", request).encode("ascii")
        if hmac.compare_digest(expected, provided) and matched is None:
            matched = name
    problem = _problem(
        keys=keys,
        timestamp=timestamp,
        provided=provided,
        age=now - signed_at if timestamp_ok else None,
        max_skew=max_skew,
        matched=matched,
    )
    return SignatureCheck(problem is None, problem, matched if problem is None else None)


def _problem(
    *, keys: WebhookKeys | None, timestamp: str, provided: bytes, age: float | None, max_skew: int, matched: str | None
) -> str | None:
    """Why a call is refused, in words for the log; None when it is not."""
    if keys is None:
        return "no webhook key is configured"
    if not timestamp or not provided:
        return "the signature headers are missing"
    if provided.startswith(RETIRED_PREFIX.encode("ascii")):
        return "signed with the retired sha256= scheme: sign with v1= (docs/backup-on-deploy.md)"
    if age is None:
        return "the timestamp is not unix seconds"
    if age > max_skew:
        return f"the timestamp is {int(age)} s old (at most {max_skew} s)"
    if -age > min(MAX_FUTURE_SKEW_SECONDS, max_skew):
        return f"the timestamp is {int(-age)} s in the future (at most {min(MAX_FUTURE_SKEW_SECONDS, max_skew)} s)"
    if matched is None:
        return "the signature matches no key for this method, path, query and body"
    return None


def decode_body(body: str | None, *, base64_encoded: bool) -> bytes:
    """The raw bytes that were signed: a Function URL body as sent (base64 decoded when it says so).

    Raises ValueError for a body that claims base64 and is not.
    """
    if body is None:
        return b""
    if base64_encoded:
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error:
            raise ValueError("body is not valid base64") from None
    return body.encode("utf-8")


def signed_request_of(event: Mapping[str, Any]) -> SignedRequest:
    """What a Function URL event's signature covers: its method, raw path and query, and raw body."""
    context = event.get("requestContext") or {}
    method = str((context.get("http") or {}).get("method", ""))
    target = request_target(str(event.get("rawPath") or "/"), str(event.get("rawQueryString") or ""))
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else str(body).encode("utf-8")
    return SignedRequest(method, target, raw)


def resign_function_url_event(event: Mapping[str, Any], key: str, now: float) -> dict[str, Any]:
    """A copy of a Function URL event with ``v1`` signature headers fresh for ``now``.

    Sample events age past the 300 s window; tests and ``make invoke`` sign them again with this.
    """
    headers = {k: v for k, v in dict(event.get("headers") or {}).items() if k.lower() not in _SIGNATURE_HEADERS}
    return {**event, "headers": {**headers, **signed_headers(key, signed_request_of(event), now)}}


_SIGNATURE_HEADERS = frozenset({TIMESTAMP_HEADER, SIGNATURE_HEADER})
