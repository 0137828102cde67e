"""Benchmarks: ``make bench``. Measures, never asserts; results go to stdout and docs/benchmarks.md.

1. The prune plan (retention engine + rules) over fleets of growing size: time and peak memory.
2. Listing the fleet through the real client over the local simulator (real HTTP on 127.0.0.1).
3. Each handler's cold start as shipped (the layer built by its recipe, zipped as SAM zips it, Python
   3.13 with only boto3) against a baseline process, medians of fresh processes, and peak RSS.
   ``--only cold-start`` runs just that.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "shared"))

from devtools import artifact  # noqa: E402
from devtools.simulator import Simulator  # noqa: E402
from vpsbackup.markers import describe_with_marker  # noqa: E402
from vpsbackup.provider.client import RetryPolicy, VpsClient  # noqa: E402
from vpsbackup.provider.models import Backup  # noqa: E402
from vpsbackup.provider.token import StaticTokenProvider  # noqa: E402
from vpsbackup.prune.compact import CompactListing, plan_fleet  # noqa: E402
from vpsbackup.prune.plan import PlanInputs  # noqa: E402
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy  # noqa: E402

NOTES = """
Reading these numbers:

- The prune plan is linear in the fleet's size: a daily run over a fleet with 100,000 manual
  backups plans in seconds and ~50 MiB of Python objects (plus ~70 MiB for the interpreter and
  imports), inside a 256 MiB, 900 s Lambda.
- Listing time is dominated by round trips and by the simulator (a Python server
  that re-sorts the fleet for every page): against the real API it is the provider's page latency
  times the number of pages. Bigger pages, if the provider allows them, are the lever.
- The cold start rows are what a cold start pays before the handler runs, as shipped: the layer
  ships byte-compiled in unchecked-hash mode (layers/shared/Makefile), so no module is compiled on
  Lambda, and the X-Ray SDK loads only with Tracing=Active. Below: the figures before and after.
