"""The prune plan's CPU time at 300,000 backups (``make bench`` calls it).

``python -m devtools.bench_plan`` builds the fleet of devtools/bench_fleet.py (10,000 servers × 30
managed backups, one a day, plus 1,000 older ones: 301,000 backups) as a compact listing, as the
prune job lists it, then plans it with :func:`vpsbackup.prune.compact.plan_fleet` ``--runs`` times
and prints each run's seconds. Only the planning is timed, not the listing.

For timing whole processes (farm-bench), ``--save FILE`` writes the listing once and ``--load
FILE`` plans it once::

    python -m devtools.bench_plan --save /tmp/fleet.pickle
    farm-bench -n 5 -- .venv/bin/python -m devtools.bench_plan --load /tmp/fleet.pickle
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "shared"))

from vpsbackup.markers import describe_with_marker  # noqa: E402
from vpsbackup.provider.models import Backup  # noqa: E402
from vpsbackup.prune.compact import CompactListing, FleetPlan, plan_fleet  # noqa: E402
from vpsbackup.prune.plan import PlanInputs  # noqa: E402
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy  # noqa: E402

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
POLICY = RetentionPolicy(keep_last=3, keep_daily=7, keep_weekly=4, keep_monthly=6)  # bench_fleet's


def build_listing(servers: int = 10_000, per_server: int = 30, older: int = 1_000) -> CompactListing:
    """bench_fleet's fleet (same times, same descriptions), listed into a compact listing."""
    listing = CompactListing()
    day = timedelta(days=1)
    next_id = 1

    def add(server_id: int, created_at: datetime, description: str) -> None:
        nonlocal next_id
        listing.add(
            Backup.model_validate(
                {
                    "id": next_id,
                    "server": {"id": server_id, "name": f"web-{server_id}"},
                    "backup_type": "manual",
                    "status": "completed",
                    "created_at": created_at,
                    "description": description,
                }
            )
        )
        next_id += 1

    for n in range(servers):
        for k in range(per_server):
            add(100_000 + n, NOW - k * day - timedelta(minutes=n % 600), describe_with_marker("Deploy", f"d-{n}-{k}"))
    for k in range(older):
        add(100_000 + k % max(1, servers), NOW - timedelta(days=365 + k % 30), describe_with_marker("Old", f"o-{k}"))
    return listing


def plan_once(listing: CompactListing, tz_name: str) -> tuple[float, float, FleetPlan]:
    """Wall and CPU seconds to plan ``listing`` as the prune job does with the default settings
    (KEEP_AT_LEAST 1). CPU time is the steadier figure on a shared machine."""
    from zoneinfo import ZoneInfo

    inputs = PlanInputs(
        policy_for=RetentionPolicies(POLICY),
        tz=ZoneInfo(tz_name),
        now=NOW,
        scope="managed",
        holds={},
        failed_grace=timedelta(hours=24),
        max_deletions=50,
    )
    started, cpu = time.perf_counter(), time.process_time()
    plan = plan_fleet(listing, inputs)
    return time.perf_counter() - started, time.process_time() - cpu, plan


def measure(listing: CompactListing, *, runs: int, tz_name: str) -> dict[str, Any]:
    """``runs`` plans of ``listing``: their wall and CPU seconds."""
    seconds: list[float] = []
    cpu: list[float] = []
    for _ in range(runs):
        elapsed, used, _ = plan_once(listing, tz_name)
        seconds.append(elapsed)
        cpu.append(used)
    return {"backups": len(listing), "seconds": seconds, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tz", default="UTC", help="RETENTION_TIMEZONE (default UTC, the setting's default)")
    parser.add_argument("--save", type=Path, help="write the listing to this file and stop")
    parser.add_argument("--load", type=Path, help="plan the listing of this file once")
    args = parser.parse_args()
    if args.load:
        with args.load.open("rb") as file:
            listing = pickle.load(file)  # noqa: S301 - a file this tool wrote
        elapsed, used, _ = plan_once(listing, args.tz)
        print(f"{len(listing):,} backups planned in {elapsed:.2f} s (CPU {used:.2f} s)")
        return
    listing = build_listing(servers=args.servers, older=args.servers // 10)
    if args.save:
        with args.save.open("wb") as file:
            pickle.dump(listing, file)
        print(f"{len(listing):,} backups written to {args.save}")
        return
    result = measure(listing, runs=args.runs, tz_name=args.tz)
    wall, used = result["seconds"], result["cpu"]
    print(f"{result['backups']:,} backups, {args.runs} runs, RETENTION_TIMEZONE={args.tz}")
    print(
        f"median {statistics.median(wall):.2f} s wall, {statistics.median(used):.2f} s CPU "
        f"(wall {', '.join(f'{s:.2f}' for s in wall)}; CPU {', '.join(f'{s:.2f}' for s in used)})"
    )


if __name__ == "__main__":
    main()
