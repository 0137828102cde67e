"""Run the simulator by hand: ``python -m devtools.simulator`` (``make simulator``; Ctrl-C to stop).

It starts with the demo fleet (three servers, a month of daily automatic backups and a few manual
ones), so creates, restores and listings answer at once; ``--empty`` starts with no server.
"""

from __future__ import annotations

import argparse
import errno
import logging
import shlex
import sys
from collections.abc import Sequence

from vpsbackup_local.simulator.server import RateLimit, Simulator, seed_demo_fleet


def _rate_limit(parser: argparse.ArgumentParser, text: str | None) -> RateLimit | None:
    if text is None:
        return None
    try:
        rate, _, burst = text.partition("+")
        limit, _, window = rate.partition("/")
        return RateLimit(int(limit), float(window or 1), int(burst) if burst else None)
    except ValueError as exc:
        parser.error(f"--rate-limit {text!r}: {exc} (expected N/SECONDS[+BURST], e.g. 3600/3600+100)")


DEFAULT_TOKEN = "dev-token"  # noqa: S105 - the local simulator's token


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (0 = any free port; default: 8080)")
    parser.add_argument(
        "--token", action="append", dest="tokens", help=f"accepted API token (repeatable; default: {DEFAULT_TOKEN})"
    )
    parser.add_argument("--page-size", type=int, default=10, help="default page size (default: 10)")
    parser.add_argument(
        "--max-page-size", type=int, default=None, help="largest ?page_size= honoured (default: the page size)"
    )
    parser.add_argument(
        "--rate-limit",
        metavar="N/SECONDS[+BURST]",
        default=None,
        help="answer 429 beyond N requests per SECONDS, bursts up to BURST (e.g. 3600/3600+100)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--completion-delay", type=float, default=5.0, help="seconds until a new backup completes")
    parser.add_argument("--restore-duration", type=float, default=0.0, help="seconds a restore keeps a server busy")
    parser.add_argument("--seed", type=int, default=0, help="seed of the listing order")
    fleet = parser.add_mutually_exclusive_group()
    fleet.add_argument("--empty", action="store_true", help="start with no server (every create and restore is 404)")
    fleet.add_argument("--demo-fleet", action="store_true", help="the default: 3 servers with ~30 days of backups")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(message)s")
    tokens = args.tokens or [DEFAULT_TOKEN]
    sim = Simulator(
        tokens=set(tokens),
        page_size=args.page_size,
        completion_delay=args.completion_delay,
        seed=args.seed,
        restore_duration=args.restore_duration,
        max_page_size=args.max_page_size,
        rate_limit=_rate_limit(parser, args.rate_limit),
        latency=args.latency,
    )
    if not args.empty:
        seed_demo_fleet(sim)
    try:
        sim.start(args.host, args.port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(
                f"simulator: port {args.port} on {args.host} is already in use (another simulator?): "
                f"stop it, or pick another port (make simulator PORT=8081)",
                file=sys.stderr,
            )
        else:
            print(f"simulator: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    servers = ", ".join(f"{sid} ({s['name']})" for sid, s in sorted(sim.servers.items())) or "none"
    auth = shlex.quote(f"Authorization: Bearer {tokens[0]}")
    print(f"VPS API simulator at {sim.base_url}", flush=True)
    print(f"token: {tokens[0]}", flush=True)
    print(f"servers: {servers}; backups: {len(sim.backups)}", flush=True)
    print(f"try:   curl -s -H {auth} {shlex.quote(sim.base_url + '/backups/?server_id=12345')}", flush=True)
    print("Ctrl-C to stop.", flush=True)
    sim.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
