"""The restore function's wiring: what a warm Lambda reuses, and one event → its outcomes.

Settings are validated on the first invocation (a bad one fails it, naming the variable) and
everything built from them (the API client, the StateTable, the guard, the notifier, the alarm tag
reader, the :class:`~vpsbackup.restore.job.AlarmRestorer`) is reused by warm invocations.

Powertools Idempotency, keyed on the alarm transition (alarm, new state, state-change time), is
the first layer against redeliveries: a repeat gets the first outcome back without acting or
notifying again. The StateTable guard (:mod:`vpsbackup.restore.guard`) is the real guarantee.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

from vpsbackup.aws import runtime
from vpsbackup.aws.journal import Journal
from vpsbackup.aws.state import PK, SK, TTL_ATTRIBUTE
from vpsbackup.observability import logger, metrics
from vpsbackup.restore.alarm import AlarmEventError, AlarmTransition, CurrentAlarm, Dimension, Home, parse_alarm_event
from vpsbackup.restore.followup import FollowUps
from vpsbackup.restore.guard import RestoreGuard
from vpsbackup.restore.job import AlarmRestorer, RestoreOutcome
from vpsbackup.restore.recovery import OK, VerifyEventError, parse_verify_event
from vpsbackup.restore.settings import RestoreOnAlarmSettings
from vpsbackup.settings import load_settings

IDEMPOTENCY_PK = "idempotency#restore-on-alarm"
IDEMPOTENCY_TTL_S = 24 * 3600  # EventBridge redelivers for up to 24 h


@dataclass
class _Wiring:
    """Built once per execution environment, reused by warm invocations."""

    settings: RestoreOnAlarmSettings
    restorer: AlarmRestorer
    follow_ups: FollowUps
    idempotency: IdempotencyConfig
    process: Callable[..., dict[str, Any]]


_wiring_lock = threading.Lock()
_wiring_cache: _Wiring | None = None
_metrics_lock = threading.Lock()


def alarm_tags_reader(cloudwatch: Any) -> Callable[[str], Mapping[str, str]]:
    def read(alarm_arn: str) -> Mapping[str, str]:
        tags = cloudwatch.list_tags_for_resource(ResourceARN=alarm_arn).get("Tags", [])
        return {str(t["Key"]): str(t["Value"]) for t in tags}

    return read


def alarm_state_reader(cloudwatch: Any) -> Callable[[str], CurrentAlarm | None]:
    """The metric alarm named so, in this account and region, as it is now (None: there is none).
    Composite alarms are not asked for: ``DescribeAlarms`` shows them only to a grant on every alarm."""

    def read(alarm_name: str) -> CurrentAlarm | None:
        found = cloudwatch.describe_alarms(AlarmNames=[alarm_name], AlarmTypes=["MetricAlarm"])
        for alarm in found.get("MetricAlarms", []):
            if alarm.get("AlarmName") == alarm_name:
                changed = alarm.get("StateTransitionedTimestamp") or alarm.get("StateUpdatedTimestamp")
                return CurrentAlarm(
                    alarm_name,
                    str(alarm.get("AlarmArn", "")),
                    str(alarm.get("StateValue", "")),
                    _dimensions(alarm),
                    changed if isinstance(changed, datetime) and changed.tzinfo is not None else None,
                )
        return None

    return read


def _dimensions(alarm: Mapping[str, Any]) -> tuple[Dimension, ...]:
    """Every dimension of a described metric alarm: its own metric's, then each metric-math metric's."""
    groups = [alarm.get("Dimensions") or []]
    groups += [
        ((query.get("MetricStat") or {}).get("Metric") or {}).get("Dimensions") or []
        for query in alarm.get("Metrics") or []
    ]
    return tuple(Dimension(name=str(d["Name"]), value=str(d["Value"])) for group in groups for d in group)


def build(home: Home) -> _Wiring:
    """Everything the settings decide: the restorer and its clients, and the idempotent run of one
    transition; ``home`` is the function's own account and region (its ARN)."""
    settings = load_settings(RestoreOnAlarmSettings)
    state = runtime.state_table(settings.state_table_name)
    cloudwatch = boto3.client("cloudwatch")
    guard = RestoreGuard(state, cooldown=settings.restore_cooldown, max_per_hour=settings.max_restores_per_hour)
    notifier = runtime.notifier(settings.notify_topic_arn, settings.notify_format)
    journal = Journal(state, source="restore-on-alarm", retention=settings.journal_retention)
    follow_ups = FollowUps(
        settings=settings,
        guard=guard,
        notifier=notifier,
        alarm_state=alarm_state_reader(cloudwatch),
        home=home,
        scheduler=boto3.client("scheduler") if settings.restore_verify_role_arn else None,
        journal=journal,
    )
    restorer = AlarmRestorer(
        settings,
        client=runtime.api_client_for(settings, "restore"),
        state=state,
        guard=guard,
        notifier=notifier,
        alarm_tags=alarm_tags_reader(cloudwatch),
        alarm_state=alarm_state_reader(cloudwatch),
        home=home,
        journal=journal,
        schedule_check=follow_ups.schedule if settings.restore_verify_role_arn else None,
    )
    idempotency = IdempotencyConfig(expires_after_seconds=IDEMPOTENCY_TTL_S)
    persistence = DynamoDBPersistenceLayer(
        table_name=settings.state_table_name,
        key_attr=PK,
        sort_key_attr=SK,
        static_pk_value=IDEMPOTENCY_PK,
        expiry_attr=TTL_ATTRIBUTE,
    )

    def process(*, idempotency_key: dict[str, str], transition: AlarmTransition, ran: list[bool]) -> dict[str, Any]:
        ran.append(True)  # tells a fresh run from a replayed one
        return restorer.handle(transition).as_dict()

    idempotent = idempotent_function(
        data_keyword_argument="idempotency_key", persistence_store=persistence, config=idempotency
    )
    return _Wiring(
        settings, restorer, follow_ups, idempotency, cast(Callable[..., dict[str, Any]], idempotent(process))
    )