"""

if TYPE_CHECKING:
    from devtools.bench_fleet import RunFigures, SweepFigures

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
        listing = CompactListing()
        listing.extend(fleet(servers, per_server))
        inputs = PlanInputs(
            policy_for=RetentionPolicies(POLICY, {}),
            tz=ZoneInfo("Europe/Madrid"),
            now=now,
            scope="managed",
            holds={},
            failed_grace=timedelta(hours=24),
            max_deletions=50,
        )

        def run(listing: CompactListing = listing, inputs: PlanInputs = inputs) -> object:
            return plan_fleet(listing, inputs)

        seconds, peak = timed(run, repeat=3)
        n = servers * per_server
        rows.append(
            f"| prune plan | {servers} servers × {per_server} backups = {n:,} | {seconds * 1000:,.1f} ms "
            f"| {n / seconds:,.0f} backups/s | {peak / 2**20:,.1f} MiB |"
        )


def bench_fleet_plan(rows: list[str], quick: bool) -> None:
    """The fleet plan (prune/compact.py) at 301,000 backups (devtools/bench_plan.py): CPU seconds, medians."""
    from devtools import bench_plan

    servers = 1_000 if quick else 10_000
    listing = bench_plan.build_listing(servers=servers, older=servers // 10)
    result = bench_plan.measure(listing, runs=3, tz_name="UTC")
    cpu, wall = statistics.median(result["cpu"]), statistics.median(result["seconds"])
    rows.append(
        f"| fleet plan | {servers:,} servers × 30 + {servers // 10:,} older = {len(listing):,} "
        f"| {cpu:,.2f} s CPU ({wall:,.2f} s wall) | {len(listing) / cpu:,.0f} backups/s | — |"
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


BASELINE = artifact.measured('import boto3, httpx, pydantic\nboto3.client("secretsmanager")')


def bench_cold_start(rows: list[str], quick: bool) -> list[str]:
    """Each handler's cold import as shipped (the built layer after a SAM zip round trip, Python 3.13
    with only boto3) against the baseline, in fresh processes taken in turns; medians and peak RSS."""
    python313 = artifact.find_python313()
    if python313 is None:
        return ["Cold start: skipped, no Python 3.13 on this machine (the Lambda runtime's version)."]
    rounds = 3 if quick else 9
    with tempfile.TemporaryDirectory(prefix="bench-artifact-") as tmp:
        shipped = artifact.build_artifact(Path(tmp), python313)
        template = shipped.template
        first = next(iter(artifact.FUNCTIONS))
        # The baseline's httpx and pydantic: the build folder's, whose byte-code is valid in any mode.
        cases: dict[str, tuple[str, str, dict[str, str], Path]] = {
            "baseline": (
                first,
                BASELINE,
                artifact.lambda_environment(template, shipped.logical_id(first)),
                shipped.layer_build,
            )
        }
        tracing = {"Tracing": "Active"} if "Tracing" in template.get("Parameters", {}) else None
        for module, logical_id in artifact.FUNCTIONS.items():
            code = artifact.import_handler_code(template["Resources"][logical_id]["Properties"]["Handler"])
            cases[module] = (module, code, artifact.lambda_environment(template, logical_id), shipped.layer_python)
            if tracing is not None:
                env = artifact.lambda_environment(template, logical_id, **tracing)
                cases[f"{module}, Tracing=Active"] = (module, code, env, shipped.layer_python)
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, (module, code, env, layer) in cases.items():
                done = shipped.run(module, code, env=env, layer=layer)
                if done.returncode != 0:
                    raise SystemExit(f"{name}: the cold import failed:\n{done.stderr[-2000:]}")
                samples[name].append(json.loads(done.stdout.strip().splitlines()[-1]))

    def median(name: str, key: str) -> float:
        return statistics.median(sample[key] for sample in samples[name])

    for name in samples:
        wall, cpu = median(name, "seconds"), median(name, "cpu_seconds")
        rss = max(sample["max_rss_kib"] for sample in samples[name]) / 1024
        what = "boto3 + httpx + pydantic + a Secrets Manager client" if name == "baseline" else "handler import"
        ratio, cpu_ratio = wall / median("baseline", "seconds"), cpu / median("baseline", "cpu_seconds")
        rows.append(
            f"| cold start: {name} | {what} | {wall * 1000:,.0f} ms (CPU {cpu * 1000:,.0f} ms) "
            f"| {ratio:.2f}× baseline (CPU {cpu_ratio:.2f}×) "
            f"| {rss:,.0f} MB peak RSS |"
        )
    return [
        f"Cold start: medians of {rounds} rounds, each round a fresh process per case, in turn. The layer is built by "
        f"its own recipe (for {artifact.host_platform_tag()} on this machine), zipped with SAM's 1980 dates and "
        "unzipped; Python 3.13 with only boto3 installed imports each handler with the template's environment "
        "(`python -m devtools.artifact` checks the same artifact). Peak RSS is the largest VmHWM of the "
        "processes (MiB). The target: each handler at most 1.3× the baseline, at most 100 MB."
    ]


FLEET_NOTES = """
Fleet scale (devtools/bench_fleet.py):

- The prune handler runs in a fresh interpreter, as Lambda runs it; its peak RSS is its own
  VmHWM. The simulator and moto's server (local AWS) run in the parent.
- "Simulated time": parent and child share one virtual clock in shared memory. The simulator's
  latency, the client's request budget (VPS_API_MAX_RPS, default 2/s), its backoff and every
  Retry-After advance that clock instead of sleeping, and the Lambda context's remaining time (900
  s) is read from it. The simulator enforces 1 request/second with a burst of 10 and sends
  RateLimit-*/X-RateLimit-* headers, which the client follows. "Simulated" is the time the run would
  take against that provider; "real" is what it took here.
- "Daily run": what PRUNE_SCOPE=managed does every day (docs/prune.md, incremental runs). StateTable
  holds every server settled by earlier runs, listed over the last 7 days, and one server in 20 got
  a deploy backup since (recorded by the deploy job): the run lists those, plus the servers due for
  re-verification (a seventh of the fleet), one by one. RETENTION_POLICY {"keep_daily": 30}, under
  which the seeded 30 daily backups are what earlier runs left; MAX_DELETIONS_PER_RUN 50.
