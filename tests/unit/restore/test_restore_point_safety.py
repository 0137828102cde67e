"""Two guardrails on the restore point, both pure:

- the watch window (``RESTORE_WATCH_WINDOW``): an alarm acts only within that time after the
  server's latest recorded deployment; ``0`` means no window;
- no fallback past a failed deploy backup: when the latest deployment before the alarm has no
  usable backup, only backups created before that deployment's request was received count;
- a late deploy backup (made by a retry, more than ``DEPLOYMENT_BACKUP_LATEST`` after the request)
  is not usable: it may hold the deploy's state.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpsbackup.provider.models import Backup
from vpsbackup.records import DEPLOYMENT_BACKUP_LATEST, DeploymentRecord
from vpsbackup.restore.point import RestorePointDecision, choose_restore_point, watch_window

SERVER = 12345
OTHER = 12346
ALARM_AT = datetime(2025, 1, 16, 16, 5, tzinfo=UTC)
DEPLOYED_AT = ALARM_AT - timedelta(minutes=30)
MAX_AGE = timedelta(days=7)


def backup(id: int, created_at: datetime, *, status: str = "completed", server: int = SERVER) -> Backup:
    return Backup.model_validate(
        {
            "id": id,
            "server": {"id": server, "name": f"web-{server}"},
            "backup_type": "manual",
            "status": status,
            "created_at": created_at.isoformat(),
        }
    )


def deployment(backup_id: int | None, received_at: datetime = DEPLOYED_AT, *, server: int = SERVER) -> DeploymentRecord:
    return DeploymentRecord(deployment_id="gh-8812-1", server_id=server, received_at=received_at, backup_id=backup_id)


def choose(backups: list[Backup], dep: DeploymentRecord | None, max_age: timedelta = MAX_AGE) -> RestorePointDecision:
    return choose_restore_point(SERVER, backups, deployment=dep, alarm_at=ALARM_AT, max_age=max_age)


# -- the watch window --------------------------------------------------------------------------------


@pytest.mark.parametrize("dep", [None, deployment(1, ALARM_AT - timedelta(days=30))])
def test_no_window_always_acts(dep: DeploymentRecord | None) -> None:
    decision = watch_window(SERVER, dep, alarm_at=ALARM_AT, window=timedelta(0))
    assert decision.acts
    assert decision.cause == "no_window"
    assert "RESTORE_WATCH_WINDOW" in decision.reason


@pytest.mark.parametrize(
    ("deployed_before_alarm", "acts", "cause"),
    [
        (timedelta(minutes=1), True, "inside_window"),
        (timedelta(hours=1, minutes=59), True, "inside_window"),
        (timedelta(hours=2), True, "inside_window"),  # the boundary is inside
        (timedelta(hours=2, seconds=1), False, "outside_window"),
        (timedelta(days=3), False, "outside_window"),
    ],
)
def test_the_window_counts_from_the_deployment_s_request(
    deployed_before_alarm: timedelta, acts: bool, cause: str
) -> None:
    # Given a 2h watch window and a deployment received some time before the alarm
    dep = deployment(1, ALARM_AT - deployed_before_alarm)
    # When the window is checked
    decision = watch_window(SERVER, dep, alarm_at=ALARM_AT, window=timedelta(hours=2))
    # Then the alarm acts only within 2h of the deployment, and the reason names the deployment
    assert (decision.acts, decision.cause) == (acts, cause)
    assert "gh-8812-1" in decision.reason
    assert "2h" in decision.reason


def test_no_recorded_deployment_means_outside_the_window() -> None:
    decision = watch_window(SERVER, None, alarm_at=ALARM_AT, window=timedelta(hours=2))
    assert not decision.acts
    assert decision.cause == "no_deployment"
    assert "no deployment" in decision.reason


def test_another_server_s_deployment_or_one_after_the_alarm_does_not_open_the_window() -> None:
    other = watch_window(SERVER, deployment(1, server=OTHER), alarm_at=ALARM_AT, window=timedelta(hours=2))
    later = watch_window(SERVER, deployment(1, ALARM_AT + timedelta(minutes=1)), alarm_at=ALARM_AT, window=timedelta(1))
    assert (other.acts, other.cause) == (False, "no_deployment")
    assert (later.acts, later.cause) == (False, "no_deployment")


@settings(max_examples=300, deadline=None)
@given(
    window_s=st.integers(min_value=0, max_value=7 * 86400),
    offset_s=st.one_of(st.none(), st.integers(min_value=-3600, max_value=8 * 86400)),
    same_server=st.booleans(),
)
def test_the_window_acts_exactly_when_it_should(window_s: int, offset_s: int | None, same_server: bool) -> None:
    window = timedelta(seconds=window_s)
    dep = (
        None
        if offset_s is None
        else deployment(1, ALARM_AT - timedelta(seconds=offset_s), server=SERVER if same_server else OTHER)
    )
    decision = watch_window(SERVER, dep, alarm_at=ALARM_AT, window=window)
    expected = window_s == 0 or (offset_s is not None and same_server and 0 < offset_s <= window_s)
    assert decision.acts is expected
    assert decision.reason


# -- no fallback past a failed deploy backup -----------------------------------------------------


@pytest.mark.parametrize(
    ("deploy_backup", "recorded", "why"),
    [
        (backup(500, DEPLOYED_AT + timedelta(seconds=5), status="failed"), 500, "its status is failed"),
        (backup(500, DEPLOYED_AT + timedelta(seconds=5), status="in_progress"), 500, "its status is in_progress"),
        (None, 500, "not among"),
        (None, None, "no recorded backup"),
    ],
)
def test_an_unusable_deploy_backup_falls_back_to_one_made_before_the_deploy(
    deploy_backup: Backup | None, recorded: int | None, why: str
) -> None:
    # Given a deploy whose backup is not usable, a backup made before it, and a newer one made after it
    before = backup(480, DEPLOYED_AT - timedelta(hours=6))
    after = backup(510, DEPLOYED_AT + timedelta(minutes=10))  # may hold the bad deploy's state
    backups = [after, before] + ([deploy_backup] if deploy_backup else [])
    # When the alarm fires after the deploy
    decision = choose(backups, deployment(recorded))
    # Then the older backup, made before the deploy, is chosen, never the newer one
    assert decision.backup == before
    assert decision.basis == "before_deployment"
    # And the reason says which deployment's backup was unusable, why, and why the older one
    assert "gh-8812-1" in decision.reason
    assert why in decision.reason
    assert "before that deployment" in decision.reason
    assert "510" in decision.reason  # the newer backup it passed over is named


def test_no_backup_before_the_failed_deploy_means_no_restore() -> None:
    # Given only backups made after the deploy (its own failed)
    failed = backup(500, DEPLOYED_AT + timedelta(seconds=5), status="failed")
    after = backup(510, DEPLOYED_AT + timedelta(minutes=10))
    # When the restore point is chosen
    decision = choose([failed, after], deployment(500))
    # Then nothing is restored, and the reason says why the newer backup does not count
    assert decision.backup is None
    assert decision.basis == "none"
    assert "gh-8812-1" in decision.reason
    assert "before" in decision.reason


def test_a_usable_deploy_backup_still_wins() -> None:
    deploy_backup = backup(500, DEPLOYED_AT + timedelta(seconds=5))
    decision = choose([backup(480, DEPLOYED_AT - timedelta(hours=6)), deploy_backup], deployment(500))
    assert decision.backup == deploy_backup
    assert decision.basis == "deployment"


def test_a_deploy_backup_that_completed_but_is_too_old_does_not_limit_the_choice() -> None:
    # Given a deploy 8 days ago whose backup completed (now older than RESTORE_MAX_BACKUP_AGE) and a
    # backup made after that deploy, last night
    deployed = ALARM_AT - timedelta(days=8)
    deploy_backup = backup(500, deployed + timedelta(seconds=5))
    last_night = backup(510, ALARM_AT - timedelta(hours=13))
    # When the alarm fires
    decision = choose([deploy_backup, last_night], deployment(500, deployed))
    # Then last night's backup is restored: the rule "only backups before the deploy" is for a deploy
    # backup that failed, not for one that is merely old
    assert decision.backup == last_night
    assert decision.basis == "newest_completed"


@pytest.mark.parametrize(
    ("made_after_request", "basis"),
    [
        (timedelta(seconds=5), "deployment"),  # the delivery that received the request made it
        (DEPLOYMENT_BACKUP_LATEST, "deployment"),  # the boundary is inside
        (DEPLOYMENT_BACKUP_LATEST + timedelta(microseconds=1), "before_deployment"),
        (timedelta(hours=3), "before_deployment"),  # a CI retry hours later
    ],
)
def test_a_deploy_backup_made_too_long_after_the_request_is_not_trusted(
    made_after_request: timedelta, basis: str
) -> None:
    # Given a deploy whose first backup attempt failed and whose retry made the recorded backup some
    # time after the request (the record keeps the first delivery's received_at), and a backup made
    # before the deploy
    deployed = ALARM_AT - timedelta(hours=4)
    retried = backup(500, deployed + made_after_request)
    before = backup(480, deployed - timedelta(hours=6))
    # When the alarm fires
    decision = choose([before, retried], deployment(500, deployed))
    # Then the retry's backup is the restore point only if the first delivery could have made it
    assert decision.basis == basis
    assert decision.backup == (retried if basis == "deployment" else before)
    if basis == "before_deployment":
        # And the reason says how late it was made, the limit, and why that matters
        assert "backup 500 of deployment gh-8812-1" in decision.reason
        assert "after that deployment's request" in decision.reason
        assert "16 minutes" in decision.reason
        assert "retry" in decision.reason


def test_the_max_age_still_applies_before_the_deploy() -> None:
    # Given the only backup before the failed deploy is older than RESTORE_MAX_BACKUP_AGE
    too_old = backup(400, ALARM_AT - timedelta(days=8))
    decision = choose([too_old, backup(500, DEPLOYED_AT, status="failed")], deployment(500))
    assert decision.backup is None


def test_without_a_deployment_the_newest_completed_backup_is_still_chosen() -> None:
    newest = backup(510, ALARM_AT - timedelta(minutes=10))
    decision = choose([backup(480, ALARM_AT - timedelta(days=1)), newest], None)
    assert decision.backup == newest
    assert decision.basis == "newest_completed"


# -- properties ------------------------------------------------------------------------------------

STATUSES = st.sampled_from(["completed", "completed", "completed", "in_progress", "failed"])


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[Backup], DeploymentRecord | None]:
    n = draw(st.integers(min_value=0, max_value=12))
    backups = [
        backup(
            1000 + i,
            ALARM_AT + timedelta(minutes=draw(st.integers(min_value=-9 * 24 * 60, max_value=30))),
            status=draw(STATUSES),
            server=draw(st.sampled_from([SERVER, SERVER, SERVER, OTHER])),
        )
        for i in range(n)
    ]
    dep = None
    if draw(st.booleans()):
        backup_id = draw(st.one_of(st.none(), st.sampled_from([b.id for b in backups] or [999])))
        dep = deployment(backup_id, ALARM_AT + timedelta(minutes=draw(st.integers(-3 * 24 * 60, 10))))
    return backups, dep


def usable(backups: list[Backup]) -> list[Backup]:
    return [
        b for b in backups if b.server.id == SERVER and b.is_completed and ALARM_AT - MAX_AGE <= b.created_at < ALARM_AT
    ]


@settings(max_examples=200, deadline=None)
@given(
    fleets(),
    st.integers(min_value=1, max_value=3 * 24 * 60),
    st.integers(min_value=7 * 24 * 60 + 1, max_value=9 * 24 * 60),
    st.integers(min_value=0, max_value=24 * 60),
)
def test_inside_a_watch_window_no_backup_made_after_the_deploy_is_chosen_past_its_too_old_backup(
    fleet: tuple[list[Backup], DeploymentRecord | None], deployed_ago: int, backup_age: int, slack: int
) -> None:
    # Given any fleet, a deployment `deployed_ago` minutes before the alarm whose backup completed
    # but is older than RESTORE_MAX_BACKUP_AGE, and an alarm inside the watch window after it
    backups, _ = fleet
    deploy_backup = backup(999, ALARM_AT - timedelta(minutes=backup_age))
    dep = deployment(999, ALARM_AT - timedelta(minutes=deployed_ago))
    window = timedelta(minutes=deployed_ago + slack)
    # When the restore point is chosen
    decision = choose_restore_point(
        SERVER, [*backups, deploy_backup], deployment=dep, alarm_at=ALARM_AT, max_age=MAX_AGE, watch_window=window
    )
    # Then it is no backup made at or after the deployment's request (the deploy is the likely cause)
    assert decision.backup is None or decision.backup.created_at < dep.received_at
    assert decision.basis in ("before_deployment", "none")


@settings(max_examples=500, deadline=None)
@given(fleets(), st.randoms(), st.sampled_from([timedelta(0), timedelta(0), timedelta(hours=2), timedelta(days=10)]))
def test_the_restore_point_rule_exactly(
    fleet: tuple[list[Backup], DeploymentRecord | None], rnd: random.Random, watch_window: timedelta
) -> None:
    backups, dep = fleet
    shuffled = list(backups)
    rnd.shuffle(shuffled)
    decision = choose_restore_point(
        SERVER, shuffled, deployment=dep, alarm_at=ALARM_AT, max_age=MAX_AGE, watch_window=watch_window
    )
    assert decision.reason
    candidates = usable(backups)
    governing = dep is not None and dep.server_id == SERVER and dep.received_at < ALARM_AT
    listed = next((b for b in backups if dep is not None and b.id == dep.backup_id and b.server.id == SERVER), None)
    # Made by a retry, too long after the request: not trusted as the state before the deploy
    late = listed is not None and dep is not None and listed.created_at > dep.received_at + DEPLOYMENT_BACKUP_LATEST
    if governing and listed in candidates and not late:
        # The deploy's usable backup wins, on rule 1
        assert (decision.backup, decision.basis) == (listed, "deployment")
        return
    only_too_old = listed is not None and listed.is_completed and listed.created_at < ALARM_AT - MAX_AGE and not late
    # Inside a watch window the deploy is the likely cause: even a backup that is only too old limits
    watched = dep is not None and watch_window > timedelta(0) and ALARM_AT - dep.received_at <= watch_window
    only_too_old = only_too_old and not watched
    limits = governing and not only_too_old
    if limits:
        # Its backup failed, is missing or unfinished: only backups created before the deployment's request count
        assert dep is not None
        candidates = [b for b in candidates if b.created_at < dep.received_at]
    expected = max(candidates, key=lambda b: (b.created_at, b.id), default=None)
    assert decision.backup == expected
    if expected is None:
        assert decision.basis == "none"
    else:
        assert decision.basis == ("before_deployment" if limits else "newest_completed")
