"""What the jobs share through ``StateTable``, as plain models: a deployment's record and a hold.

Pure: the table's layout and I/O are in :mod:`vpsbackup.aws.state`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from vpsbackup.provider.models import AwareDatetime


class DeploymentRecord(BaseModel):
    """One server's part in one deployment, as the restore job reads it."""

    model_config = ConfigDict(frozen=True)

    deployment_id: str
    server_id: int
    received_at: AwareDatetime
    backup_id: int | None = None


class Hold(BaseModel):
    """A backup that prune must keep until ``until`` (set by a restore)."""

    model_config = ConfigDict(frozen=True)

    backup_id: int
    server_id: int
    until: AwareDatetime
    reason: str = ""
