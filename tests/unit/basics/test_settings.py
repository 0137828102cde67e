"""Settings: every variable validated at cold start, errors name the variable, never the value."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests.conftest import load_template
from vpsbackup.deploy.settings import BackupOnDeploySettings
from vpsbackup.errors import ConfigurationError
from vpsbackup.prune.settings import PruneSettings
from vpsbackup.restore.settings import RestoreOnAlarmSettings
from vpsbackup.settings import DEFAULT_API_BASE_URL, SharedSettings, is_safe_api_url, load_settings

BASE = {"VPS_API_TOKEN_SECRET": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:t", "STATE_TABLE_NAME": "t"}


def test_defaults_of_the_shared_environment() -> None:
    settings = load_settings(SharedSettings, BASE)
    assert settings.vps_api_base_url == DEFAULT_API_BASE_URL
    assert settings.notify_topic_arn is None


def test_missing_required_variables_are_all_named() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings(SharedSettings, {})
    assert "VPS_API_TOKEN_SECRET" in str(info.value)
    assert "STATE_TABLE_NAME" in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VPS_API_BASE_URL", "ftp://x"),
        ("NOTIFY_TOPIC_ARN", "my-topic"),
        ("SERVER_GROUPS", '{"production": ["web"]}'),
        ("SERVER_GROUPS", "production=1"),
        ("WEBHOOK_MAX_SKEW_SECONDS", "0"),
    ],
)
def test_bad_deploy_settings_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(BackupOnDeploySettings, {**BASE, variable: value})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RETENTION_TIMEZONE", "Mars/Olympus"),
        ("FAILED_BACKUP_GRACE", "a day"),
        ("PRUNE_SCOPE", "all"),
        ("MAX_DELETIONS_PER_RUN", "-1"),
        ("MAX_DELETIONS_PER_RUN", "1001"),
        ("MAX_DELETIONS_PER_DAY", "-1"),
        ("MAX_DELETIONS_PER_DAY", "10001"),
        ("MAX_DELETIONS_PER_DAY", "many"),
        ("PRUNE_CONCURRENCY", "0"),
        ("DRY_RUN", "maybe"),
        ("KEEP_AT_LEAST", "0"),
        ("KEEP_AT_LEAST", "-2"),
        ("KEEP_AT_LEAST", "1.5"),
        ("KEEP_AT_LEAST", "all"),
        ("NOTIFY_FORMAT", "json"),
    ],
)
def test_bad_prune_settings_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(PruneSettings, {**BASE, "RETENTION_POLICY": '{"keep_daily": 7}', variable: value})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RESTORE_COOLDOWN", "6"),
        ("RESTORE_MAX_BACKUP_AGE", "1 week"),
        ("RESTORE_MODE", "yolo"),
        ("ALARM_SERVER_MAP", '{"alarm": "web"}'),
        ("MAX_RESTORES_PER_HOUR", "many"),
        ("RESTORE_WATCH_WINDOW", "2 hours"),
        ("RESTORE_WATCH_WINDOW", "-1h"),
        ("RESTORE_MAX_ALARM_AGE", "15"),
        ("RESTORE_MAX_ALARM_AGE", "0"),
        ("RESTORE_MAX_ALARM_AGE", "0s"),
        ("RESTORE_VERIFY_AFTER", "30"),
        ("RESTORE_VERIFY_AFTER", "59s"),
        ("NOTIFY_FORMAT", "slack"),
    ],
)
def test_bad_restore_settings_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(RestoreOnAlarmSettings, {**BASE, variable: value})


def test_restore_settings_parse_durations_and_json() -> None:
    settings = load_settings(
        RestoreOnAlarmSettings,
        {**BASE, "RESTORE_COOLDOWN": "1d12h", "ALARM_SERVER_MAP": '{"web-down": 12345}', "RESTORE_MODE": "notify"},
    )
    assert settings.restore_cooldown == timedelta(hours=36)
    assert settings.alarm_server_map == {"web-down": 12345}
    assert settings.restore_hold == timedelta(days=7)
    assert settings.restore_mode == "notify"


def test_an_empty_value_means_the_default() -> None:
    settings = load_settings(
        # (an empty policy is an error since RETENTION_POLICY is parsed at load: see test_prune_settings.py)
        PruneSettings,
        {**BASE, "RETENTION_POLICY": '{"keep_daily": 7}', "PRUNE_SCOPE": "", "NOTIFY_TOPIC_ARN": ""},
    )
    assert settings.prune_scope == "managed"
    assert settings.notify_topic_arn is None


def test_the_safety_settings_default_to_today_s_behaviour() -> None:
    # Given no watch window, alarm age, floor or format set
    restore = load_settings(RestoreOnAlarmSettings, BASE)
    prune = load_settings(PruneSettings, {**BASE, "RETENTION_POLICY": '{"keep_daily": 7}'})
    # Then: no window, the 15-minute stale-alarm limit, keep at least the newest one, plain text
    assert restore.restore_watch_window == timedelta(0)
    assert restore.restore_max_alarm_age == timedelta(minutes=15)
    assert prune.keep_at_least == 1
    assert restore.notify_format == prune.notify_format == "text"


@pytest.mark.parametrize(
    ("window", "expected"),
    [("0", timedelta(0)), ("0s", timedelta(0)), ("2h", timedelta(hours=2)), ("1d", timedelta(1))],
)
def test_the_watch_window_is_a_duration_or_0(window: str, expected: timedelta) -> None:
    settings = load_settings(RestoreOnAlarmSettings, {**BASE, "RESTORE_WATCH_WINDOW": window})
    assert settings.restore_watch_window == expected


def test_the_new_settings_are_read_from_their_variables() -> None:
    restore = load_settings(RestoreOnAlarmSettings, {**BASE, "RESTORE_MAX_ALARM_AGE": "1h", "NOTIFY_FORMAT": "chatbot"})
    prune = load_settings(PruneSettings, {**BASE, "RETENTION_POLICY": '{"keep_last": 1}', "KEEP_AT_LEAST": "3"})
    assert restore.restore_max_alarm_age == timedelta(hours=1)
    assert restore.notify_format == "chatbot"
    assert prune.keep_at_least == 3


def test_journal_retention_defaults_to_400_days_and_a_bad_one_is_named() -> None:
    env = {"VPS_API_TOKEN_SECRET": "s", "STATE_TABLE_NAME": "t"}
    assert load_settings(SharedSettings, env).journal_retention == timedelta(days=400)
    assert load_settings(SharedSettings, {**env, "JOURNAL_RETENTION": "30d"}).journal_retention == timedelta(days=30)
    with pytest.raises(ConfigurationError, match="JOURNAL_RETENTION"):
        load_settings(SharedSettings, {**env, "JOURNAL_RETENTION": "a year"})


@pytest.mark.parametrize(
    "url",
    [
        "http://admin.vps.org/api/v1",  # the token would travel in clear
        "http://10.0.0.5/api/v1",
        "http://128.0.0.1/api/v1",
        "http://localhost.evil.example/api/v1",
        "https://",
        "https://user:pass@admin.vps.org/api/v1",
        "https://admin.vps.org:notaport/api/v1",
        "ftp://admin.vps.org/api/v1",
        "admin.vps.org/api/v1",
    ],
)
def test_the_api_base_url_must_be_https_or_loopback(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"VPS_API_BASE_URL: .*https://"):
        load_settings(SharedSettings, {**BASE, "VPS_API_BASE_URL": url})


@pytest.mark.parametrize(
    "url",
    [
        "https://admin.vps.org/api/v1",
        "https://admin.vps.org:8443/api/v1/",
        "http://127.0.0.1:8080/api/v1",
        "http://127.1.2.3/api/v1",
        "http://localhost:9000/api/v1",
        "http://[::1]:9000/api/v1",
    ],
)
def test_https_and_loopback_http_base_urls_are_accepted(url: str) -> None:
    assert load_settings(SharedSettings, {**BASE, "VPS_API_BASE_URL": url}).vps_api_base_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "https://admin.vps.org/api/v1",
        "https://admin.vps.org:8443/api/v1",
        "http://127.0.0.1:8080/api/v1",
        "http://localhost:9000/api/v1",
        "http://[::1]:9000/api/v1",
        "http://admin.vps.org/api/v1",
        "http://10.0.0.5/api/v1",
        "http://localhost.evil.example/api/v1",
        "https://user:pass@admin.vps.org/api/v1",
        "https://admin.vps.org:notaport/api/v1",
        "ftp://admin.vps.org/api/v1",
    ],
)
def test_the_templates_pattern_for_the_base_url_agrees_with_the_settings(url: str) -> None:
    pattern = load_template()["Parameters"]["VpsApiBaseUrl"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, url)) == is_safe_api_url(url)
