"""Durations as users write them: a number and a unit (``s``, ``m``, ``h``, ``d``, ``w``), or a sum (``1d12h``).

A bare ``0`` is the one unitless value: zero needs no unit (``RESTORE_WATCH_WINDOW=0`` means "none").
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TERM = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"(?:\d+[smhdw])+")


class DurationError(ValueError):
    """A duration string that does not follow the grammar."""


def parse_duration(text: str) -> timedelta:
    """Parse ``"36h"``, ``"2w"``, ``"1d12h"`` or ``"0"`` into a timedelta.

    Whitespace around the value is tolerated; anything else (no unit, an unknown unit, a sign,
    a decimal point, an empty string) raises :class:`DurationError` quoting the input.
    """
    if not isinstance(text, str):
        raise DurationError(f"a duration must be a string such as '36h', got {text!r}")
    value = text.strip()
    if value == "0":
        return timedelta(0)
    if not _WHOLE.fullmatch(value):
        raise DurationError(
            f"invalid duration {text!r}: use a number and a unit s, m, h, d or w, or a sum such as '1d12h' (or 0)"
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _TERM.findall(value))
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise DurationError(f"invalid duration {text!r}: too long") from None


def format_duration(delta: timedelta) -> str:
    """The shortest grammar-conforming spelling of ``delta`` (whole seconds), e.g. ``"1d12h"``."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s"
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        n, seconds = divmod(seconds, _UNITS[unit])
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)


_FOR_PEOPLE = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
_ONLY_DAYS_FROM = 7 * 86400


def describe_duration(delta: timedelta) -> str:
    """``delta`` as people read it in a message: ``"680 days"``, ``"2 days 4 hours"``, ``"15 minutes"``.

    Whole seconds, rounded down (so "more than 15 minutes" stays true), in the largest unit and the
    next one when it is not zero; from a week on, days only. Never weeks, which people count badly.
    The grammar form (:func:`format_duration`) stays for values people write in settings.
    """
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "minus " + describe_duration(timedelta(seconds=-seconds))
    if seconds >= _ONLY_DAYS_FROM:
        return _count(seconds // 86400, "day")
    for index, (name, size) in enumerate(_FOR_PEOPLE):
        if seconds >= size or size == 1:
            words = [_count(seconds // size, name)]
            if index + 1 < len(_FOR_PEOPLE):
                smaller, small_size = _FOR_PEOPLE[index + 1]
                rest = (seconds % size) // small_size
                if rest:
                    words.append(_count(rest, smaller))
            return " ".join(words)
    raise AssertionError("unreachable: the last unit is one second")  # pragma: no cover


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" + ("" if n == 1 else "s")


def _coerce(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return parse_duration(value)


Duration = Annotated[timedelta, BeforeValidator(_coerce), PlainSerializer(format_duration, return_type=str)]
"""A pydantic field type that accepts the duration grammar (or a timedelta) and dumps it back as text."""
