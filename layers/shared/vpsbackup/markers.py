"""The marker that identifies a backup as made by this project for one deployment.

The backup-on-deploy job appends it to the description of every backup it creates; the prune
job's ``PRUNE_SCOPE=managed`` and the reconciliation of an outcome-unknown create both look for
it. The deployment id is percent-encoded inside the marker, so an id with spaces or brackets cannot
end the marker early; an id whose encoding is longer than 128 characters is replaced by
``sha256:<hex>`` (``:`` never survives the encoding, so no literal id can look like a digest).
Compare markers with :func:`marker_matches`, never by parsing the id back.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote

MARKER_PREFIX = "[vpsbackup deployment="
MARKER_SUFFIX = "]"
_MARKER_RE = re.compile(r"\[vpsbackup deployment=([A-Za-z0-9%._~:-]+)\]")
_MAX_TOKEN = 128
MAX_DESCRIPTION_LENGTH = 255


def marker_token(deployment_id: str) -> str:
    """The deployment's token inside the marker: percent-encoded, or a digest when too long."""
    token = quote(deployment_id, safe="")
    if len(token) > _MAX_TOKEN:
        token = "sha256:" + hashlib.sha256(deployment_id.encode()).hexdigest()
    return token


def make_marker(deployment_id: str) -> str:
    """The marker text for ``deployment_id``, e.g. ``[vpsbackup deployment=gh-8812-1]``."""
    return f"{MARKER_PREFIX}{marker_token(deployment_id)}{MARKER_SUFFIX}"


def find_marker_token(description: str | None) -> str | None:
    """The token of the last marker in ``description``, or None if there is none."""
    if not description:
        return None
    found = _MARKER_RE.findall(description)
    return found[-1] if found else None


def is_managed(description: str | None) -> bool:
    """True if the description carries this project's marker (made by backup on deploy)."""
    return find_marker_token(description) is not None


def marker_matches(description: str | None, deployment_id: str) -> bool:
    """True if ``description`` carries the marker of exactly this deployment."""
    return find_marker_token(description) == marker_token(deployment_id)


def describe_with_marker(text: str, deployment_id: str, limit: int = MAX_DESCRIPTION_LENGTH) -> str:
    """``text`` followed by the deployment's marker, with ``text`` shortened (``…``) so the whole
    fits in ``limit`` characters. The marker itself is never cut."""
    marker = make_marker(deployment_id)
    room = limit - len(marker) - 1
    if room <= 0:
        return marker[:limit] if len(marker) > limit else marker
    body = " ".join(text.split())
    if len(body) > room:
        body = body[: max(room - 1, 0)].rstrip() + "…"
    return f"{body} {marker}" if body else marker
