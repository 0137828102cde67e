"""The alarm path (``vpsbackup.restore.job.AlarmRestorer`` over the shared steps of
``vpsbackup.restore.execute``), stated as properties over random scenarios, each from
docs/restore-on-alarm.md and the two modules' docstrings.

A scenario draws the mode and the watch window, the server's backups and its deployment, a listing
that fails (unreachable, or not readable to its end), what the guard answers (granted, a duplicate,
the cooldown, the fleet limit, an open incident; people already told of it or not), a hold that
cannot be written, the re-read (the same, gone, changed, another server's, an API error, a crash),
every kind of answer to the restore call, lock updates that fail, and whether a restore opens an
incident. Fakes of the client, the table, the guard, the journal and the notifier record every call
made to them. Examples after the properties pin what one scenario kind must say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import confirming_alarms, load_event
from vpsbackup.provider import errors
from vpsbackup.provider.models import Backup, RestoreAccepted
from vpsbackup.records import DeploymentRecord, Hold
from vpsbackup.restore.alarm import AlarmTransition, parse_alarm_event
from vpsbackup.restore.guard import GuardRefusal, LockHolder, RestoreClaim
from vpsbackup.restore.job import AlarmRestorer, RestoreOutcome
from vpsbackup.restore.point import RestorePointDecision, choose_restore_point, watch_window
from vpsbackup.restore.settings import RestoreOnAlarmSettings

NOW = datetime(2025, 1, 16, 16, 0, tzinfo=UTC)
ALARM_AT = NOW - timedelta(minutes=1)
SERVER = 12345
LOCKED_UNTIL = NOW + timedelta(hours=6)

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
# The restore certainly did not start (docs: "refused (400, 404, 409, …), 429/503 …, or never sent"):
# the claim is released. Otherwise (no clear answer) it is kept.
NOT_APPLIED = {"409": "api_409", "429": "api_429", "503": "api_503", "unsent": "api_unreachable"}
MAY_HAVE_STARTED = {"500": "api_500", "lost": "outcome_unknown", "undecodable": "outcome_unknown"}

HOLDER = LockHolder(SERVER, "alarm#older", "vps-restore-web", 501, NOW - timedelta(hours=3), LOCKED_UNTIL, "restored")
REFUSALS = {
    "cooldown": GuardRefusal("cooldown", "server 12345 was restored at 13:00 UTC; one restore per server per 6 hours"),
    "told_cooldown": GuardRefusal("cooldown", "server 12345 was restored at 13:00 UTC (told)", holder=HOLDER),
    "incident_open": GuardRefusal("incident_open", "the incident of server 12345 is still open", holder=HOLDER),
    "rate_limit": GuardRefusal("rate_limit", "3 restore(s) already in the last hour across the fleet"),
    "duplicate": GuardRefusal("duplicate", "this alarm change was already handled"),
}
LOCK_UPDATES = ("release", "mark_restored", "mark_outcome_unknown")


@dataclass(frozen=True)
class Scenario:
    mode: str
    window: timedelta
    backups: tuple[Backup, ...]
    deployment: DeploymentRecord | None
    listing: str  # ok, unreachable, incomplete
    claim: str  # granted, or a REFUSALS key
    first_notice: bool  # what the guard says when asked whether people were told of a refusal's lock yet
    check: str | None  # what the guard's read-only check says (notify mode, the watch window)
    hold_fails: bool
    reread: str
    post: str
    updates_fail: bool
    follows_up: bool  # a restore's check can be scheduled (it opens an incident)


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
        listing=draw(st.sampled_from(["ok"] * 18 + ["unreachable", "incomplete"])),
        claim=draw(st.sampled_from(["granted"] * 7 + list(REFUSALS))),
        first_notice=draw(st.booleans()),
        check=draw(st.sampled_from([None, None, "cooldown", "rate_limit"])),
        hold_fails=draw(st.integers(0, 11)) == 0,
        reread=draw(st.sampled_from(["same"] * 8 + ["gone", "changed", "moved", "api_error", "crash"])),
        post=draw(st.sampled_from(["accepted"] * 3 + list(POST_ANSWERS))),
        updates_fail=draw(st.booleans()),
        follows_up=draw(st.booleans()),
    )


@dataclass
class World:
    """Fakes of the client, the table, the guard, the journal and the notifier, recording what was done to them."""

    scenario: Scenario
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    # -- the client
    def list_backups(self, *, server_id: int) -> list[Backup]:
        self.calls.append(("list", server_id))
        if self.scenario.listing == "unreachable":
            raise errors.ApiConnectionError("the API is unreachable")
        if self.scenario.listing == "incomplete":
            raise errors.ListingIncompleteError("listing", problem="page 2 repeats page 1", pages=2)
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
        self.calls.append(("hold", hold))
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
        return RestoreClaim(server_id, backup_id, transition_key, alarm_name, NOW, LOCKED_UNTIL, 0)

    def first_cooldown_notice(self, holder: LockHolder) -> bool:
        self.calls.append(("first_notice", "cooldown"))
        return self.scenario.first_notice

    def first_incident_notice(self, holder: LockHolder) -> bool:
        self.calls.append(("first_notice", "incident_open"))
        return self.scenario.first_notice

    def release(self, claim: RestoreClaim, why: str) -> None:
        self.calls.append(("release", claim.backup_id, why))
        if self.scenario.updates_fail:
            raise RuntimeError("the lock could not be updated")

    def mark_restored(self, claim: RestoreClaim, *, incident: bool = False) -> None:
        self.calls.append(("mark_restored", claim.backup_id, incident))
        if self.scenario.updates_fail:
            raise RuntimeError("the lock could not be updated")

    def mark_outcome_unknown(self, claim: RestoreClaim, why: str) -> None:
        self.calls.append(("mark_outcome_unknown", claim.backup_id, why))
        if self.scenario.updates_fail:
            raise RuntimeError("the lock could not be updated")

    # -- the journal
    def record(self, act: str, **entry: Any) -> None:
        self.calls.append(("journal", act, entry))

    # -- the notifier
    def publish(self, subject: str, message: str, *, routing: Any, attributes: Any = None) -> bool:
        self.calls.append(("publish", subject, message, routing.attributes(), attributes))
        return True

    # -- what was done
    def named(self, *kinds: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] in kinds]

    def index(self, kind: str) -> int:
        return next(i for i, c in enumerate(self.calls) if c[0] == kind)


def transition() -> AlarmTransition:
    event = load_event("alarm-eventbridge-alarm.json")
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = {"ServerId": str(SERVER)}
    [parsed] = parse_alarm_event(event)
    return parsed.model_copy(update={"state_changed_at": ALARM_AT})


def settings_of(scenario: Scenario) -> RestoreOnAlarmSettings:
    return RestoreOnAlarmSettings(
        vps_api_token_secret="secret",
        state_table_name="table",
        restore_mode=scenario.mode,
        restore_watch_window=scenario.window,
    )


@dataclass(frozen=True)
class Run:
    scenario: Scenario
    world: World
    outcome: RestoreOutcome | None  # None: it raised
    raised: Exception | None


def run(scenario: Scenario) -> Run:
    world = World(scenario)
    restorer = AlarmRestorer(
        settings_of(scenario),
        client=world,  # type: ignore[arg-type]
        state=world,  # type: ignore[arg-type]
        guard=world,  # type: ignore[arg-type]
        journal=world,  # type: ignore[arg-type]
        notifier=world,  # type: ignore[arg-type]
        alarm_tags=lambda _arn: {},
        clock=lambda: NOW,
        schedule_check=(lambda _claim: "The check runs at 16:30 UTC.") if scenario.follows_up else None,
        **confirming_alarms(SERVER),
    )
    try:
        return Run(scenario, world, restorer.handle(transition()), None)
    except Exception as exc:
        return Run(scenario, world, None, exc)


# -- what the documentation says the run must come to (from the pure decisions) -----------------------


def restore_point(scenario: Scenario) -> RestorePointDecision:
    config = settings_of(scenario)
    return choose_restore_point(
        SERVER,
        scenario.backups,
        deployment=scenario.deployment,
        alarm_at=ALARM_AT,
        max_age=config.restore_max_backup_age,
        watch_window=config.restore_watch_window,
    )


def only_plans(scenario: Scenario) -> bool:
    """Notify mode, or an alarm outside the watch window: the plan is published, nothing claimed."""
    watch = watch_window(SERVER, scenario.deployment, alarm_at=ALARM_AT, window=scenario.window)
    return scenario.mode == "notify" or not watch.acts


def claims(scenario: Scenario) -> bool:
    """The guard is asked for a claim: the listing was read, a backup chosen, and the restore may act."""
    return scenario.listing == "ok" and restore_point(scenario).backup is not None and not only_plans(scenario)


def restores(scenario: Scenario) -> bool:
    """The restore call is made: a granted claim, the hold written, and the re-read shows the same
    backup still completed and of the same server."""
    return claims(scenario) and scenario.claim == "granted" and not scenario.hold_fails and scenario.reread == "same"


# -- properties ---------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


@PROPERTY_SETTINGS
@given(scenarios())
def test_the_restore_call_is_made_at_most_once_and_only_after_a_claim_a_hold_and_a_same_reread(
    scenario: Scenario,
) -> None:
    result = run(scenario)
    posts = result.world.named("POST restore")
    assert len(posts) == (1 if restores(scenario) else 0)
    if not posts:
        return
    # Of the chosen backup, for the alarm's server; after the claim of that backup, its hold and the re-read
    chosen = restore_point(scenario).backup
    assert chosen is not None
    assert posts[0] == ("POST restore", SERVER, chosen.id)
    world = result.world
    assert world.named("claim")[0][1:3] == (SERVER, chosen.id)
    assert world.index("claim") < world.index("hold") < world.index("reread") < world.index("POST restore")


@PROPERTY_SETTINGS
@given(scenarios())
def test_every_alarm_ends_in_one_outcome_and_people_are_told_of_it_once(scenario: Scenario) -> None:
    result = run(scenario)
    published = result.world.named("publish")
    if result.outcome is None:
        # Only a plan whose hold cannot be written raises (the invocation fails and Lambda retries it;
        # nothing was claimed, nobody told yet)
        assert only_plans(scenario) and scenario.hold_fails and claims(scenario) is False
        assert published == []
        assert result.world.named("claim", "POST restore") == []
        return
    outcome = result.outcome
    assert outcome.outcome in ("restored", "planned", "skipped", "failed", "duplicate")
    assert (outcome.alarm_name, outcome.server_id) == (transition().alarm_name, SERVER)
    # A duplicate of an alarm change already handled is only logged; a refusal people were already told
    # of (the cooldown, an open incident) is journaled, not told again; everything else is told, once
    quiet = outcome.outcome == "duplicate" or (
        scenario.claim in ("told_cooldown", "incident_open") and not scenario.first_notice and claims(scenario)
    )
    assert len(published) == (0 if quiet else 1)
    assert outcome.notified is (not quiet)
    if quiet:
        return
    _, subject, body, attributes, extra = published[0]
    severity = (
        "error" if outcome.outcome == "failed" or outcome.cause in ("server_unresolved", "no_backup") else "warning"
    )
    assert attributes == {
        "job": "restore-on-alarm",
        "outcome": outcome.outcome,
        "severity": severity,
        "server_id": str(SERVER),
    }
    assert extra == {"alarm": transition().alarm_name}
    assert str(SERVER) in subject
    if outcome.backup_id is not None:
        assert f"backup {outcome.backup_id}" in body


@PROPERTY_SETTINGS
@given(scenarios())
def test_the_outcome_and_its_cause_are_the_documented_ones_for_each_path(scenario: Scenario) -> None:
    result = run(scenario)
    outcome = result.outcome
    if outcome is None:
        return  # the plan's hold: test_every_alarm_ends_in_one_outcome_…
    decision = restore_point(scenario)
    got = (outcome.outcome, outcome.cause)
    if scenario.listing != "ok":
        assert got == ("failed", {"unreachable": "list_failed", "incomplete": "list_incomplete"}[scenario.listing])
        assert outcome.backup_id is None
        return
    if decision.backup is None:
        assert got == ("skipped", "no_backup")
        assert outcome.reason == decision.reason
        return
    assert outcome.backup_id == decision.backup.id
    if only_plans(scenario):
        watch = watch_window(SERVER, scenario.deployment, alarm_at=ALARM_AT, window=scenario.window)
        assert got == ("planned", decision.basis if scenario.mode == "notify" else watch.cause)
        return
    if scenario.claim != "granted":
        kind = REFUSALS[scenario.claim].kind
        assert got == ("duplicate" if kind == "duplicate" else "skipped", kind)
        return
    if scenario.hold_fails or scenario.reread == "crash":
        assert got == ("failed", "internal_error")
    elif scenario.reread == "api_error":
        assert got == ("failed", "reread_failed")
    elif scenario.reread != "same":
        assert got == ("skipped", "backup_changed")
    elif scenario.post == "accepted":
        # A lock update that fails after the restore does not change what happened
        assert got == ("restored", decision.basis)
    else:
        assert got == ("failed", {**NOT_APPLIED, **MAY_HAVE_STARTED}[scenario.post])


@PROPERTY_SETTINGS
@given(scenarios())
def test_a_claim_is_released_exactly_when_the_restore_certainly_did_not_happen(scenario: Scenario) -> None:
    world = run(scenario).world
    updates = world.named(*LOCK_UPDATES)
    if not (claims(scenario) and scenario.claim == "granted"):
        # No granted claim: nothing to release or mark
        assert updates == []
        return
    # One lock update per granted claim, after the last step it reports on
    assert len(updates) == 1
    [(update, backup_id, *_)] = updates
    assert backup_id == world.named("claim")[0][2]
    if not restores(scenario) or scenario.post in NOT_APPLIED:
        assert update == "release"
    elif scenario.post in MAY_HAVE_STARTED:
        # The restore may be running: the claim is kept, marked so
        assert update == "mark_outcome_unknown"
    else:
        # Accepted: the lock is kept (the cooldown runs), with an incident when a check follows up
        assert updates[0] == ("mark_restored", backup_id, scenario.follows_up)


@PROPERTY_SETTINGS
@given(scenarios())
def test_a_plan_never_claims_nor_restores_but_holds_the_proposed_backup(scenario: Scenario) -> None:
    result = run(scenario)
    world = result.world
    if not (only_plans(scenario) and scenario.listing == "ok"):
        assert world.named("check") == []  # the read-only check is the plan's
        return
    decision = restore_point(scenario)
    assert world.named("claim", "POST restore", "reread", *LOCK_UPDATES) == []
    if decision.backup is None:
        assert world.named("hold", "check") == []
        return
    # What the guardrails would say now is asked, without claiming; the proposed backup is held
    assert world.named("check") == [("check", SERVER, transition().key)]
    [(_, hold)] = world.named("hold")
    assert (hold.backup_id, hold.server_id, hold.kind) == (decision.backup.id, SERVER, "restore")
    if result.outcome is not None:
        would = "would allow" if scenario.check is None else "would refuse"
        assert would in result.outcome.extra["guard"]
        [(_, subject, *_)] = world.named("publish")
        assert ("notify mode" if scenario.mode == "notify" else "outside the watch window") in subject


@PROPERTY_SETTINGS
@given(scenarios())
def test_a_hold_is_of_the_chosen_backup_for_restore_hold_and_only_where_a_restore_is_planned_or_claimed(
    scenario: Scenario,
) -> None:
    world = run(scenario).world
    holds = [c[1] for c in world.named("hold")]
    planned_or_granted = (
        scenario.listing == "ok"
        and restore_point(scenario).backup is not None
        and (only_plans(scenario) or scenario.claim == "granted")
    )
    assert len(holds) == (1 if planned_or_granted else 0)
    for hold in holds:
        chosen = restore_point(scenario).backup
        assert chosen is not None
        assert (hold.backup_id, hold.server_id, hold.kind) == (chosen.id, SERVER, "restore")
        assert (hold.placed_at, hold.until) == (NOW, NOW + settings_of(scenario).restore_hold)
        assert transition().alarm_name in hold.reason


def attempt_kind(scenario: Scenario) -> str:
    """What became of a granted claim, as the journal names it."""
    if scenario.hold_fails or scenario.reread == "crash":
        return "internal_error"
    if scenario.reread == "api_error":
        return "reread_failed"
    if scenario.reread != "same":
        return "backup_changed"
    if scenario.post == "accepted":
        return "restored"
    return "not_applied" if scenario.post in NOT_APPLIED else "outcome_unknown"


@PROPERTY_SETTINGS
@given(scenarios())
def test_every_restore_attempt_and_every_refusal_is_journaled_once(scenario: Scenario) -> None:
    result = run(scenario)
    entries = [(act, entry["outcome"]) for _, act, entry in result.world.named("journal")]
    outcome = result.outcome
    if claims(scenario) and scenario.claim == "granted":
        # What became of the claim: a backup that changed is a refusal; anything else a request
        kind = attempt_kind(scenario)
        assert entries == [("restore_refused" if kind == "backup_changed" else "restore_requested", kind)]
        [(_, _, entry)] = result.world.named("journal")
        assert (entry["server_id"], entry["backup_id"]) == (SERVER, outcome.backup_id if outcome else None)
    elif claims(scenario):
        # The guard's refusal, every time (even when people are not told again); a duplicate is not a new one
        kind = REFUSALS[scenario.claim].kind
        assert entries == ([] if kind == "duplicate" else [("restore_refused", kind)])
    elif outcome is not None and outcome.cause in ("list_incomplete", "no_backup"):
        assert entries == [("restore_refused", outcome.cause)]
    else:
        # A plan, a listing that failed: nothing was refused or requested
        assert entries == []


# -- examples: what one kind of scenario must say --------------------------------------------------------

BACKUP = Backup.model_validate(
    {
        "id": 502,
        "server": {"id": SERVER, "name": "web-server-01"},
        "backup_type": "manual",
        "status": "completed",
        "created_at": NOW - timedelta(hours=2),
        "description": "Release 2.3",
    }
)


def example(**changes: Any) -> Scenario:
    base = Scenario(
        mode="execute",
        window=timedelta(0),
        backups=(BACKUP,),
        deployment=None,
        listing="ok",
        claim="granted",
        first_notice=True,
        check=None,
        hold_fails=False,
        reread="same",
        post="accepted",
        updates_fail=False,
        follows_up=True,
    )
    return replace(base, **changes)


def told(result: Run) -> tuple[str, str]:
    [(_, subject, body, *_)] = result.world.named("publish")
    return subject, body


def test_an_accepted_restore_tells_the_server_the_backup_its_time_the_alarm_why_and_the_guardrails() -> None:
    result = run(example())
    subject, body = told(result)
    assert subject == f"Restored server {SERVER} (web-server-01) from backup 502 after alarm {transition().alarm_name}"
    assert "created 2025-01-16 14:00:00 UTC" in body
    assert "Why this backup: backup 502" in body
    assert "no other restore of server 12345 before 2025-01-16 22:00:00 UTC" in body
    assert "kept from pruning until 2025-01-23 16:00:00 UTC" in body
    assert "The check runs at 16:30 UTC." in body
    # And the lock is kept, marked restored, with the incident the check follows up
    assert result.world.named(*LOCK_UPDATES) == [("mark_restored", 502, True)]


def test_an_accepted_restore_without_a_follow_up_opens_no_incident() -> None:
    result = run(example(follows_up=False))
    assert result.world.named(*LOCK_UPDATES) == [("mark_restored", 502, False)]


@pytest.mark.parametrize(
    ("post", "said"),
    [
        ("409", "HTTP 409: a restore is already running"),
        ("429", "HTTP 429"),
        ("503", "HTTP 503"),
        ("unsent", "refused"),
    ],
)
def test_a_restore_the_api_did_not_start_says_what_the_api_said_and_that_a_new_alarm_may_try(
    post: str, said: str
) -> None:
    result = run(example(post=post))
    subject, body = told(result)
    assert subject.startswith(f"Restore FAILED for server {SERVER}: ")
    assert said in body
    assert "did not start" in body
    assert "MAY have started" not in body
    # Sent once, never again for this alarm; the claim released
    assert len(result.world.named("POST restore")) == 1
    assert [update for update, *_ in result.world.named(*LOCK_UPDATES)] == ["release"]


@pytest.mark.parametrize("post", ["500", "lost", "undecodable"])
def test_a_restore_without_a_clear_answer_may_have_started_and_the_server_stays_locked(post: str) -> None:
    result = run(example(post=post, updates_fail=True))
    _, body = told(result)
    assert "The restore MAY have started" in body
    assert "locked for restores until 2025-01-16 22:00:00 UTC" in body
    # Not released even when marking the lock fails: it stays claimed, which blocks too
    assert result.world.named("release") == []


@pytest.mark.parametrize(
    ("reread", "now_is"), [("gone", "is gone"), ("changed", "deleting"), ("moved", "belongs to another server")]
)
def test_a_backup_that_changed_before_the_call_is_not_restored_and_people_are_told_how(
    reread: str, now_is: str
) -> None:
    result = run(example(reread=reread))
    subject, body = told(result)
    assert subject == f"Restore skipped for server {SERVER}: backup 502 no longer usable"
    assert now_is in body
    assert result.world.named("POST restore") == []
    assert [update for update, *_ in result.world.named(*LOCK_UPDATES)] == ["release"]


def test_an_alarm_outside_the_watch_window_publishes_the_plan_with_the_window_s_reason() -> None:
    # Given a deployment whose backup is 502, received 2 hours 4 minutes before the alarm, and a 2 hour window
    received = NOW - timedelta(hours=2, minutes=5)
    deployment = DeploymentRecord(deployment_id="gh-1-1", server_id=SERVER, received_at=received, backup_id=502)
    result = run(example(window=timedelta(hours=2), deployment=deployment, claim="cooldown"))
    subject, body = told(result)
    assert subject == f"Restore plan for server {SERVER}: backup 502 (outside the watch window, nothing done)"
    assert "RESTORE_WATCH_WINDOW (2h)" in body
    assert result.outcome is not None
    assert (result.outcome.outcome, result.outcome.cause) == ("planned", "outside_window")
    assert result.world.named("claim", "POST restore") == []


def test_a_cooldown_people_were_told_of_is_journaled_again_and_not_told() -> None:
    result = run(example(claim="told_cooldown", first_notice=False))
    assert result.outcome is not None
    assert (result.outcome.outcome, result.outcome.cause, result.outcome.notified) == ("skipped", "cooldown", False)
    assert result.world.named("first_notice") == [("first_notice", "cooldown")]
    assert [c[1] for c in result.world.named("journal")] == ["restore_refused"]
    told_now = run(example(claim="told_cooldown", first_notice=True))
    assert told(told_now)[0] == f"Restore skipped for server {SERVER}: cooldown"
