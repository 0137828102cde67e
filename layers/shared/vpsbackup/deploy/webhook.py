"""The webhook's HMAC signature: how CI signs a call, how the function checks it, and the signed bytes.

Signature (the CI side is in the README)::

    X-Signature-Timestamp: <unix seconds>
    X-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

TIMESTAMP_HEADER = "x-signature-timestamp"
SIGNATURE_HEADER = "x-signature"
SIGNATURE_PREFIX = "sha256="
DEFAULT_MAX_SKEW_SECONDS = 300


def signature_for(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``"<timestamp>.<body>"`` keyed with ``secret``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def signed_headers(secret: str, body: bytes, now: float) -> dict[str, str]:
    """The two signature headers for ``body`` at ``now`` (for CI tools, tests and ``make invoke``)."""
    timestamp = str(int(now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature_for(secret, timestamp, body)}


def verify_signature(
    secret: str | None,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    max_skew: int = DEFAULT_MAX_SKEW_SECONDS,
) -> bool:
    """True only for a well-formed, fresh and correct signature.

    ``headers`` must have lower-case names (as Function URL events do). A missing key, a missing or
    malformed header, a timestamp more than ``max_skew`` seconds from ``now`` and a wrong digest are
    all just False: the caller answers 401 without saying which. The digest is compared with
    :func:`hmac.compare_digest`, and it is computed even when the timestamp is bad, so the time taken
    does not tell a bad timestamp from a bad digest.
    """
    timestamp = headers.get(TIMESTAMP_HEADER, "").strip()
    provided = headers.get(SIGNATURE_HEADER, "").strip().lower()
    timestamp_ok = timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12
    fresh = timestamp_ok and abs(now - int(timestamp)) <= max_skew
    expected = signature_for(secret or "", timestamp if timestamp_ok else "0", body)
    digest_ok = hmac.compare_digest(expected.encode("ascii"), provided.encode("utf-8"))
    return bool(secret) and fresh and digest_ok


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


def resign_function_url_event(event: Mapping[str, Any], secret: str, now: float) -> dict[str, Any]:
    """A copy of a Function URL event with signature headers fresh for ``now``.

    Sample events age past the 300 s window; tests and ``make invoke`` sign them again with this.
    """
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else str(body).encode("utf-8")
    headers = {k: v for k, v in dict(event.get("headers") or {}).items() if k.lower() not in _SIGNATURE_HEADERS}
    return {**event, "headers": {**headers, **signed_headers(secret, raw, now)}}


_SIGNATURE_HEADERS = frozenset({TIMESTAMP_HEADER, SIGNATURE_HEADER})
