"""Which backup to restore a server from when an alarm fires (docs/restore-on-alarm.md): a pure decision.

1. The backup made for the server's most recent recorded deployment before the alarm, if that
   deployment's request was received before the alarm's state-change time and its backup is
   ``completed``, of this server, created before the alarm, not older than the maximum age, and
   created at most ``DEPLOYMENT_BACKUP_LATEST`` after the request was received (later, only a
   retry can have made it, possibly after the deploy went out). It wins even when newer backups
   exist: those were taken after the deploy, of the state that probably raised the alarm.
2. If that deployment precedes the alarm but its backup is not usable (failed, missing, still in
   progress, not before the alarm, made too long after the request, no backup recorded): the
   newest ``completed`` backup created **before that deployment's request was received**, never
   one made after it, which may hold the bad deploy's state.
3. With no deployment recorded before the alarm, or when the deployment's backup completed and is
   only older than the maximum age (a deploy backup that completed is no sign of a failed deploy,
   so later backups are not suspect) and the alarm is not within ``RESTORE_WATCH_WINDOW`` after
   that deployment (inside a window the deploy is the likely cause: rule 2): the newest
   ``completed`` backup (manual or automatic) of the server created before the alarm's
   state-change time.
4. Otherwise none: no restore.

Rules 2 and 3 never take a backup older than ``max_age`` counted back from the alarm's time.

A backup of another server is never chosen, whatever the API's filter returned; the API's order is
never trusted (newest is by ``created_at``, ties broken by id). Every decision carries its reason
in words a person on call understands.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from vpsbackup.durations import describe_duration, format_duration
from vpsbackup.provider.models import Backup
from vpsbackup.records import DEPLOYMENT_BACKUP_LATEST, DeploymentRecord

Basis = Literal["deployment", "before_deployment", "newest_completed", "none"]


def human_time(moment: datetime) -> str:
    """``2025-01-16 15:45:00 UTC``: what notifications and reasons show."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class RestorePointDecision:
    """The chosen backup (None: do not restore) and why, in words."""

    server_id: int
    backup: Backup | None
    basis: Basis
    reason: str
    deployment: DeploymentRecord | None = None


def _newest_first_key(backup: Backup) -> tuple[datetime, int]:
    return (backup.created_at, backup.id)


def choose_restore_point(
    server_id: int,
    backups: Iterable[Backup],
    *,
    deployment: DeploymentRecord | None,
    alarm_at: datetime,
    max_age: timedelta,
    watch_window: timedelta = timedelta(0),
) -> RestorePointDecision:
    """The restore point for ``server_id`` given its backups (any type, any order, possibly polluted
    with other servers' backups), its latest deployment before the alarm (or None), the alarm's
    state-change time, ``RESTORE_MAX_BACKUP_AGE`` and ``RESTORE_WATCH_WINDOW`` (0: none)."""
    window = _Window(alarm_at=alarm_at, max_age=max_age, watch_window=watch_window)
    listed = list(backups)
    own = [b for b in listed if b.server.id == server_id]
    foreign = len(listed) - len(own)

    by_deployment = _deployment_backup(server_id, own, deployment, window)
    if isinstance(by_deployment, RestorePointDecision):
        return by_deployment
    deploy_note = by_deployment.text

    candidates = [b for b in own if window.why_not_usable(b) is None]
    if deployment is not None and by_deployment.limits:
        return _before_failed_deployment(server_id, own, candidates, deployment, deploy_note, foreign, window)
    if candidates:
        chosen = max(candidates, key=_newest_first_key)
        reason = (
            f"backup {chosen.id} ({chosen.backup_type}, created {human_time(chosen.created_at)}) is the newest "
            f"completed backup of server {server_id} made before the alarm"
        )
        basis: Basis = "newest_completed"
    else:
        chosen, reason, basis = None, _nothing_usable_reason(server_id, own, foreign, window), "none"
    return RestorePointDecision(
        server_id=server_id,
        backup=chosen,
        basis=basis,
        reason=reason + (f"; {deploy_note}" if deploy_note else ""),
        deployment=deployment,
    )


