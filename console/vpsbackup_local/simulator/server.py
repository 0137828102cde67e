"""A faithful local simulator of the VPS provider's Backups API (see ``docs/provider-api.md``).

Why the standard library (``http.server.ThreadingHTTPServer`` + ``BaseHTTPRequestHandler``):

* no dependency: it runs anywhere the project's Python runs, in tests, in the demo and by hand;
* a real socket server on 127.0.0.1, so the project's real HTTP client (httpx: connection pool,
  keep-alive, timeouts, retries) is exercised end to end, not a mock transport;
* full control of the wire: a request can be applied and then the connection dropped without any
  response (``drop_after``), which is exactly the failure that makes retries dangerous.

Behaviour follows what the provider documents (Django REST Framework conventions: page-number
pagination with absolute ``next``/``previous`` URLs, ``{"detail": ...}`` and field-error bodies,
trailing slashes, ``Authorization: Bearer <token>``) and makes the open questions concrete:
listings are not ordered by ``created_at`` nor by ``id``, backups finish after a configurable
delay (resolved lazily from ``clock()`` on every read), concurrent work on one server gets ``409``.

All state is guarded by one lock; the server answers HTTP/1.1 with keep-alive and a correct
``Content-Length`` on every response that has a body.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import json
import logging
import math
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Literal, Self
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

__all__ = [
    "API_PREFIX",
    "CREATE_MESSAGE",
    "Fault",
    "FaultKind",
    "LoggedRequest",
    "NextLinkFault",
    "RateLimit",
    "Simulator",
    "format_timestamp",
    "seed_demo_fleet",
]

logger = logging.getLogger("vpsbackup_local.simulator")

API_PREFIX: Final = "/api/v1"
CREATE_MESSAGE: Final = "Backup is being created. This may take several minutes depending on server size."
BACKUP_TYPES: Final = ("manual", "automatic")
AUTOMATIC_RETENTION: Final = timedelta(days=30)

FaultKind = Literal["status", "status_after", "drop_before", "drop_after", "latency"]
_FAULT_KINDS: Final = ("status", "status_after", "drop_before", "drop_after", "latency")
# What a listing's ``next`` link may be made to do wrong (Simulator.set_next_link).
NextLinkFault = Literal["repeat", "other_host", "http"]
_NEXT_LINK_FAULTS: Final = ("repeat", "other_host", "http")
# The host an "other_host" next link names: a proxy's internal name, as DRF renders it behind one.
OTHER_HOST: Final = "backend.internal:8000"

_BACKUPS_RE: Final = re.compile(r"^/api/v1/backups/$")
_BACKUP_RE: Final = re.compile(r"^/api/v1/backups/(?P<id>[0-9]+)/$")
_RESTORE_RE: Final = re.compile(r"^/api/v1/servers/(?P<id>[0-9]+)/restore/$")
_INT_RE: Final = re.compile(r"^[+-]?[0-9]+$")
_DECIMAL_ZERO_RE: Final = re.compile(r"\.0*\s*$")


class _Default(enum.Enum):
    """Sentinel type for "use the documented default" (distinct from an explicit ``None``)."""

    DEFAULT = enum.auto()


DEFAULT: Final = _Default.DEFAULT


def format_timestamp(value: datetime) -> str:
    """Render like the provider: UTC, ``Z`` suffix, fractional seconds only when there are any."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Fault:
    """A failure to inject into matching requests.

    kind:
      ``"status"``      answer ``status`` (e.g. 429, 500, 502, 503, 504) without applying the request;
      ``"status_after"`` apply the request (e.g. really create the backup), then answer ``status``
                        (a 500 from a provider that failed after its work was done; with ``body``,
                        e.g. a 201 whose body cannot be read);
      ``"drop_before"`` close the connection without applying or answering;
      ``"drop_after"``  apply the request (e.g. really create the backup), then close without answering;
      ``"latency"``     sleep ``delay`` seconds, then handle normally (stacks with one other fault).
    method / path_prefix: filters (path relative to ``/api/v1``, e.g. ``"/backups/"``); None = any.
    times: how many matching requests it hits (None = unlimited). probability: chance per matching
    request, drawn from the simulator's seeded RNG. retry_after: ``Retry-After`` header value
    (seconds as a number, an HTTP-date string, or an aware datetime rendered as an HTTP-date).
    body: optional response body for ``"status"`` (dict → JSON, str/bytes → sent as is); by default
    429 answers DRF's throttling JSON, 500 Django's HTML error page and 502/503/504 a proxy's HTML.
    """

    kind: FaultKind
    method: str | None = None
    path_prefix: str | None = None
    times: int | None = 1
    probability: float = 1.0
    retry_after: float | str | datetime | None = None
    delay: float = 0.0
    status: int | None = None
    body: Mapping[str, Any] | str | bytes | None = None

    def __post_init__(self) -> None:
        if self.kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {_FAULT_KINDS}")
        if self.kind in ("status", "status_after") and (self.status is None or not 100 <= self.status <= 599):
            raise ValueError(f"a {self.kind!r} fault needs status=<HTTP code>")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0 or None")
        if self.delay < 0:
            raise ValueError("delay must be >= 0")

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path_prefix is not None:
            relative = path[len(API_PREFIX) :] if path.startswith(API_PREFIX + "/") else path
            if not relative.startswith(self.path_prefix):
                return False
        return True


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the simulator saw it.

    path is the full request path without the query (e.g. ``"/api/v1/backups/"``); query keeps the
    last value of each parameter; body is the JSON object sent, if any; status is None when the
    connection was dropped (``drop_before``/``drop_after``); fault names the fault that hit it.
    The Authorization header is never recorded.
    """

    method: str
    path: str
    query: dict[str, str]
    status: int | None
    fault: str | None
    body: dict[str, Any] | None
    at: datetime = field(default_factory=lambda: datetime.now(UTC), compare=False)


@dataclass(frozen=True)
class RateLimit:
    """A provider-side request limit: ``limit`` requests per ``window`` seconds, bursts up to ``burst``.

    A token bucket: it holds at most ``burst`` tokens (default ``limit``), refills at
    ``limit / window`` per second, and every request that reaches the API takes one. A request
    that finds the bucket empty is answered ``429`` with ``Retry-After`` (whole seconds until the
    next token, DRF's wording) and takes nothing. So in any interval of ``t`` seconds at most
    ``burst + t * limit / window`` requests are served. E.g. Hetzner-like: ``RateLimit(3600, 3600)``.

    ``headers`` picks what every answer carries: ``"ratelimit"`` — ``RateLimit-Limit``,
    ``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds until the bucket is full again, as in
    the IETF draft); ``"x-ratelimit"`` — ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
    ``X-RateLimit-Reset`` (a UNIX time, as GitHub and others send it); ``"both"``; ``"none"``
    (only ``Retry-After`` on a ``429``, which is all the provider documents).
    """

    limit: int
    window: float = 1.0
    burst: int | None = None
    headers: Literal["ratelimit", "x-ratelimit", "both", "none"] = "both"

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("limit must be >= 1")
        if self.window <= 0:
            raise ValueError("window must be > 0")
        if self.burst is not None and self.burst < 1:
            raise ValueError("burst must be >= 1")
        if self.headers not in ("ratelimit", "x-ratelimit", "both", "none"):
            raise ValueError(f"unknown headers style {self.headers!r}")

    @property
    def capacity(self) -> int:
        return self.burst if self.burst is not None else self.limit

    @property
    def rate(self) -> float:
        """Tokens per second."""
        return self.limit / self.window


@dataclass
class _Bucket:
    rule: RateLimit
    tokens: float
    updated: datetime
    served: int = 0
    throttled: int = 0

    def take(self, now: datetime) -> float | None:
        """Take a token: None if served, else the seconds until the next token."""
        elapsed = max(0.0, (now - self.updated).total_seconds())
        self.tokens = min(float(self.rule.capacity), self.tokens + elapsed * self.rule.rate)
        self.updated = max(self.updated, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.served += 1
            return None
        self.throttled += 1
        return (1.0 - self.tokens) / self.rule.rate

    def headers(self, now: datetime) -> dict[str, str]:
        style = self.rule.headers
        remaining = int(self.tokens)
        full_in = max(0.0, (self.rule.capacity - self.tokens) / self.rule.rate)
        out: dict[str, str] = {}
        if style in ("ratelimit", "both"):
            out["RateLimit-Limit"] = str(self.rule.capacity)
            out["RateLimit-Remaining"] = str(remaining)
            out["RateLimit-Reset"] = str(math.ceil(full_in))
        if style in ("x-ratelimit", "both"):
            out["X-RateLimit-Limit"] = str(self.rule.capacity)
            out["X-RateLimit-Remaining"] = str(remaining)
            out["X-RateLimit-Reset"] = str(math.ceil(now.timestamp() + full_in))
        return out


@dataclass
class _FaultState:
    fault: Fault
    remaining: int | None


@dataclass
class _Flaky:
    rate: float
    kinds: tuple[str, ...]
    rng: random.Random
    retry_after: float | str | None


@dataclass
class _Backup:
    id: int
    server_id: int
    backup_type: str
    status: str
    size_mb: int | None
    created_at: datetime
    expires_at: datetime | None
    description: str | None
    sort_key: float
    completes_at: datetime | None = None  # only for in_progress backups that finish on their own
    will_fail: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Server:
    id: int
    name: str
    restored_from: int | None = None
    restore_count: int = 0
    last_restored_at: datetime | None = None
    restoring_until: datetime | None = None
    restores: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "restored_from": self.restored_from,
            "restore_count": self.restore_count,
            "last_restored_at": self.last_restored_at,
            "restores": list(self.restores),
        }


@dataclass
class _Response:
    status: int
    body: Any = None  # JSON-able object, or bytes sent as is, or None for no body
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def _error(status: int, detail: str) -> _Response:
    return _Response(status, {"detail": detail})


def _default_size(backup_id: int, server_id: int) -> int:
    """A plausible, deterministic size in MB for a finished backup."""
    return 2000 + (server_id * 131 + backup_id * 7919) % 4000


def _retry_after_header(value: float | str | datetime) -> str:
    if isinstance(value, datetime):
        return format_datetime(_aware(value), usegmt=True)
    if isinstance(value, str):
        return value
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


_PROXY_PAGES: Final = {
    500: b'\n<!doctype html>\n<html lang="en">\n<head>\n  <title>Server Error (500)</title>\n</head>\n'
    b"<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n",
}


def _default_fault_body(status: int, retry_after: float | str | datetime | None) -> _Response:
    if status == 429:
        if isinstance(retry_after, int | float):
            seconds = max(1, int(-(-float(retry_after) // 1)))
            return _Response(status, {"detail": f"Request was throttled. Expected available in {seconds} seconds."})
        return _Response(status, {"detail": "Request was throttled."})
    if status in _PROXY_PAGES:
        return _Response(status, _PROXY_PAGES[status], content_type="text/html; charset=utf-8")
    if status >= 500:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        page = (
            f"<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        )
        return _Response(status, page.encode(), content_type="text/html")
    try:
        return _error(status, HTTPStatus(status).phrase + ".")
    except ValueError:
        return _error(status, "Error.")


class Simulator:
    """The provider's Backups API on a local socket, with state you can seed, inspect and break.

    >>> with Simulator(tokens={"t"}) as sim:  # doctest: +SKIP
    ...     sim.add_server(12345, "web-server-01")
    ...     httpx.get(sim.base_url + "/backups/", headers={"Authorization": "Bearer t"})

    Backups created through the API start ``in_progress`` and finish (``completed`` with a size, or
    ``failed`` if :meth:`fail_backups_for` was set for the server when they were created) once
    ``clock() >= created_at + completion_delay``; the delay in force at creation applies. Backups
    added with :meth:`add_backup` keep the status given (an added ``in_progress`` backup stays so
    until :meth:`complete_all`). Listings are ordered by a per-backup random key drawn from
    ``random.Random(seed)`` when the backup is made: neither by id nor by date, the same for every
    page of a walk, and reproducible. With ``expire_backups=True`` backups whose ``expires_at`` has
    passed disappear like the provider's automatic ones do; off by default so old test data stays.
    ``restore_duration`` > 0 keeps a server "restoring" (409 on new backups/restores) for that long.

    ``scheme`` is the scheme its links (``next``, ``previous``) carry: ``"https"`` plays a provider
    behind a TLS-terminating proxy (the socket itself is plain HTTP). :meth:`set_next_link` breaks
    the pagination; an item that does not validate is ``add_backup(..., extra={"created_at": None})``
    (or ``{"server": None}``, ``{"created_at": "yesterday"}``): ``extra`` overrides rendered fields.
    """

    def __init__(
        self,
        tokens: Collection[str] = frozenset({"test-token"}),
        page_size: int = 10,
        completion_delay: float = 0.0,
        clock: Callable[[], datetime] | None = None,
        seed: int = 0,
        *,
        restore_duration: float = 0.0,
        expire_backups: bool = False,
        first_backup_id: int = 501,
        max_page_size: int | None = None,
        rate_limit: RateLimit | None = None,
        latency: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        scheme: Literal["http", "https"] = "http",
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        if max_page_size is not None and max_page_size < 1:
            raise ValueError("max_page_size must be >= 1")
        if latency < 0:
            raise ValueError("latency must be >= 0")
        self._lock = threading.RLock()
        self._tokens: frozenset[str] = frozenset(tokens)
        self._page_size = page_size
        # DRF's max_page_size: a client's ?page_size= is honoured up to it. Default: the default
        # page size, so a client asking for more still walks several pages (what tests rely on).
        self._max_page_size = max_page_size if max_page_size is not None else page_size
        self._latency = latency
        self._sleep = sleep
        self.scheme = scheme
        self._next_link: tuple[NextLinkFault, int] | None = None
        self._completion_delay = timedelta(seconds=completion_delay)
        # A backup made by a POST is listed only this long after it was made (0: at once).
        self._listing_delay = timedelta(0)
        self._unlisted: dict[int, datetime] = {}  # backup id -> when it is listed
        self._restore_duration = timedelta(seconds=restore_duration)
        self._expire_backups = expire_backups
        self._clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._order_rng = random.Random(seed)
        self._fault_rng = random.Random(seed + 7_919)
        self._size_seed = seed
        self._next_id = first_backup_id
        self._servers: dict[int, _Server] = {}
        self._backups: dict[int, _Backup] = {}
        # Indexes, so a fleet of 300,000 backups is served page after page without rescanning it:
        # backups by server, the in_progress ones that finish on their own, and the listing order
        # (rebuilt only after a change, as ``_version`` says).
        self._by_server: dict[int, dict[int, _Backup]] = {}
        self._pending: dict[int, _Backup] = {}
        self._version = 0
        self._ordered: tuple[int, dict[str, list[_Backup]]] | None = None
        self._bucket: _Bucket | None = None
        self._failing: set[int] = set()
        self._faults: list[_FaultState] = []
        self._flaky: list[_Flaky] = []
        self._requests: list[LoggedRequest] = []
        self._httpd: _SimulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        if rate_limit is not None:
            self.set_rate_limit(rate_limit)

    # ----------------------------------------------------------------- lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> Self:
        """Bind and serve in a background thread (port 0 = an ephemeral port)."""
        if self._httpd is not None:
            raise RuntimeError("simulator already started")
        httpd = _SimulatorHTTPServer((host, port), _Handler, self)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="vps-simulator", daemon=True
        )
        self._thread.start()
        logger.info("VPS API simulator listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and any open keep-alive connection."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def serve_forever(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Block until KeyboardInterrupt (for the CLI), starting first if needed; then stop."""
        if self._httpd is None:
            self.start(host, port)
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    @property
    def address(self) -> tuple[str, int]:
        if self._httpd is None:
            raise RuntimeError("simulator not started")
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def origin(self) -> str:
        host, port = self.address
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/api/v1`` (no trailing slash)."""
        return self.origin + API_PREFIX

    # ----------------------------------------------------------------- seeding and inspection

    def now(self) -> datetime:
        return _aware(self._clock())

    def add_server(self, server_id: int, name: str) -> dict[str, Any]:
        with self._lock:
            server = self._servers.get(server_id)
            if server is None:
                server = self._servers[server_id] = _Server(server_id, name)
            else:
                server.name = name
            return server.as_dict()

    def add_backup(
        self,
        server_id: int,
        backup_type: str = "manual",
        status: str = "completed",
        created_at: datetime | None = None,
        description: str | None = None,
        size_mb: int | None = None,
        expires_at: datetime | _Default | None = DEFAULT,
        id: int | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Put a backup in place, as if the provider had it; returns it as the API shows it.

        ``expires_at`` defaults to ``created_at + 30 days`` for automatic backups, None for manual
        ones. A completed backup without ``size_mb`` gets a plausible one. ``status`` may be any
        string (``"failed"``, ``"deleting"``…). ``extra`` adds undocumented fields to the object.
        """
        with self._lock:
            if server_id not in self._servers:
                raise KeyError(f"unknown server {server_id}: call add_server() first")
            if id is None:
                id = self._next_id
            elif id in self._backups:
                raise ValueError(f"backup {id} already exists")
            self._next_id = max(self._next_id, id + 1)
            created = _aware(created_at) if created_at is not None else self.now()
            if isinstance(expires_at, _Default):
                expires = created + AUTOMATIC_RETENTION if backup_type == "automatic" else None
            else:
                expires = _aware(expires_at) if expires_at is not None else None
            if status == "completed" and size_mb is None:
                size_mb = _default_size(id, server_id)
            backup = _Backup(
                id=id,
                server_id=server_id,
                backup_type=backup_type,
                status=status,
                size_mb=size_mb,
                created_at=created,
                expires_at=expires,
                description=description,
                sort_key=self._order_rng.random(),
                extra=dict(extra or {}),
            )
            self._store(backup)
            return self._render(backup)

    @property
    def backups(self) -> list[dict[str, Any]]:
        """All backups, current state (statuses resolved against ``clock()``), by id."""
        with self._lock:
            self._resolve_all()
            return [self._render(b) for b in sorted(self._backups.values(), key=lambda b: b.id)]

    def iter_backups(self) -> Iterator[dict[str, Any]]:
        """All backups as :attr:`backups` gives them, by id, rendered one at a time (a fleet of
        millions is never held rendered at once)."""
        with self._lock:
            self._resolve_all()
            ids = sorted(self._backups)
        for backup_id in ids:
            with self._lock:
                backup = self._backups.get(backup_id)
                shown = None if backup is None else self._render(backup)
            if shown is not None:
                yield shown

    def get_backup(self, backup_id: int) -> dict[str, Any] | None:
        with self._lock:
            self._resolve_all()
            backup = self._backups.get(backup_id)
            return None if backup is None else self._render(backup)

    def remove_backup(self, backup_id: int) -> None:
        """Delete a backup behind the API's back (as an operator in the provider's panel would)."""
        with self._lock:
            self._discard(backup_id)

    @property
    def servers(self) -> dict[int, dict[str, Any]]:
        with self._lock:
            return {sid: s.as_dict() for sid, s in self._servers.items()}

    def set_tokens(self, tokens: Collection[str]) -> None:
        """Rotate the accepted tokens: any other token gets 401 from now on."""
        with self._lock:
            self._tokens = frozenset(tokens)

    def fail_backups_for(self, server_id: int, fail: bool = True) -> None:
        """Backups of this server created from now on end as ``failed`` instead of ``completed``."""
        with self._lock:
            if fail:
                self._failing.add(server_id)
            else:
                self._failing.discard(server_id)

    def set_completion_delay(self, seconds: float) -> None:
        """Delay for backups created from now on."""
        with self._lock:
            self._completion_delay = timedelta(seconds=seconds)

    def set_listing_delay(self, seconds: float) -> None:
        """A backup a ``POST /backups/`` makes from now on is missing from every listing for
        ``seconds`` (simulator time) after it was made, as behind a provider's eventually consistent
        read side; it exists (and keeps its server busy) all the same."""
        with self._lock:
            self._listing_delay = timedelta(seconds=seconds)

    def set_restore_duration(self, seconds: float) -> None:
        with self._lock:
            self._restore_duration = timedelta(seconds=seconds)

    def complete_all(self) -> None:
        """Finish every in_progress backup now (failed for servers marked failing), and any restore."""
        with self._lock:
            for backup in self._backups.values():
                if backup.status == "in_progress":
                    backup.completes_at = None
                    self._finish(backup)
            self._pending.clear()
            for server in self._servers.values():
                server.restoring_until = None

    # ----------------------------------------------------------------- faults and request log

    def inject(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(_FaultState(fault, fault.times))
        return fault

    def inject_flaky(
        self,
        rate: float = 0.3,
        kinds: Iterable[str] = ("429", "503", "drop_before"),
        seed: int = 1,
        *,
        retry_after: float | str | None = None,
    ) -> None:
        """Make a random ``rate`` of all requests fail, unlimited, with one of ``kinds``.

        A kind is an HTTP status as a string (``"429"``, ``"503"``…) or a fault kind
        (``"drop_before"``, ``"drop_after"``). Reproducible: its own ``random.Random(seed)``.
        """
        kinds = tuple(kinds)
        for kind in kinds:
            if not (kind.isdigit() or kind in ("drop_before", "drop_after")):
                raise ValueError(f"unknown flaky kind {kind!r}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        with self._lock:
            self._flaky.append(_Flaky(rate, kinds, random.Random(seed), retry_after))

    def set_rate_limit(self, rule: RateLimit | None) -> None:
        """Enforce ``rule`` from now on (the bucket starts full); None lifts the limit."""
        with self._lock:
            self._bucket = None if rule is None else _Bucket(rule, float(rule.capacity), self.now())

    @property
    def rate_limit_counts(self) -> dict[str, int]:
        """Requests the rate limit let through (``served``) and answered 429 (``throttled``)."""
        with self._lock:
            bucket = self._bucket
            return {"served": bucket.served, "throttled": bucket.throttled} if bucket else {}

    def set_latency(self, seconds: float) -> None:
        """Every request waits ``seconds`` (through ``sleep``) before it is handled."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        with self._lock:
            self._latency = seconds

    def _throttle(self) -> tuple[float | None, dict[str, str]]:
        """(seconds until a token if this request is throttled, else None; the headers to send)."""
        with self._lock:
            bucket = self._bucket
            if bucket is None:
                return None, {}
            now = self.now()
            wait = bucket.take(now)
            return wait, bucket.headers(now)

    def set_next_link(self, fault: NextLinkFault | None, *, on_page: int = 2) -> None:
        """Break the ``next`` link of page ``on_page`` of every listing (None: links as they should be).

        ``"repeat"``: it names the page before it (page 1: itself), a page already read;
        ``"other_host"``: it names :data:`OTHER_HOST`, same path and query (a proxy's internal name);
        ``"http"``: it says ``http://``, same host (a TLS-terminating proxy, with ``scheme="https"``).
        Every other page, and that page's items, are as they should be.
        """
        if fault is not None and fault not in _NEXT_LINK_FAULTS:
            raise ValueError(f"unknown next-link fault {fault!r}; expected one of {_NEXT_LINK_FAULTS}")
        if on_page < 1:
            raise ValueError("on_page must be >= 1")
        with self._lock:
            self._next_link = None if fault is None else (fault, on_page)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._next_link = None
            self._flaky.clear()

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # ----------------------------------------------------------------- internals: state

    def _render(self, backup: _Backup) -> dict[str, Any]:
        server = self._servers.get(backup.server_id)
        name = server.name if server is not None else None
        data: dict[str, Any] = {
            "id": backup.id,
            "server": {"id": backup.server_id, "name": name},
            "backup_type": backup.backup_type,
            "status": backup.status,
            "size_mb": backup.size_mb,
            "created_at": format_timestamp(backup.created_at),
            "expires_at": format_timestamp(backup.expires_at) if backup.expires_at is not None else None,
            "description": backup.description,
        }
        for key, value in backup.extra.items():
            data[key] = copy.deepcopy(value)
        return data

    def _finish(self, backup: _Backup) -> None:
        if backup.will_fail:
            backup.status = "failed"
        else:
            backup.status = "completed"
            if backup.size_mb is None:
                backup.size_mb = _default_size(backup.id, backup.server_id + self._size_seed)

    def _store(self, backup: _Backup) -> None:
        self._backups[backup.id] = backup
        self._by_server.setdefault(backup.server_id, {})[backup.id] = backup
        if backup.status == "in_progress" and backup.completes_at is not None:
            self._pending[backup.id] = backup
        self._version += 1

    def _discard(self, backup_id: int) -> None:
        backup = self._backups.pop(backup_id, None)
        if backup is None:
            return
        self._by_server.get(backup.server_id, {}).pop(backup_id, None)
        self._pending.pop(backup_id, None)
        self._version += 1

    def _in_listing_order(self, backup_type: str) -> list[_Backup]:
        """The fleet's backups of ``backup_type`` ("" = all) in the listing's order, cached until a
        backup is added or removed (a type never changes)."""
        if self._ordered is None or self._ordered[0] != self._version:
            self._ordered = (self._version, {})
        by_type = self._ordered[1]
        if backup_type not in by_type:
            items = sorted(self._backups.values(), key=lambda b: (b.sort_key, b.id))
            by_type[backup_type] = [b for b in items if b.backup_type == backup_type] if backup_type else items
        return by_type[backup_type]

    def _resolve_all(self) -> None:
        now = self.now()
        for backup in list(self._pending.values()):
            if backup.status != "in_progress":
                del self._pending[backup.id]
            elif backup.completes_at is not None and now >= backup.completes_at:
                self._finish(backup)
                del self._pending[backup.id]
        if self._expire_backups:
            for backup_id in [b.id for b in self._backups.values() if b.expires_at is not None and b.expires_at <= now]:
                self._discard(backup_id)

    def _busy(self, server_id: int) -> str | None:
        """Why new work on this server is refused right now, if it is (after _resolve_all)."""
        server = self._servers[server_id]
        if server.restoring_until is not None:
            if self.now() < server.restoring_until:
                return "A restore is already in progress for this server."
            server.restoring_until = None
        if any(b.status == "in_progress" for b in self._by_server.get(server_id, {}).values()):
            return "A backup is already in progress for this server."
        return None

    # ----------------------------------------------------------------- internals: faults

    def _pick_fault(self, method: str, path: str) -> tuple[Fault | None, float]:
        """The fault hitting this request (first match wins) and the latency to add before it."""
        delay = 0.0
        with self._lock:
            for state in self._faults:
                fault = state.fault
                if state.remaining == 0 or not fault.matches(method, path):
                    continue
                if fault.probability < 1.0 and self._fault_rng.random() >= fault.probability:
                    continue
                if state.remaining is not None:
                    state.remaining -= 1
                if fault.kind == "latency":
                    delay += fault.delay
                    continue
                return fault, delay + fault.delay
            for flaky in self._flaky:
                if flaky.rng.random() < flaky.rate:
                    kind = flaky.rng.choice(flaky.kinds)
                    if kind.isdigit():
                        return Fault("status", status=int(kind), retry_after=flaky.retry_after, times=None), delay
                    return Fault("drop_after" if kind == "drop_after" else "drop_before", times=None), delay
        return None, delay

    def _log(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._requests.append(entry)

    # ----------------------------------------------------------------- internals: the API

    def _dispatch(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: Mapping[str, str], origin: str
    ) -> _Response:
        route: str
        ident = 0
        allowed: tuple[str, ...]
        if _BACKUPS_RE.match(path):
            route, allowed = "backups", ("GET", "POST", "HEAD", "OPTIONS")
        elif m := _BACKUP_RE.match(path):
            route, ident, allowed = "backup", int(m["id"]), ("DELETE", "OPTIONS")
        elif m := _RESTORE_RE.match(path):
            route, ident, allowed = "restore", int(m["id"]), ("POST", "OPTIONS")
        else:
            return _error(404, "Not found.")
        if (denied := self._authenticate(headers.get("authorization"))) is not None:
            return denied
        if method not in allowed:
            response = _error(405, f'Method "{method}" not allowed.')
            response.headers["Allow"] = ", ".join(allowed)
            return response
        if method == "OPTIONS":
            return _Response(
                200, {"name": route.title(), "renders": ["application/json"]}, {"Allow": ", ".join(allowed)}
            )
        if method == "POST" and body.strip():
            content_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type != "application/json":
                return _error(415, f'Unsupported media type "{content_type}" in request.')
        with self._lock:
            self._resolve_all()
            if route == "backups":
                if method in ("GET", "HEAD"):
                    return self._list(path, query, origin)
                return self._create(body)
            if route == "backup":
                return self._delete(ident)
            return self._restore(ident, body)

    def _authenticate(self, header: str | None) -> _Response | None:
        def unauthorized(detail: str) -> _Response:
            return _Response(401, {"detail": detail}, {"WWW-Authenticate": 'Bearer realm="api"'})

        parts = (header or "").split()
        if not parts or parts[0].lower() != "bearer":
            return unauthorized("Authentication credentials were not provided.")
        if len(parts) == 1:
            return unauthorized("Invalid token header. No credentials provided.")
        if len(parts) > 2:
            return unauthorized("Invalid token header. Token string should not contain spaces.")
        with self._lock:
            if parts[1] not in self._tokens:
                return unauthorized("Invalid token.")
        return None

    def _list(self, path: str, query: dict[str, list[str]], origin: str) -> _Response:
        params = {key: values[-1] for key, values in query.items()}
        filters = _list_filters(params)
        if isinstance(filters, _Response):
            return filters
        server_filter, type_filter = filters
        items = self._filtered(server_filter, type_filter)
        if self._unlisted:
            items = self._listed(items)
        page_size = self._requested_page_size(params.get("page_size"))
        count = len(items)
        num_pages = max(1, -(-count // page_size))
        raw_page = params.get("page") or "1"
        if raw_page == "last":
            page = num_pages
        elif _INT_RE.match(raw_page) and 1 <= int(raw_page) <= num_pages:
            page = int(raw_page)
        else:
            return _error(404, "Invalid page.")
        start = (page - 1) * page_size
        url = origin + path + ("?" + urlencode(sorted(query.items()), doseq=True) if query else "")
        next_url = _replace_query_param(url, "page", page + 1) if page < num_pages else None
        if next_url is not None and self._next_link is not None and self._next_link[1] == page:
            next_url = _broken_next_link(next_url, url, self._next_link[0], page)
        return _Response(
            200,
            {
                "count": count,
                "next": next_url,
                "previous": _previous_page_url(url, page),
                "results": [self._render(b) for b in items[start : start + page_size]],
            },
        )

    def _filtered(self, server_filter: int | None, type_filter: str) -> list[_Backup]:
        """The backups a listing's filters select, in the listing's order."""
        if server_filter is None:
            return self._in_listing_order(type_filter)
        return sorted(
            (
                b
                for b in self._by_server.get(server_filter, {}).values()
                if not type_filter or b.backup_type == type_filter
            ),
            key=lambda b: (b.sort_key, b.id),
        )

    def _listed(self, items: list[_Backup]) -> list[_Backup]:
        """``items`` without the backups not listed yet (``set_listing_delay``)."""
        now = self.now()
        for backup_id, listed_at in list(self._unlisted.items()):
            if now >= listed_at or backup_id not in self._backups:
                del self._unlisted[backup_id]
        return [b for b in items if b.id not in self._unlisted] if self._unlisted else items

    def _requested_page_size(self, raw: str | None) -> int:
        """DRF's ``get_page_size``: a positive integer ``page_size`` capped at ``max_page_size``;
        anything else (absent, 0, negative, not a number) means the default page size."""
        if raw is not None and _INT_RE.match(raw.strip()) and int(raw) > 0:
            return min(int(raw), self._max_page_size)
        return self._page_size

    def _create(self, body: bytes) -> _Response:
        data = _parse_json(body)
        if isinstance(data, _Response):
            return data
        errors: dict[str, list[str]] = {}
        server_id, error = _integer_field(data, "server_id")
        if error:
            errors["server_id"] = [error]
        raw_description = data.get("description")
        description: str | None = None
        if isinstance(raw_description, bool | dict | list):
            errors["description"] = ["Not a valid string."]
        elif raw_description is not None:
            description = str(raw_description)
        if errors:
            return _Response(400, errors)
        assert server_id is not None
        if server_id not in self._servers:
            return _error(404, "Server not found.")
        if (reason := self._busy(server_id)) is not None:
            return _error(409, reason)
        now = self.now()
        backup_id = self._next_id
        self._next_id += 1
        backup = _Backup(
            id=backup_id,
            server_id=server_id,
            backup_type="manual",
            status="in_progress",
            size_mb=None,
            created_at=now,
            expires_at=None,
            description=description,
            sort_key=self._order_rng.random(),
            completes_at=now + self._completion_delay,
            will_fail=server_id in self._failing,
        )
        self._store(backup)
        if self._listing_delay > timedelta(0):
            self._unlisted[backup_id] = now + self._listing_delay
        shown = self._render(backup)
        shown["message"] = CREATE_MESSAGE
        return _Response(201, shown)

    def _delete(self, backup_id: int) -> _Response:
        backup = self._backups.get(backup_id)
        if backup is None:
            return _error(404, "Not found.")
        if backup.status == "in_progress":
            return _error(409, "Backup is in progress and cannot be deleted.")
        self._discard(backup_id)
        return _Response(204)

    def _restore(self, server_id: int, body: bytes) -> _Response:
        server = self._servers.get(server_id)
        if server is None:
            return _error(404, "Server not found.")
        data = _parse_json(body)
        if isinstance(data, _Response):
            return data
        backup_id, error = _integer_field(data, "backup_id")
        if error:
            return _Response(400, {"backup_id": [error]})
        assert backup_id is not None
        backup = self._backups.get(backup_id)
        if backup is None:
            return _error(404, "Backup not found.")
        if backup.server_id != server_id:
            return _Response(400, {"backup_id": [f"Backup {backup_id} does not belong to server {server_id}."]})
        if (reason := self._busy(server_id)) is not None:
            return _error(409, reason)
        if backup.status != "completed":
            return _Response(400, {"backup_id": [f"Backup {backup_id} is not completed (status: {backup.status})."]})
        now = self.now()
        server.restored_from = backup_id
        server.restore_count += 1
        server.last_restored_at = now
        server.restores.append(backup_id)
        if self._restore_duration > timedelta(0):
            server.restoring_until = now + self._restore_duration
        return _Response(202, {"detail": "Restore started.", "server_id": server_id, "backup_id": backup_id})


def _fault_response(fault: Fault, limit_headers: Mapping[str, str]) -> _Response:
    """The answer of a ``status`` or ``status_after`` fault."""
    assert fault.status is not None
    if fault.body is None:
        response = _default_fault_body(fault.status, fault.retry_after)
    elif isinstance(fault.body, str | bytes):
        raw = fault.body.encode() if isinstance(fault.body, str) else fault.body
        response = _Response(fault.status, raw, content_type="text/plain; charset=utf-8")
    else:
        response = _Response(fault.status, dict(fault.body))
    response.headers.update(limit_headers)
    if fault.retry_after is not None:
        response.headers["Retry-After"] = _retry_after_header(fault.retry_after)
    return response


def _parse_json(body: bytes) -> dict[str, Any] | _Response:
    if not body.strip():
        return {}
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return _error(400, f"JSON parse error - {exc}")
    if not isinstance(data, dict):
        return _Response(
            400, {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(data).__name__}."]}
        )
    return data


def _integer_field(data: Mapping[str, Any], name: str) -> tuple[int | None, str | None]:
    """DRF ``IntegerField`` semantics: ints, integral floats and numeric strings are accepted."""
    if name not in data:
        return None, "This field is required."
    value = data[name]
    if value is None:
        return None, "This field may not be null."
    if isinstance(value, bool | dict | list):
        return None, "A valid integer is required."
    text = _DECIMAL_ZERO_RE.sub("", str(value)) if isinstance(value, float | str) else str(value)
    if not _INT_RE.match(text.strip()):
        return None, "A valid integer is required."
    return int(text), None


def _list_filters(params: dict[str, str]) -> tuple[int | None, str] | _Response:
    """A listing's ``server_id`` and ``backup_type`` filters, or DRF's 400 naming each bad one."""
    errors: dict[str, list[str]] = {}
    server_filter: int | None = None
    raw_server = params.get("server_id", "").strip()
    if raw_server:
        if _INT_RE.match(raw_server):
            server_filter = int(raw_server)
        else:
            errors["server_id"] = ["Enter a whole number."]
    type_filter = params.get("backup_type", "")
    if type_filter and type_filter not in BACKUP_TYPES:
        errors["backup_type"] = [f"Select a valid choice. {type_filter} is not one of the available choices."]
    if errors:
        return _Response(400, errors)
    return server_filter, type_filter


def _previous_page_url(url: str, page: int) -> str | None:
    """DRF's ``previous`` link: none on page 1, no ``page`` parameter for page 1 itself."""
    if page <= 1:
        return None
    if page == 2:
        return _remove_query_param(url, "page")
    return _replace_query_param(url, "page", page - 1)


def _json_object(body: bytes) -> dict[str, Any] | None:
    """A request body as the request log keeps it: a JSON object, or None."""
    with contextlib.suppress(UnicodeDecodeError, ValueError):
        parsed = json.loads(body.decode("utf-8")) if body.strip() else None
        return parsed if isinstance(parsed, dict) else None
    return None


def _throttled(throttled: float, limit_headers: dict[str, str]) -> _Response:
    """DRF's 429 with ``Retry-After`` (whole seconds, at least 1) and the rate-limit headers."""
    seconds = max(1, math.ceil(throttled))
    response = _Response(429, {"detail": f"Request was throttled. Expected available in {seconds} seconds."})
    response.headers.update(limit_headers)
    response.headers["Retry-After"] = str(seconds)
    return response


def _broken_next_link(next_url: str, url: str, fault: NextLinkFault, page: int) -> str:
    """The ``next`` link of page ``page`` (``url``) as ``fault`` breaks it (Simulator.set_next_link)."""
    if fault == "repeat":
        return _replace_query_param(url, "page", max(1, page - 1)) if page > 1 else url
    parts = urlsplit(next_url)
    if fault == "other_host":
        return urlunsplit(parts._replace(netloc=OTHER_HOST))
    return urlunsplit(parts._replace(scheme="http"))


def _replace_query_param(url: str, key: str, value: object) -> str:
    scheme, netloc, path, query, fragment = urlsplit(url)
    query_dict = parse_qs(query, keep_blank_values=True)
    query_dict[key] = [str(value)]
    return urlunsplit((scheme, netloc, path, urlencode(sorted(query_dict.items()), doseq=True), fragment))


def _remove_query_param(url: str, key: str) -> str:
    scheme, netloc, path, query, fragment = urlsplit(url)
    query_dict = parse_qs(query, keep_blank_values=True)
    query_dict.pop(key, None)
    return urlunsplit((scheme, netloc, path, urlencode(sorted(query_dict.items()), doseq=True), fragment))


# --------------------------------------------------------------------------- HTTP plumbing


class _SimulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], simulator: Simulator) -> None:
        self.simulator = simulator
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vps-api-simulator/1.0"
    timeout = 60  # idle keep-alive connections are closed after a minute
    server: _SimulatorHTTPServer

    def version_string(self) -> str:
        return self.server_version

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header follows the simulator's clock (simulated time included), so a client can
        # read an absolute X-RateLimit-Reset against it.
        return format_datetime(self.server.simulator.now(), usegmt=True)

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.simulator._lock:
            self.server.simulator._connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.simulator._lock:
            self.server.simulator._connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _origin(self) -> str:
        host = self.headers.get("Host")
        sim = self.server.simulator
        return f"{sim.scheme}://{host}" if host else sim.scheme + sim.origin[len("http") :]

    def _handle(self) -> None:
        sim = self.server.simulator
        method = self.command.upper()
        split = urlsplit(self.path)
        path = split.path
        query = parse_qs(split.query, keep_blank_values=True)
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self._send(_error(400, "Malformed request body."), method)
            self.close_connection = True
            return
        logged_body = _json_object(body)
        flat_query = {key: values[-1] for key, values in query.items()}

        def log(status: int | None, fault: str | None) -> None:
            sim._log(LoggedRequest(method, path, flat_query, status, fault, logged_body, at=sim.now()))

        if sim._latency > 0:
            sim._sleep(sim._latency)
        throttled, limit_headers = sim._throttle()
        if throttled is not None:
            log(429, "rate_limit")
            self._send(_throttled(throttled, limit_headers), method)
            return
        fault, delay = sim._pick_fault(method, path)
        if delay > 0:
            sim._sleep(delay)
        kind = fault.kind if fault is not None else ("latency" if delay > 0 else None)
        if self._fault_answered(fault, "before", kind, limit_headers, log, method):
            return
        try:
            headers = {key.lower(): value for key, value in self.headers.items()}
            response = sim._dispatch(method, path, query, body, headers, self._origin())
        except Exception:
            logger.exception("simulator error on %s %s", method, self.path)
            response = _error(500, "Simulator internal error.")
        if self._fault_answered(fault, "after", kind, limit_headers, log, method):
            return
        response.headers.update(limit_headers)
        log(response.status, kind)
        self._send(response, method)

    def _fault_answered(
        self,
        fault: Fault | None,
        stage: str,
        kind: str | None,
        limit_headers: dict[str, str],
        log: Callable[[int | None, str | None], None],
        method: str,
    ) -> bool:
        """Carry out ``fault`` if it acts at ``stage`` (``before`` or ``after`` the request is served)."""
        if fault is None:
            return False
        if fault.kind == f"drop_{stage}":
            log(None, kind)
            self._drop()
            return True
        if fault.kind == ("status" if stage == "before" else "status_after"):
            response = _fault_response(fault, limit_headers)
            log(response.status, kind)
            self._send(response, method)
            return True
        return False

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, response: _Response, method: str) -> None:
        payload: bytes | None
        if response.body is None:
            payload = None
        elif isinstance(response.body, bytes):
            payload = response.body
        else:
            payload = json.dumps(response.body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        self.send_response(response.status)
        if payload is not None:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Vary", "Accept")
        for key, value in response.headers.items():
            self.send_header(key, value)
        if response.status != 204 and not 100 <= response.status < 200:
            self.send_header("Content-Length", str(len(payload) if payload is not None else 0))
        self.end_headers()
        if payload is not None and method != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()


# --------------------------------------------------------------------------- demo data


DEMO_SERVERS: Final = ((12345, "web-server-01"), (12346, "web-server-02"), (12347, "db-server-01"))


def seed_demo_fleet(sim: Simulator, days: int = 30, now: datetime | None = None) -> None:
    """Three servers, each with ``days`` daily automatic backups at 03:00 UTC and a few manual ones."""
    now = _aware(now) if now is not None else sim.now()
    today = now.replace(hour=3, minute=0, second=0, microsecond=0)
    if today > now:
        today -= timedelta(days=1)
    for index, (server_id, name) in enumerate(DEMO_SERVERS):
        sim.add_server(server_id, name)
        for day in range(days):
            sim.add_backup(
                server_id,
                backup_type="automatic",
                created_at=today - timedelta(days=day, minutes=index * 7),
                description="Automatic daily backup",
            )
        for day, hour, text in (
            (2, 10, "Pre-update backup"),
            (9, 15, "Pre-deployment backup"),
            (45, 11, "Before migration"),
        ):
            sim.add_backup(
                server_id,
                backup_type="manual",
                created_at=(today - timedelta(days=day + index)).replace(hour=hour, minute=30),
                description=text,
            )
