"""Settings: environment variables -> one validated pydantic object per function.

Each field's environment variable is its name in upper case (``state_table_name`` ->
``STATE_TABLE_NAME``). A job's settings subclass :class:`SharedSettings`. :func:`load_settings`
runs at cold start; a missing or bad value raises :class:`ConfigurationError` naming the variable.
Domain code never reads the environment: it gets these objects (or values from them).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from vpsbackup.durations import Duration
from vpsbackup.errors import ConfigurationError

DEFAULT_API_BASE_URL = "https://admin.vps.org/api/v1"

NotifyFormat = Literal["text", "chatbot"]
"""``text``: a plain message (e-mail, SMS); ``chatbot``: the AWS Chatbot custom-notification JSON."""


class SharedSettings(BaseModel):
    """The variables every function has (docs/configuration.md)."""

    model_config = ConfigDict(frozen=True, extra="ignore", arbitrary_types_allowed=True)

    vps_api_base_url: str = DEFAULT_API_BASE_URL
    vps_api_token_secret: str = Field(min_length=1)
    state_table_name: str = Field(min_length=1)
    notify_topic_arn: str | None = None
    # Pages asked for with ?page_size= (a server caps it at its own maximum, or ignores it).
    vps_api_page_size: int = Field(default=100, ge=1, le=1000)
    # The client's request budget, shared by every request of an invocation (threads included).
    # 2/s: a 15-minute invocation then makes at most 1,800 requests, half of the strictest published
    # limit of a comparable provider (Hetzner Cloud: 3,600/hour), and 48-60% of DigitalOcean's
    # 250/min and Linode's 200/min, leaving room for the other functions and people on the same
    # token. A provider that says less (RateLimit-* headers, 429 + Retry-After) slows it further.
    vps_api_max_rps: float = Field(default=2.0, gt=0, le=1000)
    # The provider's limit for the token, shared by every function and invocation (a quota in
    # StateTable, vpsbackup.provider.shared_quota); 0 or unset: no shared quota, only VPS_API_MAX_RPS.
    vps_api_rate_limit: float = Field(default=0.0, ge=0, le=1000)
    # The share of the shared quota's burst only restores may take (restore first).
    vps_api_restore_share: float = Field(default=0.3, ge=0.05, le=0.9)
    notify_format: NotifyFormat = "text"
    # How long the journal of irreversible acts is kept (DynamoDB TTL).
    journal_retention: Duration = Field(default=timedelta(days=400))
    # STACK_NAME (the template sets it): the texts people read name `vpsbackup --stack NAME ...`.
    stack_name: str | None = None

    @property
    def api_requests_per_second(self) -> float:
        """The most requests per second one invocation makes: VPS_API_MAX_RPS, or the shared
        VPS_API_RATE_LIMIT when it is lower."""
        if self.vps_api_rate_limit > 0:
            return min(self.vps_api_max_rps, self.vps_api_rate_limit)
        return self.vps_api_max_rps

    @field_validator("vps_api_base_url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not is_safe_api_url(value):
            raise ValueError(
                "must be an https:// URL such as https://admin.vps.org/api/v1 (the API token travels with "
                "every request; plain http:// only for a loopback address: 127.0.0.0/8, localhost, ::1)"
            )
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


def is_loopback_host(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ``::1``: a host the token never leaves the machine for."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_safe_api_url(url: str) -> bool:
    """An ``https://`` URL with a host, or an ``http://`` one to a loopback address (the simulator)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for an unreadable port
    except ValueError:
        return False
    host = parts.hostname or ""
    if not host or parts.username is not None or parts.password is not None:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(host))


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
