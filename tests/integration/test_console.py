"""The ``vpsbackup`` console, run as the real console script in a subprocess, over the provider
simulator (real HTTP on 127.0.0.1) and a local AWS (moto's server on 127.0.0.1).

Given a fleet on the simulator and the project's resources in local AWS, when a command runs, then
its ``--json`` answer has the documented shape and its exit code is 0 (done), 1 (refused or
failed) or 2 (usage).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from devtools.local_env import create_resources
from devtools.simulator import Simulator
from devtools.simulator.pytest_plugin import SIM_TOKEN
from tests.conftest import FakeLambdaContext, load_event
from vpsbackup.aws import runtime
from vpsbackup.aws.state import PK, SK, StateTable, parse_key_time, utc_key_time
from vpsbackup.markers import describe_with_marker
from vpsbackup.records import Hold
from vpsbackup.restore.guard import IN_FLIGHT, LOCK_SK, lock_pk
from vpsbackup_local.world import SHARED_NAMES

pytestmark = pytest.mark.integration

CONSOLE = Path(sys.executable).with_name("vpsbackup")
WEB = 12345
POLICY = {"keep_last": 2}


@dataclass
class World:
    sim: Simulator
    endpoint: str
    env: dict[str, str]
    table_name: str
    secret_id: str
    topic_arn: str
    managed: list[int]  # this project's backups of WEB, newest first

    def run(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The console script, as a person would run it; never raises on a non-zero exit."""
        return subprocess.run(  # noqa: S603 - our own console script
            [str(CONSOLE), *args],
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            env=env if env is not None else self.env,
            timeout=90,
            check=False,
        )

    def json(self, *args: str, code: int = 0, input: str | None = None) -> dict[str, Any]:
        done = self.run(*args, "--json", input=input)
        assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    def state(self) -> StateTable:
        return StateTable.from_name(self.table_name)


@pytest.fixture
def world(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """The simulator with WEB's history of managed and automatic backups, and local AWS with the
    project's resources; the environment the functions (and so the console) read."""
    from aws_lambda_powertools.utilities import parameters
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)

    def reset_aws() -> None:
        # moto's backends are per process, not per server: start every test from an empty account.
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)  # noqa: S310

    reset_aws()
    import backup_on_deploy
    import prune_backups

    handlers = (backup_on_deploy, prune_backups)

    def forget() -> None:
        parameters.clear_caches()
        runtime.reset()
        for module in handlers:
            module.settings.cache_clear()

    forget()
    try:
        made = create_resources(table_name="vpsbackup-console", api_token=SIM_TOKEN, webhook_key="k")
        now = datetime.now(UTC)
        managed = [
            simulator.add_backup(
                WEB,
                "manual",
                "completed",
                now - timedelta(days=day, hours=2),
                describe_with_marker(f"Release {day}", f"gh-{day}"),
            )["id"]
            for day in range(1, 6)
        ]
        simulator.add_backup(WEB, "automatic", "completed", now - timedelta(days=3), "Automatic daily backup")
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("VPS_", "STATE_", "NOTIFY_", "RETENTION_", "RESTORE_", "PYTEST_"))
        }
        env.update(
            {
                "AWS_ENDPOINT_URL": endpoint,
                "VPS_API_BASE_URL": simulator.base_url,
                "VPS_API_TOKEN_SECRET": made.secret_id,
                "STATE_TABLE_NAME": made.table_name,
                "NOTIFY_TOPIC_ARN": made.topic_arn,
                "RETENTION_POLICY": json.dumps(POLICY),
                "COLUMNS": "200",
            }
        )
        for key in (
            "VPS_API_BASE_URL",
            "VPS_API_TOKEN_SECRET",
            "STATE_TABLE_NAME",
            "NOTIFY_TOPIC_ARN",
            "RETENTION_POLICY",
        ):
            monkeypatch.setenv(key, env[key])
        yield World(simulator, endpoint, env, made.table_name, made.secret_id, made.topic_arn, managed)
    finally:
        forget()
        reset_aws()
        server.stop()


