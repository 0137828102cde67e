"""The ``vpsbackup`` commands (docs/console.md).

Exit codes: 0 done; 1 refused or failed, with the reason in one line on stderr (and, with
``--json``, in a JSON answer on stdout); 2 usage (Click's own: a missing or bad option). Every read
command takes ``--json``; the JSON is the same data the table is drawn from (``views``). Nothing
that goes wrong prints a traceback: ``main`` turns every failure into one line (with ``-v`` too).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

import click

# Before the package is imported: its Powertools logger reads these when it is created. The
# console's log lines go to stderr (below), at WARNING unless asked otherwise.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "vpsbackup-console")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "VpsBackupConsole")

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vpsbackup.durations import DurationError, format_duration, parse_duration
from vpsbackup.errors import VpsBackupError, describe_aws_error
from vpsbackup.observability import logger
from vpsbackup.provider.errors import VpsApiError
from vpsbackup.provider.models import Backup, InvalidItem
from vpsbackup.prune import report_render
from vpsbackup.prune.job import PruneOptions, PruneReport, run_prune
from vpsbackup.prune.request import PruneRequest
from vpsbackup.prune.settings import PruneSettings
from vpsbackup.records import Hold
from vpsbackup.restore.guard import RestoreGuard
from vpsbackup.restore.manual import ManualRestorePlan, ManualRestorer, ManualRestoreResult
from vpsbackup.restore.point import human_time
from vpsbackup.restore.settings import RestoreOnAlarmSettings
from vpsbackup_console import views
from vpsbackup_console.where import Where

T = TypeVar("T")

# No markup in what is printed: reasons, descriptions and the journal carry "[...]" of their own
# (a backup's marker, "[policy last 3]"), which Rich would otherwise read as style tags and drop.
# No emoji either (":secret:" in an ARN is not an emoji), and stderr's lines are never wrapped: a
# failure is one line, whatever the terminal's width.
# Piped (not a terminal, no COLUMNS given), a table takes the width its cells need: no cell wraps,
# so no word is cut at Rich's default of 80 columns.
_PIPED_WIDTH = 10_000
out = Console(
    highlight=False,
    soft_wrap=False,
    markup=False,
    emoji=False,
    width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else _PIPED_WIDTH,
)
err = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)


def _logs_to_stderr() -> None:
    handler = getattr(logger, "registered_handler", None)
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sys.stderr)


# Whether this command was asked for JSON, and whether it printed its answer: a failure then
# answers in JSON as well (``main``), so a script always reads one JSON document.
_answer = {"json": False, "printed": False}


class Refused(click.ClickException):
    """Refused: exit 1 with the reason."""

    exit_code = 1
    outcome = "refused"

    def __init__(self, message: str, payload: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.payload = payload

    def show(self, file: Any = None) -> None:
        err.print(f"[bold red]vpsbackup: {self.outcome}:[/] {escape(self.message)}", markup=True, highlight=False)
        if _answer["json"] and not _answer["printed"]:
            click.echo(json.dumps(self.payload or {"outcome": self.outcome, "reason": self.message}, default=str))


class Failed(Refused):
    """Failed (AWS, the provider, a setting): exit 1 with the cause and the fix."""

    outcome = "failed"


class DurationType(click.ParamType[timedelta]):
    """A duration in the project's grammar (``36h``, ``7d``, ``1d12h``)."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            parsed = parse_duration(str(value))
        except DurationError as exc:
            self.fail(str(exc), param, ctx)
        if parsed <= timedelta(0):
            self.fail("must be longer than 0s", param, ctx)
        return parsed


DURATION = DurationType()
ID = click.IntRange(min=1)


