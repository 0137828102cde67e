"""``make invoke EVENT=events/<file>.json [FN=<function>]``: run one handler locally on a sample event.

The function is named by FN or, when FN is left out, by the file's name (``alarm-*`` and ``restore-*``:
restore_on_alarm, ``deploy-*``: backup_on_deploy, ``prune-*``: prune_backups).

By default against the local simulator and local AWS (moto's server). The simulator holds the demo
fleet (three servers, a month of automatic backups, a few manual ones people made) plus three weeks
of backups made by this project on servers 12345 and 12346, so a prune sample shows a real plan.
Samples are made current, as a real delivery would be: a signed webhook sample is re-signed with
the documented test key and the current time (except ``*bad-signature*``, sent as it is), and an
alarm sample's times are moved so its state changed a few seconds ago. The alarm a sample names is
made in the local account, in the sample's new state (the function confirms the alarm with
``DescribeAlarms`` before it acts; ``--no-alarm`` leaves it out, to see a refusal).

With ``--api-url`` against a real provider API (the token from ``--token`` or ``VPS_API_TOKEN``;
AWS stays local, and nothing is seeded).

The last line says how the invocation ended (``result: ...``); the exit status is 0 when the
handler returned, 1 when it raised (what Lambda records as a failed invocation), and 2 for a bad
command line or event file. events/README.md lists what each sample ends with.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devtools.local_env import (
    FUNCTIONS,
    WEBHOOK_KEY,
    add_import_paths,
    invoke,
    local_world,
    seed_project_backups,
    set_alarm_state,
)
from devtools.samples import alarm_states, is_alarm_event, restamp_alarm_event

add_import_paths()
from vpsbackup.deploy.webhook import resign_function_url_event  # noqa: E402

PREFIXES = {
    "alarm-": "restore_on_alarm",
    "restore-": "restore_on_alarm",
    "deploy-": "backup_on_deploy",
    "prune-": "prune_backups",
}
EXIT_RAISED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A bad command line or event file: one line, exit status 2."""


def function_for(event_file: Path) -> str:
    for prefix, function in PREFIXES.items():
        if event_file.name.startswith(prefix):
            return function
    raise UsageError(
        f"cannot tell the function from the file name {event_file.name!r}: "
        f"pass FN= (one of {', '.join(sorted(FUNCTIONS))})"
    )


