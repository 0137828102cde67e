"""``make demo``: the whole story on the local simulator and local AWS, told step by step.

1. A deploy of the ``production`` environment arrives from CI: one backup per server.
2. CI's retry delivers the same event again: nothing new is created.
3. CI polls the signed status endpoint until every backup is ``completed``.
4. The nightly prune runs as a dry run: the plan and its reasons.
5. Before a risky change, a person holds one of the backups the plan would delete (``vpsbackup hold
   add``); the real prune keeps it and says why, and ``vpsbackup history --backup`` explains a
   deletion: why, by which run, under which policy.
6. An alarm fires on web-server-01: it is restored from the deploy's backup, and people are told.
7. The alarm flaps (OK, then ALARM again): the cooldown holds, no second restore.
8. The journal: one entry per deletion and per restore.

:func:`main` returns what happened (the deletions, the held backup, the restores, the journal) for
the demo's own test.

Everything runs on 127.0.0.1: the provider simulator and moto's AWS server. Nothing is deployed.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devtools.local_env import (
    WEBHOOK_KEY,
    LocalWorld,
    add_import_paths,
    invoke,
    local_world,
    seed_project_backups,
    set_alarm_state,
)
from devtools.samples import alarm_states
from vpsbackup_local.world import DEMO_ENV

add_import_paths()
os.environ.setdefault("COLUMNS", "160")  # the console's tables, read when it is imported
from click.testing import CliRunner  # noqa: E402

from vpsbackup.deploy.webhook import resign_function_url_event  # noqa: E402
from vpsbackup_console.cli import cli  # noqa: E402

EVENTS = Path(__file__).resolve().parents[1] / "events"
WEB = 12345


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    return data


def bold(text: str) -> str:
    """``text`` in bold on a terminal; as it is when piped or with ``NO_COLOR`` set (no-color.org)."""
    return f"\033[1m{text}\033[0m" if sys.stdout.isatty() and "NO_COLOR" not in os.environ else text


def step(number: int, title: str) -> None:
    print(f"\n{bold(f'{number}. {title}')}")


def say(text: str = "") -> None:
    print(f"   {text}")


def show_notifications(world: LocalWorld) -> None:
    for note in world.notifications():
        say(f"📣 {note['subject']}")
        for line in note["message"].splitlines():
            say(f"   │ {line}")


def console(*args: str) -> Any:
    """``vpsbackup ARGS`` as a person would type it (the console, in this process), its output shown;
    with ``--json`` among the arguments, the answer is returned instead."""
    as_json = "--json" in args
    if not as_json:
        say(f"$ vpsbackup {shlex.join(args)}")
    done = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if done.exit_code != 0:
        raise SystemExit(f"vpsbackup {shlex.join(args)} failed ({done.exit_code}): {done.output}")
    if as_json:
        return json.loads(done.stdout)
    for line in done.stdout.rstrip().splitlines():
        say(f"  {line}")
    return None


def alarm_event(state: str, previous: str, at: datetime) -> dict[str, Any]:
    """The alarm sample going ``previous`` -> ``state`` at ``at``; the alarm itself, in the local
    account, is put in ``state`` first, as CloudWatch does (the function confirms it before acting)."""
    event = copy.deepcopy(load("alarm-eventbridge-alarm.json"))
    [(name, _, metrics)] = alarm_states(event)
    set_alarm_state(name, state, metrics=metrics)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
    event["id"] = f"demo-{state}-{at.timestamp()}"
    event["time"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    event["detail"]["state"].update(value=state, timestamp=stamp)
    event["detail"]["previousState"].update(value=previous, timestamp=stamp)
    return event


def main() -> dict[str, Any]:
    """The story; returns what happened (see the module docstring)."""
    env = {
        **DEMO_ENV,  # the policy and groups `vpsbackup --local` uses too
        "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "ERROR"),
        "POWERTOOLS_METRICS_DISABLED": "true",
        # The simulator has no rate limit: the demo goes faster than the deployed default of 2.
        "VPS_API_MAX_RPS": os.environ.get("VPS_API_MAX_RPS", "20"),
    }
    with local_world(extra_env=env) as world:
        sim = world.simulator
        now = datetime.now(UTC)
        seed_project_backups(world.simulator, now, servers=(WEB,))  # three weeks of earlier deploys
        print(f"Provider simulator at {world.api_base_url}, local AWS at {world.aws_endpoint}.")
        print(f"The fleet: {len(sim.servers)} servers, {len(sim.backups)} backups (automatic, people's manual, ours).")

        deploy_backup = deploy_and_poll(world)
        real, held_id = prune_with_a_hold(world)
        restore_on_alarm(world, deploy_backup)
        step(8, "The journal: every irreversible act and every refusal, newest first")
        console("history", "--server", str(WEB), "--limit", "6")
        entries = console("history", "--json")["entries"]
        acts = Counter(e["act"] for e in entries)
        deleted = sorted(d["backup_id"] for d in real["deletions"] if d["outcome"] in ("deleted", "already_gone"))
        restores = sim.servers[WEB]["restore_count"]
        say(f"journal: {dict(sorted(acts.items()))}")
        say(f"deletions at the provider: {len(deleted)}, journaled: {acts['backup_deleted']}; "
            f"restores: {restores}, journaled: {acts['restore_requested']}")  # fmt: skip
        print("\nDone. Nothing left running.")
        return {
            "deleted": deleted,
            "held": held_id,
            "held_kept": sim.get_backup(held_id) is not None,
            "held_reasons": next(d for d in real["decisions"] if d["backup_id"] == held_id)["reasons"],
            "restores": restores,
            "journal": entries,
        }


def deploy_and_poll(world: LocalWorld) -> dict[int, int]:
    """Steps 1 to 3: a deploy's backups, its retry, CI's polls; each server's deploy backup."""
    sim = world.simulator
    step(1, "CI starts deploying release 2.30 to production (EventBridge 'Deployment Started')")
    deploy = load("deploy-eventbridge.json")
    deploy["detail"] = {
        "deployment_id": "gh-8830-1",
        "environment": "production",
        "repository": "acme/shop",
        "ref": "main",
        "commit": "9d8c7b6",
        "actor": "alice",
    }
    first = invoke("backup_on_deploy", deploy)
    for entry in first["backups"]:
        say(f"server {entry['server_id']}: backup {entry['backup_id']} {entry['status']}")
    deploy_backup = {b["server_id"]: b["backup_id"] for b in first["backups"]}

    step(2, "EventBridge delivers the same event again (at-least-once delivery)")
    posts_before = sum(1 for r in sim.requests if r.method == "POST")
    again = invoke("backup_on_deploy", deploy)
    posts_after = sum(1 for r in sim.requests if r.method == "POST")
    same = {b["server_id"]: b["backup_id"] for b in again["backups"]} == deploy_backup
    say(f"same backups: {same}; new backups created: {posts_after - posts_before}")

    step(3, "CI polls the signed status endpoint before it deploys")
    status_event = load("deploy-status-get.json")
    status_event["rawQueryString"] = "deployment_id=gh-8830-1"
    status_event["queryStringParameters"] = {"deployment_id": "gh-8830-1"}
    for attempt in range(1, 6):
        answer = invoke("backup_on_deploy", resign_function_url_event(status_event, WEBHOOK_KEY, time.time()))
        body = json.loads(answer["body"])
        statuses = {b["server_id"]: b["status"] for b in body["backups"]}
        say(f"poll {attempt}: HTTP {answer['statusCode']} {statuses}")
        if all(s == "completed" for s in statuses.values()):
            say("every backup is completed: CI may deploy now")
            break
        time.sleep(0.2)

    return deploy_backup


