"""CloudWatch alarm state changes as EventBridge and SNS deliver them, normalised into one
:class:`AlarmTransition`, and the pure rule that tells which server an alarm is about.

Two wire formats carry the same fact ("alarm X went from OK to ALARM at T"):

- EventBridge ``CloudWatch Alarm State Change`` (``source`` ``aws.cloudwatch``): camelCase, the
  alarm's ARN in ``resources``, dimensions as an object per metric
  (``detail.configuration.metrics[].metricStat.metric.dimensions``), and, with tag propagation on,
  the alarm's tags in ``detail.alarmTags``.
- The classic alarm JSON inside an SNS notification (an alarm action): PascalCase, ``AlarmArn``,
  dimensions as ``[{"name": ..., "value": ...}]`` in ``Trigger.Dimensions`` (single metric) or in
  ``Trigger.Metrics[].MetricStat.Metric.Dimensions`` (metric math).

Powertools has models for neither payload; its EventBridge and SNS models wrap ours. Unknown
fields are ignored everywhere, timestamps are aware (``+0000`` offsets are accepted).

Anyone allowed to invoke the function, publish to its topic or put events on a bus can send such a
payload, so a transition is only a claim: :func:`origin_problem` and :func:`confirmation_problem`
decide whether it is this account's alarm, in this region, in ``ALARM`` now (CloudWatch
``DescribeAlarms``, read by the caller), before anything else is done.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, SnsModel
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from vpsbackup.provider.models import AwareDatetime

ALARM = "ALARM"
SERVER_ID_TAG = "vps:server-id"
EVENTBRIDGE_SOURCE = "aws.cloudwatch"
EVENTBRIDGE_DETAIL_TYPE = "CloudWatch Alarm State Change"
# A real event's state-change time is the alarm's own (one clock, CloudWatch's); an event claiming a
# change later than the alarm's last one by more than this is not the alarm's.
ALARM_TIME_SLACK = timedelta(seconds=60)


class AlarmEventError(ValueError):
    """The event is not a CloudWatch alarm state change this function understands."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Dimension(_Model):
    """One metric dimension, whatever spelling the payload used."""

    name: str
    value: str


def _dimensions(value: Any) -> Any:
    """``{"ServerId": "12345"}`` or ``[{"name"|"Name": ..., "value"|"Value": ...}]`` -> list of dicts."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [{"name": str(k), "value": str(v)} for k, v in value.items()]
    if isinstance(value, list):
        out = []
        for item in value:
            if isinstance(item, Mapping):
                lowered = {str(k).lower(): v for k, v in item.items()}
                if "name" in lowered and "value" in lowered:
                    out.append({"name": str(lowered["name"]), "value": str(lowered["value"])})
        return out
    return value


DimensionList = Annotated[tuple[Dimension, ...], BeforeValidator(_dimensions)]


# -- EventBridge: "CloudWatch Alarm State Change" -------------------------------------------------


class _EbMetric(_Model):
    dimensions: DimensionList = ()


class _EbMetricStat(_Model):
    metric: _EbMetric | None = None


class _EbMetricQuery(_Model):
    metricStat: _EbMetricStat | None = None


class _EbConfiguration(_Model):
    description: str | None = None
    metrics: list[_EbMetricQuery] = Field(default_factory=list)


class _EbState(_Model):
    value: str
    reason: str = ""
    timestamp: AwareDatetime


class AlarmStateChangeDetail(_Model):
    """``detail`` of the EventBridge event (metric, metric-math and composite alarms)."""

    alarmName: str
    state: _EbState
    previousState: _EbState | None = None
    configuration: _EbConfiguration = Field(default_factory=_EbConfiguration)
    alarmTags: dict[str, str] | None = None  # present when tag propagation is on


class AlarmStateChangeEvent(EventBridgeModel):
    """The whole EventBridge event, on Powertools' EventBridge model."""

    detail: AlarmStateChangeDetail  # narrows Powertools' generic detail


# -- SNS: the classic alarm JSON inside the notification ------------------------------------------


class _SnsMetric(_Model):
    Dimensions: DimensionList = ()


class _SnsMetricStat(_Model):
    Metric: _SnsMetric | None = None


class _SnsMetricQuery(_Model):
    MetricStat: _SnsMetricStat | None = None


class _SnsTrigger(_Model):
    Dimensions: DimensionList = ()
    Metrics: list[_SnsMetricQuery] = Field(default_factory=list)


