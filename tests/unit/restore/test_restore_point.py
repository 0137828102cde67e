"""The restore point (docs/restore-on-alarm.md): the deploy's backup first, else the newest completed one before the
alarm, never too old, never another server's — examples, then properties over random fleets."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpsbackup.provider.models import Backup
from vpsbackup.records import DEPLOYMENT_BACKUP_LATEST, DeploymentRecord
from vpsbackup.restore.point import RestorePointDecision, choose_restore_point

SERVER = 12345
OTHER = 12346
ALARM_AT = datetime(2025, 1, 16, 16, 5, tzinfo=UTC)
MAX_AGE = timedelta(days=7)


def backup(
    id: int,
    created_at: datetime,
    *,
    status: str = "completed",
    server: int = SERVER,
    backup_type: str = "automatic",
) -> Backup:
    return Backup.model_validate(
        {
            "id": id,
            "server": {"id": server, "name": f"web-{server}"},
            "backup_type": backup_type,
            "status": status,
            "created_at": created_at.isoformat(),
        }
    )


def deployment(backup_id: int | None, received_at: datetime, *, server: int = SERVER) -> DeploymentRecord:
    return DeploymentRecord(deployment_id="gh-8812-1", server_id=server, received_at=received_at, backup_id=backup_id)


def choose(
    backups: list[Backup], dep: DeploymentRecord | None = None, max_age: timedelta = MAX_AGE
) -> RestorePointDecision:
    return choose_restore_point(SERVER, backups, deployment=dep, alarm_at=ALARM_AT, max_age=max_age)


# -- examples --------------------------------------------------------------------------------------


def test_the_deploys_backup_wins_over_a_newer_automatic_backup() -> None:
    # Given a pre-deploy backup at 15:45, and an automatic backup at 16:00, after the deploy
    pre_deploy = backup(499, ALARM_AT - timedelta(minutes=20), backup_type="manual")
    newer = backup(501, ALARM_AT - timedelta(minutes=5))
    # When the alarm fires at 16:05
    decision = choose([newer, pre_deploy], deployment(499, ALARM_AT - timedelta(minutes=21)))
    # Then the deploy's backup is chosen, and the reason names the deployment
    assert decision.backup == pre_deploy
    assert decision.basis == "deployment"
    assert "gh-8812-1" in decision.reason


def test_without_a_deployment_the_newest_completed_backup_before_the_alarm_is_chosen() -> None:
    # Given backups listed out of order, one in progress, one after the alarm
    old = backup(495, ALARM_AT - timedelta(days=2))
    newest = backup(499, ALARM_AT - timedelta(days=1))
    running = backup(502, ALARM_AT - timedelta(hours=1), status="in_progress")
    after = backup(503, ALARM_AT + timedelta(minutes=1))
    # When the restore point is chosen
    decision = choose([running, newest, after, old])
    # Then it is the newest completed backup created before the alarm
    assert decision.backup == newest
    assert decision.basis == "newest_completed"
    assert "no deployment" in decision.reason


@pytest.mark.parametrize(
    ("deploy_backup", "why"),
    [
        (backup(499, ALARM_AT - timedelta(minutes=20), status="in_progress"), "in_progress"),
        (backup(499, ALARM_AT - timedelta(minutes=20), status="failed"), "failed"),
        (backup(499, ALARM_AT + timedelta(minutes=1)), "not before the alarm"),
        (None, "not among"),
    ],
)
def test_an_unusable_deploy_backup_falls_back_to_the_newest_completed_one_before_the_deploy(
    deploy_backup: Backup | None, why: str
) -> None:
    # Given the deployment's backup is not usable, and a completed backup made before the deploy exists
    fallback = backup(480, ALARM_AT - timedelta(days=1))
    backups = [fallback] + ([deploy_backup] if deploy_backup else [])
    # When the restore point is chosen
    decision = choose(backups, deployment(499, ALARM_AT - timedelta(minutes=21)))
    # Then the fallback is chosen and the reason says why the deploy's backup was not
    assert decision.backup == fallback
    assert decision.basis == "before_deployment"
    assert why in decision.reason


def test_a_completed_deploy_backup_that_is_only_too_old_gives_way_to_the_newest_completed_one() -> None:
    # Given a deployment 8 days before the alarm whose backup completed, and last night's automatic
    # backup (made after that deployment)
    deploy_backup = backup(499, ALARM_AT - timedelta(days=8), backup_type="manual")
    last_night = backup(520, ALARM_AT - timedelta(hours=13))
    # When the alarm fires with the default RESTORE_MAX_BACKUP_AGE of 7 days
    decision = choose([deploy_backup, last_night], deployment(499, ALARM_AT - timedelta(days=8, minutes=1)))
    # Then last night's backup is chosen: a deploy backup that completed is no sign of a failed deploy,
    # so newer backups are not suspect, and the deploy's own backup is too old to restore from
    assert decision.backup == last_night
    assert decision.basis == "newest_completed"
    # And the reason says both: which backup and why, and why not the deploy's
    assert "backup 520" in decision.reason
    assert "newest completed backup" in decision.reason
    assert "backup 499 of deployment gh-8812-1" in decision.reason
    assert "RESTORE_MAX_BACKUP_AGE" in decision.reason
    assert "completed" in decision.reason.split("backup 499", 1)[1]


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (timedelta(0), "newest_completed"),  # no window: as without one
        (timedelta(hours=30), "none"),  # the alarm is inside the window (the boundary included)
        (timedelta(days=2), "none"),
        (timedelta(hours=30) - timedelta(microseconds=1), "newest_completed"),  # just outside it
    ],
)
def test_inside_the_watch_window_a_completed_but_too_old_deploy_backup_still_limits_the_choice(
    window: timedelta, expected: str
) -> None:
    # Given RESTORE_MAX_BACKUP_AGE 1 day, a deployment 30 hours before the alarm whose backup
    # completed (too old now), and a backup made 10 hours after that deployment
    received = ALARM_AT - timedelta(hours=30)
    deploy_backup = backup(499, received + timedelta(seconds=5), backup_type="manual")
    after_deploy = backup(520, received + timedelta(hours=10))
    # When the alarm fires with the watch window
    decision = choose_restore_point(
        SERVER,
        [deploy_backup, after_deploy],
        deployment=deployment(499, received),
        alarm_at=ALARM_AT,
        max_age=timedelta(days=1),
        watch_window=window,
    )
    # Then inside the window the deploy is the likely cause: no backup made after it is used, and
    # none before it is young enough; outside it (or with none) the newer backup is used
    assert decision.basis == expected
    assert decision.backup == (after_deploy if expected == "newest_completed" else None)
    if expected == "none":
        assert "RESTORE_WATCH_WINDOW" in decision.reason
        assert "backup 499 of deployment gh-8812-1" in decision.reason
        assert "backup 520" in decision.reason  # passed over, and said so


def test_a_deployment_without_a_recorded_backup_falls_back() -> None:
    fallback = backup(480, ALARM_AT - timedelta(days=1))
    decision = choose([fallback], deployment(None, ALARM_AT - timedelta(hours=1)))
    assert decision.backup == fallback
    assert "no recorded backup" in decision.reason


def test_a_deployment_received_after_the_alarm_is_not_used() -> None:
    # Given the deployment's request came in after the alarm (the caller should not pass it, but)
    deploy_backup = backup(499, ALARM_AT - timedelta(minutes=1))
    older = backup(480, ALARM_AT - timedelta(days=1))
    decision = choose([deploy_backup, older], deployment(499, ALARM_AT + timedelta(minutes=1)))
    # Then the rule "newest completed before the alarm" applies
    assert decision.basis == "newest_completed"
    assert decision.backup == deploy_backup


def test_another_servers_backup_is_never_chosen_even_if_the_api_returns_it() -> None:
    # Given the listing (wrongly filtered) contains a newer backup of another server, also named by the deploy
    foreign = backup(499, ALARM_AT - timedelta(minutes=10), server=OTHER)
    own = backup(480, ALARM_AT - timedelta(days=1))
    decision = choose([foreign, own], deployment(499, ALARM_AT - timedelta(minutes=11)))
    # Then only this server's backup can be chosen
    assert decision.backup == own


def test_a_deployment_record_of_another_server_is_ignored() -> None:
    own = backup(480, ALARM_AT - timedelta(days=1))
    decision = choose([own, backup(499, ALARM_AT - timedelta(hours=1))], deployment(499, ALARM_AT, server=OTHER))
    assert decision.basis == "newest_completed"


def test_nothing_within_the_max_age_means_no_restore_and_says_why() -> None:
    # Given only a completed backup older than 7 days, one failed and one of another server
    backups = [
        backup(400, ALARM_AT - timedelta(days=8)),
        backup(401, ALARM_AT - timedelta(hours=2), status="failed"),
        backup(402, ALARM_AT - timedelta(hours=1), server=OTHER),
    ]
    # When the restore point is chosen
    decision = choose(backups)
    # Then there is none, and the reason counts what was seen
    assert decision.backup is None
    assert decision.basis == "none"
    assert "1 completed but older than 7 days" in decision.reason
    assert "1 not completed" in decision.reason
    assert "1 of other servers ignored" in decision.reason


def test_no_backups_at_all() -> None:
    decision = choose([])
    assert decision.backup is None
    assert "0 backup(s)" in decision.reason


def test_the_max_age_boundary_is_inclusive() -> None:
    exactly = backup(1, ALARM_AT - MAX_AGE)
    assert choose([exactly]).backup == exactly
    assert choose([backup(2, ALARM_AT - MAX_AGE - timedelta(microseconds=1))]).backup is None


def test_a_backup_made_at_the_alarm_instant_is_not_before_it() -> None:
    assert choose([backup(1, ALARM_AT)]).backup is None


def test_ties_on_created_at_are_broken_by_id_not_by_listing_order() -> None:
    at = ALARM_AT - timedelta(hours=1)
    a, b = backup(10, at), backup(11, at)
    assert choose([a, b]).backup == b
    assert choose([b, a]).backup == b


def test_offsets_are_compared_as_instants() -> None:
    # 17:00+02:00 is 15:00Z: before the 16:05Z alarm
    tz_backup = Backup.model_validate(
        {
            "id": 7,
            "server": {"id": SERVER},
            "backup_type": "manual",
            "status": "completed",
            "created_at": "2025-01-16T17:00:00+02:00",
        }
    )
    assert choose([tz_backup]).backup == tz_backup


# -- properties ------------------------------------------------------------------------------------

STATUSES = st.sampled_from(["completed", "completed", "completed", "in_progress", "failed", "deleting"])
OFFSETS = st.integers(min_value=-10 * 24 * 60, max_value=60)  # minutes around the alarm


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[Backup], DeploymentRecord | None, timedelta]:
    n = draw(st.integers(min_value=0, max_value=12))
    backups = [
        backup(
            1000 + i,
            ALARM_AT + timedelta(minutes=draw(OFFSETS)),
            status=draw(STATUSES),
            server=draw(st.sampled_from([SERVER, SERVER, SERVER, OTHER])),
            backup_type=draw(st.sampled_from(["manual", "automatic"])),
        )
        for i in range(n)
    ]
    dep: DeploymentRecord | None = None
    if draw(st.booleans()):
        backup_id = draw(st.one_of(st.none(), st.sampled_from([b.id for b in backups] or [999])))
        dep = deployment(backup_id, ALARM_AT + timedelta(minutes=draw(st.integers(-3 * 24 * 60, 10))))
    max_age = timedelta(hours=draw(st.integers(min_value=1, max_value=9 * 24)))
    return backups, dep, max_age


@settings(max_examples=400, deadline=None)
@given(fleets())
def test_properties_of_the_chosen_backup(fleet: tuple[list[Backup], DeploymentRecord | None, timedelta]) -> None:
    backups, dep, max_age = fleet
    decision = choose(backups, dep, max_age)
    usable = [
        b for b in backups if b.server.id == SERVER and b.is_completed and ALARM_AT - max_age <= b.created_at < ALARM_AT
    ]
    assert decision.reason
    # A deployment of this server before the alarm whose backup is unusable: only backups made before it count
    governing = dep is not None and dep.server_id == SERVER and dep.received_at < ALARM_AT
    deploy_usable = (
        governing
        and dep is not None
        and any(b.id == dep.backup_id and b.created_at <= dep.received_at + DEPLOYMENT_BACKUP_LATEST for b in usable)
    )
    eligible = [b for b in usable if not governing or deploy_usable or (dep and b.created_at < dep.received_at)]
    if decision.backup is None:
        # None only when nothing is eligible
        assert eligible == []
        assert decision.basis == "none"
        return
    chosen = decision.backup
    # Chosen: completed, this server's, before the alarm, within the max age
    assert chosen.is_completed
    assert chosen.server.id == SERVER
    assert chosen.created_at < ALARM_AT
    assert chosen.created_at >= ALARM_AT - max_age
    assert chosen in usable
    if decision.basis == "deployment":
        assert dep is not None
        assert chosen.id == dep.backup_id
        assert dep.received_at < ALARM_AT
    elif decision.basis == "before_deployment":
        # The deploy's backup was unusable: the newest usable one made before that deployment
        assert dep is not None
        assert dep.received_at < ALARM_AT
        assert chosen.created_at < dep.received_at
        assert all(b.created_at <= chosen.created_at for b in usable if b.created_at < dep.received_at)
    else:
        # No usable backup is newer than the chosen one, unless the deploy's backup was chosen
        assert all(b.created_at <= chosen.created_at for b in usable)


@settings(max_examples=200, deadline=None)
@given(fleets(), st.randoms())
def test_the_decision_does_not_depend_on_the_listing_order(
    fleet: tuple[list[Backup], DeploymentRecord | None, timedelta], rnd: random.Random
) -> None:
    backups, dep, max_age = fleet
    shuffled = list(backups)
    rnd.shuffle(shuffled)
    assert choose(backups, dep, max_age).backup == choose(shuffled, dep, max_age).backup


@settings(max_examples=200, deadline=None)
@given(fleets())
def test_a_usable_deploy_backup_is_always_chosen(
    fleet: tuple[list[Backup], DeploymentRecord | None, timedelta],
) -> None:
    backups, dep, max_age = fleet
    if dep is None or dep.received_at >= ALARM_AT:
        return
    deploy_backup = next((b for b in backups if b.id == dep.backup_id and b.server.id == SERVER), None)
    if deploy_backup is None or not deploy_backup.is_completed:
        return
    if not (ALARM_AT - max_age <= deploy_backup.created_at < ALARM_AT):
        return
    if deploy_backup.created_at > dep.received_at + DEPLOYMENT_BACKUP_LATEST:
        return  # made too long after the request (a retry): test_restore_point_safety.py
    assert choose(backups, dep, max_age).backup == deploy_backup


def test_a_failed_deploy_backup_still_limits_the_choice_to_backups_before_the_deploy() -> None:
    # Given a deploy 2 hours before the alarm whose backup failed, a backup made after the deploy,
    # and one made the day before
    failed = backup(500, ALARM_AT - timedelta(hours=2), status="failed", backup_type="manual")
    after = backup(510, ALARM_AT - timedelta(hours=1))
    before = backup(490, ALARM_AT - timedelta(days=1))
    # When the alarm fires
    decision = choose([failed, after, before], deployment(500, ALARM_AT - timedelta(hours=2, minutes=1)))
    # Then only the backup made before the deployment's request counts
    assert decision.backup == before


def _named(backup_ids: list[int], reason: str) -> set[int]:
    return {b for b in backup_ids if re.search(rf"\bbackup {b}\b", reason)}


def _count(words: str, reason: str) -> list[int]:
    return [int(n) for n in re.findall(rf"\b(\d+) {words}", reason)]


@settings(max_examples=300, deadline=None)
@given(fleets())
def test_every_decision_says_which_backup_and_which_deployment_it_was_made_with(
    fleet: tuple[list[Backup], DeploymentRecord | None, timedelta],
) -> None:
    # Given any fleet, deployment and maximum age
    backups, dep, max_age = fleet
    # When the restore point is chosen
    decision = choose(backups, dep, max_age)
    # Then the decision carries the deployment it was given (the notification names it) and the server
    assert decision.deployment == dep
    assert decision.server_id == SERVER
    if decision.backup is None:
        return
    # And the reason names the chosen backup by id; a deployment's backup, that deployment
    assert _named([decision.backup.id], decision.reason) == {decision.backup.id}
    if decision.basis == "deployment":
        assert dep is not None
        assert dep.deployment_id in decision.reason
    if decision.basis == "before_deployment":
        # Rule 2: the deployment, and every usable backup made after its request (passed over), are named
        assert dep is not None
        assert dep.deployment_id in decision.reason
        passed_over = [
            b.id
            for b in backups
            if b.server.id == SERVER
            and b.is_completed
            and dep.received_at <= b.created_at < ALARM_AT
            and b.created_at >= ALARM_AT - max_age
        ]
        assert _named(passed_over, decision.reason) == set(passed_over)


@settings(max_examples=300, deadline=None)
@given(fleets())
def test_a_no_restore_reason_counts_every_listed_backup_once_by_why_it_was_left_out(
    fleet: tuple[list[Backup], DeploymentRecord | None, timedelta],
) -> None:
    # Given any fleet whose restore point is none
    backups, dep, max_age = fleet
    decision = choose(backups, dep, max_age)
    if decision.backup is not None:
        return
    own = [b for b in backups if b.server.id == SERVER]
    completed = [b for b in own if b.is_completed]
    not_completed = len(own) - len(completed)
    too_old = sum(1 for b in completed if b.created_at < ALARM_AT - max_age)
    after = sum(1 for b in completed if b.created_at >= ALARM_AT)
    foreign = len(backups) - len(own)
    # Then the reason says how many of the server's backups were listed and, for each kind left out,
    # how many (a kind with none is not mentioned)
    assert f"{len(own)} backup(s) of the server listed" in decision.reason
    assert _count("not completed", decision.reason) == ([not_completed] if not_completed else [])
    assert _count("completed but older than", decision.reason) == ([too_old] if too_old else [])
    assert _count("created after the alarm", decision.reason) == ([after] if after else [])
    assert _count("of other servers ignored", decision.reason) == ([foreign] if foreign else [])
    # And every listed backup of the server is accounted for once: counted in one kind, or (a usable
    # one made after a failed deploy's request) named as passed over
    usable = [b for b in completed if ALARM_AT - max_age <= b.created_at < ALARM_AT]
    assert _named([b.id for b in usable], decision.reason) == {b.id for b in usable}
    assert not_completed + too_old + after + len(usable) == len(own)
