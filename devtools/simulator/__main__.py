"""Run the simulator by hand: ``python -m devtools.simulator [--demo-fleet]`` (Ctrl-C to stop)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from devtools.simulator.server import Simulator, seed_demo_fleet


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (0 = any free port; default: 8080)")
    parser.add_argument(
        "--token", action="append", dest="tokens", help="accepted API token (repeatable; default: dev-token)"
    )
    parser.add_argument("--page-size", type=int, default=10)
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
    )
    if args.demo_fleet:
        seed_demo_fleet(sim)
    sim.start(args.host, args.port)
    print(sim.base_url, flush=True)
    sim.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