class ClassicAlarmMessage(_Model):
    """The alarm JSON an alarm action publishes to SNS (``Message``)."""

    AlarmName: str
    AlarmDescription: str | None = None
    AWSAccountId: str | None = None
    NewStateValue: str
    NewStateReason: str = ""
    StateChangeTime: AwareDatetime
    AlarmArn: str | None = None
    OldStateValue: str | None = None
    Trigger: _SnsTrigger | None = None


# -- the normalised transition ---------------------------------------------------------------------


class AlarmTransition(_Model):
    """One alarm changing state, from either source."""

    alarm_name: str
    alarm_arn: str | None = None
    new_state: str
    previous_state: str | None = None
    state_changed_at: AwareDatetime
    reason: str = ""
    description: str | None = None
    # Every dimension of every metric the alarm watches (metric math: each metricStat), in order.
    dimensions: tuple[Dimension, ...] = ()
    # The alarm's tags when the event carried them (EventBridge tag propagation); None: not carried.
    tags: dict[str, str] | None = None
    account: str | None = None
    region: str | None = None
    topic_arn: str | None = None  # SNS: the topic that delivered it
    source: Literal["eventbridge", "sns", "direct"]

    @property
    def key(self) -> str:
        """Identifies this transition whatever delivered it (a redelivery, or both EventBridge and SNS)."""
        at = self.state_changed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return f"{self.alarm_arn or self.alarm_name}|{self.new_state}|{at}"

    @property
    def enters_alarm(self) -> bool:
        return self.new_state == ALARM and self.previous_state != ALARM

    def dimension_values(self, name: str) -> list[str]:
        """Distinct values of dimension ``name`` across all metrics, in first-seen order."""
        seen: list[str] = []
        for dim in self.dimensions:
            if dim.name == name and dim.value not in seen:
                seen.append(dim.value)
        return seen

    def ignore_reason(self, name_prefix: str) -> str | None:
        """Why this transition must not lead to a restore, in words; None if it may."""
        if name_prefix and not self.alarm_name.startswith(name_prefix):
            return f"alarm {self.alarm_name!r} does not start with ALARM_NAME_PREFIX {name_prefix!r}"
        if self.new_state != ALARM:
            return f"the new state is {self.new_state}, not ALARM"
        if self.previous_state == ALARM:
            return "the alarm was already in ALARM (ALARM -> ALARM is not a new incident)"
        return None


def _arn_parts(arn: str | None) -> tuple[str | None, str | None]:
    """(region, account) of ``arn:aws:cloudwatch:<region>:<account>:alarm:<name>``."""
    parts = (arn or "").split(":")
    if len(parts) >= 6 and parts[0] == "arn":
        return parts[3] or None, parts[4] or None
    return None, None


def _flatten(groups: Iterable[Iterable[Dimension]]) -> tuple[Dimension, ...]:
    return tuple(dim for group in groups for dim in group)


def from_eventbridge(event: Mapping[str, Any]) -> AlarmTransition:
    parsed = AlarmStateChangeEvent.model_validate(event)
    if parsed.source != EVENTBRIDGE_SOURCE or parsed.detail_type != EVENTBRIDGE_DETAIL_TYPE:
        raise AlarmEventError(
            f"EventBridge event {parsed.source!r}/{parsed.detail_type!r} is not a CloudWatch alarm state change"
        )
    detail = parsed.detail
    arn = next((r for r in parsed.resources if ":alarm:" in r), None)
    return AlarmTransition(
        alarm_name=detail.alarmName,
        alarm_arn=arn,
        new_state=detail.state.value,
        previous_state=detail.previousState.value if detail.previousState else None,
        state_changed_at=detail.state.timestamp,
        reason=detail.state.reason,
        description=detail.configuration.description,
        dimensions=_flatten(
            q.metricStat.metric.dimensions
            for q in detail.configuration.metrics
            if q.metricStat is not None and q.metricStat.metric is not None
        ),
        tags=detail.alarmTags,
        account=parsed.account,
        region=parsed.region,
        source="eventbridge",
    )


def from_classic_message(
    message: ClassicAlarmMessage, *, source: Literal["sns", "direct"], topic_arn: str | None = None
) -> AlarmTransition:
    trigger = message.Trigger or _SnsTrigger()
    region, account = _arn_parts(message.AlarmArn)
    return AlarmTransition(
        alarm_name=message.AlarmName,
        alarm_arn=message.AlarmArn,
        new_state=message.NewStateValue,
        previous_state=message.OldStateValue,
        state_changed_at=message.StateChangeTime,
        reason=message.NewStateReason,
        description=message.AlarmDescription,
        dimensions=_flatten(
            [
                trigger.Dimensions,
                *(
                    q.MetricStat.Metric.Dimensions
                    for q in trigger.Metrics
                    if q.MetricStat is not None and q.MetricStat.Metric is not None
                ),
            ]
        ),
        account=message.AWSAccountId or account,
        region=region,
        topic_arn=topic_arn,
        source=source,
    )


