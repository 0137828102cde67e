"""FROZEN REFERENCE, not product code: ``apply_policy`` exactly as it was before it was split into named steps.

``test_retention_equivalence.py`` checks that :func:`vpsbackup.prune.retention.apply_policy` keeps
exactly what this copy keeps, for the same reasons, in the same order, over random inputs. Do not
edit it to make that test pass: a difference is a behaviour change in the product code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, tzinfo

from vpsbackup.prune.retention import K, RetentionDecision, RetentionPolicy, RuleMatch, RuleName, format_within


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
    walk = list(items)
    for key, moment in walk:  # before sorting: a naive time cannot even be compared to an aware one
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"time of {key!r} is naive; retention needs aware datetimes")
    walk.sort(key=lambda item: item[0], reverse=True)
    walk.sort(key=lambda item: item[1], reverse=True)  # stable: equal times stay in key order
    if not walk:
        return []

    within_all = False
    cutoff: datetime | None = None
    if policy.keep_within:
        candidates = [moment for _, moment in walk if now is None or moment < now]
        if candidates:
            try:
                cutoff = max(candidates) - policy.keep_within
            except OverflowError:  # a window reaching before year 1 keeps everything, as in restic
                within_all = True
        else:
            within_all = True  # nothing dated before now: restic counts back from year 1, keeping all
    within_text = f"within {format_within(policy.keep_within)}" if policy.keep_within else ""

    counts = policy.counts()
    budget: dict[RuleName, int] = dict(counts)
    last_bucket: dict[RuleName, str | int | None] = dict.fromkeys(counts, None)
    bucket_of: dict[RuleName, Callable[[datetime], str]] = dict(_BUCKETS)
    oldest = len(walk) - 1

    decisions: list[RetentionDecision[K]] = []
    for nr, (key, moment) in enumerate(walk):
        matches: list[RuleMatch] = []
        if within_all or (cutoff is not None and moment > cutoff):
            matches.append(RuleMatch("within", within_text, within_text))
        local = moment.astimezone(tz)
        for rule in counts:
            if budget[rule] <= 0:
                continue
            # keep_last puts every item in a bucket of its own (restic's ``always`` bucker).
            bucket: str | int = nr if rule == "last" else bucket_of[rule](local)
            if bucket == last_bucket[rule] and nr != oldest:
                continue
            # Same bucket as the last kept one, yet kept: the oldest item with budget left.
            extra = bucket == last_bucket[rule]
            last_bucket[rule] = bucket
            budget[rule] -= 1
            if rule == "last":
                matches.append(RuleMatch("last", "last snapshot", "last snapshot"))
            else:
                text = f"{rule} {bucket}"
                restic = f"{rule} snapshot"
                if extra:
                    text, restic = f"oldest {text}", f"oldest {restic}"
                matches.append(RuleMatch(rule, text, restic))
        decisions.append(RetentionDecision(key=key, time=moment, keep=bool(matches), matches=tuple(matches)))
    return decisions