def prune_with_a_hold(world: LocalWorld) -> tuple[dict[str, Any], int]:
    """Steps 4 and 5: the dry run's plan, a hold on a backup it would delete, the real run."""
    sim = world.simulator
    step(4, "The nightly prune, as a dry run first: the plan and its reasons")
    plan = invoke("prune_backups", {"dry_run": True})
    ours = [d for d in plan["decisions"] if d["server_id"] == WEB and d["backup_type"] == "manual"]
    for decision in sorted(ours, key=lambda d: d["created_at"], reverse=True)[:12]:
        say(f"{decision['created_at'][:16]}  #{decision['backup_id']:<4} {decision['action']:<6} "
            f"{'; '.join(decision['reasons'])}")  # fmt: skip
    say(f"… totals: {plan['totals']}")

    step(5, "Before migrating the database, a person holds a backup the plan would delete; then the real prune")
    doomed = sorted((d for d in ours if d["action"] == "delete"), key=lambda d: d["created_at"], reverse=True)
    held_id = doomed[0]["backup_id"]
    console("hold", "add", str(held_id), "--for", "3d", "--reason", "before the db migration")
    before = len(sim.backups)
    real = invoke("prune_backups", load("prune-scheduler.json"))  # the schedule's own event
    outcomes = Counter(d["outcome"] for d in real["deletions"])
    say(f"real run: {dict(outcomes)}; backups at the provider: {before} → {len(sim.backups)}")
    held = next(d for d in real["decisions"] if d["backup_id"] == held_id)
    say(f"backup {held_id}: {held['action']}, because {'; '.join(held['reasons'])}; still at the provider: "
        f"{sim.get_backup(held_id) is not None}")  # fmt: skip
    gone = next(d["backup_id"] for d in real["deletions"] if d["outcome"] == "deleted")
    say(f"Why was backup {gone} deleted, by which run, under which policy?")
    console("history", "--backup", str(gone))
    show_notifications(world)

    return real, held_id


def restore_on_alarm(world: LocalWorld, deploy_backup: dict[int, int]) -> None:
    """Steps 6 and 7: the alarm restores web-server-01 from the deploy's backup; the flap does not."""
    sim = world.simulator
    step(6, "web-server-01 starts answering 5xx: its alarm enters ALARM")
    sim.add_backup(WEB, backup_type="automatic", created_at=datetime.now(UTC) - timedelta(seconds=1),
                   description="Automatic backup taken after the deploy")  # fmt: skip
    result = invoke("restore_on_alarm", alarm_event("ALARM", "OK", datetime.now(UTC)))
    for outcome in result["outcomes"]:
        say(f"{outcome['outcome']}: server {outcome['server_id']} from backup {outcome['backup_id']}")
        say(f"why: {outcome['reason']}")
    server = sim.servers[WEB]
    say(f"the provider says web-server-01 was restored from backup {server['restored_from']} "
        f"(the deploy's backup was {deploy_backup[WEB]})")  # fmt: skip
    show_notifications(world)

    step(7, "The alarm flaps: OK, then ALARM again a moment later")
    invoke("restore_on_alarm", alarm_event("OK", "ALARM", datetime.now(UTC)))
    flap = invoke("restore_on_alarm", alarm_event("ALARM", "OK", datetime.now(UTC) + timedelta(seconds=1)))
    for outcome in flap["outcomes"]:
        say(f"{outcome['outcome']}: {outcome['reason']}")
    say(f"restores at the provider for web-server-01: {sim.servers[WEB]['restore_count']}")
    show_notifications(world)


if __name__ == "__main__":
    main()
