"""The token provider over Secrets Manager (moto)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from vpsbackup.errors import ConfigurationError
from vpsbackup.provider.token import SecretsManagerTokenProvider, StaticTokenProvider, parse_secret_value


@pytest.fixture
def secrets() -> Iterator[object]:
    parameters.clear_caches()
    with mock_aws():
        yield boto3.client("secretsmanager")
    parameters.clear_caches()


@pytest.mark.parametrize(
    ("value", "token"),
    [("abc", "abc"), ("  abc\n", "abc"), ('{"token": "abc"}', "abc"), ({"token": "abc"}, "abc"), (b"abc", "abc")],
)
def test_secret_values_in_both_shapes(value: str, token: str) -> None:
    assert parse_secret_value(value, secret_id="s") == token


@pytest.mark.parametrize("value", ["", "{not json", '{"key": "abc"}', '{"token": ""}', '{"token": 5}'])
def test_bad_secret_values_are_configuration_errors_that_do_not_echo_the_value(value: str) -> None:
    with pytest.raises(ConfigurationError, match="secret 's'") as info:
        parse_secret_value(value, secret_id="s")
    if len(value) > 3:
        assert value not in str(info.value)


def test_token_is_read_cached_and_re_read_on_demand(secrets: object) -> None:
    client = boto3.client("secretsmanager")
    arn = client.create_secret(Name="api", SecretString=json.dumps({"token": "first"}))["ARN"]
    provider = SecretsManagerTokenProvider(arn)
    assert provider.get_token() == "first"

    client.put_secret_value(SecretId=arn, SecretString="second")
    assert provider.get_token() == "first"  # cached across (warm) calls
    assert provider.get_token(force_refresh=True) == "second"  # rotation: re-read after a 401
    assert provider.get_token() == "second"


def test_a_missing_secret_names_the_secret_and_the_variable(secrets: object) -> None:
    with pytest.raises(ConfigurationError, match=r"'nope'.*VPS_API_TOKEN_SECRET"):
        SecretsManagerTokenProvider("nope").get_token()


def test_reprs_do_not_show_the_token() -> None:
    assert "hunter2" not in repr(StaticTokenProvider("hunter2"))
    assert repr(SecretsManagerTokenProvider("arn:x")) == "SecretsManagerTokenProvider(secret_id='arn:x')"