@dataclass(frozen=True)
class _Window:
    """When a restore point may have been made: before the alarm, not more than ``max_age`` before it."""

    alarm_at: datetime
    max_age: timedelta
    watch_window: timedelta = timedelta(0)

    @property
    def oldest_allowed(self) -> datetime:
        return self.alarm_at - self.max_age

    def watched(self, deployment: DeploymentRecord) -> bool:
        """True when a watch window is set and the alarm is within it after ``deployment``'s request."""
        return self.watch_window > timedelta(0) and self.alarm_at - deployment.received_at <= self.watch_window

    def only_too_old(self, backup: Backup) -> bool:
        """True when ``backup`` completed before the alarm and its one fault is its age."""
        return backup.is_completed and backup.created_at < self.oldest_allowed

    def why_not_usable(self, backup: Backup) -> str | None:
        """Why ``backup`` cannot be restored from, in words; None if it can."""
        if not backup.is_completed:
            return f"its status is {backup.status}"
        if backup.created_at >= self.alarm_at:
            return f"it was created at {human_time(backup.created_at)}, not before the alarm"
        if backup.created_at < self.oldest_allowed:
            return (
                f"it was created at {human_time(backup.created_at)}, more than "
                f"{describe_duration(self.max_age)} (RESTORE_MAX_BACKUP_AGE) before the alarm"
            )
        return None


@dataclass(frozen=True)
class _DeployNote:
    """Why the deployment's backup is not the restore point ("": nothing to say), and whether that
    limits the choice to backups made before the deployment (rule 2) or leaves rule 3 to apply."""

    text: str
    limits: bool = False


def _before_failed_deployment(
    server_id: int,
    own: list[Backup],
    candidates: list[Backup],
    deployment: DeploymentRecord,
    deploy_note: str,
    foreign: int,
    window: _Window,
) -> RestorePointDecision:
    """Rule 2: the deployment's backup is unusable (``deploy_note`` says why); only backups created
    before its request was received count, a newer one may hold the bad deploy's state."""
    before = [b for b in candidates if b.created_at < deployment.received_at]
    passed_over = sorted((b for b in candidates if b.created_at >= deployment.received_at), key=_newest_first_key)
    after_note = (
        "; not used, made after that deployment: " + ", ".join(f"backup {b.id}" for b in reversed(passed_over))
        if passed_over
        else ""
    )
    if before:
        chosen = max(before, key=_newest_first_key)
        reason = (
            f"{deploy_note}, so backup {chosen.id} ({chosen.backup_type}, created {human_time(chosen.created_at)}) "
            f"was chosen: the newest completed backup of server {server_id} made before that deployment "
            f"(a backup made after it may hold the state the deploy broke){after_note}"
        )
        return RestorePointDecision(
            server_id=server_id, backup=chosen, basis="before_deployment", reason=reason, deployment=deployment
        )
    reason = (
        f"{deploy_note}, and no completed backup of server {server_id} was created before that deployment "
        f"and after {human_time(window.oldest_allowed)} (a backup made after it may hold the state the deploy "
        f"broke){after_note}; " + _nothing_usable_reason(server_id, own, foreign, window)
    )
    return RestorePointDecision(server_id=server_id, backup=None, basis="none", reason=reason, deployment=deployment)


def _deployment_backup(
    server_id: int, own: list[Backup], deployment: DeploymentRecord | None, window: _Window
) -> RestorePointDecision | _DeployNote:
    """Rule 1: the decision to restore the deployment's backup, or a note saying why not."""
    if deployment is None:
        return _DeployNote("no deployment of this server is recorded before the alarm")
    if deployment.server_id != server_id or deployment.received_at >= window.alarm_at:
        return _DeployNote("")
    label = f"deployment {deployment.deployment_id} (request received {human_time(deployment.received_at)})"
    if deployment.backup_id is None:
        return _DeployNote(f"{label} has no recorded backup", limits=True)
    deploy_backup = next((b for b in own if b.id == deployment.backup_id), None)
    if deploy_backup is None:
        return _DeployNote(f"backup {deployment.backup_id} of {label} is not among server {server_id}'s backups", True)
    # In this order: not completed or not before the alarm, made too late, then only too old.
    why = window.why_not_usable(deploy_backup)
    if why is not None and not window.only_too_old(deploy_backup):
        return _DeployNote(f"backup {deploy_backup.id} of {label} is not usable: {why}", limits=True)
    if (late := _made_late(deploy_backup, deployment)) is not None:
        return _DeployNote(f"backup {deploy_backup.id} of {label} is not usable: {late}", limits=True)
    if why is not None:
        too_old = (
            f"backup {deploy_backup.id} of {label} completed but is too old to restore from: it was created at "
            f"{human_time(deploy_backup.created_at)}, more than {describe_duration(window.max_age)} "
            "(RESTORE_MAX_BACKUP_AGE) before the alarm"
        )
        if window.watched(deployment):
            return _DeployNote(
                f"{too_old}, and the alarm fired within RESTORE_WATCH_WINDOW "
                f"({describe_duration(window.watch_window)}) after that deployment, which is then the likely cause",
                limits=True,
            )
        return _DeployNote(f"{too_old}; it did not fail, so backups made after that deployment count too")
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