def read_event(path: Path) -> dict[str, Any]:
    """The event file as a JSON object, or a UsageError saying in one line what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"no event file {str(path)!r} (the samples are in events/)") from None
    except IsADirectoryError:
        raise UsageError(f"{str(path)!r} is a folder, not an event file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the event file {str(path)!r}: {exc}") from None
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"the event file {str(path)!r} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    if not isinstance(event, dict):
        raise UsageError(f"the event file {str(path)!r} holds a JSON {type(event).__name__}, not an object")
    return event


def make_current(event: dict[str, Any], path: Path, *, resign: bool, restamp: bool) -> tuple[dict[str, Any], str]:
    """The event as it would arrive now, and a note of what was changed."""
    context = event.get("requestContext")
    is_url_event = isinstance(context, dict) and "http" in context
    if is_url_event and resign and "bad-signature" not in path.name:
        return resign_function_url_event(event, WEBHOOK_KEY, time.time()), "re-signed for the current time"
    if is_alarm_event(event) and restamp:
        try:
            return restamp_alarm_event(event, datetime.now(UTC)), "re-stamped: the alarm changed state 5 s ago"
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise UsageError(f"the alarm sample {str(path)!r} has no usable state-change time ({exc})") from None
    return event, "sent as it is"


def summarize(function: str, result: Any) -> str:
    """One line saying how the handler ended, from what it returned."""
    if isinstance(result, dict) and "statusCode" in result:
        return _http_answer(result)
    if function == "restore_on_alarm" and isinstance(result, dict):
        return "; ".join(_restore_outcome(o) for o in result.get("outcomes", [])) or "no alarm in the event"
    if function == "prune_backups" and isinstance(result, dict):
        return _prune_run(result)
    if function == "backup_on_deploy" and isinstance(result, dict) and isinstance(result.get("backups"), list):
        return f"deployment {result.get('deployment_id')}: {_backups(result['backups'])}"
    return json.dumps(result, default=str)[:200]


def _http_answer(result: dict[str, Any]) -> str:
    """An HTTP answer (the webhook, the status endpoint): its status and what its body says."""
    body = result.get("body") or ""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    detail = ""
    if isinstance(parsed, dict):
        if isinstance(parsed.get("backups"), list):
            detail = _backups(parsed["backups"])
        else:
            detail = str(parsed.get("message") or parsed.get("detail") or parsed.get("error") or "")
    return f"HTTP {result['statusCode']}" + (f": {detail}" if detail else "")


def _prune_run(result: dict[str, Any]) -> str:
    totals = result.get("totals", {})
    mode = "dry run" if result.get("dry_run") else "run"
    counted = ", ".join(f"{name.replace('_', ' ')} {n}" for name, n in totals.items() if n)
    return f"prune {mode}: {counted or 'nothing listed'}"


def _restore_outcome(o: dict[str, Any]) -> str:
    server = f" server {o['server_id']}" if o.get("server_id") is not None else ""
    backup = f" from backup {o['backup_id']}" if o.get("backup_id") is not None and o["outcome"] != "skipped" else ""
    cause = f" ({o['cause']})" if o.get("cause") else ""
    return f"{o['outcome']}{server}{backup}{cause}"


def _backups(backups: list[Any]) -> str:
    return ", ".join(
        f"server {b.get('server_id')} backup {b.get('backup_id')} {b.get('status')}"
        for b in backups
        if isinstance(b, dict)
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.invoke", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="+", metavar="[FUNCTION] EVENT", help="an optional function, then a file")
    parser.add_argument("--api-url", help="a real provider API root instead of the local simulator")
    parser.add_argument("--token", default=os.environ.get("VPS_API_TOKEN"), help="the real API's token")
    parser.add_argument("--no-resign", action="store_true", help="send a webhook sample's signature as it is")
    parser.add_argument("--no-restamp", action="store_true", help="send an alarm sample's times as they are")
    parser.add_argument("--no-alarm", action="store_true", help="do not make the sample's alarm in the local account")
    args = parser.parse_args(argv)
    if len(args.names) > 2:
        parser.error("expected [FUNCTION] EVENT")
    if len(args.names) == 2 and args.names[0] not in FUNCTIONS:
        parser.error(f"unknown function {args.names[0]!r}: one of {', '.join(sorted(FUNCTIONS))}")
    return args


def run(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    path = Path(args.names[-1])
    event = read_event(path)
    function = args.names[0] if len(args.names) == 2 else function_for(path)
    event, how = make_current(event, path, resign=not args.no_resign, restamp=not args.no_restamp)
    # A handler that raised published no metrics: Powertools warns about it, which is no news here.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ

    def heading(text: str) -> str:
        return f"\033[1m{text}\033[0m" if color else text

    with local_world(api_url=args.api_url, api_token=args.token) as world:
        where = world.api_base_url
        if world.simulator is not None:
            seeded = seed_project_backups(world.simulator, datetime.now(UTC))
            where = f"the local simulator ({len(world.simulator.backups)} backups, {seeded} made by this project)"
        print(heading(f"invoking {function} with {path} ({how}) against {where}"), flush=True)
        if is_alarm_event(event) and not args.no_alarm:
            for name, state, metrics in alarm_states(event):
                set_alarm_state(name, state, metrics=metrics)
                print(f"the alarm {name} is in {state} in the local account", flush=True)
        raised: Exception | None = None
        try:
            result = invoke(function, event)
        except Exception as exc:  # what Lambda would record as the invocation's error
            raised = exc
            result = None
        if raised is None:
            print("\n" + heading("returned:"))
            print(json.dumps(result, indent=2, default=str))
        for note in world.notifications():
            print("\n" + heading(f"--- notification: {note['subject']}") + f"\n{note['message']}")
    print()
    if raised is not None:
        said = " ".join(str(raised).split())
        print(f"result: the handler raised {type(raised).__name__}: {said}")
        return EXIT_RAISED
    print(f"result: {summarize(function, result)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except UsageError as exc:
        print(f"invoke: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