def _emit(data: dict[str, Any], as_json: bool, draw: Callable[[dict[str, Any]], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
        _answer["printed"] = True
    else:
        draw(data)


def _where(ctx: click.Context) -> Where:
    where: Where = ctx.ensure_object(dict)["where"]
    return where


def _acting(action: Callable[[], T]) -> T:
    """Run one step against the API or AWS; a failure is exit 1 with what went wrong."""
    try:
        return action()
    except click.ClickException:
        raise
    except VpsApiError as exc:
        raise Failed(f"the provider's API: {exc}") from None
    except VpsBackupError as exc:
        raise Failed(str(exc)) from None
    except Exception as exc:  # AWS errors (credentials, missing table, throttling) and the like
        raise Failed(describe_aws_error(exc)) from None


def _json_wanted(ctx: click.Context, param: click.Parameter, as_json: bool) -> bool:
    _answer["json"] = _answer["json"] or as_json
    return as_json


json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    is_eager=True,
    callback=_json_wanted,
    help="Print JSON (for scripts) instead of a table.",
)


@contextmanager
def _local_world() -> Iterator[Any]:
    try:
        import moto.server  # noqa: F401 - the local extra's; checked before anything starts

        from vpsbackup_local.world import demo_world
    except ImportError as exc:
        raise Failed(
            f"--local needs the local extra ({(exc.name or 'moto').split('.')[0]} is missing): "
            "pip install 'vps-backup-automation[local]'"
        ) from None
    with demo_world() as world:
        yield world


def _join_local_world() -> None:
    """Act on the world a `vpsbackup --local` of this user runs now (its environment), or fail."""
    from vpsbackup_local.world import running_world, world_file

    environment = running_world()
    if environment is None:
        raise Failed(
            f"no local world is running (none told in {world_file()}): start one with `vpsbackup --local` "
            "in another shell, then run this command again"
        )
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(environment)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--stack", metavar="NAME", help="Act on this deployed stack (its outputs and parameters).")
@click.option("--local", is_flag=True, help="Alone: start the demo world, keep it running. With a command: act on it.")
@click.option("--region", metavar="REGION", help="The AWS region (as the AWS CLI's --region; else AWS_REGION).")
@click.option("--profile", metavar="NAME", help="The AWS profile (as the AWS CLI's --profile; else AWS_PROFILE).")
@click.option("-v", "--verbose", is_flag=True, help="Show the package's log lines (on stderr).")
@click.version_option(package_name="vps-backup-automation", prog_name="vpsbackup", message="%(prog)s %(version)s")
@click.pass_context
def cli(
    ctx: click.Context, stack: str | None, local: bool, region: str | None, profile: str | None, verbose: bool
) -> None:
    """The on-call console of the VPS backup automation: backups, prune plans, holds, manual
    restores, deployments and the journal of every irreversible act."""
    _logs_to_stderr()
    if region or profile:
        import boto3

        # Every client the console and the package make comes from boto3's default session.
        _acting(lambda: boto3.setup_default_session(region_name=region, profile_name=profile))
    if verbose:
        logger.setLevel("INFO")
    if local and stack:
        raise click.UsageError("--local and --stack exclude each other")
    if local and ctx.invoked_subcommand is None:
        _serve_local(ctx.with_resource(_local_world()))
        return
    if local:
        _join_local_world()
    elif ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        return
    ctx.obj = {"where": _acting(lambda: Where.resolve(stack))}
    ctx.call_on_close(lambda: ctx.obj["where"].close())


def _serve_local(world: Any) -> None:
    from vpsbackup_local.world import SHARED_NAMES, publish, withdraw

    environment = {name: os.environ.get(name, "") for name in SHARED_NAMES}
    told = publish(environment)
    err.print(
        f"Local world: provider simulator at {world.api_base_url}, local AWS at {world.aws_endpoint}. "
        "While it runs, `vpsbackup --local COMMAND` in another shell acts on it (or paste these lines "
        "and run vpsbackup without --local); Ctrl-C stops the world."
    )
    for name, value in environment.items():
        click.echo(f"export {name}='{value}'")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        err.print("stopped")
    finally:
        withdraw(told)


def _now() -> datetime:
    return datetime.now(UTC)


# -- backups -----------------------------------------------------------------------------------


def _dry_run(where: Where, server_ids: list[int] | None) -> PruneReport:
    """The prune function's own run, as a dry run: the same listing, holds and plan (plan_fleet)."""
    settings = where.settings(PruneSettings)
    request = PruneRequest(trigger="manual", dry_run=True, server_ids=server_ids)
    return run_prune(request, PruneOptions.from_settings(settings), client=where.client, holds=where.state)


_NO_BACKUPS = "server {server_id} has no backups at the provider (is the id right? the provider's server list has it)"


def _holds_by_backup(where: Where, now: datetime) -> dict[int, list[Hold]]:
    found: dict[int, list[Hold]] = defaultdict(list)
    for hold in where.state.iter_holds():
        if hold.until > now:
            found[hold.backup_id].append(hold)
    return found


@cli.command()
@click.option("--server", "server_id", type=ID, required=True, help="The server's id.")
@json_option
@click.pass_context
def backups(ctx: click.Context, server_id: int, as_json: bool) -> None:
    """A server's backups, newest first, with holds and what prune would do with each and why."""
    where = _where(ctx)
    settings = _acting(lambda: where.settings(PruneSettings))
    now = _now()
    listed = _acting(lambda: where.client.list_backups(server_id=server_id))
    report = _acting(lambda: _dry_run(where, [server_id]))
    holds = _acting(lambda: _holds_by_backup(where, now))
    decided = report.plan.decisions
    assert decided is not None  # a run limited to server ids keeps every decision
    data = views.backups_view(
        server_id,
        listed,
        decisions={d.backup_id: d for d in decided},
        holds=holds,
        now=now,
        policy=settings.retention_policies(server_id).describe(),
    )

    def draw(view: dict[str, Any]) -> None:
        if not view["backups"]:
            out.print(_NO_BACKUPS.format(server_id=server_id))
            return
        table = Table(title=f"Server {server_id}: {len(view['backups'])} backup(s), policy {view['policy']}")
        for column in ("id", "type", "status", "age", "size", "deployment", "holds", "prune", "why"):
            table.add_column(column, overflow="fold")
        for row in view["backups"]:
            holds_text = "; ".join(f"{h['kind']} until {h['until'][:16]} ({h['reason']})" for h in row["holds"])
            table.add_row(
                str(row["backup_id"]),
                row["type"],
                row["status"],
                row["age"],
                f"{row['size_mb']} MB" if row["size_mb"] is not None else "-",
                row["deployment_id"] or "-",
                holds_text or "-",
                row["prune"]["action"],
                "; ".join(row["prune"]["reasons"]),
            )
        out.print(table)

    _emit(data, as_json, draw)


@cli.command()
@click.option("--server", "server_ids", type=ID, multiple=True, help="Only this server (repeatable).")
@json_option
@click.pass_context
def plan(ctx: click.Context, server_ids: tuple[int, ...], as_json: bool) -> None:
    """The prune plan as a dry run, exactly as the prune function would decide it now."""
    where = _where(ctx)
    report = _acting(lambda: _dry_run(where, list(server_ids) or None))
    data = report_render.result_record(report)

    def draw(view: dict[str, Any]) -> None:
        changing = [d for d in view["decisions"] if d["action"] in ("delete", "defer")]
        table = Table(title=f"Prune plan (dry run) at {view['now'][:19]}: {len(changing)} backup(s) would change")
        for column in ("server", "backup", "created", "action", "why"):
            table.add_column(column, overflow="fold")
        for d in changing:
            table.add_row(
                str(d["server_id"]), str(d["backup_id"]), d["created_at"][:16], d["action"], "; ".join(d["reasons"])
            )
        out.print(table)
        totals = view["totals"]
        out.print(
            f"listed {totals['listed']}, kept {totals['kept']}, skipped {totals['skipped']}, "
            f"would delete {totals['to_delete']}, deferred {totals['deferred']}"
        )
        planned = {d["server_id"] for d in view["decisions"]}
        for server_id in server_ids:
            if server_id not in planned:
                out.print(_NO_BACKUPS.format(server_id=server_id))
        invalid = view["invalid_items"]
        if invalid["count"]:
            left = ", ".join(str(s) for s in invalid["servers_left_alone"]) or "none"
            out.print(f"{invalid['count']} listed item(s) did not validate, skipped; servers left alone: {left}")

    _emit(data, as_json, draw)
    if not data["listing_complete"]:
        # Nothing was planned: "0 would change" must not read as "nothing to prune".
        raise Refused(f"the listing is incomplete, nothing was planned: {data['progress']['stopped']}", data)


# -- holds -------------------------------------------------------------------------------------


@cli.group()
def hold() -> None:
    """Manual holds: backups prune must keep (like a restore's hold)."""


def _find_backup(where: Where, backup_id: int) -> Backup:
    """The backup, from the fleet's whole listing. An item that does not validate elsewhere in the
    fleet (a deleted server's backup) does not stop the search; "does not exist" is said only when
    no item could be this one."""
    invalid: list[InvalidItem] = []
    found = _acting(
        lambda: next((b for b in where.client.iter_backups(on_invalid=invalid.append) if b.id == backup_id), None)
    )
    if found is not None:
        return found
    if (this := next((i for i in invalid if i.backup_id == backup_id), None)) is not None:
        raise Refused(f"{this.describe()}; prune never deletes it (an item that does not validate is skipped)")
    if any(i.backup_id is None for i in invalid):
        raise Refused(f"backup {backup_id} is not listed, but an item without a readable id is: it may be that one")
    raise Refused(f"backup {backup_id} does not exist at the provider")


@hold.command("add")
@click.argument("backup_id", type=ID)
@click.option("--for", "duration", type=DURATION, required=True, help="How long, e.g. 3d or 36h.")
@click.option("--reason", required=True, help="Why, in words people will read in the journal.")
@json_option
@click.pass_context
def hold_add(ctx: click.Context, backup_id: int, duration: timedelta, reason: str, as_json: bool) -> None:
    """Hold BACKUP_ID so that prune keeps it for DURATION."""
    if not reason.strip():
        raise click.BadParameter("must not be empty", param_hint="--reason")
    where = _where(ctx)
    backup = _find_backup(where, backup_id)
    now = _now()
    held = Hold(
        backup_id=backup.id,
        server_id=backup.server.id,
        until=now + duration,
        reason=reason.strip(),
        kind="manual",
        placed_by=where.who,
        placed_at=now,
    )
    if not _acting(lambda: where.state.put_hold(held)):
        standing = next((h for h in where.state.holds_of(backup_id) if h.kind == "manual"), None)
        detail = (
            f"until {human_time(standing.until)}, placed by {standing.placed_by or '?'}: {standing.reason}"
            if standing
            else "a longer one"
        )
        raise Refused(f"backup {backup_id} already has a longer manual hold ({detail}); it is kept")
    entry = where.journal.record(
        "hold_placed",
        by=where.who,
        outcome="held",
        server_id=backup.server.id,
        backup_id=backup.id,
        reasons=(held.reason,),
        details={"until": held.until.isoformat(), "for": format_duration(duration), "kind": "manual"},
    )
    data = {"hold": views.hold_view(held, now), "journaled": entry is not None}
    _emit(
        data,
        as_json,
        lambda v: out.print(
            f"Backup {backup_id} (server {backup.server.id}) is held until {human_time(held.until)}: {held.reason}"
        ),
    )


@hold.command("list")
@click.option("--server", "server_id", type=ID, help="Only this server's holds.")
@json_option
@click.pass_context
def hold_list(ctx: click.Context, server_id: int | None, as_json: bool) -> None:
    """Holds in force, manual and restore ones."""
    where = _where(ctx)
    now = _now()
    data = views.holds_view(_acting(lambda: list(where.state.iter_holds())), now, server_id=server_id)

    def draw(view: dict[str, Any]) -> None:
        table = Table(title=f"{len(view['holds'])} hold(s) in force")
        for column in ("backup", "server", "kind", "until", "left", "placed by", "reason"):
            table.add_column(column, overflow="fold")
        for h in view["holds"]:
            table.add_row(
                str(h["backup_id"]),
                str(h["server_id"]),
                h["kind"],
                h["until"][:16],
                h["left"],
                h["placed_by"] or "-",
                h["reason"],
            )
        out.print(table)

    _emit(data, as_json, draw)


@hold.command("release")
@click.argument("backup_id", type=ID)
@click.option("--force", is_flag=True, help="Also release a hold a restore placed on its restore point.")
@click.option("--reason", default="", help="Why (for the journal).")
@json_option
@click.pass_context
def hold_release(ctx: click.Context, backup_id: int, force: bool, reason: str, as_json: bool) -> None:
    """Release BACKUP_ID's manual hold (and, with --force, a restore's hold)."""
    where = _where(ctx)
    now = _now()
    standing = [h for h in _acting(lambda: where.state.holds_of(backup_id)) if h.until > now]
    if not standing:
        raise Refused(f"backup {backup_id} has no hold in force")
    restore_holds = [h for h in standing if h.kind == "restore"]
    releasing = [h for h in standing if h.kind == "manual" or force]
    if not releasing:
        h = restore_holds[0]
        raise Refused(
            f"backup {backup_id} is held by a restore until {human_time(h.until)} ({h.reason}); "
            "it is a restore point: releasing it needs --force"
        )
    released = _release(where, backup_id, releasing, reason)
    remaining = [h for h in standing if h not in released]
    data = {
        "backup_id": backup_id,
        "released": [views.hold_view(h, now) for h in released],
        "remaining": [views.hold_view(h, now) for h in remaining],
    }

    def draw(view: dict[str, Any]) -> None:
        for h in view["released"]:
            out.print(f"Released the {h['kind']} hold on backup {backup_id} (it was until {h['until'][:16]}).")
        for h in view["remaining"]:
            out.print(f"Still held: a {h['kind']} hold until {h['until'][:16]} ({h['reason']}); --force releases it.")

    _emit(data, as_json, draw)


def _release(where: Where, backup_id: int, releasing: list[Hold], reason: str) -> list[Hold]:
    """Delete each hold of ``releasing`` on ``backup_id``, journaling each one deleted; those deleted."""
    released = []
    for h in releasing:
        if _acting(lambda h=h: where.state.delete_hold(backup_id, h.kind)):  # type: ignore[misc]
            released.append(h)
            where.journal.record(
                "hold_released",
                by=where.who,
                outcome="released" if h.kind == "manual" else "released (forced)",
                server_id=h.server_id,
                backup_id=backup_id,
                reasons=(reason,) if reason else (),
                details={"kind": h.kind, "was_until": h.until.isoformat(), "placed_by": h.placed_by},
            )
    return released


# -- restore -----------------------------------------------------------------------------------


def _plan_view(p: ManualRestorePlan) -> dict[str, Any]:
    backup = p.backup
    return {
        "server_id": p.server_id,
        "backup_id": backup.id if backup else None,
        "backup_type": backup.backup_type if backup else None,
        "created_at": backup.created_at.isoformat() if backup else None,
        "why": p.decision.reason,
        "loses": views.age(p.now, backup.created_at) if backup else None,
        "override_cooldown": p.override_cooldown,
        "guard": "allowed" if p.refusal is None else p.refusal.reason,
        "refused": p.refused_because,
    }


@cli.command()
@click.argument("server_id", type=ID)
@click.option("--backup", "backup_id", type=ID, help="Restore from this backup instead of the one chosen.")
@click.option("--dry-run", is_flag=True, help="Show what would happen; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--override-cooldown", is_flag=True, help="Restore inside the server's cooldown (needs --reason).")
@click.option("--reason", help="Why the cooldown is overridden (journaled).")
@json_option
@click.pass_context
def restore(
    ctx: click.Context,
    server_id: int,
    backup_id: int | None,
    dry_run: bool,
    yes: bool,
    override_cooldown: bool,
    reason: str | None,
    as_json: bool,
) -> None:
    """Restore SERVER_ID by hand, inside the alarm path's guardrails."""
    _check_override(override_cooldown, reason)
    where = _where(ctx)
    settings = _acting(lambda: where.settings(RestoreOnAlarmSettings))
    guard = RestoreGuard(where.state, cooldown=settings.restore_cooldown, max_per_hour=settings.max_restores_per_hour)
    restorer = ManualRestorer(
        settings, client=where.client, state=where.state, guard=guard, journal=where.journal, who=where.who
    )
    planned = _acting(lambda: restorer.plan(server_id, backup_id=backup_id, override_cooldown=override_cooldown))
    plan_data = _plan_view(planned)
    if not as_json:
        _draw_restore_plan(plan_data)
    if dry_run:
        _answer_dry_run(planned, plan_data, as_json)
        return
    if planned.refused_because:
        restorer.refuse(planned)
        data = {"dry_run": False, "outcome": "refused", "reason": planned.refused_because, "plan": plan_data}
        _refuse(planned.refused_because, data, as_json)
    if not yes:
        _confirm_restore(planned, plan_data)
    result = _acting(lambda: restorer.execute(planned, override_reason=reason))
    _answer_restore(result, plan_data, as_json)


def _check_override(override_cooldown: bool, reason: str | None) -> None:
    if override_cooldown and not (reason and reason.strip()):
        raise click.UsageError("--override-cooldown needs --reason TEXT")
    if reason and not override_cooldown:
        raise click.UsageError("--reason goes with --override-cooldown")


def _refuse(reason: str, data: dict[str, Any], as_json: bool) -> NoReturn:
    """Refused: the JSON answer first when asked for, then the refusal (one line, exit code)."""
    if as_json:
        _emit(data, True, lambda v: None)
    raise Refused(reason, data)


def _answer_dry_run(planned: ManualRestorePlan, plan_data: dict[str, Any], as_json: bool) -> None:
    data = {"dry_run": True, "outcome": "refused" if planned.refused_because else "would_restore", **plan_data}
    if planned.refused_because:
        _refuse(planned.refused_because, data, as_json)
    if as_json:
        _emit(data, True, lambda v: None)


def _confirm_restore(planned: ManualRestorePlan, plan_data: dict[str, Any]) -> None:
    assert planned.backup is not None
    question = (
        f"Restore server {planned.server_id} from backup {planned.backup.id}? It loses everything written in the "
        f"last {plan_data['loses']}."
    )
    try:
        confirmed = click.confirm(question, default=False, err=True)
    except click.Abort:  # standard input closed (or Ctrl-C): the same as answering no
        err.print()
        confirmed = False
    if not confirmed:
        raise Refused("not confirmed: nothing was done")


def _answer_restore(result: ManualRestoreResult, plan_data: dict[str, Any], as_json: bool) -> None:
    data = {
        "dry_run": False,
        "outcome": result.outcome,
        "reason": result.reason,
        "server_id": result.server_id,
        "backup_id": result.backup_id,
        "cause": result.cause,
        "hold_until": result.hold_until.isoformat() if result.hold_until else None,
        "overridden": result.overridden,
        "plan": plan_data,
    }
    if result.outcome != "restored":
        _refuse(result.reason, data, as_json)
    if as_json:
        _emit(data, True, lambda v: None)
        return
    out.print(
        f"[bold green]Restoring[/] server {result.server_id} from backup {result.backup_id}: {escape(result.reason)}.",
        markup=True,
    )
    if result.hold_until:
        out.print(f"Backup {result.backup_id} is held until {human_time(result.hold_until)}.")


def _draw_restore_plan(p: dict[str, Any]) -> None:
    if p["backup_id"] is None:
        out.print(f"Server {p['server_id']}: no restore point. {p['why']}.")
        return
    out.print(f"Server {p['server_id']} would be restored from backup {p['backup_id']} ({p['backup_type']}, "
              f"created {p['created_at'][:19]}).")  # fmt: skip
    out.print(f"Why: {p['why']}.")
    out.print(f"It loses: everything written since then ({p['loses']}).")
    out.print(f"Guardrails: {p['guard']}.")


# -- deployments -------------------------------------------------------------------------------


@cli.command()
@click.option("--server", "server_id", type=ID, help="Only this server's deployments.")
@json_option
@click.pass_context
def deployments(ctx: click.Context, server_id: int | None, as_json: bool) -> None:
    """Recorded deployments, newest first."""
    where = _where(ctx)
    if server_id is not None:
        data = views.deployment_records_view(server_id, _acting(lambda: where.state.deployments_of(server_id)))
    else:
        metas = _acting(lambda: list(where.claims.iter_deployments()))
        claims = {m.deployment_id: _acting(lambda m=m: where.claims.load_deployment(m.deployment_id)[1]) for m in metas}  # type: ignore[misc]
        data = views.deployment_metas_view(metas, claims)

    def draw(view: dict[str, Any]) -> None:
        table = Table(title=f"{len(view['deployments'])} deployment(s)")
        for column in ("deployment", "received", "servers", "backups"):
            table.add_column(column, overflow="fold")
        for d in view["deployments"]:
            table.add_row(
                d["deployment_id"],
                d["received_at"][:19],
                ", ".join(str(s) for s in d["server_ids"]),
                ", ".join(str(b) for b in d["backup_ids"]) or "-",
            )
        out.print(table)

    _emit(data, as_json, draw)


@cli.command()
@click.argument("deployment_id")
@json_option
@click.pass_context
def status(ctx: click.Context, deployment_id: str, as_json: bool) -> None:
    """A deployment's backups and their live status at the provider."""
    where = _where(ctx)
    meta, claims = _acting(lambda: where.claims.load_deployment(deployment_id))
    if meta is None and not claims:
        raise Refused(f"deployment {deployment_id!r} is not recorded")
    live: dict[int, Backup | None] = {}
    for server_id, claim in claims.items():
        if claim.backup_id is not None:
            wanted = claim.backup_id
            live[server_id] = _acting(
                lambda s=server_id, w=wanted: next(  # type: ignore[misc]
                    (b for b in where.client.iter_backups(server_id=s) if b.id == w), None
                )
            )
    data = views.status_view(meta, claims, live, deployment_id)

    def draw(view: dict[str, Any]) -> None:
        table = Table(title=f"Deployment {deployment_id}, received {str(view['received_at'])[:19]}")
        for column in ("server", "claim", "backup", "status", "error"):
            table.add_column(column, overflow="fold")
        for s in view["servers"]:
            table.add_row(
                str(s["server_id"]), s["claim"], str(s["backup_id"] or "-"), s["status"] or "-", s["error"] or ""
            )
        out.print(table)

    _emit(data, as_json, draw)


# -- history -----------------------------------------------------------------------------------


@cli.command()
@click.option("--server", "server_id", type=ID, help="Only this server's entries.")
@click.option("--backup", "backup_id", type=ID, help="Only this backup's entries.")
@click.option("--since", type=DURATION, default="30d", show_default=True, help="How far back.")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True)
@json_option
@click.pass_context
def history(
    ctx: click.Context, server_id: int | None, backup_id: int | None, since: timedelta, limit: int, as_json: bool
) -> None:
    """The journal: every irreversible act and refusal, newest first."""
    if server_id is not None and backup_id is not None:
        raise click.UsageError("give --server or --backup, not both")
    where = _where(ctx)
    now = _now()
    start = now - since
    if backup_id is not None:
        entries = _acting(lambda: where.journal.for_backup(backup_id, since=start, limit=limit))
    elif server_id is not None:
        entries = _acting(lambda: where.journal.for_server(server_id, since=start, limit=limit))
    else:
        entries = _acting(lambda: where.journal.recent(start, now=now, limit=limit))
    data = views.history_view(entries, server_id=server_id, backup_id=backup_id)

    def draw(view: dict[str, Any]) -> None:
        table = Table(title=f"Journal: {len(view['entries'])} entr{'y' if len(view['entries']) == 1 else 'ies'}")
        for column in ("when", "act", "server", "backup", "by", "outcome", "why"):
            table.add_column(column, overflow="fold")
        for e in view["entries"]:
            why = "; ".join(e["reasons"])
            if e["details"].get("policy"):
                why += f" [policy {e['details']['policy']}]"
            table.add_row(
                e["at"][:19],
                e["act"],
                str(e["server_id"] or "-"),
                str(e["backup_id"] or "-"),
                e["by"] + (f" ({e['run']})" if e.get("run") else ""),
                e["outcome"],
                why,
            )
        out.print(table)

    _emit(data, as_json, draw)


def main() -> NoReturn:
    """The ``vpsbackup`` console script: every failure is one line on stderr and exit 1 (2 for usage)."""
    try:
        code = cli.main(prog_name="vpsbackup", standalone_mode=False)
    except click.ClickException as exc:  # Refused, Failed, and Click's usage errors (exit 2)
        exc.show()
        code = exc.exit_code
    except click.Abort:  # Ctrl-C
        err.print("vpsbackup: stopped")
        code = 1
    except Exception as exc:  # anything not caught where it happened: still one line, no traceback
        Failed(describe_aws_error(exc)).show()
        code = 1
    raise SystemExit(code if isinstance(code, int) else 0)
