"""restic's retention walk (its ``ApplyPolicy``), over integer instants: the one every prune plan makes.

:func:`walk_policy` walks one server's completed candidates newest first, as restic's
``internal/data/snapshot_policy.go`` does, over instants in microseconds since the epoch:

- a bucket is an integer key, equal for two instants exactly when they share the rule's calendar
  bucket in the policy's time zone (the local day's proleptic ordinal, ×24 plus the hour for
  ``hourly``; ISO year ×100 + ISO week; year ×100 + month; the year), computed by
  :class:`BucketCalendar`, the calendar work done once per local day; :func:`bucket_text` names it;
- what keeps an item is a shared :class:`~vpsbackup.prune.retention.RuleMatch` (our words and
  restic's), made once per bucket and reused by every server that keeps a backup of that bucket.

restic's own golden cases run through it (tests/unit/prune/test_retention_golden.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from vpsbackup.prune.retention import RetentionPolicy, RuleMatch, RuleName, format_within

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
_HOUR = 3_600_000_000
_DAY = 24 * _HOUR
_EPOCH_ORDINAL = EPOCH.toordinal()
# The earliest instant a datetime can hold: a keep_within window reaching before it keeps everything.
_MIN_US = (datetime.min.replace(tzinfo=UTC) - EPOCH) // MICROSECOND

# The count rules in restic's walk order, by index.
COUNT_RULES: tuple[RuleName, ...] = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
_LAST, _HOURLY, _DAILY, _WEEKLY, _MONTHLY, _YEARLY = range(6)
_LAST_MATCH = RuleMatch("last", "last snapshot", "last snapshot")


def micros(time: datetime) -> int:
    """An aware time as microseconds since the epoch (equal for equal instants, whatever the offset)."""
    return (time - EPOCH) // MICROSECOND


def moment(instant: int) -> datetime:
    """The UTC datetime of an instant in microseconds since the epoch."""
    return EPOCH + instant * MICROSECOND


class BucketCalendar:
    """Bucket keys of instants in one time zone: integers equal exactly when the instants share a
    calendar bucket (named by :func:`bucket_text`).

    An instant's local time is the instant plus the zone's UTC offset then, which is looked up once
    per UTC day: read at the day's first and last microsecond, an offset found equal at both ends
    holds all day (a zone changes its offset at most once in four days in the whole tz database);
    on a day it changes, each instant's offset is read on its own. Calendar fields (ISO week, month,
    year) are computed once per local day.
    """

    __slots__ = ("_changing", "_days", "_offsets", "_tz")

    def __init__(self, tz: tzinfo) -> None:
        self._tz = tz
        self._offsets: dict[int, int] = {}  # UTC day -> the offset all that day, in microseconds
        self._changing: set[int] = set()  # UTC days on which the offset changes
        self._days: dict[int, tuple[int, int, int]] = {}  # local day -> (weekly, monthly, yearly) keys

    def hours(self, instants: Sequence[int]) -> list[int]:
        """Each instant's local wall-clock hour, counted from the local epoch (1970-01-01 00:00)."""
        utc_days = [instant // _DAY for instant in instants]
        offsets = self._offsets
        for day in set(utc_days).difference(offsets, self._changing):
            self._learn(day)
        if self._changing:
            return [(instant + self._offset(instant)) // _HOUR for instant in instants]
        return [(instant + offsets[day]) // _HOUR for instant, day in zip(instants, utc_days, strict=True)]

    def _learn(self, day: int) -> None:
        first, last = self._offset_at(day * _DAY), self._offset_at((day + 1) * _DAY - 1)
        if first == last:
            self._offsets[day] = first
        else:
            self._changing.add(day)

    def _offset(self, instant: int) -> int:
        offset = self._offsets.get(instant // _DAY)
        return self._offset_at(instant) if offset is None else offset

    def _offset_at(self, instant: int) -> int:
        offset = moment(instant).astimezone(self._tz).utcoffset()
        return 0 if offset is None else offset // MICROSECOND

    def keys(self, rule: int, hours: list[int], days: list[int]) -> list[int]:
        """The ``rule`` bucket (an index of :data:`COUNT_RULES`, not ``last``) of each local hour
        (``days``: those hours' local days, ``hour // 24``): the local hour or day since the epoch,
        ISO year ×100 + ISO week, year ×100 + month, the year."""
        if rule == _HOURLY:
            return hours
        if rule == _DAILY:
            return days
        known = self._days
        for day in set(days).difference(known):
            date_ = date.fromordinal(day + _EPOCH_ORDINAL)
            iso_year, iso_week, _ = date_.isocalendar()
            known[day] = (iso_year * 100 + iso_week, date_.year * 100 + date_.month, date_.year)
        field = rule - _WEEKLY
        return [known[day][field] for day in days]


def bucket_text(rule: int, key: int) -> str:
    """The bucket as a reason names it (``"2025-01-14 09:00"``, ``"2025-W03"``), from its key."""
    if rule in (_HOURLY, _DAILY):
        day = date.fromordinal((key // 24 if rule == _HOURLY else key) + _EPOCH_ORDINAL)
        text = f"{day.year:04d}-{day.month:02d}-{day.day:02d}"
        return f"{text} {key % 24:02d}:00" if rule == _HOURLY else text
    if rule == _WEEKLY:  # ISO year and week
        return f"{key // 100:04d}-W{key % 100:02d}"
    if rule == _MONTHLY:
        return f"{key // 100:04d}-{key % 100:02d}"
    return f"{key:04d}"


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A :class:`RetentionPolicy` as the walk reads it: the count rules with a budget, by index in
    :data:`COUNT_RULES`, and the ``keep_within`` window in microseconds (None: no window)."""

    counts: tuple[tuple[int, int], ...]
    within_us: int | None
    within: RuleMatch | None
    calendar: bool  # a bucket rule is set: the walk needs the calendar

    @classmethod
    def of(cls, policy: RetentionPolicy) -> CompiledPolicy:
        counts = tuple((rule, n) for rule, n in enumerate(policy.counts().values()) if n > 0)
        if not policy.keep_within:
            return cls(counts, None, None, any(rule != _LAST for rule, _ in counts))
        text = f"within {format_within(policy.keep_within)}"
        return cls(
            counts,
            policy.keep_within // MICROSECOND,
            RuleMatch("within", text, text),
            any(r != _LAST for r, _ in counts),
        )


class MatchCache:
    """The :class:`RuleMatch` of each (rule, bucket, oldest or not), made once per run."""

    __slots__ = ("_made",)

    def __init__(self) -> None:
        self._made: dict[tuple[int, bool], _Matches] = {}

    def of(self, rule: int, extra: bool) -> _Matches:
        """The matches of ``rule`` (``extra``: the "oldest" keep), by bucket key."""
        matches = self._made.get((rule, extra))
        if matches is None:
            matches = self._made[(rule, extra)] = _Matches(rule, extra)
        return matches


class _Matches(dict[int, RuleMatch]):
    """One rule's matches by bucket key, each made when first asked for."""

    def __init__(self, rule: int, extra: bool) -> None:
        super().__init__()
        self.rule, self.extra = rule, extra

    def __missing__(self, key: int) -> RuleMatch:
        if self.rule == _LAST:
            return _LAST_MATCH
        name = COUNT_RULES[self.rule]
        text, restic = f"{name} {bucket_text(self.rule, key)}", f"{name} snapshot"
        if self.extra:
            text, restic = f"oldest {text}", f"oldest {restic}"
        match = self[key] = RuleMatch(name, text, restic)
        return match


def _window_cutoff(policy: CompiledPolicy, instants: Sequence[int], now: int | None) -> int | None:
    """What ``keep_within`` keeps: instants after the returned cutoff (None: no window; the
    earliest instant minus one when it keeps everything)."""
    if policy.within_us is None:
        return None
    past = [t for t in instants if now is None or t < now]
    if not past:
        return _MIN_US - 1  # nothing dated before now: restic counts back from year 1, keeping all
    cutoff = max(past) - policy.within_us
    # A window reaching before year 1 keeps everything, as in restic.
    return _MIN_US - 1 if cutoff < _MIN_US else cutoff


def walk_policy(
    instants: Sequence[int],
    policy: CompiledPolicy,
    calendar: BucketCalendar,
    cache: MatchCache,
    *,
    now: int | None = None,
) -> dict[int, list[RuleMatch]]:
    """restic's ``ApplyPolicy`` over one server's completed candidates: what keeps each of
    ``instants`` (newest first), by position; every rule that keeps it, in restic's order
    (``keep_within`` first); an item no rule keeps is absent.

    One walk, newest first. ``keep_within`` keeps what is newer than its cutoff. Every count rule
    has a budget and the bucket key of the last item it kept: an item whose key differs spends one
    unit and is kept; the oldest item is kept too while budget is left, even in the bucket of the
    last one kept ("oldest daily 2025-01-14"). ``keep_last`` is the same rule with every item in a
    bucket of its own (its position). The walk stops once no rule can keep anything more.
    """
    cutoff = _window_cutoff(policy, instants, now)
    rules = _bucket_keys(policy, instants, calendar)
    budget = [n for _, n in policy.counts]
    last: list[int | None] = [None] * len(rules)
    oldest = len(instants) - 1
    kept: dict[int, list[RuleMatch]] = {}
    for nr, instant in enumerate(instants):
        in_window = cutoff is not None and instant > cutoff
        reasons = [policy.within] if in_window and policy.within is not None else []
        for i, (rule, keys) in enumerate(rules):
            key = keys[nr]
            if budget[i] and (key != last[i] or nr == oldest):
                reasons.append(cache.of(rule, key == last[i])[key])
                last[i] = key
                budget[i] -= 1
        if reasons:
            kept[nr] = reasons
        elif not in_window and not any(budget):
            break  # items are newest first: nothing older can be kept
    return kept


def _bucket_keys(
    policy: CompiledPolicy, instants: Sequence[int], calendar: BucketCalendar
) -> list[tuple[int, Sequence[int]]]:
    """Each count rule with a budget (its index in :data:`COUNT_RULES`) and the bucket key of every
    item: its position for ``keep_last``, else :meth:`BucketCalendar.keys`."""
    hours = calendar.hours(instants) if policy.calendar else []
    days = [hour // 24 for hour in hours]
    return [
        (rule, range(len(instants)) if rule == _LAST else calendar.keys(rule, hours, days)) for rule, _ in policy.counts
    ]
