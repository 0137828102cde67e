"""``make invoke FN=<function> EVENT=events/<file>.json``: run one handler locally on a sample event.

By default against the local simulator (with a demo fleet) and local AWS (moto's server); with
``--api-url`` against a real provider API (the token from ``--token`` or ``VPS_API_TOKEN``; AWS
stays local). Signed webhook samples are re-signed with the documented test key and the current
time, because a signature older than 300 s is rejected — except samples named ``*bad-signature*``,
which are sent as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from devtools.local_env import FUNCTIONS, WEBHOOK_KEY, add_import_paths, invoke, local_world

add_import_paths()
from vpsbackup.deploy.webhook import resign_function_url_event  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("function", choices=sorted(FUNCTIONS))
    parser.add_argument("event", type=Path, help="a file from events/")
    parser.add_argument("--api-url", help="a real provider API root instead of the local simulator")
    parser.add_argument("--token", default=os.environ.get("VPS_API_TOKEN"), help="the real API's token")
    parser.add_argument("--no-resign", action="store_true", help="send a webhook sample's signature as it is")
    args = parser.parse_args()

    event = json.loads(args.event.read_text(encoding="utf-8"))
    is_url_event = isinstance(event, dict) and "requestContext" in event and "http" in event["requestContext"]
    if is_url_event and not args.no_resign and "bad-signature" not in args.event.name:
        event = resign_function_url_event(event, WEBHOOK_KEY, time.time())
    with local_world(api_url=args.api_url, api_token=args.token) as world:
        where = "the local simulator" if world.simulator is not None else world.api_base_url
        print(f"invoking {args.function} with {args.event} against {where}\n")
        try:
            result = invoke(args.function, event)
        except Exception as exc:  # show what Lambda would record, then the notifications
            print(f"the invocation raised {type(exc).__name__}: {exc}")
            result = None
        print(json.dumps(result, indent=2, default=str))
        for note in world.notifications():
            print(f"\n--- notification: {note['subject']}\n{note['message']}")


if __name__ == "__main__":
    main()
