"""RestoreOnAlarmFunction's settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, Json, PositiveInt

from vpsbackup.durations import Duration
from vpsbackup.settings import SharedSettings


class RestoreOnAlarmSettings(SharedSettings):
    """docs/configuration.md, restore on alarm."""

    alarm_name_prefix: str = ""
    server_id_dimension: str = Field(default="ServerId", min_length=1)
    alarm_server_map: Json[dict[str, PositiveInt]] = Field(default_factory=dict)
    restore_max_backup_age: Duration = Field(default=timedelta(days=7))
    restore_cooldown: Duration = Field(default=timedelta(hours=6))
    max_restores_per_hour: int = Field(default=3, ge=0)
    restore_mode: Literal["execute", "notify"] = "execute"
    restore_hold: Duration = Field(default=timedelta(days=7))
