"""RestoreOnAlarmFunction's settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, Json, PositiveInt, field_validator

from vpsbackup.durations import Duration
from vpsbackup.settings import SharedSettings

# The shortest RESTORE_COOLDOWN: a restore may run for minutes with no answer back, and an alarm's
# claim takes the server once the cooldown is over, so a shorter one could restore over a restore
# still running. At least the guard's in-flight window (restore/guard.py IN_FLIGHT; a test ties them).
MIN_RESTORE_COOLDOWN = timedelta(minutes=5)


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
    # 0 = no window: an alarm acts whenever it fires. Otherwise only within this time after the
    # server's latest recorded deployment; later (or with no deployment) the plan is only published.
    restore_watch_window: Duration = Field(default=timedelta(0))
    # An alarm whose state changed longer ago than this is not acted on (a redelivery, a replay).
    restore_max_alarm_age: Duration = Field(default=timedelta(minutes=15))
    # The follow-ups of an automatic restore (restore.recovery): the check this long after it, run by a
    # one-time EventBridge Scheduler schedule in this group, with this role (the template's; empty:
    # no check is scheduled, only the alarm's return to OK is recorded).
    restore_verify_after: Duration = Field(default=timedelta(minutes=30))
    restore_verify_role_arn: str = ""
    restore_verify_schedule_group: str = Field(default="default", min_length=1)

    @field_validator("restore_watch_window")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative (0 means no watch window)")
        return value

    @field_validator("restore_cooldown")
    @classmethod
    def _long_enough(cls, value: timedelta) -> timedelta:
        if value < MIN_RESTORE_COOLDOWN:
            raise ValueError(
                "must be at least 5m: a shorter cooldown could let a second alarm restore the server while "
                "its last restore may still be running"
            )
        return value

    @field_validator("restore_max_alarm_age")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0: with 0 every alarm would be too old to act on")
        return value

    @field_validator("restore_verify_after")
    @classmethod
    def _verify_later(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("must be at least 1m: the alarm needs time to see the restored server")
        return value
