"""Retention policies with restic ``forget`` semantics, as pure functions.

A policy names how many of the newest backups to keep (``keep_last``), how many hourly, daily,
weekly, monthly and yearly buckets to keep one backup of, and a window (``keep_within``) measured
back from the newest backup. :func:`apply_policy` walks a server's backups newest first, exactly as
restic's ``ApplyPolicy`` does (restic/restic ``internal/data/snapshot_policy.go``):

* every bucket rule has a budget and remembers the bucket of the last backup it kept; a backup
  whose bucket differs from that one is kept and spends one unit of budget, so each rule keeps the
  newest backup of each of its N most recent non-empty buckets;
* ``keep_last`` is the same walk with every backup in a bucket of its own;
* a rule that still has budget when the walk reaches the oldest backup keeps it, even if it shares
  a bucket with the previous one kept (restic >= 0.16: "oldest daily snapshot");
* ``keep_within`` keeps backups strictly newer than ``newest - duration``;
* a backup is kept if any rule keeps it, and every rule that does is listed as a reason.

Buckets are calendar values in the policy's time zone (``RETENTION_TIMEZONE``): the hourly bucket
is the local wall-clock hour, so across a DST fall-back the repeated hour is one bucket, as in
restic. Nothing here does I/O or reads the environment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Annotated, Any, Generic, Literal, Protocol, Self, TypeVar

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


# -- applying a policy ---------------------------------------------------------------------------


class _Orderable(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


K = TypeVar("K", bound=_Orderable)


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """One rule that keeps a backup.

    ``rule`` is the machine id, ``text`` our words (``"daily 2025-01-14"``), ``restic`` the name
    restic prints in ``forget``'s reasons (``"daily snapshot"``), kept for conformance tests.
    """

    rule: RuleName
    text: str
    restic: str


@dataclass(frozen=True, slots=True)
class RetentionDecision(Generic[K]):
    """The verdict on one item: kept or not, and every rule that keeps it."""

    key: K
    time: datetime
    keep: bool
    matches: tuple[RuleMatch, ...] = ()

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why it is kept, in our words; empty when it is not."""
        return tuple(m.text for m in self.matches)

    @property
    def restic_matches(self) -> tuple[str, ...]:
        """Why it is kept, in restic's words."""
        return tuple(m.restic for m in self.matches)


def _bucket_hourly(t: datetime) -> str:
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:00"


def _bucket_daily(t: datetime) -> str:
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}"


def _bucket_weekly(t: datetime) -> str:
    # ISO week and *ISO* year: 2024-12-30 belongs to 2025-W01, as with Go's ISOWeek.
    year, week, _ = t.isocalendar()
    return f"{year:04d}-W{week:02d}"


def _bucket_monthly(t: datetime) -> str:
    return f"{t.year:04d}-{t.month:02d}"


def _bucket_yearly(t: datetime) -> str:
    return f"{t.year:04d}"


# Bucket rules in restic's order (which is also the order of the reasons restic prints).
_BUCKETS: tuple[tuple[RuleName, Callable[[datetime], str]], ...] = (
    ("hourly", _bucket_hourly),
    ("daily", _bucket_daily),
    ("weekly", _bucket_weekly),
    ("monthly", _bucket_monthly),
    ("yearly", _bucket_yearly),
)


def apply_policy(
    items: Iterable[tuple[K, datetime]],
    policy: RetentionPolicy,
    tz: tzinfo,
    *,
    now: datetime | None = None,
) -> list[RetentionDecision[K]]:
    """Decide which of ``items`` (``(key, aware time)`` pairs) ``policy`` keeps, as restic ``forget`` does.

    Returns one decision per item, newest first. Items with equal times are ordered by key,
    highest first, so the result does not depend on the input order. Buckets are computed in
    ``tz``. ``keep_within`` counts back from the newest item; if ``now`` is given, items dated
    after it are not taken as the newest (restic's guard against clock skew), and if every item
    is in the future the window keeps them all. Raises ``ValueError`` on a naive time.
    """
    walk = _newest_first(items)
    if not walk:
        return []
    window = _Window.of(policy, walk, now)
    rules = _CountRules(policy.counts())
    oldest = len(walk) - 1
    decisions: list[RetentionDecision[K]] = []
    for nr, (key, moment) in enumerate(walk):
        matches = window.matches(moment) + rules.matches(nr, moment, tz, is_oldest=nr == oldest)
        decisions.append(RetentionDecision(key=key, time=moment, keep=bool(matches), matches=tuple(matches)))
    return decisions


