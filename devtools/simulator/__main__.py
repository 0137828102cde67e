"""Run the simulator by hand: ``python -m devtools.simulator [--demo-fleet]`` (Ctrl-C to stop)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from devtools.simulator.server import RateLimit, Simulator, seed_demo_fleet


def _rate_limit(parser: argparse.ArgumentParser, text: str | None) -> RateLimit | None:
    if text is None:
        return None
    try:
        rate, _, burst = text.partition("+")
        limit, _, window = rate.partition("/")
        return RateLimit(int(limit), float(window or 1), int(burst) if burst else None)
    except ValueError as exc:
        parser.error(f"--rate-limit {text!r}: {exc} (expected N/SECONDS[+BURST], e.g. 3600/3600+100)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (0 = any free port; default: 8080)")
    parser.add_argument(
        "--token", action="append", dest="tokens", help="accepted API token (repeatable; default: dev-token)"
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
    parser.add_argument("--demo-fleet", action="store_true", help="seed 3 servers with ~30 days of backups")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(message)s")
    sim = Simulator(
        tokens=set(args.tokens or ["dev-token"]),
        page_size=args.page_size,
        completion_delay=args.completion_delay,
        seed=args.seed,
        restore_duration=args.restore_duration,
        max_page_size=args.max_page_size,
        rate_limit=_rate_limit(parser, args.rate_limit),
        latency=args.latency,
    )
    if args.demo_fleet:
        seed_demo_fleet(sim)
    sim.start(args.host, args.port)
    print(sim.base_url, flush=True)
    sim.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