def test_the_console_script_is_installed() -> None:
    assert CONSOLE.exists(), "make venv installs the project: .venv/bin/vpsbackup"


def test_backups_json_newest_first_with_prune_decision_and_deployment(world: World) -> None:
    data = world.json("backups", "--server", str(WEB))

    assert set(data) == {"server_id", "now", "policy", "backups"}
    assert data["policy"] == "last 2"
    rows = data["backups"]
    created = [r["created_at"] for r in rows]
    assert created == sorted(created, reverse=True)
    by_id = {r["backup_id"]: r for r in rows}
    assert set(rows[0]) == {
        "backup_id", "server_id", "type", "status", "created_at", "age", "size_mb",
        "deployment_id", "description", "holds", "prune",
    }  # fmt: skip
    newest, second, *older = world.managed
    assert by_id[newest]["deployment_id"] == "gh-1"
    assert by_id[newest]["prune"]["action"] == "keep"
    assert by_id[second]["prune"]["action"] == "keep"
    for backup_id in older:
        assert by_id[backup_id]["prune"]["action"] == "delete"
        assert any("no retention rule keeps it" in r for r in by_id[backup_id]["prune"]["reasons"])
    automatic = [r for r in rows if r["type"] == "automatic"]
    assert automatic[0]["prune"] == {"action": "skip", "reasons": ["automatic backups expire by themselves"]}


def test_usage_errors_exit_2_and_change_nothing(world: World) -> None:
    missing = world.run("backups")
    assert missing.returncode == 2
    assert "--server" in missing.stderr
    bad = world.run("hold", "add", str(world.managed[0]), "--for", "3 days", "--reason", "x")
    assert bad.returncode == 2
    assert "invalid duration" in bad.stderr
    both = world.run("history", "--server", "1", "--backup", "2")
    assert both.returncode == 2
    no_reason = world.run("restore", str(WEB), "--yes", "--override-cooldown")
    assert no_reason.returncode == 2
    assert "--reason" in no_reason.stderr
    assert world.state().active_holds(datetime.now(UTC)) == {}
    assert world.sim.servers[WEB]["restore_count"] == 0


def test_plan_is_the_prune_functions_own_dry_run(world: World) -> None:
    import prune_backups

    data = world.json("plan", "--server", str(WEB))
    function = prune_backups.handler({"dry_run": True, "server_ids": [WEB]}, FakeLambdaContext())

    assert data["dry_run"] is True
    assert data["totals"] == function["totals"]
    assert data["to_delete"] == function["to_delete"] == world.managed[2:][::-1]
    assert [(d["backup_id"], d["action"], d["reasons"]) for d in data["decisions"]] == [
        (d["backup_id"], d["action"], d["reasons"]) for d in function["decisions"]
    ]
    assert len(world.sim.backups) == 6, "a dry run deletes nothing"


def test_a_piped_table_takes_the_width_its_cells_need_and_cuts_no_word(world: World) -> None:
    env = {key: value for key, value in world.env.items() if key != "COLUMNS"}
    data = world.json("plan", "--server", str(WEB))

    done = world.run("plan", "--server", str(WEB), env=env)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    changing = [d for d in data["decisions"] if d["action"] in ("delete", "defer")]
    assert changing
    for decision in changing:
        row = next(line for line in lines if f" {decision['backup_id']} " in line)
        assert "; ".join(decision["reasons"]) in row, row
    assert max(len(line) for line in lines) > 80, "the table is as wide as its cells, not cut at 80 columns"


