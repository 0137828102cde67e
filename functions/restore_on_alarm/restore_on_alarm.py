"""RestoreOnAlarmFunction: a CloudWatch alarm entering ALARM (EventBridge or SNS) -> a guarded restore.

Thin: :func:`vpsbackup.restore.wiring.handle_alarm_event` parses the trigger, drops what must not
restore (logged with the reason), runs each alarm transition once (Powertools Idempotency) through
``vpsbackup.restore.job.AlarmRestorer`` and counts the outcomes; this module returns them.
"""

from __future__ import annotations

from typing import Any

from vpsbackup.observability import logger, tracer
from vpsbackup.restore.wiring import IDEMPOTENCY_PK, IDEMPOTENCY_TTL_S, handle_alarm_event, reset

__all__ = ["IDEMPOTENCY_PK", "IDEMPOTENCY_TTL_S", "handler", "reset"]


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Returns ``{"outcomes": [...]}``, one per alarm transition in the event."""
    outcomes = handle_alarm_event(event, context)
    return {"outcomes": [outcome.as_dict() for outcome in outcomes]}
