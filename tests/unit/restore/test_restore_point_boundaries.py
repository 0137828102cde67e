"""The restore point's boundary instants, one named test each: what happens exactly at the alarm's
time, at ``RESTORE_MAX_BACKUP_AGE``, at ``DEPLOYMENT_BACKUP_LATEST``, at ``RESTORE_WATCH_WINDOW``
and at the deployment's own time (each comparison's direction, which a mutation run checks)."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.restore.test_restore_point import ALARM_AT, MAX_AGE, OTHER, SERVER, backup, choose, deployment
from vpsbackup.provider.models import Backup
from vpsbackup.records import DEPLOYMENT_BACKUP_LATEST, DeploymentRecord
from vpsbackup.restore.point import RestorePointDecision, choose_restore_point, human_time, watch_window

US = timedelta(microseconds=1)
WINDOW = timedelta(hours=2)


def choose_watched(backups: list[Backup], dep: DeploymentRecord) -> RestorePointDecision:
    """Inside RESTORE_WATCH_WINDOW (2 hours), RESTORE_MAX_BACKUP_AGE 1 hour."""
    return choose_restore_point(
        SERVER, backups, deployment=dep, alarm_at=ALARM_AT, max_age=timedelta(hours=1), watch_window=WINDOW
    )


def test_a_deployment_received_exactly_at_the_alarm_is_not_a_deployment_before_it() -> None:
    # Its backup, made a second later, is after the alarm; the newest backup before the alarm counts
    before = backup(1, ALARM_AT - timedelta(hours=3))
    deploy_backup = backup(2, ALARM_AT + timedelta(seconds=1), backup_type="manual")
    decision = choose([before, deploy_backup], deployment(2, ALARM_AT))
    assert (decision.backup, decision.basis) == (before, "newest_completed")
    assert "deployment" not in decision.reason
    # and the watch window agrees: no deployment before the alarm
    assert watch_window(SERVER, deployment(2, ALARM_AT), alarm_at=ALARM_AT, window=WINDOW).cause == "no_deployment"
    assert watch_window(SERVER, deployment(2, ALARM_AT - US), alarm_at=ALARM_AT, window=WINDOW).cause == (
        "inside_window"
    )


def test_a_deployment_received_a_moment_before_the_alarm_is_the_deployment_before_it() -> None:
    deploy_backup = backup(2, ALARM_AT - 2 * US, backup_type="manual")
    decision = choose([backup(1, ALARM_AT - timedelta(hours=3)), deploy_backup], deployment(2, ALARM_AT - 3 * US))
    assert (decision.backup, decision.basis) == (deploy_backup, "deployment")


def test_a_backup_made_exactly_at_the_alarm_is_not_before_it() -> None:
    at_alarm = backup(2, ALARM_AT)
    older = backup(1, ALARM_AT - US)
    assert choose([at_alarm, older]).backup == older
    assert choose([at_alarm]).backup is None


def test_a_backup_exactly_the_maximum_age_old_may_be_restored_and_one_older_may_not() -> None:
    assert choose([backup(1, ALARM_AT - MAX_AGE)]).backup is not None
    assert choose([backup(1, ALARM_AT - MAX_AGE - US)]).backup is None


def test_a_deploy_backup_made_exactly_deployment_backup_latest_after_the_request_is_the_deploy_s() -> None:
    received = ALARM_AT - timedelta(hours=1)
    in_time = backup(2, received + DEPLOYMENT_BACKUP_LATEST, backup_type="manual")
    assert choose([in_time], deployment(2, received)).basis == "deployment"
    late = backup(2, received + DEPLOYMENT_BACKUP_LATEST + US, backup_type="manual")
    before = backup(1, received - timedelta(minutes=1))
    decision = choose([late, before], deployment(2, received))
    assert (decision.backup, decision.basis) == (before, "before_deployment")


def test_a_backup_made_exactly_when_the_deployment_was_received_is_not_before_it() -> None:
    received = ALARM_AT - timedelta(hours=1)
    at_receipt = backup(3, received)
    before = backup(1, received - US)
    decision = choose([at_receipt, before], deployment(None, received))
    assert (decision.backup, decision.basis) == (before, "before_deployment")
    assert "backup 3" in decision.reason  # named as passed over
    assert choose([at_receipt], deployment(None, received)).backup is None


def test_an_alarm_exactly_at_the_end_of_the_watch_window_is_inside_it() -> None:
    # The deploy's backup completed and is too old (max age 1 hour); a backup made after the deploy
    received = ALARM_AT - WINDOW
    too_old = backup(2, received + timedelta(seconds=5), backup_type="manual")
    after = backup(3, ALARM_AT - timedelta(minutes=30))
    inside = choose_watched([too_old, after], deployment(2, received))
    assert inside.backup is None  # inside the window: only backups before the deploy count
    assert "RESTORE_WATCH_WINDOW" in inside.reason
    assert watch_window(SERVER, deployment(2, received), alarm_at=ALARM_AT, window=WINDOW).acts
    outside = choose_watched([too_old, after], deployment(2, received - US))
    assert outside.backup == after
    assert not watch_window(SERVER, deployment(2, received - US), alarm_at=ALARM_AT, window=WINDOW).acts


def test_a_zero_watch_window_watches_nothing() -> None:
    received = ALARM_AT - timedelta(hours=3)
    too_old = backup(2, received + timedelta(seconds=5), backup_type="manual")
    after = backup(3, ALARM_AT - timedelta(minutes=30))
    decision = choose_restore_point(
        SERVER, [too_old, after], deployment=deployment(2, received), alarm_at=ALARM_AT, max_age=timedelta(hours=1)
    )
    assert decision.backup == after
    assert watch_window(SERVER, deployment(2, received), alarm_at=ALARM_AT, window=timedelta(0)).cause == "no_window"


def test_reasons_show_times_in_utc_to_the_second() -> None:
    assert human_time(ALARM_AT) == "2025-01-16 16:05:00 UTC"
    chosen = backup(1, ALARM_AT - timedelta(hours=3))
    assert "created 2025-01-16 13:05:00 UTC" in choose([chosen]).reason


def test_a_no_restore_reason_counts_a_backup_at_the_alarm_as_after_it_and_names_one_at_the_maximum_age() -> None:
    # Given a deployment with no recorded backup, received before the oldest allowed time, and after it:
    # a backup made exactly RESTORE_MAX_BACKUP_AGE before the alarm (young enough, but after the
    # deployment), one made exactly at the alarm, one too old, one failed and one of another server
    received = ALARM_AT - MAX_AGE - timedelta(minutes=1)
    at_oldest = backup(11, ALARM_AT - MAX_AGE)
    at_alarm = backup(12, ALARM_AT)
    too_old = backup(13, ALARM_AT - MAX_AGE - timedelta(hours=2))
    failed = backup(14, ALARM_AT - timedelta(hours=1), status="failed")
    foreign = backup(15, ALARM_AT - timedelta(hours=1), server=OTHER)
    # When the restore point is chosen
    decision = choose([at_oldest, at_alarm, too_old, failed, foreign], deployment(None, received))
    # Then nothing is restored, the backup at the maximum age is named as passed over and not counted
    # as too old, and the one at the alarm is counted as made after it
    assert (decision.backup, decision.basis) == (None, "none")
    assert "not used, made after that deployment: backup 11;" in decision.reason
    assert decision.reason.endswith(
        "4 backup(s) of the server listed, 1 not completed, 1 completed but older than 7 days, "
        "1 created after the alarm, 1 of other servers ignored"
    )


def test_a_no_restore_reason_leaves_out_the_kinds_it_has_none_of() -> None:
    decision = choose([backup(13, ALARM_AT - MAX_AGE - US)])
    assert ": 1 backup(s) of the server listed, 1 completed but older than 7 days; no deployment" in decision.reason
    assert "after the alarm" not in decision.reason