def test_a_manual_hold_protects_a_backup_from_the_real_prune_and_is_journaled(world: World) -> None:
    import prune_backups

    oldest = world.managed[-1]
    placed = world.json("hold", "add", str(oldest), "--for", "3d", "--reason", "before the db migration")
    assert placed["journaled"] is True
    assert placed["hold"]["kind"] == "manual"
    assert placed["hold"]["reason"] == "before the db migration"
    assert placed["hold"]["placed_by"].startswith("arn:aws:")  # the caller's AWS identity
    listed = world.json("hold", "list", "--server", str(WEB))
    assert [h["backup_id"] for h in listed["holds"]] == [oldest]

    result = prune_backups.handler({}, FakeLambdaContext())

    deleted = {d["backup_id"] for d in result["deletions"] if d["outcome"] == "deleted"}
    assert deleted == set(world.managed[2:-1])
    assert world.sim.get_backup(oldest) is not None, "the held backup is still at the provider"
    decision = next(d for d in result["decisions"] if d["backup_id"] == oldest)
    assert decision["action"] == "keep"
    assert any("before the db migration" in r for r in decision["reasons"])

    released = world.json("hold", "release", str(oldest), "--reason", "migration done")
    assert [h["kind"] for h in released["released"]] == ["manual"]
    history = world.json("history", "--backup", str(oldest))
    assert [e["act"] for e in history["entries"]] == ["hold_released", "hold_placed"]
    assert history["entries"][1]["reasons"] == ["before the db migration"]
    assert history["entries"][0]["by"] == placed["hold"]["placed_by"]


def test_releasing_a_restores_hold_needs_force(world: World) -> None:
    backup_id = world.managed[0]
    world.state().put_hold(
        Hold(backup_id=backup_id, server_id=WEB, until=datetime.now(UTC) + timedelta(days=7), reason="restore point")
    )
    refused = world.run("hold", "release", str(backup_id))
    assert refused.returncode == 1
    assert "needs --force" in refused.stderr
    assert world.state().active_hold(backup_id, datetime.now(UTC)) is not None

    forced = world.json("hold", "release", str(backup_id), "--force")
    assert [h["kind"] for h in forced["released"]] == ["restore"]
    assert world.state().active_hold(backup_id, datetime.now(UTC)) is None
    assert world.run("hold", "release", str(backup_id)).returncode == 1  # nothing left to release


