"""Retention policies with restic ``forget`` semantics: the settings, and what keeps a backup.

A policy names how many of the newest backups to keep (``keep_last``), how many hourly, daily,
weekly, monthly and yearly buckets to keep one backup of, and a window (``keep_within``) measured
back from the newest backup. The walk that applies it, as restic's ``ApplyPolicy`` does, is
:func:`~vpsbackup.prune.buckets.walk_policy`:

* every bucket rule has a budget and remembers the bucket of the last backup it kept; a backup
  whose bucket differs from that one is kept and spends one unit of budget, so each rule keeps the
  newest backup of each of its N most recent non-empty buckets;
* ``keep_last`` is the same walk with every backup in a bucket of its own;
* a rule that still has budget when the walk reaches the oldest backup keeps it, even if it shares
  a bucket with the previous one kept (restic >= 0.16: "oldest daily snapshot");
* ``keep_within`` keeps backups strictly newer than ``newest - duration``;
* a backup is kept if any rule keeps it, and every rule that does is listed as a reason
  (:class:`RuleMatch`).

Buckets are calendar values in the policy's time zone (``RETENTION_TIMEZONE``): the hourly bucket
is the local wall-clock hour, so across a DST fall-back the repeated hour is one bucket, as in
restic. Nothing here does I/O or reads the environment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from vpsbackup.durations import Duration

RuleName = Literal["last", "hourly", "daily", "weekly", "monthly", "yearly", "within"]

# Strict: a count written as "7" or 7.5 or true is a settings error, not silently coerced.
KeepCount = Annotated[int, Field(ge=0, strict=True)]


class RetentionPolicy(BaseModel):
    """One retention policy (``RETENTION_POLICY`` or one entry of ``RETENTION_OVERRIDES``).

    Counts are non-negative integers; ``keep_within`` is a duration such as ``36h`` or ``2w``.
    A misspelt rule is an error naming it, and a policy in which no rule keeps anything is an
    error too: applied, it would delete every backup.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_last: KeepCount | None = None
    keep_hourly: KeepCount | None = None
    keep_daily: KeepCount | None = None
    keep_weekly: KeepCount | None = None
    keep_monthly: KeepCount | None = None
    keep_yearly: KeepCount | None = None
    keep_within: Duration | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.keep_within is not None and self.keep_within < timedelta(0):
            raise ValueError("keep_within must not be negative")
        if not any(self.counts().values()) and not self.keep_within:
            raise ValueError("empty retention policy: it would delete everything; set at least one keep_* rule")
        return self

    def counts(self) -> dict[RuleName, int]:
        """The count rules in restic's walk order, a missing rule as 0."""
        return {
            "last": self.keep_last or 0,
            "hourly": self.keep_hourly or 0,
            "daily": self.keep_daily or 0,
            "weekly": self.keep_weekly or 0,
            "monthly": self.keep_monthly or 0,
            "yearly": self.keep_yearly or 0,
        }

    def describe(self) -> str:
        """Short human summary, e.g. ``"last 3, daily 7, within 14d"``."""
        parts = [f"{rule} {n}" for rule, n in self.counts().items() if n]
        if self.keep_within:
            parts.append(f"within {format_within(self.keep_within)}")
        return ", ".join(parts)


def format_within(delta: timedelta) -> str:
    """A ``keep_within`` duration as restic prints it: days and hours, no weeks (``13d23h``, ``7d``).

    Minutes and seconds, which restic's durations cannot express, follow as ``m`` and ``s``.
    """
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"


def parse_retention_policy(text: str) -> RetentionPolicy:
    """Parse the JSON text of ``RETENTION_POLICY``.

    Raises ``ValueError`` (pydantic's ``ValidationError``) naming the offending field, or saying
    the policy is empty when the text is blank or ``{}``.
    """
    if not text.strip():
        text = "{}"
    return RetentionPolicy.model_validate_json(text)


_SERVER_ID = re.compile(r"[1-9][0-9]*")
_OVERRIDES = TypeAdapter(dict[str, RetentionPolicy])


def parse_retention_overrides(text: str | None) -> dict[int, RetentionPolicy]:
    """Parse the JSON text of ``RETENTION_OVERRIDES`` (``{"12345": {...}}``) into policies by server id.

    Blank text means no overrides. Keys must be positive integer server ids written in decimal
    without sign, spaces or leading zeros, so two spellings can never name one server; each value
    is a complete policy that replaces the default for that server (rules are not merged).
    """
    if text is None or not text.strip():
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"RETENTION_OVERRIDES is not valid JSON: {error}") from None
    if not isinstance(raw, dict):
        raise ValueError('RETENTION_OVERRIDES must be a JSON object such as {"12345": {"keep_daily": 7}}')
    for key in raw:
        if not _SERVER_ID.fullmatch(key):
            raise ValueError(f"RETENTION_OVERRIDES: key {key!r} is not a server id (a positive integer)")
    try:
        policies = _OVERRIDES.validate_python(raw)
    except ValidationError as error:
        raise ValueError(f"RETENTION_OVERRIDES: {error}") from None
    return {int(key): policy for key, policy in policies.items()}


@dataclass(frozen=True)
class RetentionPolicies:
    """The default policy plus per-server overrides; call it with a server id to get its policy."""

    default: RetentionPolicy
    overrides: Mapping[int, RetentionPolicy] = field(default_factory=dict)

    def __call__(self, server_id: int) -> RetentionPolicy:
        return self.overrides.get(server_id, self.default)


# -- what keeps a backup --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """One rule that keeps a backup.

    ``rule`` is the machine id, ``text`` our words (``"daily 2025-01-14"``), ``restic`` the name
    restic prints in ``forget``'s reasons (``"daily snapshot"``), kept for conformance tests.
    """

    rule: RuleName
    text: str
    restic: str