- "Full verification": every server listed, as a first run does (no state: one fleet sweep).
"""

DAILY_POLICY = {"keep_daily": 30}
CHANGED_EVERY = 20


def _fleet_row(kind: str, f: RunFigures) -> str:
    outcome = "complete" if f.complete else f"out of time after {f.listed:,} backups"
    selection = f.selection or {}
    how = ""
    if selection.get("mode") == "per-server":
        triggers = ", ".join(f"{n:,} {t}" for t, n in (selection.get("by_trigger") or {}).items())
        how = (
            f"{selection.get('servers_listed', 0):,} of {selection.get('selected', 0):,} servers listed one by one "
            f"({triggers}), {selection.get('servers_not_reached', 0):,} not reached; "
        )
    elif selection.get("mode") == "fleet":
        how = "fleet sweep; "
    return (
        f"| {kind}, 1 req/s, 20 ms latency (simulated time) | {f.label} | "
        f"{f.simulated_s or 0:,.0f} s simulated ({f.real_s:,.1f} s real) | {f.requests:,} requests, "
        f"{f.throttled} answered 429 | peak RSS {f.peak_rss_mib:,.0f} MiB (VmHWM); {how}listing {outcome}, "
        f"{f.deleted} deleted |"
    )


def bench_fleet_scale(rows: list[str], quick: bool) -> list[str]:
    """The prune handler in its own process over the simulator: memory, planning time, report size;
    then against a provider limited to 1 request/second, in simulated time (devtools/bench_fleet.py):
    a daily incremental run and a full verification, and where one invocation stops being enough."""
    from devtools.bench_fleet import Fleet, run_prune, settled_fleet
    from devtools.simulator import RateLimit

    notes: list[str] = []
    big = Fleet(1_000, 30, older=100) if quick else Fleet(10_000, 30, older=1_000)
    figures = run_prune(big, page_size=100, max_page_size=100, extra_env={"VPS_API_MAX_RPS": "1000"})
    rows.append(
        f"| prune handler, own process | {figures.label}, pages of 100, no latency | "
        f"plan {figures.plan_s or 0:,.2f} s, run {figures.real_s:,.1f} s | {figures.requests:,} requests | "
        f"peak RSS {figures.peak_rss_mib:,.0f} MiB (VmHWM); result {figures.result_bytes / 1000:,.0f} kB, "
        f"largest log record {figures.largest_log_bytes / 1000:,.0f} kB |"
    )
    limit = RateLimit(limit=1, window=1.0, burst=10, headers="both")
    limited = [Fleet(100, 30), Fleet(300, 30)] if quick else [Fleet(1_000, 30), Fleet(10_000, 30)]
    capacity = 0
    per_server: float | None = None
    for fleet in limited:
        daily = run_prune(
            fleet,
            page_size=100,
            max_page_size=100,
            latency=0.02,
            limit=limit,
            simulated=True,
            extra_env={"RETENTION_POLICY": json.dumps(DAILY_POLICY)},
            prepare=settled_fleet(fleet, changed_every=CHANGED_EVERY, policy=DAILY_POLICY),
        )
        rows.append(_fleet_row("daily run (incremental)", daily))
        selection = daily.selection or {}
        if not selection.get("servers_not_reached") and selection.get("servers_listed"):
            per_server = (daily.requests - daily.deleted) / fleet.servers  # listings; deletions apart
        else:
            capacity = max(capacity, daily.requests)
        full = run_prune(fleet, page_size=100, max_page_size=100, latency=0.02, limit=limit, simulated=True)
        rows.append(_fleet_row("full verification (fleet sweep)", full))
        if not full.complete:
            capacity = max(capacity, full.requests)
            notes.append(
                f"- A full verification at 1 request/second and pages of 100: one 900 s invocation listed "
                f"{full.listed:,} backups before it ran out of time (≈ {full.listed // 30:,} servers of 30 "
                "backups): beyond that, one sweep is not enough. The run then deleted nothing, reported how "
                "far it got and notified; the next runs list servers one by one."
            )
    if capacity and per_server:
        notes.append(
            f"- One invocation makes about {capacity:,} requests at 1 request/second. A daily incremental run "
            f"listed {per_server:.3f} requests per server of the fleet (the changed and the due servers), plus "
            f"its deletions (at most MAX_DELETIONS_PER_RUN, 50), so one invocation is enough up to about "
            f"{int((capacity - 50) / per_server):,} servers; a daily fleet sweep (0.3 requests a server in "
            f"pages of 100, plus the deletions) up to about {int((capacity - 50) / 0.3):,}."
        )
    return notes


SWEEP_SIZES = (10_000, 100_000)
# The goal for every chunk's peak RSS: 200 MB, and 75 % of the prune function's MemorySize.
SWEEP_RSS_GOAL_MB = 200.0
SWEEP_RSS_GOAL_SHARE = 0.75


def prune_memory_mb() -> int:
    """The prune function's MemorySize in template.yaml (its own, or the Globals')."""
    from devtools.local_env import load_template

    template = load_template()
    own = template["Resources"]["PruneBackupsFunction"]["Properties"].get("MemorySize")
    return int(own if own is not None else template["Globals"]["Function"]["MemorySize"])


def _sweep_row(f: SweepFigures, goal_mib: float) -> str:
    over = (f.simulated_s / f.ideal_s - 1) * 100
    phases = ", ".join(f"{n} {phase} ({peak:,.0f})" for phase, (n, peak) in f.peak_by_phase().items())
    worst = max(f.peak_by_phase().items(), key=lambda item: item[1][1])[0]
    memory = "met" if f.peak_rss_mib <= goal_mib else "MISSED"
    same = "equal to" if f.deleted == f.planned else "NOT equal to"
    outcome = "completes" if f.done else f"did not complete ({f.note})"
    slowest = max(f.chunks, key=lambda c: c.cpu_s)
    return (
        f"| full sweep as one run of chunks, 1 req/s, 20 ms latency, pages of 50 (simulated time) | {f.label} | "
        f"{f.simulated_s:,.0f} s simulated vs {f.ideal_s:,.0f} s (requests ÷ rate): {over:+.1f} % "
        f"({f.real_s / 60:,.1f} min real, seeding {f.seed_s / 60:,.1f} min) | {f.requests:,} requests, "
        f"{f.throttled} answered 429 | run {outcome} in {len(f.chunks)} chunks, {f.executions} execution(s), "
        f"{f.retries} retried; chunks by phase (largest peak RSS, MiB): {phases}; max peak RSS "
        f"{f.peak_rss_mib:,.0f} MiB ({worst} chunk), goal ≤ {goal_mib:,.0f} MiB {memory}; most CPU in a chunk "
        f"{slowest.cpu_s:,.0f} s ({slowest.phase}, {slowest.real_s:,.0f} s real); "
        f"{len(f.deleted)} deleted, {same} the single-pass plan's {len(f.planned)} |"
    )


def bench_sweep_in_chunks(rows: list[str], quick: bool, sizes: tuple[int, ...] = SWEEP_SIZES) -> list[str]:
    """A full sweep as one run of the state machine's chunks (devtools/bench_fleet.py,
    run_sweep_in_chunks) at 1 request/second, 20 ms latency, pages of 50, in simulated time."""
    from devtools.bench_fleet import Fleet, run_sweep_in_chunks

    memory = prune_memory_mb()
    goal_mib = min(SWEEP_RSS_GOAL_MB * 1e6 / 2**20, SWEEP_RSS_GOAL_SHARE * memory)
    for servers in (300, 1_000) if quick else sizes:
        figures = run_sweep_in_chunks(Fleet(servers, 30), page_size=50, latency=0.02)
        rows.append(_sweep_row(figures, goal_mib))
        print(rows[-1], flush=True)
    return [
        f"- The sweep as one run: the goal for each chunk's peak RSS is {goal_mib:,.0f} MiB, the lesser of "
        f"200 MB and 75 % of the prune function's MemorySize ({memory} MB in template.yaml)."
    ]


DAILY_CHUNKED_SIZE = 10_000


def _daily_row(f: SweepFigures) -> str:
    same = "equal to" if f.deleted == f.planned else "NOT equal to"
    every = "every one" if f.due is not None and f.servers_listed == f.due else "NOT every one"
    outcome = "completes" if f.done else f"did not complete ({f.note})"
    return (
        "| daily run (incremental) as one run of chunks, PRUNE_VERIFY_EVERY=7d, 1 req/s, 20 ms latency, pages "
        f"of 50 (simulated time) | {f.label} | {f.simulated_s:,.0f} s simulated ({f.simulated_s / 3600:,.1f} h of "
        f"the day; {f.real_s / 60:,.1f} min real) | {f.requests:,} requests, {f.throttled} answered 429 | run "
        f"{outcome} in {len(f.chunks)} chunks; {f.servers_listed:,} of the {f.due or 0:,} servers due listed "
        f"({every}); max peak RSS {f.peak_rss_mib:,.0f} MiB; {len(f.deleted)} deleted, {same} the single-pass "
        f"plan's {len(f.planned)} over the servers due |"
    )


def bench_daily_in_chunks(rows: list[str], quick: bool, servers: int = DAILY_CHUNKED_SIZE) -> list[str]:
    """The daily incremental run (``PRUNE_SCOPE=managed``, the schedule's ``{}``) as one run of the state
    machine's chunks (devtools/bench_fleet.py, run_sweep_in_chunks with ``settled_fleet``): every server
    settled by earlier runs over the last ``PRUNE_VERIFY_EVERY=7d``, one in ``CHANGED_EVERY`` backed up
    since; 1 request/second, 20 ms latency, pages of 50, in simulated time."""
    from devtools.bench_fleet import Fleet, run_sweep_in_chunks, settled_fleet

    fleet = Fleet(1_000 if quick else servers, 30)
    figures = run_sweep_in_chunks(
        fleet,
        page_size=50,
        latency=0.02,
        request={},
        extra_env={"RETENTION_POLICY": json.dumps(DAILY_POLICY), "PRUNE_VERIFY_EVERY": "7d"},
        prepare=settled_fleet(fleet, changed_every=CHANGED_EVERY, policy=DAILY_POLICY),
    )
    rows.append(_daily_row(figures))
    print(rows[-1], flush=True)
    return [
        "- The daily run as one run of chunks: its first chunk chooses the servers due (a deploy backup "
        "recorded since their last listing, then those due for re-verification), and the run lists every one "
        "of them before it plans, in as many chunks as that takes."
    ]


BEGIN = "<!-- make bench writes from here -->"
END = "<!-- to here; what follows is kept as it is -->"


def splice(document: str, generated: str) -> str:
    """``document`` with the part between the markers replaced (all of it when it has none)."""
    if BEGIN in document and END in document:
        before, _, rest = document.partition(BEGIN)
        _, _, after = rest.partition(END)
        return f"{before}{BEGIN}\n{generated}\n{END}{after}"
    return f"{BEGIN}\n{generated}\n{END}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds (a smoke run)")
    parser.add_argument(
        "--only",
        choices=["plan", "listing", "cold-start", "fleet", "sweep", "daily-chunks"],
        help="run one benchmark (not written)",
    )
    parser.add_argument(
        "--servers",
        type=int,
        action="append",
        help="the chunked sweep's fleet sizes (servers × 30 backups), e.g. --only sweep --servers 100000",
    )
    parser.add_argument("--write", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    rows = ["| what | size | time (median) | rate | peak memory |", "|---|---|---|---|---|"]
    cold_notes: list[str] = []
    if args.only in (None, "plan"):
        bench_plan(rows, args.quick)
        bench_fleet_plan(rows, args.quick)
    if args.only in (None, "listing"):
        bench_listing(rows, args.quick)
    if args.only in (None, "cold-start"):
        cold_notes = bench_cold_start(rows, args.quick)
    fleet_notes: list[str] = []
    if args.only in (None, "fleet"):
        fleet_notes = bench_fleet_scale(rows, args.quick)
    if args.only in (None, "sweep"):
        fleet_notes += bench_sweep_in_chunks(rows, args.quick, tuple(args.servers or SWEEP_SIZES))
    if args.only in (None, "daily-chunks"):
        fleet_notes += bench_daily_in_chunks(rows, args.quick, (args.servers or [DAILY_CHUNKED_SIZE])[0])
    load = f"load average {os.getloadavg()[0]:.1f} at the start" if hasattr(os, "getloadavg") else "load unknown"
    machine = f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}, {load}"
    header = (
        "# Benchmarks\n\n"
        f"`make bench` on {datetime.now(UTC):%Y-%m-%d}, {machine}, 2 cores. Prune plan and listing: medians "
        "of 3 runs, peak memory is Python allocations traced by tracemalloc during one run.\n\n"
    )
    fleet = "".join(note + "\n" for note in fleet_notes) + FLEET_NOTES
    report = header + "\n".join(rows) + "\n\n" + "\n".join(cold_notes) + "\n" + NOTES + fleet
    print(report)
    if not args.quick and args.only is None:
        old = args.write.read_text(encoding="utf-8") if args.write.exists() else ""
        args.write.write_text(splice(old, report), encoding="utf-8")
        print(f"written to {args.write.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
