"""PruneBackupsFunction's settings."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, Field, ValidationError, field_validator

from vpsbackup.durations import Duration
from vpsbackup.prune.retention import (
    RetentionPolicies,
    RetentionPolicy,
    parse_retention_overrides,
    parse_retention_policy,
)
from vpsbackup.settings import SharedSettings, TimeZone


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
    """docs/configuration.md, prune. The retention JSON is parsed here, at cold start: a bad or empty
    policy fails naming ``RETENTION_POLICY`` (or ``RETENTION_OVERRIDES``) before anything is listed or
    deleted."""

    retention_policy: Annotated[RetentionPolicy, BeforeValidator(_retention_policy)]
    retention_overrides: Annotated[dict[int, RetentionPolicy], BeforeValidator(_retention_overrides)] = Field(
        default_factory=dict
    )
    retention_timezone: TimeZone = Field(default_factory=lambda: ZoneInfo("UTC"))
    prune_scope: Literal["managed", "manual"] = "managed"
    failed_backup_grace: Duration = Field(default=timedelta(hours=24))
    max_deletions_per_run: int = Field(default=50, ge=0, le=1000)  # the template's MaxValue
    # At most this many deletions sent in any 24 hours, all runs together (prune/daily_budget.py).
    max_deletions_per_day: int = Field(default=200, ge=0, le=10000)  # the template's MaxValue
    dry_run: bool = False
    prune_concurrency: int = Field(default=4, ge=1, le=32)
    # Whatever the policy, at least this many completed backups in scope stay per server (the newest).
    keep_at_least: int = Field(default=1, ge=1)
    # With PRUNE_SCOPE=managed, every known server is listed again at least this often (0: every
    # full run sweeps the fleet). docs/prune.md, "Incremental runs".
    prune_verify_every: Duration = Field(default=timedelta(days=7))
    # Called with a GET by every completed run (healthchecks.io, Cronitor); empty: none. docs/operations.md.
    heartbeat_url: str = ""

    @field_validator("heartbeat_url")
    @classmethod
    def _https_only(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname or any(c.isspace() for c in value):
            raise ValueError("must be an https:// URL with a host (or empty for no heartbeat)")
        return value

    # A run started by the state machine works in chunks (docs/prune.md, "Runs in chunks"): at most
    # this many pages of the listing, and this many deletions, a chunk.
    prune_chunk_pages: int = Field(default=200, ge=1, le=5000)
    prune_chunk_deletions: int = Field(default=100, ge=1, le=1000)
    # An execution goes on as a new one after this many chunks (about 10 history events a chunk).
    prune_chunks_per_execution: int = Field(default=1000, ge=1, le=2000)

    @field_validator("prune_verify_every")
    @classmethod
    def _verify_every(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative (0 turns incremental runs off)")
        if value > timedelta(days=366):
            raise ValueError("must be at most 366d: a server unlisted longer could keep out-of-band changes that long")
        return value

    @property
    def retention_policies(self) -> RetentionPolicies:
        """The default policy with the per-server overrides, as the prune plan takes it."""
        return RetentionPolicies(self.retention_policy, self.retention_overrides)
