"""The deploy request (docs/backup-on-deploy.md): its model, the servers it names, and the backup description.

Everything here is pure: no environment, no AWS, no provider. The handler authenticates a webhook
call (:mod:`vpsbackup.deploy.webhook`), validates the body with :func:`parse_deploy_request` and
resolves the servers with :func:`resolve_servers` before anything touches the state table or the
provider.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PositiveInt, ValidationError, field_validator

from vpsbackup.markers import MAX_DESCRIPTION_LENGTH, describe_with_marker, make_marker
from vpsbackup.settings import describe_validation_error

MAX_SERVERS_PER_REQUEST = 100


class InvalidDeployRequestError(ValueError):
    """A deploy request that cannot be acted on (HTTP 400). ``fields`` names what is wrong."""

    def __init__(self, message: str, fields: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


def _no_bool(value: Any) -> Any:
    # pydantic's lax mode reads true as 1: a server id must be a number (or a numeric string).
    if isinstance(value, bool):
        raise ValueError("a server id must be an integer, not a boolean")
    return value


ServerId = Annotated[PositiveInt, BeforeValidator(_no_bool)]
_Text = Annotated[str, Field(max_length=1000)]


class DeployRequest(BaseModel):
    """The EventBridge ``detail`` or the webhook's JSON body. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    deployment_id: str = Field(min_length=1, max_length=128)
    server_ids: list[ServerId] | None = Field(default=None, max_length=MAX_SERVERS_PER_REQUEST)
    environment: str | None = Field(default=None, min_length=1, max_length=128)
    description: _Text | None = None
    repository: _Text | None = None
    ref: _Text | None = None
    commit: _Text | None = None
    actor: _Text | None = None
    url: _Text | None = None

    @field_validator("deployment_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError("must not contain control characters")
        return value


def parse_deploy_request(data: Any) -> DeployRequest:
    """Validate a request object; raise InvalidDeployRequestError naming every bad field."""
    if not isinstance(data, Mapping):
        raise InvalidDeployRequestError("the request must be a JSON object", ["body"])
    try:
        return DeployRequest.model_validate(dict(data))
    except ValidationError as exc:
        fields = sorted({str(err["loc"][0]) for err in exc.errors() if err["loc"]}) or ["body"]
        raise InvalidDeployRequestError(describe_validation_error(exc), fields) from None


def parse_deploy_body(raw: bytes) -> DeployRequest:
    """Parse and validate a webhook body (JSON bytes)."""
    try:
        data = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, ValueError):
        raise InvalidDeployRequestError("the body is not valid JSON", ["body"]) from None
    return parse_deploy_request(data)


def resolve_servers(request: DeployRequest, server_groups: Mapping[str, list[int]]) -> list[int]:
    """The servers to back up, in request order, each once.

    ``server_ids`` wins when given and non-empty; otherwise ``environment`` is looked up in
    ``SERVER_GROUPS``. At least one server must resolve, else InvalidDeployRequestError. When
    ``SERVER_GROUPS`` is set, every one of ``server_ids`` must be in one of its groups: a deploy
    request names only the fleet the stack was set up for (a forged one must not back up, and
    record as a restore point, a server outside it).
    """
    if request.server_ids:
        servers = list(dict.fromkeys(request.server_ids))
        if server_groups:
            grouped = {server for group in server_groups.values() for server in group}
            outside = [server for server in servers if server not in grouped]
            if outside:
                raise InvalidDeployRequestError(
                    f"server_ids: {', '.join(map(str, outside))} "
                    f"{'is' if len(outside) == 1 else 'are'} in no group of SERVER_GROUPS",
                    ["server_ids"],
                )
        return servers
    if request.environment is not None:
        if request.environment not in server_groups:
            known = ", ".join(sorted(server_groups)) or "none configured"
            raise InvalidDeployRequestError(
                f"environment: {request.environment!r} is not in SERVER_GROUPS (known: {known})", ["environment"]
            )
        servers = list(dict.fromkeys(server_groups[request.environment]))
        if not servers:
            raise InvalidDeployRequestError(
                f"environment: {request.environment!r} has no servers in SERVER_GROUPS", ["environment"]
            )
        return servers
    raise InvalidDeployRequestError(
        "server_ids: no server to back up; give server_ids or an environment listed in SERVER_GROUPS",
        ["server_ids", "environment"],
    )


def backup_description(request: DeployRequest, limit: int = MAX_DESCRIPTION_LENGTH) -> str:
    """The backup's description: the request's ``description``, or one built from repository, ref,
    commit and actor (plus the run's url when it fits), followed by the deployment's marker.
    Never longer than ``limit``; the marker is never cut."""
    if request.description and request.description.strip():
        return describe_with_marker(request.description, request.deployment_id, limit)
    text = "Pre-deploy backup"
    if request.repository:
        text += f" of {request.repository}"
    if request.ref:
        text += f" ref {request.ref}"
    if request.commit:
        text += f" commit {request.commit[:12]}"
    if request.actor:
        text += f" by {request.actor}"
    if not (request.repository or request.ref or request.commit or request.actor):
        text += f" for deployment {request.deployment_id}"
    if request.url:
        with_url = f"{text} ({request.url})"
        if len(" ".join(with_url.split())) + 1 + len(make_marker(request.deployment_id)) <= limit:
            text = with_url
    return describe_with_marker(text, request.deployment_id, limit)
