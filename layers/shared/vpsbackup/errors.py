"""The package's error base and the settings error; the provider client's errors are in
:mod:`vpsbackup.provider.errors`."""

from __future__ import annotations


class VpsBackupError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigurationError(VpsBackupError):
    """A setting is missing or invalid, or a configured secret cannot be read."""


def describe_aws_error(exc: BaseException) -> str:
    """An AWS SDK error as one line for people: what went wrong and how to fix it.

    By the exception's class name and error code, so this module imports no botocore.
    """
    name = type(exc).__name__
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", "")) if hasattr(exc, "response") else ""
    if name == "NoRegionError":
        return "no AWS region: pass --region REGION, or set AWS_REGION, or give your AWS profile a region"
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return (
            "no AWS credentials: pass --profile NAME, or set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (aws configure, aws sso login)"
        )
    if name == "ProfileNotFound":
        return f"{exc}: name a profile from ~/.aws/config with --profile or AWS_PROFILE (aws configure --profile NAME)"
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ReadTimeoutError"):
        return f"cannot reach AWS ({exc}): check the network, or AWS_ENDPOINT_URL if it is set"
    if code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired"):
        return f"your AWS credentials have expired ({code}): renew them (aws sso login, or new keys)"
    if code.startswith("AccessDenied") or code in ("UnauthorizedOperation", "UnrecognizedClientException"):
        return f"access denied ({code}): your AWS identity may not do this; {exc}"
    if code:
        return f"{code}: {exc}"
    if name == "GetParameterError":  # Powertools' wrapper: its text is the AWS error's
        return str(exc)
    return f"{name}: {exc}"
