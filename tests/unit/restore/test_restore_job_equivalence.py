"""The alarm path, now built on the shared restore path (``vpsbackup.restore.execute``), does exactly
what the frozen pre-refactor copy (``legacy_job``) does.

Given random scenarios — the mode and the watch window, the server's backups and deployment, a
listing that fails, what the guard answers, a hold that cannot be written, the re-read (the same,
gone, changed, another server's, an API error, a crash), every kind of answer to the restore call,
and lock updates that fail after it — when both handle the same alarm, then the outcome, what people
are told, the guard's calls, the holds and the restore calls are the same.

The one deliberate difference is not drawn: a failing lock *release* before the restore call (the
re-read failed or the backup changed) used to escape into the catch-all and be reported as an
internal error; the shared path keeps the outcome it had (the release is only logged, as after the
call). Nor is the one change made since: the restore point now gets ``RESTORE_WATCH_WINDOW`` (inside
the window a deploy backup that is only too old still limits the choice to backups made before the
deploy); scenarios where that changes the restore point are left out (``test_restore_point`` and
``test_restore_safety`` cover them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.conftest import confirming_alarms, load_event
from tests.unit.restore.legacy_job import AlarmRestorer as LegacyAlarmRestorer
from vpsbackup.provider import errors
from vpsbackup.provider.models import Backup, RestoreAccepted
from vpsbackup.records import DeploymentRecord, Hold
from vpsbackup.restore.alarm import AlarmTransition, parse_alarm_event
from vpsbackup.restore.guard import GuardRefusal, RestoreClaim
from vpsbackup.restore.job import AlarmRestorer
from vpsbackup.restore.point import choose_restore_point
from vpsbackup.restore.settings import RestoreOnAlarmSettings

NOW = datetime(2025, 1, 16, 16, 0, tzinfo=UTC)
SERVER = 12345

POST_ANSWERS: dict[str, Callable[[], Exception] | None] = {
    "accepted": None,
    "409": lambda: errors.ApiStatusError("HTTP 409", status_code=409, api_message="a restore is already running"),
    "429": lambda: errors.RateLimitedError("HTTP 429", status_code=429),
    "503": lambda: errors.ServerError("HTTP 503", status_code=503),
    "500": lambda: errors.ServerError("HTTP 500", status_code=500),
    "lost": lambda: errors.OutcomeUnknownError("POST: timeout after sending", cause="ReadTimeout"),
    "unsent": lambda: errors.ApiConnectionError("connection refused"),
    "undecodable": lambda: ValueError("the answer is not JSON"),
}
REFUSALS = {
    "cooldown": GuardRefusal("cooldown", "server 12345 was restored at 13:00 UTC; one restore per server per 6 hours"),
    "rate_limit": GuardRefusal("rate_limit", "3 restore(s) already in the last hour across the fleet"),
    "duplicate": GuardRefusal("duplicate", "this alarm change was already handled"),
}


@dataclass(frozen=True)
class Scenario:
    mode: str
    window: timedelta
    backups: tuple[Backup, ...]
    deployment: DeploymentRecord | None
    listing_fails: bool
    claim: str  # granted, or a REFUSALS key
    check: str | None  # what the guard's read-only check says (notify mode, the watch window)
    hold_fails: bool
    reread: str
    post: str
    updates_fail: bool


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    ids = draw(st.lists(st.integers(500, 520), unique=True, min_size=1, max_size=4))
    backups = tuple(
        Backup.model_validate(
            {
                "id": backup_id,
                "server": {"id": SERVER, "name": "web-server-01"},
                "backup_type": draw(st.sampled_from(["manual", "automatic"])),
                "status": draw(st.sampled_from(["completed", "completed", "completed", "failed", "in_progress"])),
                "created_at": NOW - timedelta(hours=draw(st.integers(1, 24 * 9))),
                "description": "a backup",
            }
        )
        for backup_id in ids
    )
    deployment = draw(
        st.none()
        | st.builds(
            lambda minutes, backup_id: DeploymentRecord(
                deployment_id="gh-1-1",
                server_id=SERVER,
                received_at=NOW - timedelta(minutes=minutes),
                backup_id=backup_id,
            ),
            st.integers(2, 60 * 24 * 3),
            st.sampled_from([None, *ids]),
        )
    )
    return Scenario(
        mode=draw(st.sampled_from(["execute"] * 5 + ["notify"])),
        window=draw(st.sampled_from([timedelta(0)] * 4 + [timedelta(hours=2)])),
        backups=backups,
        deployment=deployment,
        listing_fails=draw(st.integers(0, 9)) == 0,
        claim=draw(st.sampled_from(["granted"] * 6 + list(REFUSALS))),
        check=draw(st.sampled_from([None, None, "cooldown", "rate_limit"])),
        hold_fails=draw(st.integers(0, 11)) == 0,
        reread=draw(st.sampled_from(["same"] * 8 + ["gone", "changed", "moved", "api_error", "crash"])),
        post=draw(st.sampled_from(["accepted"] * 3 + list(POST_ANSWERS))),
        updates_fail=draw(st.booleans()),
    )


@dataclass
class World:
    """Fakes of the client, the table, the guard and the notifier, recording what was done to them."""

    scenario: Scenario
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    # -- the client
    def list_backups(self, *, server_id: int) -> list[Backup]:
        self.calls.append(("list", server_id))
        if self.scenario.listing_fails:
            raise errors.ApiConnectionError("the API is unreachable")
        return list(self.scenario.backups)

    def iter_backups(self, *, server_id: int) -> Iterator[Backup]:
        self.calls.append(("reread", server_id))
        reread = self.scenario.reread
        if reread == "api_error":
            raise errors.ServerError("HTTP 500", status_code=500)
        if reread == "crash":
            raise RuntimeError("unexpected")
        for b in self.scenario.backups:
            if reread == "gone":
                continue
            if reread == "changed":
                yield b.model_copy(update={"status": "deleting"})
            elif reread == "moved":
                yield b.model_copy(update={"server": b.server.model_copy(update={"id": SERVER + 1})})
            else:
                yield b

    def restore_server(self, server_id: int, backup_id: int) -> RestoreAccepted:
        self.calls.append(("POST restore", server_id, backup_id))
        error = POST_ANSWERS[self.scenario.post]
        if error is not None:
            raise error()
        return RestoreAccepted(server_id=server_id, backup_id=backup_id, status_code=202)

    # -- the table
    def latest_deployment_before(self, server_id: int, before: datetime) -> DeploymentRecord | None:
        return self.scenario.deployment

    def put_hold(self, hold: Hold) -> bool:
        self.calls.append(("hold", hold.backup_id, hold.server_id, hold.until, hold.reason, hold.kind))
        if self.scenario.hold_fails:
            raise RuntimeError("ProvisionedThroughputExceeded")
        return True

    # -- the guard
    def check(self, *, server_id: int, transition_key: str, override_cooldown: bool = False) -> GuardRefusal | None:
        assert not override_cooldown
        self.calls.append(("check", server_id, transition_key))
        return REFUSALS[self.scenario.check] if self.scenario.check else None

    def claim(
        self, *, server_id: int, backup_id: int, transition_key: str, alarm_name: str, override_cooldown: bool = False
    ) -> RestoreClaim | GuardRefusal:
        assert not override_cooldown
        self.calls.append(("claim", server_id, backup_id, transition_key, alarm_name))
        if self.scenario.claim != "granted":
            return REFUSALS[self.scenario.claim]
        return RestoreClaim(server_id, backup_id, transition_key, alarm_name, NOW, NOW + timedelta(hours=6), 0)

    def release(self, claim: RestoreClaim, why: str) -> None:
        self.calls.append(("release", claim.backup_id, why))
        if self.scenario.updates_fail and why.startswith("restore refused or not applied"):
            raise RuntimeError("the lock could not be updated")

    def mark_restored(self, claim: RestoreClaim, *, incident: bool = False) -> None:
        self.calls.append(("mark_restored", claim.backup_id))
        if self.scenario.updates_fail:
            raise RuntimeError("the lock could not be updated")

    def mark_outcome_unknown(self, claim: RestoreClaim, why: str) -> None:
        self.calls.append(("mark_outcome_unknown", claim.backup_id, why))
        if self.scenario.updates_fail:
            raise RuntimeError("the lock could not be updated")

    # -- the notifier
    def publish(self, subject: str, message: str, *, routing: Any, attributes: Any = None) -> bool:
        self.calls.append(("publish", subject, message, routing.attributes(), attributes))
        return True


def transition() -> AlarmTransition:
    event = load_event("alarm-eventbridge-alarm.json")
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = {"ServerId": str(SERVER)}
    [parsed] = parse_alarm_event(event)
    return parsed.model_copy(update={"state_changed_at": NOW - timedelta(minutes=1)})


def run(cls: Any, scenario: Scenario) -> tuple[Any, list[tuple[Any, ...]]]:
    """What became of the alarm (the outcome, or what was raised) and every call made to the world."""
    settings = RestoreOnAlarmSettings(
        vps_api_token_secret="secret",
        state_table_name="table",
        restore_mode=scenario.mode,
        restore_watch_window=scenario.window,
    )
    world = World(scenario)
    restorer = cls(
        settings,
        client=world,
        state=world,
        guard=world,
        notifier=world,
        alarm_tags=lambda _arn: {},
        clock=lambda: NOW,
        **({} if cls is LegacyAlarmRestorer else confirming_alarms()),
    )
    try:
        return restorer.handle(transition()).as_dict(), world.calls
    except Exception as exc:  # a hold that cannot be written in notify mode propagates, in both
        return ("raised", type(exc).__name__, str(exc)), world.calls


def window_changes_the_restore_point(scenario: Scenario) -> bool:
    """True when passing the watch window to the restore point (the change since the frozen copy) decides otherwise."""
    kwargs: dict[str, Any] = {
        "deployment": scenario.deployment,
        "alarm_at": transition().state_changed_at,
        "max_age": RestoreOnAlarmSettings(vps_api_token_secret="s", state_table_name="t").restore_max_backup_age,
    }
    with_window = choose_restore_point(SERVER, scenario.backups, watch_window=scenario.window, **kwargs)
    return with_window != choose_restore_point(SERVER, scenario.backups, **kwargs)


@settings(max_examples=600)
@given(scenarios())
def test_the_alarm_path_on_the_shared_steps_does_what_it_did(scenario: Scenario) -> None:
    assume(not window_changes_the_restore_point(scenario))
    new_outcome, new_calls = run(AlarmRestorer, scenario)
    old_outcome, old_calls = run(LegacyAlarmRestorer, scenario)
    assert new_outcome == old_outcome
    assert new_calls == old_calls
