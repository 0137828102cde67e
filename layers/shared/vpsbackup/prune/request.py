"""What starts a prune run, parsed and validated before anything is listed or deleted.

Three shapes reach ``PruneBackupsFunction``:

- the EventBridge Scheduler payload: the schedule's ``Input`` from template.yaml,
  ``{"trigger": "schedule", "scheduled_time": ..., "execution_id": ...}``;
- a classic EventBridge scheduled event (``source`` ``aws.events``, ``detail-type``
  ``Scheduled Event``), for people who drive the function from a rule of their own;
- a manual invoke, ``{"dry_run": true, "server_ids": [12345]}``, both optional (``{}`` is a full run).

The manual shape forbids unknown keys on purpose: a misspelt ``"dry-run": true`` must fail, naming
the key, not silently become a real run that deletes backups.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from vpsbackup.errors import VpsBackupError
from vpsbackup.provider.models import AwareDatetime

Trigger = Literal["schedule", "scheduled-event", "manual"]

# The EventBridge pattern of a classic scheduled event; a rule that drives this function must use it.
SCHEDULED_EVENT_PATTERN: dict[str, list[str]] = {"source": ["aws.events"], "detail-type": ["Scheduled Event"]}


class InvalidPruneRequestError(VpsBackupError, ValueError):
    """The invocation payload is not one this function accepts; the message names the field."""


class PruneRequest(BaseModel):
    """One run's options: ``dry_run`` (on top of ``DRY_RUN``) and the servers to limit it to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trigger: Trigger = "manual"
    # Strict: "dry_run": "no" must not be read as anything, least of all as False.
    dry_run: Annotated[bool, Field(strict=True)] = False
    server_ids: Annotated[list[PositiveInt], Field(min_length=1, max_length=500)] | None = None
    # A fleet sweep rather than the incremental choice of servers (it also finds servers this
    # project has no record of); not with server_ids.
    sweep: Annotated[bool, Field(strict=True)] = False
    # From the Scheduler's context attributes, for the log only: the run always plans at "now".
    scheduled_time: AwareDatetime | None = None
    execution_id: str | None = None

    @field_validator("server_ids")
    @classmethod
    def _unique_sorted(cls, value: list[int] | None) -> list[int] | None:
        return None if value is None else sorted(set(value))

    @model_validator(mode="after")
    def _sweep_is_fleet_wide(self) -> PruneRequest:
        if self.sweep and self.server_ids is not None:
            raise ValueError("sweep lists the whole fleet: it cannot be limited to server_ids")
        return self


class ScheduledEvent(EventBridgeModel):
    """A classic EventBridge scheduled event (its ``detail`` is ``{}``)."""

    source: Literal["aws.events"]
    detail_type: Literal["Scheduled Event"] = Field(alias="detail-type")


def _is_scheduled_event(event: Any) -> bool:
    return isinstance(event, dict) and "detail-type" in event and event.get("source") == "aws.events"


def _problems(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(part) for part in error["loc"]) or "(event)"
        parts.append(f"{loc}: {error['msg']}")
    return "; ".join(parts)


def parse_prune_request(event: Any) -> PruneRequest:
    """The run's options from any accepted payload; :class:`InvalidPruneRequestError` naming the field otherwise.

    ``None`` (an invoke without a payload) is a full run, as ``{}`` is.
    """
    if event is None:
        event = {}
    try:
        if _is_scheduled_event(event):
            scheduled = ScheduledEvent.model_validate(event)
            # Its options would be dropped, and a "dry_run": true added by hand would become a real run.
            options = sorted(set(event) & set(PruneRequest.model_fields))
            if options or scheduled.detail:
                where = ", ".join(options) if options else "detail"
                raise InvalidPruneRequestError(
                    f"invalid prune request: a scheduled event takes no run options ({where}); "
                    'invoke with {"dry_run": true, "server_ids": [...]} instead'
                )
            return PruneRequest(trigger="scheduled-event", scheduled_time=scheduled.time)
        return PruneRequest.model_validate(event)
    except ValidationError as exc:
        raise InvalidPruneRequestError(f"invalid prune request: {_problems(exc)}") from None
