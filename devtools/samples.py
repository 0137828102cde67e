"""Make the sample events in ``events/`` current, as a real delivery would be.

The samples were recorded once; replayed as they are, an alarm sample is "too old for an automatic
restore" and a signed webhook sample is outside its 300 s window. :func:`restamp_alarm_event` moves
every time of an alarm sample by the same amount, so that its state change happened ``age`` ago
(the webhook samples are re-signed by ``vpsbackup.deploy.webhook.resign_function_url_event``).
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

# The fields of the two alarm formats (EventBridge, and an SNS alarm action) that hold a time.
_TIME_KEYS = frozenset({"time", "timestamp", "Timestamp", "StateChangeTime"})
_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)$")


def is_alarm_event(event: Any) -> bool:
    """An EventBridge alarm state change, or SNS records carrying alarm messages."""
    if not isinstance(event, dict):
        return False
    if event.get("source") == "aws.cloudwatch":
        return True
    records = event.get("Records")
    return isinstance(records, list) and any(
        isinstance(r, dict)
        and r.get("EventSource") == "aws:sns"
        and "AlarmName" in str(r.get("Sns", {}).get("Message"))
        for r in records
    )


def alarm_states(event: dict[str, Any]) -> list[tuple[str, str, list[dict[str, str]]]]:
    """(alarm name, new state, each metric's dimensions) of every alarm change in an alarm sample
    (EventBridge or SNS): what the alarm itself is, for ``devtools.local_env.set_alarm_state``."""
    if event.get("source") == "aws.cloudwatch":
        return [_eventbridge_alarm_state(event["detail"])]
    return [
        _sns_alarm_state(json.loads(record["Sns"]["Message"]))
        for record in event.get("Records", [])
        if record.get("EventSource") == "aws:sns"
    ]


def _eventbridge_alarm_state(detail: dict[str, Any]) -> tuple[str, str, list[dict[str, str]]]:
    metrics = [
        {str(k): str(v) for k, v in (q.get("metricStat", {}).get("metric", {}).get("dimensions") or {}).items()}
        for q in detail.get("configuration", {}).get("metrics", [])
        if q.get("metricStat")
    ]
    return (str(detail["alarmName"]), str(detail["state"]["value"]), metrics or [{}])


def _sns_alarm_state(message: dict[str, Any]) -> tuple[str, str, list[dict[str, str]]]:
    trigger = message.get("Trigger") or {}
    groups = [trigger.get("Dimensions") or []]
    groups += [
        q["MetricStat"]["Metric"].get("Dimensions") or [] for q in trigger.get("Metrics") or [] if q.get("MetricStat")
    ]
    metrics = [
        {str(d.get("name", d.get("Name"))): str(d.get("value", d.get("Value"))) for d in group}
        for group in groups
        if group
    ]
    return (str(message["AlarmName"]), str(message["NewStateValue"]), metrics or [{}])


def state_changed_at(event: dict[str, Any]) -> datetime:
    """When the (first) alarm in the sample changed state."""
    if event.get("source") == "aws.cloudwatch":
        return _parse(event["detail"]["state"]["timestamp"])
    message = json.loads(event["Records"][0]["Sns"]["Message"])
    return _parse(message["StateChangeTime"])


def restamp_alarm_event(event: dict[str, Any], now: datetime, age: timedelta = timedelta(seconds=5)) -> dict[str, Any]:
    """A copy of an alarm sample whose every time is moved so its state changed ``age`` before ``now``.

    Each time keeps its own spelling (``Z`` or ``+0000``, its fraction digits); the gaps between them
    (the previous state's time, the SNS delivery time) stay as recorded.
    """
    shift = (now - age) - state_changed_at(event)
    moved: dict[str, Any] = _shifted(copy.deepcopy(event), shift)
    return moved


def _shifted(value: Any, shift: timedelta) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in _TIME_KEYS and isinstance(item, str) and _ISO.match(item):
                out[key] = _format_like(item, _parse(item) + shift)
            elif key == "Message" and isinstance(item, str) and item.lstrip().startswith("{"):
                out[key] = json.dumps(_shifted(json.loads(item), shift))
            else:
                out[key] = _shifted(item, shift)
        return out
    if isinstance(value, list):
        return [_shifted(item, shift) for item in value]
    return value


def _parse(text: str) -> datetime:
    match = _ISO.match(text)
    if match is None:
        raise ValueError(f"not an ISO 8601 time: {text!r}")
    base, fraction, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    parsed = datetime.fromisoformat(base + (fraction or "") + zone)
    return parsed.astimezone(UTC)


def _format_like(original: str, moment: datetime) -> str:
    match = _ISO.match(original)
    assert match is not None
    _, fraction, zone = match.groups()
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction:
        digits = len(fraction) - 1
        text += "." + f"{moment.microsecond:06d}"[:digits].ljust(digits, "0")
    if zone == "Z":
        return text + "Z"
    return text + ("+00:00" if ":" in zone else "+0000")  # the same spelling, now in UTC
