"""The API token, read from AWS Secrets Manager through Powertools Parameters.

The secret is a plain string, or JSON ``{"token": "..."}``. It is cached across warm invocations
(``max_age``) and re-read on demand after a ``401`` (the token may have been rotated). The token
never appears in a repr, a log record or an error message.
"""

from __future__ import annotations

import json
from typing import Protocol

from vpsbackup.errors import ConfigurationError, describe_aws_error


class TokenProvider(Protocol):
    """Anything that hands the client a bearer token and can re-read it after a 401."""

    def get_token(self, *, force_refresh: bool = False) -> str: ...


def parse_secret_value(value: str | bytes | dict[str, object], *, secret_id: str) -> str:
    """The token inside a secret's value: a plain string, or JSON with a non-empty ``token`` key."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ConfigurationError(
                    f"secret {secret_id!r} looks like JSON but does not parse; store the token as a plain "
                    'string or as {"token": "..."}'
                ) from None
        else:
            if not text:
                raise ConfigurationError(f"secret {secret_id!r} is empty")
            return text
    token = value.get("token") if isinstance(value, dict) else None
    if not isinstance(token, str) or not token.strip():
        raise ConfigurationError(f'secret {secret_id!r} is JSON without a non-empty "token" string')
    return token.strip()


class SecretsManagerTokenProvider:
    """Reads the token from Secrets Manager; caches it for ``max_age`` seconds."""

    def __init__(self, secret_id: str, *, max_age: int = 300) -> None:
        self.secret_id = secret_id
        self.max_age = max_age

    def get_token(self, *, force_refresh: bool = False) -> str:
        # Imported here, at the first token read: Powertools Parameters is a tenth of a cold import
        # that a failing settings check or a refused webhook call never needs.
        from aws_lambda_powertools.utilities import parameters
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        try:
            raw = parameters.get_secret(self.secret_id, max_age=self.max_age, force_fetch=force_refresh)
        except GetParameterError as exc:
            # The message names the secret, never its value; the AWS error says why (access, missing).
            raise ConfigurationError(
                f"cannot read the API token from secret {self.secret_id!r} (VPS_API_TOKEN_SECRET): "
                f"{describe_aws_error(exc.__cause__ or exc)}"
            ) from None
        return parse_secret_value(raw, secret_id=self.secret_id)

    def __repr__(self) -> str:
        return f"SecretsManagerTokenProvider(secret_id={self.secret_id!r})"


class StaticTokenProvider:
    """A fixed token, for local tools and tests."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *, force_refresh: bool = False) -> str:
        return self._token

    def __repr__(self) -> str:
        return "StaticTokenProvider(token=***)"