def _made_late(backup: Backup, deployment: DeploymentRecord) -> str | None:
    """Why ``backup`` was made too long after ``deployment``'s request to hold the state before the
    deploy (the boundary is in time); None if the delivery that received the request could have made it."""
    delay = backup.created_at - deployment.received_at
    if delay <= DEPLOYMENT_BACKUP_LATEST:
        return None
    return (
        f"it was created at {human_time(backup.created_at)}, {describe_duration(delay)} after that deployment's "
        f"request, later than the delivery that received the request can make it "
        f"({describe_duration(DEPLOYMENT_BACKUP_LATEST)}): a retry made it, possibly after the deploy went out"
    )


def _nothing_usable_reason(server_id: int, own: list[Backup], foreign: int, window: _Window) -> str:
    """Rule 3: why no backup is restored, with what was listed and why each kind was left out."""
    completed = [b for b in own if b.is_completed]
    too_old = sum(1 for b in completed if b.created_at < window.oldest_allowed)
    after = sum(1 for b in completed if b.created_at >= window.alarm_at)
    not_completed = len(own) - len(completed)
    counts = [f"{len(own)} backup(s) of the server listed"]
    if not_completed:
        counts.append(f"{not_completed} not completed")
    if too_old:
        counts.append(f"{too_old} completed but older than {describe_duration(window.max_age)}")
    if after:
        counts.append(f"{after} created after the alarm")
    if foreign:
        counts.append(f"{foreign} of other servers ignored")
    return (
        f"no completed backup of server {server_id} was created between {human_time(window.oldest_allowed)} and the "
        f"alarm ({human_time(window.alarm_at)}): " + ", ".join(counts)
    )


WatchCause = Literal["no_window", "inside_window", "outside_window", "no_deployment"]


@dataclass(frozen=True)
class WatchWindowDecision:
    """Whether an alarm may act as ``RESTORE_MODE`` says (``acts``), or only publish its plan; and why."""

    acts: bool
    cause: WatchCause
    reason: str


def watch_window(
    server_id: int, deployment: DeploymentRecord | None, *, alarm_at: datetime, window: timedelta
) -> WatchWindowDecision:
    """``RESTORE_WATCH_WINDOW``: with a window, an alarm acts only if its state change falls within
    ``window`` after the request of the server's latest recorded deployment before the alarm
    (boundary included). ``0`` is no window: every alarm acts, as without this guardrail."""
    if window <= timedelta(0):
        return WatchWindowDecision(True, "no_window", "no watch window is set (RESTORE_WATCH_WINDOW=0)")
    span = format_duration(window)
    if deployment is None or deployment.server_id != server_id or deployment.received_at >= alarm_at:
        return WatchWindowDecision(
            False,
            "no_deployment",
            f"no deployment of server {server_id} is recorded before the alarm, and RESTORE_WATCH_WINDOW ({span}) "
            "lets an alarm restore only within that time after a deployment",
        )
    elapsed = alarm_at - deployment.received_at
    label = f"deployment {deployment.deployment_id} (request received {human_time(deployment.received_at)})"
    if elapsed <= window:
        return WatchWindowDecision(
            True,
            "inside_window",
            f"the alarm fired {describe_duration(elapsed)} after {label}, within RESTORE_WATCH_WINDOW ({span})",
        )
    return WatchWindowDecision(
        False,
        "outside_window",
        f"the alarm fired {describe_duration(elapsed)} after {label}, the server's latest recorded deployment: "
        f"later than RESTORE_WATCH_WINDOW ({span}), so the deploy is not the likely cause",
    )
