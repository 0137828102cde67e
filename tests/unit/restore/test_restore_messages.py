"""The words people on call read after an alarm: one pinned message for every restore outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vpsbackup.provider.models import Backup
from vpsbackup.restore import messages
from vpsbackup.restore.alarm import AlarmTransition, ServerResolution
from vpsbackup.restore.messages import AlarmScene, Guardrails, Message
from vpsbackup.restore.point import RestorePointDecision

AT = datetime(2025, 1, 16, 15, 45, tzinfo=UTC)
TRANSITION = AlarmTransition(
    alarm_name="vps-web-1-down",
    new_state="ALARM",
    previous_state="OK",
    state_changed_at=AT,
    reason="Threshold Crossed: 1 datapoint [0.0] was less than 1.0",
    account="123456789012",
    region="eu-central-1",
    source="eventbridge",
)
FOUND = ServerResolution(12345, "the ServerId dimension")
BACKUP = Backup.model_validate(
    {
        "id": 901,
        "server": {"id": 12345, "name": "web-1"},
        "backup_type": "manual",
        "status": "completed",
        "created_at": "2025-01-16T15:40:00Z",
        "description": "Release 42",
    }
)
DECISION = RestorePointDecision(12345, BACKUP, "deployment", "the backup made just before deployment d-42")
SCENE = AlarmScene(TRANSITION, FOUND, "execute")

ALARM_LINES = (
    "Alarm: vps-web-1-down went OK -> ALARM at 2025-01-16 15:45:00 UTC\n"
    "       Threshold Crossed: 1 datapoint [0.0] was less than 1.0\n"
)
BACKUP_LINES = (
    'Backup: 901, manual, created 2025-01-16 15:40:00 UTC, "Release 42"\n'
    "Why this backup: the backup made just before deployment d-42.\n"
)
ACCOUNT = "\n(account 123456789012, region eu-central-1)"


def test_restored_names_the_backup_the_guardrails_and_what_is_lost() -> None:
    guardrails = Guardrails(
        locked_until=AT + timedelta(hours=1),
        cooldown=timedelta(hours=1),
        hold_until=AT + timedelta(days=7),
        hold=timedelta(days=7),
    )
    message = messages.restored(SCENE, DECISION, BACKUP, api_status=202, guardrails=guardrails)
    assert message == Message(
        "Restored server 12345 (web-1) from backup 901 after alarm vps-web-1-down",
        "Server 12345 (web-1) is being restored from backup 901 (the API answered HTTP 202).\n\n"
        + ALARM_LINES
        + "Server found by: the ServerId dimension\n"
        + BACKUP_LINES
        + "Guardrails: no other restore of server 12345 before 2025-01-16 16:45:00 UTC (RESTORE_COOLDOWN 1 hour); "
        "backup 901 is kept from pruning until 2025-01-23 15:45:00 UTC (RESTORE_HOLD 7 days).\n\n"
        "What to do: Check that the server is healthy again. It now holds the state of 2025-01-16 15:40:00 UTC: "
        "anything written after that is gone from it." + ACCOUNT,
    )


def test_an_unresolved_server_says_where_it_looked_and_how_to_name_one() -> None:
    unresolved = ServerResolution(None, "", ("no ServerId dimension", "no vps:server-id tag"))
    message = messages.server_unresolved(AlarmScene(TRANSITION, unresolved, "execute"), dimension="ServerId")
    assert message == Message(
        "Restore skipped: alarm vps-web-1-down names no server",
        "No server was restored: the alarm 'vps-web-1-down' does not say which server it is about.\n\n"
        + ALARM_LINES
        + "Looked for: no ServerId dimension; no vps:server-id tag.\n\n"
        "What to do: Give the alarm's metric a ServerId dimension, or tag the alarm vps:server-id=<server id>, "
        "or add it to ALARM_SERVER_MAP; if a server needs a restore: vpsbackup restore SERVER --dry-run, then "
        "without --dry-run." + ACCOUNT,
    )


def test_a_plan_in_notify_mode_says_nothing_was_done_and_how_to_restore_by_hand() -> None:
    scene = AlarmScene(TRANSITION, FOUND, "notify")
    would = messages.guard_verdict(None)
    message = messages.planned(scene, DECISION, BACKUP, would=would, hold_until=AT + timedelta(days=7))
    assert message == Message(
        "Restore plan for server 12345: backup 901 (notify mode, nothing done)",
        "RESTORE_MODE=notify: server 12345 was NOT restored. The automation would restore it from backup 901.\n\n"
        + ALARM_LINES
        + "Server found by: the ServerId dimension\n"
        + BACKUP_LINES
        + "Guardrails: the guardrails would allow it now.\n"
        "Backup 901 is kept from pruning until 2025-01-23 15:45:00 UTC.\n\n"
        "What to do: To restore by hand: vpsbackup restore 12345 --backup 901 (the same guardrails, hold and "
        "journal as an automatic restore).",
    )


def test_the_guard_verdict_says_allow_or_why_not() -> None:
    assert messages.guard_verdict(None) == "the guardrails would allow it now"
    assert messages.guard_verdict("cooldown until 16:45") == "the guardrails would refuse it now: cooldown until 16:45"


NO_BACKUP = RestorePointDecision(12345, None, "none", "no completed backup of server 12345 in the last 7d")


@pytest.mark.parametrize(
    ("message", "subject", "headline", "details", "todo"),
    [
        pytest.param(
            messages.alarm_not_current(SCENE, 12345, "the alarm changed state 2h ago"),
            "Restore skipped for server 12345: alarm vps-web-1-down is not current",
            "Server 12345 was NOT restored: the alarm changed state 2h ago.",
            "",
            "Check whether the server still needs a restore; if so: vpsbackup restore 12345 --dry-run, then "
            "without --dry-run. No automatic restore will happen for this alarm change.",
            id="not-current",
        ),
        pytest.param(
            messages.listing_failed(SCENE, 12345, "HTTP 500: boom"),
            "Restore FAILED for server 12345: backups could not be listed",
            "Server 12345 was NOT restored: its backups could not be listed.",
            "The API said: HTTP 500: boom\n",
            "Check the provider's API status; if the server still needs a restore: vpsbackup restore 12345.",
            id="listing-failed",
        ),
        pytest.param(
            messages.no_usable_backup(SCENE, NO_BACKUP),
            "Restore skipped for server 12345: no usable backup",
            "Server 12345 was NOT restored: there is no usable backup.",
            "Why: no completed backup of server 12345 in the last 7d.\n",
            "Investigate the server by hand (vpsbackup backups --server 12345 shows its backups and why none "
            "is usable); no automatic restore will happen for this alarm.",
            id="no-backup",
        ),
        pytest.param(
            messages.refused(SCENE, DECISION, kind="cooldown", reason="server 12345 was restored 10m ago"),
            "Restore skipped for server 12345: cooldown",
            "Server 12345 was NOT restored: server 12345 was restored 10m ago.",
            "It would have been restored from backup 901: the backup made just before deployment d-42.\n",
            "If the server still needs a restore: vpsbackup restore 12345 --backup 901 (with --override-cooldown "
            "--reason TEXT inside the cooldown); the automation will not retry this alarm.",
            id="cooldown",
        ),
        pytest.param(
            messages.refused(SCENE, DECISION, kind="rate_limit", reason="3 restores in the last hour"),
            "Restore skipped for server 12345: fleet restore limit reached",
            "Server 12345 was NOT restored: 3 restores in the last hour.",
            "It would have been restored from backup 901: the backup made just before deployment d-42.\n",
            "If the server still needs a restore: vpsbackup restore 12345 --backup 901 (with --override-cooldown "
            "--reason TEXT inside the cooldown); the automation will not retry this alarm.",
            id="fleet-limit",
        ),
        pytest.param(
            messages.internal_error(SCENE, DECISION, BACKUP, "ClientError"),
            "Restore FAILED for server 12345: internal error",
            "Server 12345 was NOT restored: the automation hit an unexpected error (ClientError).",
            BACKUP_LINES,
            "Check the function's logs; if the server still needs a restore: vpsbackup restore 12345 --backup 901.",
            id="internal-error",
        ),
        pytest.param(
            messages.reread_failed(SCENE, DECISION, BACKUP, "HTTP 502"),
            "Restore FAILED for server 12345: backup status unreadable",
            "Server 12345 was NOT restored: backup 901's status could not be re-read just before restoring.",
            BACKUP_LINES + "The API said: HTTP 502\n",
            "If the server still needs a restore: vpsbackup restore 12345 --backup 901.",
            id="reread-failed",
        ),
        pytest.param(
            messages.backup_changed(SCENE, DECISION, BACKUP, "is gone"),
            "Restore skipped for server 12345: backup 901 no longer usable",
            "Server 12345 was NOT restored: backup 901 is gone (re-checked just before restoring).",
            BACKUP_LINES,
            "If the server still needs a restore: vpsbackup restore 12345 --dry-run shows the backup it would "
            "choose now.",
            id="backup-changed",
        ),
        pytest.param(
            messages.restore_failed(
                SCENE, DECISION, BACKUP, api_said="HTTP 409: busy", not_applied=True, locked_until=AT
            ),
            "Restore FAILED for server 12345: HTTP 409: busy",
            "Server 12345 was NOT restored from backup 901.",
            BACKUP_LINES
            + "The API said: HTTP 409: busy\n"
            + "The restore did not start. It will not be retried for this alarm; a new alarm may try again.\n",
            "Check the server and the provider's panel; if it still needs a restore: vpsbackup restore 12345 "
            "--backup 901 (it refuses while this restore may still be running).",
            id="restore-refused",
        ),
        pytest.param(
            messages.restore_failed(
                SCENE,
                DECISION,
                BACKUP,
                api_said="the connection dropped",
                not_applied=False,
                locked_until=AT + timedelta(hours=1),
            ),
            "Restore FAILED for server 12345: the connection dropped",
            "Server 12345 was NOT restored from backup 901.",
            BACKUP_LINES
            + "The API said: the connection dropped\n"
            + "The restore MAY have started (no clear answer came back). It is not re-sent; the server stays "
            "locked for restores until 2025-01-16 16:45:00 UTC.\n",
            "Check the server and the provider's panel; if it still needs a restore: vpsbackup restore 12345 "
            "--backup 901 (it refuses while this restore may still be running).",
            id="restore-outcome-unknown",
        ),
    ],
)
def test_every_outcome_has_its_subject_headline_details_and_todo(
    message: Message, subject: str, headline: str, details: str, todo: str
) -> None:
    assert message.subject == subject
    assert message.body == (
        f"{headline}\n\n{ALARM_LINES}Server found by: the ServerId dimension\n{details}\nWhat to do: {todo}{ACCOUNT}"
    )


def test_the_backup_change_is_told_in_words() -> None:
    moved = BACKUP.model_copy(update={"server": BACKUP.server.model_copy(update={"id": 777})})
    deleting = BACKUP.model_copy(update={"status": "deleting"})
    assert messages.backup_now_is(None, 12345) == "is gone"
    assert messages.backup_now_is(deleting, 12345) == "is now deleting"
    assert messages.backup_now_is(moved, 12345) == "belongs to another server"


def test_the_frame_leaves_out_what_is_unknown() -> None:
    # No previous state, no reason, no account (and notify mode never names the account).
    bare = TRANSITION.model_copy(update={"previous_state": None, "reason": "", "account": None})
    body = AlarmScene(bare, FOUND, "execute").body(headline="H.", lines=["L"], todo="T.")
    assert body == (
        "H.\n\nAlarm: vps-web-1-down went ? -> ALARM at 2025-01-16 15:45:00 UTC\n"
        "Server found by: the ServerId dimension\nL\n\nWhat to do: T."
    )
    notify = AlarmScene(TRANSITION, FOUND, "notify").body(headline="H.", lines=[], todo="T.")
    assert "account" not in notify


def test_a_backup_without_a_description_is_listed_without_one() -> None:
    plain = BACKUP.model_copy(update={"description": None})
    assert messages.backup_lines(DECISION, plain)[0] == "Backup: 901, manual, created 2025-01-16 15:40:00 UTC"


def test_every_text_names_the_console_for_this_stack_never_a_bare_api_call() -> None:
    """A restore by hand goes through ``vpsbackup restore`` (lock, cooldown, fleet limit, hold,
    journal), named with the stack the function runs in."""
    scene = AlarmScene(TRANSITION, FOUND, "notify", stack_name="prod")
    would = messages.guard_verdict(None)
    plan = messages.planned(scene, DECISION, BACKUP, would=would, hold_until=AT + timedelta(days=7))
    assert plan.body.endswith(
        "What to do: To restore by hand: vpsbackup --stack prod restore 12345 --backup 901 (the same guardrails, "
        "hold and journal as an automatic restore)."
    )
    told = [
        plan,
        messages.server_unresolved(scene, dimension="ServerId"),
        messages.alarm_not_confirmed(scene, "no such alarm"),
        messages.alarm_not_current(scene, 12345, "old"),
        messages.listing_failed(scene, 12345, "HTTP 500"),
        messages.no_usable_backup(scene, NO_BACKUP),
        messages.refused(scene, DECISION, kind="cooldown", reason="r"),
        messages.internal_error(scene, DECISION, BACKUP, "E"),
        messages.reread_failed(scene, DECISION, BACKUP, "HTTP 502"),
        messages.backup_changed(scene, DECISION, BACKUP, "is gone"),
        messages.restore_failed(scene, DECISION, BACKUP, api_said="x", not_applied=True, locked_until=AT),
    ]
    for message in told:
        todo = message.body.split("What to do: ", 1)[1]
        assert "POST " not in message.body and "curl" not in message.body, message.subject
        assert "vpsbackup --stack prod " in todo, (message.subject, todo)
