"""What the people on call read after an alarm: the subject and text of every restore outcome.

Pure: each function takes plain data (the alarm transition, how its server was found, the chosen
backup, what the API said) and returns a :class:`Message`; :mod:`vpsbackup.restore.job` decides which
one applies and publishes it. Every text has the same frame: a headline saying what was (not)
done, the alarm, how the server was found, the details, then ``What to do:``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from vpsbackup.durations import describe_duration
from vpsbackup.provider.models import Backup
from vpsbackup.restore.alarm import AlarmTransition, ServerResolution
from vpsbackup.restore.point import RestorePointDecision, human_time


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    body: str


def restore_command(server_id: int | None, backup_id: int | None = None, *, stack_name: str | None = None) -> str:
    """``vpsbackup --stack NAME restore SERVER --backup ID``: a restore by hand that takes the same
    lock, cooldown, fleet limit, hold and journal as the alarm path (never a bare API call)."""
    stack = f" --stack {stack_name}" if stack_name else ""
    backup = f" --backup {backup_id}" if backup_id is not None else ""
    server = str(server_id) if server_id is not None else "SERVER"
    return f"vpsbackup{stack} restore {server}{backup}"


@dataclass(frozen=True, slots=True)
class AlarmScene:
    """What every restore text starts and ends with: the alarm, its server, and the mode."""

    transition: AlarmTransition
    resolution: ServerResolution
    restore_mode: str
    stack_name: str | None = None  # STACK_NAME: the console command people are told names it

    @property
    def alarm(self) -> str:
        return self.transition.alarm_name

    def console(self, command: str) -> str:
        """A console command for this stack: ``vpsbackup --stack NAME COMMAND``."""
        return f"vpsbackup --stack {self.stack_name} {command}" if self.stack_name else f"vpsbackup {command}"

    def by_hand(self, server_id: int | None = None, backup_id: int | None = None) -> str:
        """A restore by hand, as people should make one: through the console's guarded path."""
        return restore_command(server_id, backup_id, stack_name=self.stack_name)

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

    def told(self, subject: str, headline: str, lines: list[str], todo: str) -> Message:
        """The message: ``subject``, and the body framed around ``headline``, ``lines`` and ``todo``."""
        return Message(subject, self.body(headline=headline, lines=lines, todo=todo))


def backup_lines(decision: RestorePointDecision, backup: Backup) -> list[str]:
    """The chosen backup and why it was chosen, two lines."""
    description = f', "{backup.description}"' if backup.description else ""
    return [
        f"Backup: {backup.id}, {backup.backup_type}, created {human_time(backup.created_at)}{description}",
        f"Why this backup: {decision.reason}.",
    ]


# -- before a backup is chosen -------------------------------------------------------------------


def server_unresolved(scene: AlarmScene, *, dimension: str) -> Message:
    headline = f"No server was restored: the alarm {scene.alarm!r} does not say which server it is about."
    todo = (
        f"Give the alarm's metric a {dimension} dimension, or tag the alarm "
        f"vps:server-id=<server id>, or add it to ALARM_SERVER_MAP; if a server needs a restore: "
        f"{scene.by_hand()} --dry-run, then without --dry-run."
    )
    looked_for = [f"Looked for: {scene.resolution.explanation}."]
    return scene.told(f"Restore skipped: alarm {scene.alarm} names no server", headline, looked_for, todo)


def alarm_not_confirmed(scene: AlarmScene, why: str) -> Message:
    headline = f"No server was restored: the alarm {scene.alarm!r} is not confirmed: {why}."
    todo = (
        "Nothing, if the alarm has recovered. If no alarm of this account by that name fired, the event "
        "was sent by someone else: find who invoked the function or published to its topic (CloudTrail). "
        f"If a server still needs a restore: {scene.by_hand()} --dry-run, then without --dry-run."
    )
    subject = f"Restore skipped: alarm {scene.alarm} not confirmed"
    return scene.told(subject, headline, [], todo)


def alarm_not_current(scene: AlarmScene, server_id: int, why: str) -> Message:
    todo = (
        f"Check whether the server still needs a restore; if so: {scene.by_hand(server_id)} --dry-run, then "
        "without --dry-run. No automatic restore will happen for this alarm change."
    )
    subject = f"Restore skipped for server {server_id}: alarm {scene.alarm} is not current"
    return scene.told(subject, f"Server {server_id} was NOT restored: {why}.", [], todo)


def listing_failed(scene: AlarmScene, server_id: int, api_said: str) -> Message:
    return scene.told(
        f"Restore FAILED for server {server_id}: backups could not be listed",
        f"Server {server_id} was NOT restored: its backups could not be listed.",
        [f"The API said: {api_said}"],
        f"Check the provider's API status; if the server still needs a restore: {scene.by_hand(server_id)}.",
    )


