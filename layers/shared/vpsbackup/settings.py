"""Settings: environment variables -> one validated pydantic object per function.

Each field's environment variable is its name in upper case (``state_table_name`` ->
``STATE_TABLE_NAME``). A job's settings subclass :class:`SharedSettings`. :func:`load_settings`
runs at cold start; a missing or bad value raises :class:`ConfigurationError` naming the variable.
Domain code never reads the environment: it gets these objects (or values from them).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Json, PositiveInt, ValidationError, field_validator

from vpsbackup.durations import Duration
from vpsbackup.errors import ConfigurationError
from vpsbackup.retention import RetentionPolicies, RetentionPolicy, parse_retention_overrides, parse_retention_policy

DEFAULT_API_BASE_URL = "https://admin.vps.org/api/v1"


class SharedSettings(BaseModel):
    """The variables every function has (SPEC §2)."""

    model_config = ConfigDict(frozen=True, extra="ignore", arbitrary_types_allowed=True)

    vps_api_base_url: str = DEFAULT_API_BASE_URL
    vps_api_token_secret: str = Field(min_length=1)
    state_table_name: str = Field(min_length=1)
    notify_topic_arn: str | None = None

    @field_validator("vps_api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("https://", "http://")) or len(value) <= len("https://"):
            raise ValueError("must be an http(s) URL such as https://admin.vps.org/api/v1")
        return value

    @field_validator("notify_topic_arn", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("notify_topic_arn")
    @classmethod
    def _topic_arn(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("arn:"):
            raise ValueError("must be an SNS topic ARN (arn:aws:sns:...)")
        return value


SettingsT = TypeVar("SettingsT", bound=BaseModel)


def env_name(field: str) -> str:
    """The environment variable behind a settings field."""
    return field.upper()


def load_settings(cls: type[SettingsT], environ: Mapping[str, str] | None = None) -> SettingsT:
    """Build ``cls`` from the environment; raise ConfigurationError naming every bad variable.

    An empty string counts as unset, so a blank template parameter falls back to the default.
    """
    env = os.environ if environ is None else environ
    data = {
        name: env[env_name(name)]
        for name in cls.model_fields
        if env_name(name) in env and env[env_name(name)].strip() != ""
    }
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc, env_names=True)) from None


def describe_validation_error(exc: ValidationError, *, env_names: bool = False) -> str:
    """One line per problem, each naming the field (or its environment variable), never the value."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = [str(part) for part in error["loc"]]
        if env_names and loc:
            loc[0] = env_name(loc[0])
        where = ".".join(loc) or "(settings)"
        problems.append(f"{where}: {error['msg']}")
    noun = "setting" if env_names else "field"
    return f"invalid {noun}{'s' if len(problems) > 1 else ''}: " + "; ".join(problems)


def _zone(value: str) -> ZoneInfo:
    try:
        return ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r} (e.g. UTC, Europe/Madrid)") from None


TimeZone = Annotated[ZoneInfo, BeforeValidator(lambda v: v if isinstance(v, ZoneInfo) else _zone(str(v)))]


class BackupOnDeploySettings(SharedSettings):
    """SPEC §3."""

    # {"production": [12345, 12346]}: the servers an `environment` name stands for.
    server_groups: Json[dict[str, list[PositiveInt]]] = Field(default_factory=dict)
    # Secrets Manager id of the webhook's HMAC key; without it every webhook call is refused (401).
    webhook_secret: str | None = None
    # Seconds a signed webhook timestamp may differ from now.
    webhook_max_skew_seconds: int = Field(default=300, ge=1, le=3600)


def _policy_problems(exc: ValidationError) -> str:
    """A retention policy's validation errors on one line, each naming its rule when it has one."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{loc}: {message}" if loc else message)
    return "; ".join(problems)


def _retention_policy(value: Any) -> Any:
    if isinstance(value, RetentionPolicy):
        return value
    try:
        return parse_retention_policy(value if isinstance(value, str) else json.dumps(value))
    except ValidationError as exc:
        raise ValueError(_policy_problems(exc)) from None


def _retention_overrides(value: Any) -> Any:
    if isinstance(value, Mapping) and all(isinstance(p, RetentionPolicy) for p in value.values()):
        return value
    text = value if isinstance(value, str) else json.dumps(value)
    try:
        return parse_retention_overrides(text)
    except ValueError as exc:
        # parse_retention_overrides reports a bad policy with pydantic's multi-line text (and the
        # input): say it again on one line, naming the server, without the value.
        message = str(exc)
    with contextlib.suppress(ValueError):
        raw = json.loads(text)
        for key, policy in raw.items() if isinstance(raw, dict) else ():
            try:
                RetentionPolicy.model_validate(policy)
            except ValidationError as bad:
                message = f"server {key}: {_policy_problems(bad)}"
                break
    raise ValueError(message.removeprefix("RETENTION_OVERRIDES: "))


class PruneSettings(SharedSettings):
    """SPEC §4. The retention JSON is parsed here, at cold start: a bad or empty policy fails naming
    ``RETENTION_POLICY`` (or ``RETENTION_OVERRIDES``) before anything is listed or deleted."""

    retention_policy: Annotated[RetentionPolicy, BeforeValidator(_retention_policy)]
    retention_overrides: Annotated[dict[int, RetentionPolicy], BeforeValidator(_retention_overrides)] = Field(
        default_factory=dict
    )
    retention_timezone: TimeZone = Field(default_factory=lambda: ZoneInfo("UTC"))
    prune_scope: Literal["managed", "manual"] = "managed"
    failed_backup_grace: Duration = Field(default=timedelta(hours=24))
    max_deletions_per_run: int = Field(default=50, ge=0)
    dry_run: bool = False
    prune_concurrency: int = Field(default=4, ge=1, le=32)

    @property
    def retention_policies(self) -> RetentionPolicies:
        """The default policy with the per-server overrides, as the prune plan takes it."""
        return RetentionPolicies(self.retention_policy, self.retention_overrides)


class RestoreOnAlarmSettings(SharedSettings):
    """SPEC §5."""

    alarm_name_prefix: str = ""
    server_id_dimension: str = Field(default="ServerId", min_length=1)
    alarm_server_map: Json[dict[str, PositiveInt]] = Field(default_factory=dict)
    restore_max_backup_age: Duration = Field(default=timedelta(days=7))
    restore_cooldown: Duration = Field(default=timedelta(hours=6))
    max_restores_per_hour: int = Field(default=3, ge=0)
    restore_mode: Literal["execute", "notify"] = "execute"
    restore_hold: Duration = Field(default=timedelta(days=7))
