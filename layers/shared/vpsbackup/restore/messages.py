"""What the people on call read after an alarm: the subject and text of every restore outcome.

Pure: each function takes plain data (the alarm transition, how its server was found, the chosen
backup, what the API said) and returns a :class:`Message`; :mod:`vpsbackup.restore.job` decides which
one applies and publishes it. Every text has the same frame: a headline saying what was (not)
done, the alarm, how the server was found, the details, then ``What to do:``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from vpsbackup.durations import format_duration
from vpsbackup.provider.models import Backup
from vpsbackup.restore.alarm import AlarmTransition, ServerResolution
from vpsbackup.restore.point import RestorePointDecision, human_time


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    body: str


@dataclass(frozen=True, slots=True)
class AlarmScene:
    """What every restore text starts and ends with: the alarm, its server, and the mode."""

    transition: AlarmTransition
    resolution: ServerResolution
    restore_mode: str

    @property
    def alarm(self) -> str:
        return self.transition.alarm_name

    def body(self, *, headline: str, lines: list[str], todo: str) -> str:
        transition = self.transition
        previous = transition.previous_state or "?"
        parts = [
            headline,
            "",
            f"Alarm: {transition.alarm_name} went {previous} -> {transition.new_state} "
            f"at {human_time(transition.state_changed_at)}",
        ]
        if transition.reason:
            parts.append(f"       {transition.reason}")
        if self.resolution.server_id is not None:
            parts.append(f"Server found by: {self.resolution.found_by}")
        parts += lines
        parts += ["", f"What to do: {todo}"]
        if self.restore_mode == "execute" and transition.account:
            parts.append(f"(account {transition.account}, region {transition.region or '?'})")
        return "\n".join(parts)


def backup_lines(decision: RestorePointDecision, backup: Backup) -> list[str]:
    """The chosen backup and why it was chosen, two lines."""
    description = f', "{backup.description}"' if backup.description else ""
    return [
        f"Backup: {backup.id}, {backup.backup_type}, created {human_time(backup.created_at)}{description}",
        f"Why this backup: {decision.reason}.",
    ]


# -- before a backup is chosen -------------------------------------------------------------------


def server_unresolved(scene: AlarmScene, *, dimension: str) -> Message:
    return Message(
        f"Restore skipped: alarm {scene.alarm} names no server",
        scene.body(
            headline=f"No server was restored: the alarm {scene.alarm!r} does not say which server it is about.",
            lines=[f"Looked for: {scene.resolution.explanation}."],
            todo=(
                f"Give the alarm's metric a {dimension} dimension, or tag the alarm "
                f"vps:server-id=<server id>, or add it to ALARM_SERVER_MAP; restore by hand if needed."
            ),
        ),
    )


def alarm_not_current(scene: AlarmScene, server_id: int, why: str) -> Message:
    return Message(
        f"Restore skipped for server {server_id}: alarm {scene.alarm} is not current",
        scene.body(
            headline=f"Server {server_id} was NOT restored: {why}.",
            lines=[],
            todo=(
                "Check whether the server still needs a restore and do it by hand if so; "
                "no automatic restore will happen for this alarm change."
            ),
        ),
    )


def listing_failed(scene: AlarmScene, server_id: int, api_said: str) -> Message:
    return Message(
        f"Restore FAILED for server {server_id}: backups could not be listed",
        scene.body(
            headline=f"Server {server_id} was NOT restored: its backups could not be listed.",
            lines=[f"The API said: {api_said}"],
            todo="Restore by hand if the server still needs it; check the provider's API status.",
        ),
    )


def no_usable_backup(scene: AlarmScene, decision: RestorePointDecision) -> Message:
    server_id = decision.server_id
    return Message(
        f"Restore skipped for server {server_id}: no usable backup",
        scene.body(
            headline=f"Server {server_id} was NOT restored: there is no usable backup.",
            lines=[f"Why: {decision.reason}."],
            todo="Investigate the server by hand; no automatic restore will happen for this alarm.",
        ),
    )


# -- with a backup chosen ------------------------------------------------------------------------


def guard_verdict(refusal_reason: str | None) -> str:
    """What the guardrails would say now (notify mode), given the refusal they give, if any."""
    if refusal_reason is None:
        return "the guardrails would allow it now"
    return f"the guardrails would refuse it now: {refusal_reason}"


def planned(
    scene: AlarmScene, decision: RestorePointDecision, backup: Backup, *, would: str, hold_until: datetime
) -> Message:
    server_id = decision.server_id
    return Message(
        f"Restore plan for server {server_id}: backup {backup.id} (notify mode, nothing done)",
        scene.body(
            headline=(
                f"RESTORE_MODE=notify: server {server_id} was NOT restored. The automation would restore it "
                f"from backup {backup.id}."
            ),
            lines=[
                *backup_lines(decision, backup),
                f"Guardrails: {would}.",
                f"Backup {backup.id} is kept from pruning until {human_time(hold_until)}.",
            ],
            todo=f'To restore by hand: POST /servers/{server_id}/restore/ with {{"backup_id": {backup.id}}}.',
        ),
    )


def refused(scene: AlarmScene, decision: RestorePointDecision, *, kind: str, reason: str) -> Message:
    """The guardrails refused the claim (cooldown or the fleet limit)."""
    server_id = decision.server_id
    backup_id = decision.backup.id if decision.backup else None
    label = "cooldown" if kind == "cooldown" else "fleet restore limit reached"
    would_have = [f"It would have been restored from backup {backup_id}: {decision.reason}."] if backup_id else []
    return Message(
        f"Restore skipped for server {server_id}: {label}",
        scene.body(
            headline=f"Server {server_id} was NOT restored: {reason}.",
            lines=would_have,
            todo="If the server still needs a restore, do it by hand (the automation will not retry this alarm).",
        ),
    )


def internal_error(scene: AlarmScene, decision: RestorePointDecision, backup: Backup, error_name: str) -> Message:
    server_id = decision.server_id
    return Message(
        f"Restore FAILED for server {server_id}: internal error",
        scene.body(
            headline=(f"Server {server_id} was NOT restored: the automation hit an unexpected error ({error_name})."),
            lines=backup_lines(decision, backup),
            todo="Check the function's logs; restore by hand if the server still needs it.",
        ),
    )


def reread_failed(scene: AlarmScene, decision: RestorePointDecision, backup: Backup, api_said: str) -> Message:
    server_id = decision.server_id
    return Message(
        f"Restore FAILED for server {server_id}: backup status unreadable",
        scene.body(
            headline=(
                f"Server {server_id} was NOT restored: backup {backup.id}'s status could not be re-read "
                "just before restoring."
            ),
            lines=[*backup_lines(decision, backup), f"The API said: {api_said}"],
            todo="Restore by hand if the server still needs it.",
        ),
    )


def backup_now_is(fresh: Backup | None, server_id: int) -> str:
    """How the chosen backup changed, in words, when its re-read no longer allows the restore."""
    if fresh is None:
        return "is gone"
    if fresh.server.id == server_id:
        return f"is now {fresh.status}"
    return "belongs to another server"


def backup_changed(scene: AlarmScene, decision: RestorePointDecision, backup: Backup, now_is: str) -> Message:
    server_id = decision.server_id
    return Message(
        f"Restore skipped for server {server_id}: backup {backup.id} no longer usable",
        scene.body(
            headline=(
                f"Server {server_id} was NOT restored: backup {backup.id} {now_is} (re-checked just before restoring)."
            ),
            lines=backup_lines(decision, backup),
            todo="Restore by hand from another backup if the server still needs it.",
        ),
    )


def restore_failed(
    scene: AlarmScene,
    decision: RestorePointDecision,
    backup: Backup,
    *,
    api_said: str,
    not_applied: bool,
    locked_until: datetime,
) -> Message:
    """The restore call failed: ``not_applied`` when the API certainly did not start it."""
    server_id = decision.server_id
    if not_applied:
        verdict = "The restore did not start. It will not be retried for this alarm; a new alarm may try again."
    else:
        verdict = (
            "The restore MAY have started (no clear answer came back). It is not re-sent; the server stays "
            f"locked for restores until {human_time(locked_until)}."
        )
    return Message(
        f"Restore FAILED for server {server_id}: {api_said}",
        scene.body(
            headline=f"Server {server_id} was NOT restored from backup {backup.id}.",
            lines=[*backup_lines(decision, backup), f"The API said: {api_said}", verdict],
            todo="Check the server and the provider's panel; restore by hand if it still needs it.",
        ),
    )


@dataclass(frozen=True, slots=True)
class Guardrails:
    """The locks a successful restore leaves: the server's cooldown and the backup's hold."""

    locked_until: datetime
    cooldown: timedelta
    hold_until: datetime
    hold: timedelta


def restored(
    scene: AlarmScene, decision: RestorePointDecision, backup: Backup, *, api_status: int, guardrails: Guardrails
) -> Message:
    server_id = decision.server_id
    named = f" ({backup.server.name})" if backup.server.name else ""
    guard_line = (
        f"Guardrails: no other restore of server {server_id} before {human_time(guardrails.locked_until)} "
        f"(RESTORE_COOLDOWN {format_duration(guardrails.cooldown)}); backup {backup.id} is kept "
        f"from pruning until {human_time(guardrails.hold_until)} (RESTORE_HOLD {format_duration(guardrails.hold)})."
    )
    return Message(
        f"Restored server {server_id}{named} from backup {backup.id} after alarm {scene.alarm}",
        scene.body(
            headline=(
                f"Server {server_id}{named} is being restored from backup {backup.id} "
                f"(the API answered HTTP {api_status})."
            ),
            lines=[*backup_lines(decision, backup), guard_line],
            todo=(
                f"Check that the server is healthy again. It now holds the state of "
                f"{human_time(backup.created_at)}: anything written after that is gone from it."
            ),
        ),
    )
