"""Typed models of the provider API's objects (pydantic v2).

Unknown fields are ignored (the API may add some at any time), unknown statuses are kept as they
are (only ``completed`` is a usable restore point), and every timestamp is timezone-aware: a naive
one is read as UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

STATUS_COMPLETED = "completed"
STATUS_IN_PROGRESS = "in_progress"
STATUS_FAILED = "failed"
KNOWN_STATUSES = frozenset({STATUS_COMPLETED, STATUS_IN_PROGRESS, STATUS_FAILED})

BACKUP_MANUAL = "manual"
BACKUP_AUTOMATIC = "automatic"

BackupType = Literal["manual", "automatic"]


def _aware(value: datetime) -> datetime:
    """Read a naive timestamp as UTC; keep the offset of an aware one."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
"""A datetime that is always timezone-aware (naive input is taken as UTC)."""


class ApiModel(BaseModel):
    """Base of the API's models: unknown fields ignored, instances immutable."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class ServerRef(ApiModel):
    """The server a backup belongs to, as embedded in a backup."""

    id: int
    name: str | None = None


class Backup(ApiModel):
    """One backup as the API lists it."""

    id: int
    server: ServerRef
    # Kept as free text: the API may grow types we do not know; prune and restore check it.
    backup_type: str
    # Kept as free text: unknown statuses are data, not errors (``is_completed`` is the test).
    status: str
    size_mb: int | None = None
    created_at: AwareDatetime
    expires_at: AwareDatetime | None = None
    description: str | None = None

    @property
    def server_id(self) -> int:
        return self.server.id

    @property
    def is_completed(self) -> bool:
        return self.status == STATUS_COMPLETED

    @property
    def is_manual(self) -> bool:
        return self.backup_type == BACKUP_MANUAL


class CreatedBackup(Backup):
    """The answer to ``POST /backups/``: a backup plus the API's ``message``."""

    message: str | None = None


class InvalidItem(ApiModel):
    """A listed item that is not a valid :class:`Backup`: its id and server when they can be read,
    and why (the first field that failed, e.g. ``created_at: Input should be a valid datetime``).
    It is never deleted nor restored; a listing that has one misses an item of ``server_id``."""

    backup_id: int | None = None
    server_id: int | None = None
    reason: str
    # True when the item names a server (its ``server`` is not null) that cannot be read: it is some
    # live server's backup, and which one is unknown. ``server: null`` is a deleted server's backup.
    owner_unknown: bool = False

    @classmethod
    def of(cls, item: Any, error: ValidationError) -> InvalidItem:
        """The invalid ``item`` (as listed) and what ``error`` says is wrong with it."""
        data = item if isinstance(item, dict) else {}
        server = data.get("server")
        first = error.errors(include_url=False, include_input=False)[:1]
        where = ".".join(str(part) for part in first[0]["loc"]) if first else ""
        what = first[0]["msg"] if first else str(error)
        server_id = _id_of(server.get("id") if isinstance(server, dict) else server)
        return cls(
            backup_id=_int_or_none(data.get("id")),
            server_id=server_id,
            reason=f"{where}: {what}" if where else what,
            owner_unknown=server_id is None and ("server" not in data or server is not None),
        )

    def describe(self) -> str:
        server = f"server {self.server_id}" if self.server_id is not None else "no readable server"
        backup = f"backup {self.backup_id}" if self.backup_id is not None else "an item without a readable id"
        return f"{backup} ({server}) is not valid: {self.reason}"


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _id_of(value: Any) -> int | None:
    """An id as an invalid item may carry it: a number, or a number written as text."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return _int_or_none(value)


class PageEnvelope(ApiModel):
    """One page of ``GET /backups/`` (Django REST Framework's shape), its items not yet read: each
    is validated on its own (:meth:`BackupPage.of`), so one bad item does not make the page unreadable."""

    count: int | None = None
    next: str | None = None
    previous: str | None = None
    results: list[Any] = Field(default_factory=list)


class BackupPage(ApiModel):
    """One page of ``GET /backups/``: its valid backups, and the items that did not validate."""

    count: int | None = None
    next: str | None = None
    previous: str | None = None
    results: list[Backup] = Field(default_factory=list)
    invalid: list[InvalidItem] = Field(default_factory=list)

    @classmethod
    def of(cls, envelope: PageEnvelope) -> BackupPage:
        """Each item of ``envelope`` validated on its own: a :class:`Backup`, or an :class:`InvalidItem`."""
        results: list[Backup] = []
        invalid: list[InvalidItem] = []
        for item in envelope.results:
            try:
                results.append(Backup.model_validate(item))
            except ValidationError as exc:
                invalid.append(InvalidItem.of(item, exc))
        # Every part is validated already: no second pass over the page.
        return cls.model_construct(
            count=envelope.count, next=envelope.next, previous=envelope.previous, results=results, invalid=invalid
        )


class RestoreAccepted(ApiModel):
    """What ``POST /servers/{id}/restore/`` answered: its status code and body, whatever its shape."""

    server_id: int
    backup_id: int
    status_code: int
    body: dict[str, Any] | None = None
