from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from vpsbackup.durations import Duration, DurationError, format_duration, parse_duration


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
    ],
)
def test_valid_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "36", "h", "1.5h", "-1d", "1y", "1 d", "1D", "1d 2h", "P1D", "1dd"])
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
