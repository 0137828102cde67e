"""Typed models of the provider API's objects (pydantic v2).

Unknown fields are ignored (the API may add some at any time), unknown statuses are kept as they
are (only ``completed`` is a usable restore point), and every timestamp is timezone-aware: a naive
one is read as UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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


class BackupPage(ApiModel):
    """One page of ``GET /backups/`` (Django REST Framework's shape)."""

    count: int | None = None
    next: str | None = None
    previous: str | None = None
    results: list[Backup] = Field(default_factory=list)


class RestoreAccepted(ApiModel):
    """What ``POST /servers/{id}/restore/`` answered: its status code and body, whatever its shape."""

    server_id: int
    backup_id: int
    status_code: int
    body: dict[str, Any] | None = None
