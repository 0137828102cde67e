"""An AWS SDK error told to people in one line: the cause and the fix."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)

from vpsbackup.errors import describe_aws_error


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "GetSecretValue")


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (NoRegionError(), ("no AWS region", "--region", "AWS_REGION")),
        (NoCredentialsError(), ("no AWS credentials", "--profile", "AWS_PROFILE")),
        (ProfileNotFound(profile="ops"), ("ops", "--profile")),
        (EndpointConnectionError(endpoint_url="https://x"), ("cannot reach AWS", "network")),
        (_client_error("AccessDeniedException"), ("access denied", "AccessDeniedException")),
        (_client_error("ExpiredTokenException"), ("expired", "sso login")),
        (_client_error("ResourceNotFoundException"), ("ResourceNotFoundException",)),
        (ValueError("odd"), ("ValueError", "odd")),
    ],
)
def test_each_cause_names_itself_and_the_fix(exc: Exception, words: tuple[str, ...]) -> None:
    line = describe_aws_error(exc)
    assert "\n" not in line
    for word in words:
        assert word in line, line
