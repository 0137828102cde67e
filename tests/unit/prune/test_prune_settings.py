"""Prune settings: the retention JSON is parsed at load, so a bad policy fails at cold start, named."""

from __future__ import annotations

import pytest

from vpsbackup.errors import ConfigurationError
from vpsbackup.prune.retention import RetentionPolicy
from vpsbackup.prune.settings import PruneSettings
from vpsbackup.settings import load_settings

BASE = {"VPS_API_TOKEN_SECRET": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:t", "STATE_TABLE_NAME": "t"}


def test_the_policy_and_overrides_are_parsed_at_load() -> None:
    # Given a policy and one server's override, When the settings load
    settings = load_settings(
        PruneSettings,
        {
            **BASE,
            "RETENTION_POLICY": '{"keep_daily": 7, "keep_within": "2w"}',
            "RETENTION_OVERRIDES": '{"12345": {"keep_last": 30}}',
        },
    )
    # Then they are policies, and each server gets its own
    assert settings.retention_policy == RetentionPolicy.model_validate({"keep_daily": 7, "keep_within": "2w"})
    policies = settings.retention_policies
    assert policies(12345) == RetentionPolicy(keep_last=30)
    assert policies(99) == settings.retention_policy


def test_no_overrides_by_default() -> None:
    settings = load_settings(PruneSettings, {**BASE, "RETENTION_POLICY": '{"keep_last": 1}', "RETENTION_OVERRIDES": ""})
    assert settings.retention_overrides == {}


@pytest.mark.parametrize(
    ("policy", "words"),
    [
        (None, "Field required"),
        ("", "Field required"),
        ("{}", "empty retention policy"),
        ('{"keep_daily": 0, "keep_last": 0}', "empty retention policy"),
        ('{"keep_dayly": 7}', "keep_dayly: Extra inputs are not permitted"),
        ('{"keep_daily": "7"}', "keep_daily: Input should be a valid integer"),
        ('{"keep_within": "2 weeks"}', "keep_within"),
        ("keep_daily=7", "Invalid JSON"),
        ("[7]", "object"),
    ],
)
def test_a_missing_empty_or_invalid_policy_fails_naming_retention_policy(policy: str | None, words: str) -> None:
    env = dict(BASE) if policy is None else {**BASE, "RETENTION_POLICY": policy}
    with pytest.raises(ConfigurationError) as info:
        load_settings(PruneSettings, env)
    message = str(info.value)
    assert message.startswith("invalid setting: RETENTION_POLICY: ")
    assert words in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ('{"12345": {}}', "server 12345: empty retention policy"),
        ('{"12345": {"keep_last": -1}}', "server 12345: keep_last"),
        ('{"web-01": {"keep_last": 1}}', "'web-01' is not a server id"),
        ("[]", "must be a JSON object"),
        ("nope", "not valid JSON"),
    ],
)
def test_a_bad_override_fails_naming_retention_overrides_on_one_line(overrides: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings(PruneSettings, {**BASE, "RETENTION_POLICY": '{"keep_last": 1}', "RETENTION_OVERRIDES": overrides})
    message = str(info.value)
    assert message.startswith("invalid setting: RETENTION_OVERRIDES: ")
    assert words in message
    assert "\n" not in message
    assert "input_value" not in message
