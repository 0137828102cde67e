"""The client's settings shared by every function: page size and request budget."""

from __future__ import annotations

import pytest

from vpsbackup.errors import ConfigurationError
from vpsbackup.settings import SharedSettings, load_settings

BASE = {"VPS_API_TOKEN_SECRET": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:t", "STATE_TABLE_NAME": "t"}


def test_pages_of_100_and_2_requests_per_second_by_default() -> None:
    settings = load_settings(SharedSettings, BASE)
    assert (settings.vps_api_page_size, settings.vps_api_max_rps) == (100, 2.0)


def test_both_are_read_from_the_environment() -> None:
    settings = load_settings(SharedSettings, {**BASE, "VPS_API_PAGE_SIZE": "500", "VPS_API_MAX_RPS": "0.5"})
    assert (settings.vps_api_page_size, settings.vps_api_max_rps) == (500, 0.5)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VPS_API_PAGE_SIZE", "0"),
        ("VPS_API_PAGE_SIZE", "1001"),
        ("VPS_API_PAGE_SIZE", "ten"),
        ("VPS_API_MAX_RPS", "0"),
        ("VPS_API_MAX_RPS", "-1"),
        ("VPS_API_MAX_RPS", "fast"),
    ],
)
def test_a_bad_value_fails_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        load_settings(SharedSettings, {**BASE, name: value})