def parse_alarm_event(event: Any) -> list[AlarmTransition]:
    """The alarm transitions in a Lambda event: an EventBridge event, an SNS event (one per record),
    or a bare classic alarm JSON (a direct invoke). Raises AlarmEventError saying what is wrong."""
    if not isinstance(event, Mapping):
        raise AlarmEventError(f"the event is a {type(event).__name__}, not a JSON object")
    try:
        if "Records" in event:
            sns = SnsModel.model_validate(event)
            transitions = []
            for record in sns.Records:
                raw = record.Sns.Message
                try:
                    message = ClassicAlarmMessage.model_validate_json(raw if isinstance(raw, str) else json.dumps(raw))
                except ValidationError as exc:
                    raise AlarmEventError(
                        f"SNS message {record.Sns.MessageId} is not a CloudWatch alarm notification "
                        f"({_first_problem(exc)})"
                    ) from None
                transitions.append(from_classic_message(message, source="sns", topic_arn=record.Sns.TopicArn))
            return transitions
        if "detail-type" in event:
            return [from_eventbridge(event)]
        if "AlarmName" in event:
            return [from_classic_message(ClassicAlarmMessage.model_validate(event), source="direct")]
    except ValidationError as exc:
        raise AlarmEventError(f"not a CloudWatch alarm state change ({_first_problem(exc)})") from None
    raise AlarmEventError("not a CloudWatch alarm state change (neither EventBridge, SNS nor alarm JSON)")


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(p) for p in error["loc"]) or "(event)"
    return f"{where}: {error['msg']}"


# -- is it real -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Home:
    """The function's own account and region (from its ARN): the only ones whose alarms may restore."""

    account: str | None
    region: str | None

    @classmethod
    def of_function(cls, function_arn: str) -> Home:
        """``arn:aws:lambda:<region>:<account>:function:<name>``; anything else knows neither."""
        parts = function_arn.split(":")
        if len(parts) >= 7 and parts[0] == "arn" and parts[2] == "lambda" and parts[5] == "function":
            return cls(parts[4] or None, parts[3] or None)
        return cls(None, None)


@dataclass(frozen=True)
class CurrentAlarm:
    """An alarm as CloudWatch ``DescribeAlarms`` describes it now: every dimension of every metric it
    watches (a metric-math alarm's included), in order."""

    name: str
    arn: str
    state: str
    dimensions: tuple[Dimension, ...] = ()
    changed_at: datetime | None = None  # its last state change (or update), when CloudWatch says


def origin_problem(transition: AlarmTransition, home: Home) -> str | None:
    """Why the transition is not from this function's own account and region, in words; None if it is
    (or says nothing of either: then only the alarm read in this account and region can confirm it)."""
    if home.account is None or home.region is None:
        return "this function's own account and region are unknown (no function ARN in the Lambda context)"
    claims = [("the event", transition.account, transition.region)]
    for what, arn in (("the alarm ARN", transition.alarm_arn), ("the SNS topic", transition.topic_arn)):
        if arn:
            region, account = _arn_parts(arn)
            claims.append((f"{what} {arn}", account, region))
    for what, account, region in claims:
        if account is not None and account != home.account:
            return f"{what} is from account {account}, not this function's account {home.account}"
        if region is not None and region != home.region:
            return f"{what} is from region {region}, not this function's region {home.region}"
    return None


def confirmation_problem(transition: AlarmTransition, current: CurrentAlarm | None, home: Home) -> str | None:
    """Why the alarm as read now (``current``; None: no such alarm) does not confirm the transition, in
    words; None when it does: the alarm exists here, is the one the event names, and is in ``ALARM``."""
    name = transition.alarm_name
    if current is None:
        return (
            f"no metric alarm named {name!r} exists in account {home.account}, region {home.region} "
            "(a composite alarm cannot be confirmed)"
        )
    if transition.alarm_arn and transition.alarm_arn != current.arn:
        return f"the event names the alarm {transition.alarm_arn}, but the alarm named {name!r} here is {current.arn}"
    if current.state != ALARM:
        return f"the alarm is in {current.state} now, not ALARM (it has recovered, or the event was not real)"
    if current.changed_at is not None and transition.state_changed_at - current.changed_at > ALARM_TIME_SLACK:
        return (
            f"the event says the alarm changed state at {transition.state_changed_at.isoformat()}, after the "
            f"alarm's own last change at {current.changed_at.isoformat()}"
        )
    return None