def test_restore_asks_for_confirmation_and_a_no_does_nothing(world: World) -> None:
    declined = world.run("restore", str(WEB), input="n\n")
    assert declined.returncode == 1
    assert f"Restore server {WEB} from backup {world.managed[0]}?" in declined.stderr
    assert "not confirmed" in declined.stderr
    assert world.sim.servers[WEB]["restore_count"] == 0

    accepted = world.run("restore", str(WEB), input="y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert world.sim.servers[WEB]["restored_from"] == world.managed[0]
    assert "loses everything written in the last 1d2h" in accepted.stderr


def test_a_manual_restore_inside_the_cooldown_is_refused_with_the_reason(world: World) -> None:
    dry = world.json("restore", str(WEB), "--dry-run")
    assert dry["outcome"] == "would_restore"
    assert dry["backup_id"] == world.managed[0]
    assert dry["loses"] == "1d2h"
    assert dry["guard"] == "allowed"

    first = world.json("restore", str(WEB), "--yes")
    assert first["outcome"] == "restored"
    assert first["hold_until"] is not None
    second = world.json("restore", str(WEB), "--yes", code=1)
    assert second["outcome"] == "refused"
    assert "one restore per server per 6 hours (RESTORE_COOLDOWN)" in second["reason"]
    assert world.sim.servers[WEB]["restore_count"] == 1

    # An override right after the first restore was accepted: it may be running, so refused
    too_soon = world.json("restore", str(WEB), "--yes", "--override-cooldown", "--reason", "bad data", code=1)
    assert too_soon["outcome"] == "refused"
    assert "may be running right now" in too_soon["reason"]
    assert world.sim.servers[WEB]["restore_count"] == 1
    _backdate_restore_lock(world, IN_FLIGHT + timedelta(minutes=1))

    overridden = world.json(
        "restore", str(WEB), "--backup", str(world.managed[1]), "--yes", "--override-cooldown", "--reason", "bad data"
    )
    assert overridden["outcome"] == "restored"
    assert world.sim.servers[WEB]["restored_from"] == world.managed[1]
    acts = [e["act"] for e in world.json("history", "--server", str(WEB))["entries"]]
    assert acts == [
        "restore_requested",
        "cooldown_overridden",
        "restore_refused",
        "restore_refused",
        "restore_requested",
    ]


def _backdate_restore_lock(world: World, by: timedelta) -> None:
    """Move the server's restore lock ``by`` into the past, as if that much time had gone by."""
    table = world.state().table
    key = {PK: lock_pk(WEB), SK: LOCK_SK}
    item = table.get_item(Key=key, ConsistentRead=True)["Item"]
    for name in ("claimed_at", "reported_at", "restored_at"):
        if name in item:
            item[name] = utc_key_time(parse_key_time(str(item[name])) - by)
    table.put_item(Item=item)


def test_deployments_and_status_show_recorded_deploys_and_live_status(world: World) -> None:
    import backup_on_deploy

    event = load_event("deploy-eventbridge.json")
    event["detail"] = {"deployment_id": "gh-9000-1", "server_ids": [WEB]}
    made = backup_on_deploy.handler(event, FakeLambdaContext())
    backup_id = made["backups"][0]["backup_id"]

    fleet = world.json("deployments")
    assert [d["deployment_id"] for d in fleet["deployments"]] == ["gh-9000-1"]
    assert fleet["deployments"][0]["server_ids"] == [WEB]
    assert fleet["deployments"][0]["backup_ids"] == [backup_id]
    mine = world.json("deployments", "--server", str(WEB))
    assert mine["deployments"][0]["backup_ids"] == [backup_id]
    status = world.json("status", "gh-9000-1")
    assert status["servers"] == [
        {
            "server_id": WEB,
            "claim": "created",
            "backup_id": backup_id,
            "status": "completed",
            "created_at": status["servers"][0]["created_at"],
            "error": None,
        }
    ]
    unknown = world.run("status", "gh-nope")
    assert unknown.returncode == 1
    assert "not recorded" in unknown.stderr


STACK_TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Parameters": {
        "VpsApiBaseUrl": {"Type": "String"},
        "VpsApiTokenSecretArn": {"Type": "String"},
        "RetentionPolicy": {"Type": "String"},
        "RestoreCooldown": {"Type": "String"},
        "TableName": {"Type": "String"},
    },
    "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
    "Outputs": {
        "StateTableName": {"Value": {"Ref": "TableName"}},
        "NotificationsTopicArn": {"Value": {"Ref": "Topic"}},
    },
}


def test_stack_resolves_outputs_and_parameters_through_cloudformation(world: World) -> None:
    cfn = boto3.client("cloudformation", endpoint_url=world.endpoint)
    cfn.create_stack(
        StackName="vpsbackup-prod",
        TemplateBody=json.dumps(STACK_TEMPLATE),
        Parameters=[
            {"ParameterKey": "VpsApiBaseUrl", "ParameterValue": world.sim.base_url},
            {"ParameterKey": "VpsApiTokenSecretArn", "ParameterValue": world.secret_id},
            {"ParameterKey": "RetentionPolicy", "ParameterValue": json.dumps({"keep_last": 4})},
            {"ParameterKey": "RestoreCooldown", "ParameterValue": "2h"},
            {"ParameterKey": "TableName", "ParameterValue": world.table_name},
        ],
    )
    # Nothing of the project's own environment: only AWS's (endpoint, region, credentials).
    bare = {k: v for k, v in world.env.items() if not k.startswith(("VPS_", "STATE_", "NOTIFY_", "RETENTION_"))}
    done = world.run("--stack", "vpsbackup-prod", "backups", "--server", str(WEB), "--json", env=bare)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["policy"] == "last 4"  # the stack's RetentionPolicy parameter, not the environment's
    assert sum(1 for r in data["backups"] if r["prune"]["action"] == "delete") == 1

    missing = world.run("--stack", "no-such-stack", "hold", "list", env=bare)
    assert missing.returncode == 1
    assert "--stack no-such-stack" in missing.stderr
    unconfigured = world.run("hold", "list", env=bare)
    assert unconfigured.returncode == 1
    assert "STATE_TABLE_NAME" in unconfigured.stderr


