from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from vpsbackup.durations import Duration, DurationError, describe_duration, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("36h", timedelta(hours=36)),
        ("14d", timedelta(days=14)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 1w2d3h4m5s ", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        ("0s", timedelta(0)),
        ("0", timedelta(0)),  # zero needs no unit (RESTORE_WATCH_WINDOW=0: no window)
        (" 0 ", timedelta(0)),
    ],
)
def test_valid_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "36", "00", "1", "-0", "0.0", "h", "1.5h", "-1d", "1y", "1 d", "1D", "1d 2h", "P1D", "1dd"]
)
def test_invalid_durations_name_the_input(text: str) -> None:
    with pytest.raises(DurationError, match="invalid duration"):
        parse_duration(text)


def test_non_string_is_an_error() -> None:
    with pytest.raises(DurationError):
        parse_duration(36)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**8))
def test_format_round_trips(seconds: int) -> None:
    delta = timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta


def test_pydantic_field_names_itself() -> None:
    class Model(BaseModel):
        grace: Duration

    assert Model(grace="1d12h").grace == timedelta(hours=36)  # type: ignore[arg-type]
    assert Model(grace="1d12h").model_dump(mode="json") == {"grace": "1d12h"}  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="grace"):
        Model(grace="soon")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("delta", "words"),
    [
        (timedelta(0), "0 seconds"),
        (timedelta(milliseconds=900), "0 seconds"),
        (timedelta(seconds=1), "1 second"),
        (timedelta(seconds=45), "45 seconds"),
        (timedelta(minutes=1), "1 minute"),
        (timedelta(minutes=15), "15 minutes"),
        (timedelta(minutes=12, seconds=5), "12 minutes 5 seconds"),
        (timedelta(hours=6), "6 hours"),
        (timedelta(hours=1, minutes=1, seconds=59), "1 hour 1 minute"),
        (timedelta(days=1), "1 day"),
        (timedelta(days=2, hours=4, minutes=30), "2 days 4 hours"),
        (timedelta(days=6, hours=23, minutes=59), "6 days 23 hours"),
        (timedelta(days=7), "7 days"),
        (timedelta(weeks=97, days=5, hours=4, minutes=56, seconds=15), "684 days"),
        (timedelta(seconds=-90), "minus 1 minute 30 seconds"),
    ],
)
def test_durations_for_people(delta: timedelta, words: str) -> None:
    assert describe_duration(delta) == words


_WORD_UNITS = {"day": 86400, "days": 86400, "hour": 3600, "hours": 3600, "minute": 60, "minutes": 60}
_WORD_UNITS |= {"second": 1, "seconds": 1}


@given(st.integers(min_value=0, max_value=10**9))
def test_durations_for_people_round_down_to_at_most_two_units(seconds: int) -> None:
    words = describe_duration(timedelta(seconds=seconds)).split()
    pairs = list(zip(words[::2], words[1::2], strict=True))
    assert 1 <= len(pairs) <= 2
    assert all(unit in _WORD_UNITS and (unit.endswith("s") == (int(n) != 1)) for n, unit in pairs)
    assert "week" not in " ".join(words)
    said = sum(int(n) * _WORD_UNITS[unit] for n, unit in pairs)
    # never more than the duration, and less than one unit of the last word short of it
    smallest = _WORD_UNITS[pairs[-1][1]]
    assert said <= seconds < said + smallest
    if seconds >= 7 * 86400:
        assert len(pairs) == 1 and pairs[0][1] == "days"