def as_confirmed(transition: AlarmTransition, current: CurrentAlarm) -> AlarmTransition:
    """The transition with what the confirmed alarm itself says in place of what the event claims: its
    ARN and its metrics' dimensions. A forged event naming a real alarm in ``ALARM`` must not choose
    the server by dimensions of its own. (Tags the event carries can only stop a restore: see
    :func:`resolve_server`; the tag that chooses a server is read from the alarm.)"""
    return transition.model_copy(update={"alarm_arn": current.arn, "dimensions": current.dimensions})


# -- which server ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerResolution:
    """Which server an alarm is about, and how that was found (or why it was not), in words."""

    server_id: int | None
    found_by: str
    notes: tuple[str, ...] = ()

    @property
    def explanation(self) -> str:
        return "; ".join(self.notes)


_MAX_ID_DIGITS = 18


def _server_id(text: str) -> int | None:
    """A positive id written in plain ASCII decimal (``" 012345 "`` is 12345); anything else is None.

    ``str.isdigit`` alone also admits ``"²"`` (int() then raises) and other scripts' digits
    (``"١٢٣٤٥"`` would become 12345), and int() refuses very long digit strings.
    """
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_ID_DIGITS:
        return None
    value = int(text)
    return value if value > 0 else None


def resolve_server(
    transition: AlarmTransition,
    *,
    dimension: str,
    alarm_server_map: Mapping[str, int],
    tags: Callable[[], Mapping[str, str] | None],
) -> ServerResolution:
    """The server an alarm is about: the metric dimension ``dimension`` (every metric of a metric-math
    alarm is looked at), else the alarm's ``vps:server-id`` tag, else ``alarm_server_map``.

    ``tags`` is called only when the dimension does not decide (it may cost an AWS call); it returns
    None when the tags cannot be read. Several different servers in the dimensions are ambiguous:
    the tag or the map may still decide, but the dimension never guesses.

    When the dimension decides and the event also carries the alarm's tags (EventBridge tag
    propagation: no AWS call), a ``vps:server-id`` tag naming another server means the alarm
    describes itself in two contradicting ways: restoring either server would be a guess, so nothing
    is resolved. (``ALARM_SERVER_MAP`` is the operator's last resort and stays below both.)
    """
    found = _resolve_first(transition, dimension=dimension, alarm_server_map=alarm_server_map, tags=tags)
    carried = (transition.tags or {}).get(SERVER_ID_TAG)
    if (
        found.server_id is not None
        and found.found_by.startswith("metric dimension")
        and carried is not None
        and (tag_id := _server_id(carried)) is not None
        and tag_id != found.server_id
    ):
        return ServerResolution(
            None,
            "",
            (
                *found.notes,
                f"{found.found_by} but the alarm's tag {SERVER_ID_TAG}={tag_id}: the alarm names two different "
                "servers, so neither is chosen",
            ),
        )
    return found


def _resolve_first(
    transition: AlarmTransition,
    *,
    dimension: str,
    alarm_server_map: Mapping[str, int],
    tags: Callable[[], Mapping[str, str] | None],
) -> ServerResolution:
    """The first source that names a server, in the documented order (see :func:`resolve_server`)."""
    notes: list[str] = []
    values = transition.dimension_values(dimension)
    if len(values) == 1:
        server_id = _server_id(values[0])
        if server_id is not None:
            return ServerResolution(server_id, f"metric dimension {dimension}={server_id}")
        notes.append(f"metric dimension {dimension}={values[0]!r} is not a server id")
    elif len(values) > 1:
        notes.append(f"the alarm's metrics name several servers ({dimension} = {', '.join(values)})")
    else:
        notes.append(f"no metric of the alarm has a {dimension} dimension")

    tag_values = tags()
    if tag_values is None:
        notes.append(f"the alarm's tags could not be read, so no {SERVER_ID_TAG} tag")
    elif SERVER_ID_TAG in tag_values:
        server_id = _server_id(tag_values[SERVER_ID_TAG])
        if server_id is not None:
            return ServerResolution(server_id, f"alarm tag {SERVER_ID_TAG}={server_id}", tuple(notes))
        notes.append(f"alarm tag {SERVER_ID_TAG}={tag_values[SERVER_ID_TAG]!r} is not a server id")
    else:
        notes.append(f"the alarm has no {SERVER_ID_TAG} tag")

    if transition.alarm_name in alarm_server_map:
        server_id = alarm_server_map[transition.alarm_name]
        return ServerResolution(server_id, f"ALARM_SERVER_MAP entry for {transition.alarm_name!r}", tuple(notes))
    notes.append("ALARM_SERVER_MAP has no entry for it")
    return ServerResolution(None, "", tuple(notes))