def _newest_first(items: Iterable[tuple[K, datetime]]) -> list[tuple[K, datetime]]:
    """The items newest first, equal times by key highest first; ``ValueError`` naming a naive time."""
    walk = list(items)
    for key, moment in walk:  # before sorting: a naive time cannot even be compared to an aware one
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"time of {key!r} is naive; retention needs aware datetimes")
    walk.sort(key=lambda item: item[0], reverse=True)
    walk.sort(key=lambda item: item[1], reverse=True)  # stable: equal times stay in key order
    return walk


@dataclass(frozen=True, slots=True)
class _Window:
    """The ``keep_within`` rule over one walk: everything, nothing, or what is newer than ``cutoff``."""

    keep_all: bool
    cutoff: datetime | None
    text: str

    @classmethod
    def of(cls, policy: RetentionPolicy, walk: list[tuple[K, datetime]], now: datetime | None) -> _Window:
        if not policy.keep_within:
            return cls(keep_all=False, cutoff=None, text="")
        text = f"within {format_within(policy.keep_within)}"
        candidates = [moment for _, moment in walk if now is None or moment < now]
        if not candidates:
            # Nothing dated before now: restic counts back from year 1, keeping all.
            return cls(keep_all=True, cutoff=None, text=text)
        try:
            return cls(keep_all=False, cutoff=max(candidates) - policy.keep_within, text=text)
        except OverflowError:  # a window reaching before year 1 keeps everything, as in restic
            return cls(keep_all=True, cutoff=None, text=text)

    def matches(self, moment: datetime) -> list[RuleMatch]:
        """``[within ...]`` if the window keeps ``moment``, else ``[]``."""
        if self.keep_all or (self.cutoff is not None and moment > self.cutoff):
            return [RuleMatch("within", self.text, self.text)]
        return []


class _CountRules:
    """The count rules (``keep_last`` and the buckets) walking newest first: budgets and last buckets kept."""

    def __init__(self, counts: dict[RuleName, int]) -> None:
        self._counts = counts
        self._budget: dict[RuleName, int] = dict(counts)
        self._last_bucket: dict[RuleName, str | int | None] = dict.fromkeys(counts, None)
        self._bucket_of: dict[RuleName, Callable[[datetime], str]] = dict(_BUCKETS)
        # The rules with budget left, in restic's order: a spent rule is never asked again, so a
        # long walk past every budget costs almost nothing per item (fleets of 300,000 backups).
        self._active: list[RuleName] = [rule for rule, n in counts.items() if n > 0]

    def matches(self, nr: int, moment: datetime, tz: tzinfo, *, is_oldest: bool) -> list[RuleMatch]:
        """Every count rule that keeps the ``nr``-th item of the walk (``moment``, bucketed in ``tz``),
        in restic's order."""
        if not self._active:
            return []
        local = moment.astimezone(tz) if self._active != ["last"] else moment
        found = [self._match(rule, nr, local, is_oldest=is_oldest) for rule in self._active]
        self._active = [rule for rule in self._active if self._budget[rule] > 0]
        return [match for match in found if match is not None]

    def _match(self, rule: RuleName, nr: int, local: datetime, *, is_oldest: bool) -> RuleMatch | None:
        if self._budget[rule] <= 0:
            return None
        # keep_last puts every item in a bucket of its own (restic's ``always`` bucker).
        bucket: str | int = nr if rule == "last" else self._bucket_of[rule](local)
        if bucket == self._last_bucket[rule] and not is_oldest:
            return None
        # Same bucket as the last kept one, yet kept: the oldest item with budget left.
        extra = bucket == self._last_bucket[rule]
        self._last_bucket[rule] = bucket
        self._budget[rule] -= 1
        if rule == "last":
            return RuleMatch("last", "last snapshot", "last snapshot")
        text = f"{rule} {bucket}"
        restic = f"{rule} snapshot"
        if extra:
            text, restic = f"oldest {text}", f"oldest {restic}"
        return RuleMatch(rule, text, restic)