def listing_incomplete(scene: AlarmScene, server_id: int, problem: str) -> Message:
    return scene.told(
        f"Restore FAILED for server {server_id}: the listing of its backups is incomplete",
        f"Server {server_id} was NOT restored: its backups could not be listed to the end, and a "
        "restore point is never chosen from part of them (the newest backup may be in the part not read).",
        [f"Why the listing is incomplete: {problem}"],
        "Restore from the provider's panel if the server still needs it (vpsbackup restore refuses an "
        "incomplete listing too); check the provider's pagination (next links) or the item named.",
    )


def no_usable_backup(scene: AlarmScene, decision: RestorePointDecision) -> Message:
    server_id = decision.server_id
    todo = (
        f"Investigate the server by hand ({scene.console(f'backups --server {server_id}')} shows its backups and why "
        "none is usable); no automatic restore will happen for this alarm."
    )
    headline = f"Server {server_id} was NOT restored: there is no usable backup."
    subject = f"Restore skipped for server {server_id}: no usable backup"
    return scene.told(subject, headline, [f"Why: {decision.reason}."], todo)


# -- with a backup chosen ------------------------------------------------------------------------


def guard_verdict(refusal_reason: str | None) -> str:
    """What the guardrails would say now (notify mode), given the refusal they give, if any."""
    if refusal_reason is None:
        return "the guardrails would allow it now"
    return f"the guardrails would refuse it now: {refusal_reason}"


def planned(
    scene: AlarmScene,
    decision: RestorePointDecision,
    backup: Backup,
    *,
    would: str,
    hold_until: datetime,
    watch: str | None = None,
) -> Message:
    """The plan, not done: ``RESTORE_MODE=notify``, or (``watch``: why) an alarm outside the watch window."""
    server_id = decision.server_id
    lines = [
        *backup_lines(decision, backup),
        f"Guardrails: {would}.",
        f"Backup {backup.id} is kept from pruning until {human_time(hold_until)}.",
    ]
    if watch is None:
        mode, why = "notify mode", f"RESTORE_MODE=notify: server {server_id} was NOT restored."
    else:
        mode, why = "outside the watch window", f"Server {server_id} was NOT restored automatically: {watch}."
    headline = f"{why} The automation would restore it from backup {backup.id}."
    todo = (
        f"To restore by hand: {scene.by_hand(server_id, backup.id)} (the same guardrails, hold and "
        "journal as an automatic restore)."
    )
    return scene.told(
        f"Restore plan for server {server_id}: backup {backup.id} ({mode}, nothing done)", headline, lines, todo
    )


def refused(scene: AlarmScene, decision: RestorePointDecision, *, kind: str, reason: str) -> Message:
    """The guardrails refused the claim (cooldown or the fleet limit)."""
    server_id = decision.server_id
    backup_id = decision.backup.id if decision.backup else None
    label = {"cooldown": "cooldown", "incident_open": "its last restore's incident is still open"}.get(
        kind, "fleet restore limit reached"
    )
    would_have = [f"It would have been restored from backup {backup_id}: {decision.reason}."] if backup_id else []
    todo = (
        f"If the server still needs a restore: {scene.by_hand(server_id, backup_id)} (with --override-cooldown "
        "--reason TEXT inside the cooldown); the automation will not retry this alarm."
    )
    subject = f"Restore skipped for server {server_id}: {label}"
    return scene.told(subject, f"Server {server_id} was NOT restored: {reason}.", would_have, todo)


def internal_error(scene: AlarmScene, decision: RestorePointDecision, backup: Backup, error_name: str) -> Message:
    server_id = decision.server_id
    headline = f"Server {server_id} was NOT restored: the automation hit an unexpected error ({error_name})."
    todo = f"Check the function's logs; if the server still needs a restore: {scene.by_hand(server_id, backup.id)}."
    return scene.told(
        f"Restore FAILED for server {server_id}: internal error", headline, backup_lines(decision, backup), todo
    )


def reread_failed(scene: AlarmScene, decision: RestorePointDecision, backup: Backup, api_said: str) -> Message:
    server_id = decision.server_id
    lines = [*backup_lines(decision, backup), f"The API said: {api_said}"]
    headline = (
        f"Server {server_id} was NOT restored: backup {backup.id}'s status could not be re-read just before restoring."
    )
    subject = f"Restore FAILED for server {server_id}: backup status unreadable"
    todo = f"If the server still needs a restore: {scene.by_hand(server_id, backup.id)}."
    return scene.told(subject, headline, lines, todo)


def backup_now_is(fresh: Backup | None, server_id: int) -> str:
    """How the chosen backup changed, in words, when its re-read no longer allows the restore."""
    if fresh is None:
        return "is gone"
    if fresh.server.id == server_id:
        return f"is now {fresh.status}"
    return "belongs to another server"


