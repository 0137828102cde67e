"""The guardrail and notification settings: template parameter -> environment variable -> settings field,
with the template's defaults and patterns agreeing with what the settings accept."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import load_template
from vpsbackup.durations import DurationError, format_duration, parse_duration
from vpsbackup.prune.settings import PruneSettings
from vpsbackup.restore.settings import RestoreOnAlarmSettings
from vpsbackup.settings import SharedSettings, load_settings

BASE = {"VPS_API_TOKEN_SECRET": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:t", "STATE_TABLE_NAME": "t"}

# (function, variable, parameter)
WIRING = [
    ("RestoreOnAlarmFunction", "RESTORE_WATCH_WINDOW", "RestoreWatchWindow"),
    ("RestoreOnAlarmFunction", "RESTORE_MAX_ALARM_AGE", "RestoreMaxAlarmAge"),
    ("RestoreOnAlarmFunction", "RESTORE_VERIFY_AFTER", "RestoreVerifyAfter"),
    ("PruneBackupsFunction", "KEEP_AT_LEAST", "KeepAtLeast"),
]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.mark.parametrize(("function", "variable", "parameter"), WIRING)
def test_each_setting_comes_from_its_parameter(
    template: dict[str, Any], function: str, variable: str, parameter: str
) -> None:
    variables = template["Resources"][function]["Properties"]["Environment"]["Variables"]
    assert variables[variable] == {"Ref": parameter}


def test_every_function_gets_the_notification_format(template: dict[str, Any]) -> None:
    assert template["Globals"]["Function"]["Environment"]["Variables"]["NOTIFY_FORMAT"] == {"Ref": "NotifyFormat"}
    assert template["Parameters"]["NotifyFormat"]["AllowedValues"] == ["text", "chatbot"]


def test_the_template_defaults_are_the_settings_defaults(template: dict[str, Any]) -> None:
    # Given the settings built from the template's default for each parameter
    params = template["Parameters"]
    restore = load_settings(
        RestoreOnAlarmSettings,
        {
            **BASE,
            "RESTORE_WATCH_WINDOW": str(params["RestoreWatchWindow"]["Default"]),
            "RESTORE_MAX_ALARM_AGE": str(params["RestoreMaxAlarmAge"]["Default"]),
            "RESTORE_VERIFY_AFTER": str(params["RestoreVerifyAfter"]["Default"]),
            "NOTIFY_FORMAT": str(params["NotifyFormat"]["Default"]),
        },
    )
    prune = load_settings(
        PruneSettings,
        {**BASE, "RETENTION_POLICY": '{"keep_last": 1}', "KEEP_AT_LEAST": str(params["KeepAtLeast"]["Default"])},
    )
    # Then they equal the settings' own defaults (a deploy with defaults behaves as documented)
    assert restore.restore_watch_window == RestoreOnAlarmSettings.model_fields["restore_watch_window"].default
    assert restore.restore_max_alarm_age == RestoreOnAlarmSettings.model_fields["restore_max_alarm_age"].default
    assert restore.restore_verify_after == RestoreOnAlarmSettings.model_fields["restore_verify_after"].default
    assert restore.notify_format == SharedSettings.model_fields["notify_format"].default
    assert prune.keep_at_least == PruneSettings.model_fields["keep_at_least"].default == 1
    assert params["KeepAtLeast"]["MinValue"] == 1


WATCH_WINDOW_PATTERN = re.compile(load_template()["Parameters"]["RestoreWatchWindow"]["AllowedPattern"])


@given(st.integers(min_value=0, max_value=10**7))
def test_the_watch_window_pattern_accepts_what_the_setting_accepts(seconds: int) -> None:
    pattern = WATCH_WINDOW_PATTERN
    text = format_duration(timedelta(seconds=seconds))
    assert pattern.fullmatch(text)
    assert pattern.fullmatch("0")


@pytest.mark.parametrize("text", ["", "00", "2 h", "1.5h", "-1h", "2", "0.0"])
def test_the_watch_window_pattern_refuses_what_the_setting_refuses(text: str) -> None:
    pattern = WATCH_WINDOW_PATTERN
    assert not pattern.fullmatch(text)
    with pytest.raises(DurationError):
        parse_duration(text)
