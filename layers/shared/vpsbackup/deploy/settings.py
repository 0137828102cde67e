"""BackupOnDeployFunction's settings."""

from __future__ import annotations

from pydantic import Field, Json, PositiveInt

from vpsbackup.settings import SharedSettings


class BackupOnDeploySettings(SharedSettings):
    """docs/configuration.md, backup on deploy."""

    # {"production": [12345, 12346]}: the servers an `environment` name stands for.
    server_groups: Json[dict[str, list[PositiveInt]]] = Field(default_factory=dict)
    # Secrets Manager id of the webhook's HMAC key; without it every webhook call is refused (401).
    webhook_secret: str | None = None
    # Seconds a signed webhook timestamp may differ from now.
    webhook_max_skew_seconds: int = Field(default=300, ge=1, le=3600)
    # The deploy queue (SQS URL, set by the template): a deployment of more than 10 servers is
    # queued and its backups made by the queue's worker. Unset: every deployment is backed up inline.
    deploy_queue_url: str | None = None