def test_local_commands_share_the_seeded_world_that_vpsbackup_local_runs(world: World, tmp_path: Path) -> None:
    # Nothing of the project's environment, nor an AWS endpoint; a runtime directory of its own
    bare = {k: v for k, v in world.env.items() if not k.startswith(("VPS_", "STATE_", "NOTIFY_", "AWS_ENDPOINT"))}
    bare["XDG_RUNTIME_DIR"] = str(tmp_path)
    told = tmp_path / "vpsbackup" / "local-world.json"

    # With no world running, a --local command says how to start one, in one line
    none = world.run("--local", "hold", "list", env=bare)
    assert none.returncode == 1
    assert _one_line_failure(none, "no local world is running", "vpsbackup --local")

    # When `vpsbackup --local` runs, the other --local commands find its world
    server = subprocess.Popen(  # noqa: S603 - our own console script
        [str(CONSOLE), "--local"], env=bare, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        exports = [server.stdout.readline() for _ in SHARED_NAMES]  # printed once the file is written
        assert told.exists(), (exports, told)
        assert any(line.startswith("export VPS_API_BASE_URL='http://127.0.0.1:") for line in exports)

        # ... seeded as make demo is: the project's backups, some kept and some deleted, with reasons
        plan = world.run("--local", "plan", "--server", str(WEB), "--json", env=bare)
        assert plan.returncode == 0, plan.stderr
        decisions = json.loads(plan.stdout)["decisions"]
        actions = {d["action"] for d in decisions}
        assert {"keep", "delete"} <= actions, actions
        assert all(d["reasons"] for d in decisions if d["action"] in ("keep", "delete"))
        doomed = next(d["backup_id"] for d in decisions if d["action"] == "delete")

        # ... and a hold one command places is there for the next
        held = world.run("--local", "hold", "add", str(doomed), "--for", "1d", "--reason", "kept", env=bare)
        assert held.returncode == 0, held.stderr
        holds = world.run("--local", "hold", "list", "--json", env=bare)
        assert holds.returncode == 0, holds.stderr
        assert [h["backup_id"] for h in json.loads(holds.stdout)["holds"]] == [doomed]
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=60)
    # Stopped, the world is no longer told
    assert not told.exists()
    gone = world.run("--local", "hold", "list", env=bare)
    assert gone.returncode == 1
    assert "no local world is running" in gone.stderr


def test_a_manual_restore_on_a_listing_with_an_invalid_item_is_refused_and_journaled(world: World) -> None:
    # Given one item of WEB's listing that does not validate (created_at null)
    bad = world.sim.add_backup(WEB, extra={"created_at": None})

    # When a person asks for a restore, dry run or not
    dry = world.json("restore", str(WEB), "--dry-run", code=1)
    real = world.json("restore", str(WEB), "--yes", code=1)

    # Then no restore point is chosen from a listing that misses one of the server's items
    for answer in (dry, real):
        assert answer["outcome"] == "refused"
    assert f"backup {bad['id']}" in real["reason"] and "incomplete" in real["reason"]
    assert world.sim.servers[WEB]["restore_count"] == 0
    # And the refusal is journaled with its cause
    [entry] = world.json("history", "--server", str(WEB))["entries"]
    assert (entry["act"], entry["outcome"]) == ("restore_refused", "list_incomplete")


def test_plan_on_a_walk_cut_short_plans_nothing_and_exits_1(world: World) -> None:
    # Given 20 more manual backups of WEB (3 pages of 10), and page 2's next link naming another host
    for hours in range(20):
        world.sim.add_backup(WEB, "manual", "completed", datetime.now(UTC) - timedelta(hours=hours + 1), "by hand")
    world.sim.set_next_link("other_host", on_page=2)

    # When the prune plan is asked for
    done = world.run("plan", "--server", str(WEB), "--json")

    # Then nothing is planned, and the person is told the listing is incomplete (exit 1)
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert data["listing_complete"] is False and data["totals"]["to_delete"] == 0
    assert "listing is incomplete" in done.stderr