def _wiring(context: Any) -> _Wiring:
    global _wiring_cache
    with _wiring_lock:
        if _wiring_cache is None:
            _wiring_cache = build(Home.of_function(str(getattr(context, "invoked_function_arn", "") or "")))
        return _wiring_cache


def reset() -> None:
    """Forget the settings and everything built from them (tests; a changed environment)."""
    global _wiring_cache
    with _wiring_lock:
        _wiring_cache = None


def _handle_transition(wiring: _Wiring, transition: AlarmTransition) -> RestoreOutcome:
    log = {"alarm": transition.alarm_name, "transition": transition.key, "source": transition.source}
    prefix = wiring.settings.alarm_name_prefix
    if transition.new_state == OK and transition.alarm_name.startswith(prefix):
        # Back to OK: the follow-up of a restore, if the server has one open (settled once, in the lock).
        return wiring.follow_ups.on_ok(transition, wiring.restorer.server_of(transition).server_id)
    if (why := transition.ignore_reason(wiring.settings.alarm_name_prefix)) is not None:
        logger.info("alarm event ignored", extra={**log, "why": why})
        return RestoreOutcome("ignored", why, transition.alarm_name, cause="not_entering_alarm")
    ran: list[bool] = []
    try:
        result = wiring.process(idempotency_key={"transition": transition.key}, transition=transition, ran=ran)
    except IdempotencyAlreadyInProgressError:
        # Another invocation is handling this very transition; if it fails, Lambda retries *it*.
        logger.info("duplicate alarm change: already being handled by another invocation", extra=log)
        return RestoreOutcome(
            "duplicate",
            "the same alarm change is being handled by another invocation",
            transition.alarm_name,
            cause="in_progress",
        )
    outcome = RestoreOutcome.from_dict(result)
    if not ran:
        logger.info("duplicate alarm change: returning the first outcome", extra={**log, "first": outcome.outcome})
        return RestoreOutcome(
            "duplicate",
            f"already handled: {outcome.outcome} ({outcome.reason})",
            outcome.alarm_name,
            outcome.server_id,
            outcome.backup_id,
            cause="redelivery",
        )
    return outcome


def _count(outcomes: list[RestoreOutcome]) -> None:
    # One Metrics object per process (observability); tests run handlers in threads, so flush under a lock.
    with _metrics_lock:
        for outcome in outcomes:
            metrics.add_metric(name=outcome.metric_name, unit=MetricUnit.Count, value=1)
            if outcome.outcome == "recovered":
                seconds = outcome.extra.get("time_to_recover_s", 0)
                metrics.add_metric(name="time_to_recover", unit=MetricUnit.Seconds, value=seconds)
        metrics.flush_metrics()


def handle_alarm_event(event: dict[str, Any], context: Any) -> list[RestoreOutcome]:
    """One outcome per alarm transition in ``event``, each also counted as a metric (flushed here)."""
    wiring = _wiring(context)
    wiring.idempotency.register_lambda_context(context)
    wiring.restorer.client.set_deadline(runtime.remaining_seconds(context))
    wiring.follow_ups.target_arn = getattr(context, "invoked_function_arn", None)
    try:
        check = parse_verify_event(event)
    except VerifyEventError as exc:  # a check this function scheduled, malformed: retried, then queued
        logger.error("restore check event not understood", extra={"why": str(exc)})
        raise
    if check is not None:  # the restore's scheduled check (restore.followup)
        outcomes = [wiring.follow_ups.on_check(check)]
        _count(outcomes)
        return outcomes
    try:
        transitions = parse_alarm_event(event)
    except AlarmEventError as exc:
        logger.warning("event ignored: not an alarm state change", extra={"why": str(exc)})
        outcomes = [RestoreOutcome("ignored", str(exc), cause="not_an_alarm")]
    else:
        outcomes = [_handle_transition(wiring, transition) for transition in transitions]
    _count(outcomes)
    return outcomes
