"""FROZEN REFERENCE, not product code: ``choose_restore_point`` exactly as it was before it was split into named steps.

``test_restore_point_equivalence.py`` checks that :func:`vpsbackup.restore.point.choose_restore_point`
decides exactly as this copy does (backup, basis, reason) over random inputs. Do not edit it to make
that test pass: a difference is a behaviour change in the product code. One deliberate change is
carried here: durations in the reasons are written for people (``describe_duration``: "7 days", not
"1w"); the decisions are untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from vpsbackup.durations import describe_duration
from vpsbackup.provider.models import Backup
from vpsbackup.records import DeploymentRecord
from vpsbackup.restore.point import RestorePointDecision, human_time


def _newest_first_key(backup: Backup) -> tuple[datetime, int]:
    return (backup.created_at, backup.id)


def choose_restore_point(
    server_id: int,
    backups: Iterable[Backup],
    *,
    deployment: DeploymentRecord | None,
    alarm_at: datetime,
    max_age: timedelta,
) -> RestorePointDecision:
    """The restore point for ``server_id`` given its backups (any type, any order, possibly polluted
    with other servers' backups), its latest deployment before the alarm (or None), the alarm's
    state-change time and ``RESTORE_MAX_BACKUP_AGE``."""
    oldest_allowed = alarm_at - max_age
    listed = list(backups)
    own = [b for b in listed if b.server.id == server_id]
    foreign = len(listed) - len(own)

    def usable_why_not(backup: Backup) -> str | None:
        if not backup.is_completed:
            return f"its status is {backup.status}"
        if backup.created_at >= alarm_at:
            return f"it was created at {human_time(backup.created_at)}, not before the alarm"
        if backup.created_at < oldest_allowed:
            return (
                f"it was created at {human_time(backup.created_at)}, more than "
                f"{describe_duration(max_age)} (RESTORE_MAX_BACKUP_AGE) before the alarm"
            )
        return None

    deploy_note = ""
    if deployment is not None and deployment.server_id == server_id and deployment.received_at < alarm_at:
        label = f"deployment {deployment.deployment_id} (request received {human_time(deployment.received_at)})"
        if deployment.backup_id is None:
            deploy_note = f"{label} has no recorded backup"
        else:
            deploy_backup = next((b for b in own if b.id == deployment.backup_id), None)
            if deploy_backup is None:
                deploy_note = f"backup {deployment.backup_id} of {label} is not among server {server_id}'s backups"
            elif (why := usable_why_not(deploy_backup)) is not None:
                deploy_note = f"backup {deploy_backup.id} of {label} is not usable: {why}"
            else:
                return RestorePointDecision(
                    server_id=server_id,
                    backup=deploy_backup,
                    basis="deployment",
                    reason=(
                        f"backup {deploy_backup.id} (created {human_time(deploy_backup.created_at)}) was made for "
                        f"{label}, the server's last recorded deployment before the alarm: it holds the state "
                        "from before that deploy"
                    ),
                    deployment=deployment,
                )
    elif deployment is None:
        deploy_note = "no deployment of this server is recorded before the alarm"

    candidates = [b for b in own if usable_why_not(b) is None]
    if candidates:
        chosen = max(candidates, key=_newest_first_key)
        reason = (
            f"backup {chosen.id} ({chosen.backup_type}, created {human_time(chosen.created_at)}) is the newest "
            f"completed backup of server {server_id} made before the alarm"
        )
        return RestorePointDecision(
            server_id=server_id,
            backup=chosen,
            basis="newest_completed",
            reason=reason + (f"; {deploy_note}" if deploy_note else ""),
            deployment=deployment,
        )

    completed = [b for b in own if b.is_completed]
    too_old = sum(1 for b in completed if b.created_at < oldest_allowed)
    after = sum(1 for b in completed if b.created_at >= alarm_at)
    not_completed = len(own) - len(completed)
    counts = [f"{len(own)} backup(s) of the server listed"]
    if not_completed:
        counts.append(f"{not_completed} not completed")
    if too_old:
        counts.append(f"{too_old} completed but older than {describe_duration(max_age)}")
    if after:
        counts.append(f"{after} created after the alarm")
    if foreign:
        counts.append(f"{foreign} of other servers ignored")
    reason = (
        f"no completed backup of server {server_id} was created between {human_time(oldest_allowed)} and the "
        f"alarm ({human_time(alarm_at)}): " + ", ".join(counts)
    )
    return RestorePointDecision(
        server_id=server_id,
        backup=None,
        basis="none",
        reason=reason + (f"; {deploy_note}" if deploy_note else ""),
        deployment=deployment,
    )