def test_hold_add_finds_its_backup_past_a_deleted_servers_invalid_item_and_names_an_invalid_one(
    world: World,
) -> None:
    # Given a deleted server's backup (server null) in the fleet's listing, and an item of WEB whose
    # created_at is null
    orphan = world.sim.add_backup(12346, extra={"server": None})
    bad = world.sim.add_backup(WEB, extra={"created_at": None})

    # When a person holds a real backup, then the invalid one, then one that does not exist
    placed = world.json("hold", "add", str(world.managed[-1]), "--for", "3d", "--reason", "audit")
    invalid = world.run("hold", "add", str(bad["id"]), "--for", "3d", "--reason", "audit")
    missing = world.run("hold", "add", "999999", "--for", "3d", "--reason", "audit")

    # Then the real one is held whatever else the listing shows, and the others are refused, each saying why
    assert placed["hold"]["backup_id"] == world.managed[-1]
    assert invalid.returncode == 1 and f"backup {bad['id']} (server {WEB}) is not valid: created_at" in invalid.stderr
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    assert orphan["id"] not in world.state().active_holds(datetime.now(UTC))


# -- failures: one line on stderr, naming the cause and the fix; no traceback ----------------------


def _bare_env(world: World, **extra: str) -> dict[str, str]:
    """The console's environment with no AWS region, credentials, profile or endpoint."""
    env = {k: v for k, v in world.env.items() if not k.startswith("AWS_")}
    env.update({"AWS_CONFIG_FILE": "/nonexistent/config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/creds"})
    env.update(extra)
    return env


def _one_line_failure(done: subprocess.CompletedProcess[str], *words: str) -> str:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_stack_without_a_region_says_how_to_give_one(world: World) -> None:
    done = world.run("--stack", "prod", "plan", env=_bare_env(world))
    _one_line_failure(done, "region", "--region")


def test_stack_without_credentials_says_how_to_give_them(world: World) -> None:
    done = world.run("--stack", "prod", "--region", "eu-central-1", "plan", env=_bare_env(world))
    _one_line_failure(done, "credentials", "--profile")


def test_an_unknown_profile_is_one_line(world: World) -> None:
    done = world.run("--profile", "nobody", "--stack", "prod", "plan", env=_bare_env(world))
    _one_line_failure(done, "nobody")


def test_an_unreadable_token_secret_names_the_cause(world: World) -> None:
    env = dict(world.env, VPS_API_TOKEN_SECRET="arn:aws:secretsmanager:us-east-1:123456789012:secret:gone")
    done = world.run("backups", "--server", str(WEB), env=env)
    _one_line_failure(done, "VPS_API_TOKEN_SECRET", "ResourceNotFoundException")


def test_a_restore_with_stdin_closed_is_refused_as_not_confirmed(world: World) -> None:
    done = subprocess.run(  # noqa: S603 - our own console script
        [str(CONSOLE), "restore", str(WEB)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=world.env,
        timeout=90,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "refused: not confirmed" in done.stderr
    assert "Aborted" not in done.stderr
    assert "Traceback" not in done.stderr
    assert world.sim.servers[WEB]["restore_count"] == 0


def test_json_always_answers_in_json(world: World) -> None:
    env = dict(world.env, VPS_API_TOKEN_SECRET="arn:aws:secretsmanager:us-east-1:123456789012:secret:gone")
    done = world.run("backups", "--server", str(WEB), "--json", env=env)
    assert done.returncode == 1
    answer = json.loads(done.stdout)
    assert answer["outcome"] == "failed"
    assert "VPS_API_TOKEN_SECRET" in answer["reason"]


def test_a_server_with_no_backups_is_said_so(world: World) -> None:
    for command in (("backups", "--server", "99999"), ("plan", "--server", "99999")):
        done = world.run(*command)
        assert done.returncode == 0, done.stderr
        assert "server 99999 has no backups at the provider" in done.stdout, done.stdout


def test_version() -> None:
    done = subprocess.run([str(CONSOLE), "--version"], capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert done.returncode == 0
    assert done.stdout.startswith("vpsbackup ")