def backup_changed(scene: AlarmScene, decision: RestorePointDecision, backup: Backup, now_is: str) -> Message:
    server_id = decision.server_id
    subject = f"Restore skipped for server {server_id}: backup {backup.id} no longer usable"
    headline = f"Server {server_id} was NOT restored: backup {backup.id} {now_is} (re-checked just before restoring)."
    todo = (
        f"If the server still needs a restore: {scene.by_hand(server_id)} --dry-run shows the backup it "
        "would choose now."
    )
    return scene.told(subject, headline, backup_lines(decision, backup), todo)


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
    lines = [*backup_lines(decision, backup), f"The API said: {api_said}", verdict]
    todo = (
        f"Check the server and the provider's panel; if it still needs a restore: {scene.by_hand(server_id, backup.id)}"
        " (it refuses while this restore may still be running)."
    )
    headline = f"Server {server_id} was NOT restored from backup {backup.id}."
    return scene.told(f"Restore FAILED for server {server_id}: {api_said}", headline, lines, todo)


@dataclass(frozen=True, slots=True)
class Guardrails:
    """The locks a successful restore leaves: the server's cooldown and the backup's hold."""

    locked_until: datetime
    cooldown: timedelta
    hold_until: datetime
    hold: timedelta


def restored(
    scene: AlarmScene,
    decision: RestorePointDecision,
    backup: Backup,
    *,
    api_status: int,
    guardrails: Guardrails,
    follow_up: str | None = None,
) -> Message:
    server_id = decision.server_id
    named = f" ({backup.server.name})" if backup.server.name else ""
    guard_line = (
        f"Guardrails: no other restore of server {server_id} before {human_time(guardrails.locked_until)} "
        f"(RESTORE_COOLDOWN {describe_duration(guardrails.cooldown)}); backup {backup.id} is kept "
        f"from pruning until {human_time(guardrails.hold_until)} (RESTORE_HOLD {describe_duration(guardrails.hold)})."
    )
    headline = (
        f"Server {server_id}{named} is being restored from backup {backup.id} (the API answered HTTP {api_status})."
    )
    todo = (
        f"Check that the server is healthy again. It now holds the state of "
        f"{human_time(backup.created_at)}: anything written after that is gone from it."
    )
    subject = f"Restored server {server_id}{named} from backup {backup.id} after alarm {scene.alarm}"
    follow = [follow_up] if follow_up else []
    return scene.told(subject, headline, [*backup_lines(decision, backup), guard_line, *follow], todo)


def follow_up_scheduled(alarm: str, check_at: datetime, verify_after: timedelta) -> str:
    """The line of a restore's notification that says when it is checked."""
    return (
        f"Did it work: you will be told when alarm {alarm} returns to OK; if it is still not OK at "
        f"{human_time(check_at)} (RESTORE_VERIFY_AFTER {describe_duration(verify_after)}), you will be told that "
        "too, and no automatic restore of this server happens until it has been seen in OK."
    )


def follow_up_not_scheduled(alarm: str, problem: str) -> str:
    return (
        f"Did it work: the check after RESTORE_VERIFY_AFTER could not be scheduled ({problem}); you will still be "
        f"told when alarm {alarm} returns to OK. Watch the alarm."
    )


@dataclass(frozen=True, slots=True)
class FollowUpScene:
    """What the follow-ups of one automatic restore are about."""

    server_id: int
    alarm: str
    backup_id: int | None
    restored_at: datetime | None

    def lines(self) -> list[str]:
        backup = f" from backup {self.backup_id}" if self.backup_id is not None else ""
        when = f" at {human_time(self.restored_at)}" if self.restored_at is not None else ""
        return [f"Restore: server {self.server_id}{backup}{when}, after alarm {self.alarm}"]


def recovered(scene: FollowUpScene, *, why: str, ok_at: datetime, time_to_recover: timedelta) -> Message:
    headline = f"Server {scene.server_id} recovered: {why}."
    lines = [
        *scene.lines(),
        f"Back to OK: {human_time(ok_at)} (time to recover: {describe_duration(time_to_recover)})",
    ]
    todo = "Nothing; the incident is closed. Find out why the release broke the server before deploying it again."
    subject = f"Recovered: server {scene.server_id} after the restore (alarm {scene.alarm} is OK)"
    return Message(subject, "\n".join([headline, "", *lines, "", f"What to do: {todo}"]))


def not_recovered(scene: FollowUpScene, *, why: str, checked_at: datetime) -> Message:
    headline = (
        f"The restore did not clear the alarm: server {scene.server_id} still needs a person. "
        f"{why[:1].upper()}{why[1:]}."
    )
    lines = [
        *scene.lines(),
        f"Checked: {human_time(checked_at)}",
        f"No automatic restore of server {scene.server_id} happens until alarm {scene.alarm} has been seen in OK.",
    ]
    todo = (
        "Look at the server now: the restore point may hold the fault too, or the fault is elsewhere "
        "(a dependency, the data). If it needs an older backup, restore it by hand: "
        f"vpsbackup restore {scene.server_id} --backup ID."
    )
    subject = f"The restore did not clear the alarm: server {scene.server_id} (alarm {scene.alarm})"
    return Message(subject, "\n".join([headline, "", *lines, "", f"What to do: {todo}"]))
