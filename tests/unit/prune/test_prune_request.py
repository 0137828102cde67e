"""The prune function's triggers: every sample in events/ parses, bad payloads name the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from moto.events.models import EventPattern

from tests.conftest import load_event, load_template
from vpsbackup.prune.request import SCHEDULED_EVENT_PATTERN, InvalidPruneRequestError, PruneRequest, parse_prune_request


def test_the_scheduler_sample_parses_as_a_scheduled_run() -> None:
    # Given the Scheduler's payload, When it is parsed
    request = parse_prune_request(load_event("prune-scheduler.json"))
    # Then it is a full, real run triggered by the schedule
    assert request.trigger == "schedule"
    assert request.dry_run is False
    assert request.server_ids is None
    assert request.scheduled_time == datetime(2025, 1, 16, 3, 30, tzinfo=UTC)


def test_the_schedule_in_the_template_sends_what_the_sample_shows() -> None:
    # Given the Input of the schedule in template.yaml, with the context attributes Scheduler fills in
    target = load_template()["Resources"]["PruneBackupsSchedule"]["Properties"]["Target"]
    sent = (
        target["Input"]
        .replace("<aws.scheduler.scheduled-time>", "2025-01-16T03:30:00Z")
        .replace("<aws.scheduler.execution-id>", "5b8e9f3c-2a41-4d6e-9c7b-1f0e8d2a6b43")
    )
    # When it is parsed, Then it is the sample event, and a scheduled run
    assert json.loads(sent) == load_event("prune-scheduler.json")
    assert parse_prune_request(json.loads(sent)).trigger == "schedule"


def test_the_classic_scheduled_event_parses_and_matches_the_rule_pattern() -> None:
    # Given a classic EventBridge scheduled event
    event = load_event("prune-scheduled-event.json")
    # When it is parsed, Then it is a full real run, and a rule with the documented pattern matches it
    request = parse_prune_request(event)
    assert request.trigger == "scheduled-event"
    assert (request.dry_run, request.server_ids) == (False, None)
    assert request.scheduled_time == datetime(2025, 1, 16, 3, 30, tzinfo=UTC)
    assert EventPattern.load(json.dumps(SCHEDULED_EVENT_PATTERN)).matches_event(event)


def test_other_eventbridge_events_do_not_match_the_rule_pattern() -> None:
    deploy = load_event("deploy-eventbridge.json")
    assert not EventPattern.load(json.dumps(SCHEDULED_EVENT_PATTERN)).matches_event(deploy)


def test_the_manual_dry_run_sample_parses() -> None:
    request = parse_prune_request(load_event("prune-manual-dry-run.json"))
    assert request == PruneRequest(trigger="manual", dry_run=True, server_ids=[12345])


@pytest.mark.parametrize("event", [None, {}])
def test_an_invoke_without_payload_is_a_full_real_run(event: Any) -> None:
    assert parse_prune_request(event) == PruneRequest()


def test_server_ids_are_deduplicated_and_sorted() -> None:
    assert parse_prune_request({"server_ids": [12346, 12345, 12346]}).server_ids == [12345, 12346]


@pytest.mark.parametrize(
    ("event", "named"),
    [
        ({"dry-run": True}, "dry-run"),  # a typo must not turn a dry run into a real one
        ({"dryrun": True}, "dryrun"),
        ({"dry_run": "yes"}, "dry_run"),
        ({"dry_run": 1}, "dry_run"),
        ({"server_ids": []}, "server_ids"),
        ({"server_ids": [0]}, "server_ids.0"),
        ({"server_ids": ["web-01"]}, "server_ids.0"),
        ({"server_ids": 12345}, "server_ids"),
        ({"trigger": "cron"}, "trigger"),
        ([12345], "(event)"),
        ("dry_run", "(event)"),
        ({"source": "aws.events", "detail-type": "Scheduled Event"}, "version"),
        ({"source": "aws.events", "detail-type": "Object Created", "version": "0"}, "detail-type"),
    ],
)
def test_a_bad_payload_is_refused_naming_the_field(event: Any, named: str) -> None:
    with pytest.raises(InvalidPruneRequestError) as info:
        parse_prune_request(event)
    assert named in str(info.value)
