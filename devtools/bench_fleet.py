"""Fleet-scale benchmarks of the prune function, run as Lambda runs it (``make bench`` calls these).

The prune handler runs in a process of its own (a fresh interpreter: its peak RSS is its own, as
Lambda's memory limit sees it), against the simulator over real HTTP and moto's server as local
AWS, both in the parent process.

Simulated time: with the provider limited to 1 request/second, 3,000 pages take 50 minutes of real
waiting. Instead, parent and child share one virtual clock in shared memory
(:class:`SharedClock`). Every wait — the simulator's latency, the client's request budget, its
backoff and ``Retry-After`` — advances that clock instead of sleeping, and the Lambda context's
remaining time is read from it. The real work (HTTP on 127.0.0.1, JSON, planning) takes real time
that the virtual clock does not count, so "simulated wall" is the time the run would take against
that provider, less the local CPU time (reported apart, as "real").
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from devtools.local_env import ROOT, add_import_paths, create_resources
from devtools.simulator import RateLimit, Simulator

if TYPE_CHECKING:
    from vpsbackup.aws.state import StateTable

TOKEN = "bench-token"  # noqa: S105 - the simulator's fake token
POLICY = {"keep_last": 3, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6}
FIRST_SERVER = 100_000


@dataclass(frozen=True)
class Fleet:
    """``servers`` × ``per_server`` managed manual backups, one a day, plus ``older`` ones a year back."""

    servers: int
    per_server: int = 30
    older: int = 0

    @property
    def backups(self) -> int:
        return self.servers * self.per_server + self.older

    def label(self) -> str:
        extra = f" + {self.older:,} older" if self.older else ""
        return f"{self.servers:,} servers × {self.per_server}{extra} = {self.backups:,} backups"


def seed(sim: Simulator, fleet: Fleet, now: datetime) -> None:
    """Put ``fleet`` in the simulator: backups made by backup on deploy, dated back from ``now``."""
    from vpsbackup.markers import describe_with_marker

    day = timedelta(days=1)
    for n in range(fleet.servers):
        server_id = FIRST_SERVER + n
        sim.add_server(server_id, f"web-{n:05d}")
        for k in range(fleet.per_server):
            sim.add_backup(
                server_id,
                created_at=now - k * day - timedelta(minutes=n % 600),
                description=describe_with_marker("Deploy", f"d-{n}-{k}"),
            )
    for k in range(fleet.older):
        server_id = FIRST_SERVER + k % max(1, fleet.servers)
        sim.add_backup(
            server_id, created_at=now - timedelta(days=365 + k % 30), description=describe_with_marker("Old", f"o-{k}")
        )


class SharedClock:
    """The :class:`~vpsbackup_local.simulator.clock.SimulatedClock` interface over shared memory, so the
    simulator (parent) and the handler (child) see one virtual time."""

    def __init__(self, start: datetime, elapsed: Any) -> None:
        self.start = start
        self._elapsed = elapsed  # multiprocessing.Value("d")

    def monotonic(self) -> float:
        return float(self._elapsed.value)

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.monotonic())

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            with self._elapsed.get_lock():
                self._elapsed.value += seconds


@dataclass(frozen=True)
class RunFigures:
    """What one benchmarked invocation did."""

    label: str
    requests: int
    throttled: int
    listed: int
    complete: bool
    deleted: int
    simulated_s: float | None
    real_s: float
    peak_rss_mib: float
    plan_s: float | None
    result_bytes: int
    largest_log_bytes: int
    selection: dict[str, Any] | None = None


_AWS: dict[str, str] = {}


def clear_prune_state(table: StateTable) -> None:
    """Forget what earlier benchmarked runs left in the ``prune-state`` partition."""
    from boto3.dynamodb.conditions import Key

    from vpsbackup.aws.state import PK, PRUNE_STATE_PK, SK

    kwargs: dict[str, Any] = {"KeyConditionExpression": Key(PK).eq(PRUNE_STATE_PK), "ProjectionExpression": "pk, sk"}
    with table.table.batch_writer() as batch:
        while True:
            response = table.table.query(**kwargs)
            for item in response.get("Items", []):
                batch.delete_item(Key={PK: item[PK], SK: item[SK]})
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def settled_fleet(
    fleet: Fleet,
    *,
    changed_every: int,
    verify_every: timedelta = timedelta(days=7),
    policy: dict[str, Any] | None = None,
) -> Callable[[Simulator, StateTable, datetime], None]:
    """What a daily incremental run finds: every server settled by earlier runs, listed over the last
    ``verify_every`` (spread evenly), and one server in ``changed_every`` backed up by a deploy since
    (a new backup in the provider, and the deploy job's record)."""
    from vpsbackup.prune.incremental import RunHistory, ServerState, policy_fingerprint
    from vpsbackup.prune.retention import RetentionPolicy
    from vpsbackup.prune.state_store import PruneStateStore

    def prepare(sim: Simulator, table: StateTable, now: datetime) -> None:
        from vpsbackup.markers import describe_with_marker

        fingerprint = policy_fingerprint(
            RetentionPolicy.model_validate(policy or POLICY),
            tz=UTC,
            scope="managed",
            failed_grace=timedelta(hours=24),
            keep_at_least=1,
        )
        days = max(1, verify_every // timedelta(days=1))
        states = [
            ServerState(
                server_id=FIRST_SERVER + n,
                listed_at=now - timedelta(days=n % days, hours=1),
                settled=True,
                policy=fingerprint,
                backups=fleet.per_server,
                note="settled (bench)",
            )
            for n in range(fleet.servers)
        ]
        history = RunHistory(last_scheduled_at=now - timedelta(days=1), gaps_s=(86400.0,), last_sweep_complete=True)
        PruneStateStore(table).save(states, history=history)
        for n in range(0, fleet.servers, changed_every):
            server_id = FIRST_SERVER + n
            sim.add_backup(
                server_id, created_at=now - timedelta(minutes=5), description=describe_with_marker("Deploy", f"new-{n}")
            )
            table.note_backup_recorded(server_id, now - timedelta(minutes=4))

    return prepare


@contextmanager
def _local_aws() -> Iterator[dict[str, str]]:
    """moto's server and the project's resources, started once for all the runs of a bench (moto's
    state is per process, so a second server would find the resources already there)."""
    if not _AWS:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": f"http://{host}:{port}",
                "AWS_DEFAULT_REGION": "eu-west-1",
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_SESSION_TOKEN": "bench",
            }
        )
        os.environ.pop("AWS_PROFILE", None)
        resources = create_resources(table_name="bench-state", api_token=TOKEN, webhook_key="unused")
        _AWS.update(
            {
                "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
                "AWS_DEFAULT_REGION": "eu-west-1",
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_SESSION_TOKEN": "bench",
                "VPS_API_TOKEN_SECRET": resources.secret_id,
                "STATE_TABLE_NAME": resources.table_name,
                "NOTIFY_TOPIC_ARN": resources.topic_arn,
            }
        )
    yield dict(_AWS)


def _child(
    env: dict[str, str], clock_start: str | None, elapsed: Any, timeout_s: float, out: Any, event: dict[str, Any]
) -> None:
    """In a fresh interpreter: invoke the prune handler once with ``event``, as Lambda would; report
    figures (a chunk's whole answer, the cursor; a single pass's totals, listing and timings)."""
    import io
    import sys

    class Sizes(io.TextIOBase):
        """Powertools writes each log record and metrics blob as one JSON line: measured, dropped."""

        largest = 0

        def write(self, text: str) -> int:
            for line in text.splitlines():
                Sizes.largest = max(Sizes.largest, len(line.encode()))
            return len(text)

    # The environment came with the process (spawn re-imports the parent's main module, and with it
    # the layer, before this runs); the log's stream is swapped here, the metrics' is stdout.
    os.environ.update(env)
    add_import_paths()
    from vpsbackup.observability import logger

    sizes = Sizes()
    logger.registered_handler.setStream(sizes)  # type: ignore[attr-defined]
    sys.stdout = sizes
    from vpsbackup.aws import runtime
    from vpsbackup.provider.client import RetryPolicy, VpsClient
    from vpsbackup.provider.token import SecretsManagerTokenProvider

    clock = SharedClock(datetime.fromisoformat(clock_start), elapsed) if clock_start else None
    if clock is not None:
        made: dict[tuple[str, str], VpsClient] = {}

        def api_client(base_url: str, token_secret_id: str) -> VpsClient:
            key = (base_url, token_secret_id)
            if key not in made:
                made[key] = VpsClient(
                    base_url,
                    SecretsManagerTokenProvider(token_secret_id),
                    retry=RetryPolicy(sleep=clock.sleep),
                    clock=clock.monotonic,
                )
            return made[key]

        runtime.api_client = api_client  # type: ignore[assignment]
        _chunks_on_clock(clock)

    class Context:
        function_name = "prune_backups"
        memory_limit_in_mb = 256
        aws_request_id = "bench"
        invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:prune_backups"

        def __init__(self) -> None:
            self._started = clock.monotonic() if clock else time.monotonic()

        def get_remaining_time_in_millis(self) -> int:
            elapsed_s = (clock.monotonic() if clock else time.monotonic()) - self._started
            return max(0, int((timeout_s - elapsed_s) * 1000))

    import prune_backups

    started = time.perf_counter()
    result = prune_backups.handler(event, Context())
    real_s = time.perf_counter() - started
    encoded = json.dumps(result).encode()
    single = ("totals", "listing", "listing_complete", "timings", "listed", "selection")
    out.put(
        {
            "result": result if "prune_chunk" in event else {k: result.get(k) for k in single},
            "result_bytes": len(encoded),
            "largest_log_bytes": Sizes.largest,
            "real_s": real_s,
            "cpu_s": time.process_time(),  # the whole process's, its imports included
            "peak_rss_kib": _own_peak_rss_kib(),
        }
    )


def _chunks_on_clock(clock: SharedClock) -> None:
    """A chunk's "now" (the plan's instant, the lock's lease) read from the shared clock: a sweep
    of many chunks plans at the simulated hour its listing ended, as it would against the provider."""
    import prune_backups
    from vpsbackup.prune import chunks

    def run_chunk(event: Any, ctx: chunks.ChunkContext) -> dict[str, Any]:
        ctx.now = clock.now
        return chunks.run_chunk(event, ctx)

    prune_backups.run_chunk = run_chunk  # type: ignore[attr-defined]


def _wait_for(child: Any, out: Any) -> dict[str, Any]:
    """The child's figures; a child that died without sending them is an error, not a hang."""
    import queue

    while True:
        try:
            figures: dict[str, Any] = out.get(timeout=5)
            child.join(timeout=60)
            return figures
        except queue.Empty:
            if not child.is_alive():
                raise RuntimeError(f"the benchmarked handler died (exit code {child.exitcode})") from None


def _own_peak_rss_kib() -> int:
    """This process's own peak RSS: VmHWM belongs to the address space made at exec, while getrusage's
    ru_maxrss keeps the high-water mark of the forked parent before the exec (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


@dataclass
class _World:
    """One benchmarked world: the seeded simulator, local AWS, the shared clock, the functions' environment."""

    sim: Simulator
    table: StateTable
    now: datetime
    elapsed: Any  # the shared clock's seconds (multiprocessing.Value("d"))
    simulated: bool
    env: dict[str, str]
    ctx: Any  # the spawn context

    def invoke(self, event: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """The prune handler invoked once with ``event`` in a fresh interpreter; its figures."""
        out = self.ctx.Queue()
        clock_start = self.now.isoformat() if self.simulated else None
        child = self.ctx.Process(target=_child, args=(self.env, clock_start, self.elapsed, timeout_s, out, event))
        saved = dict(os.environ)
        os.environ.update(self.env)  # a spawned child starts with the parent's environment
        try:
            child.start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return _wait_for(child, out)


@contextmanager
def _world(
    fleet: Fleet,
    *,
    page_size: int,
    max_page_size: int,
    latency: float,
    limit: RateLimit | None,
    simulated: bool,
    extra_env: dict[str, str] | None,
    prepare: Callable[[Simulator, StateTable, datetime], None] | None,
) -> Iterator[_World]:
    """The simulator seeded with ``fleet`` and serving, local AWS with prune's state cleared, then
    ``prepare`` (what earlier runs and deploys left), and the environment the function reads."""
    ctx = multiprocessing.get_context("spawn")
    now = datetime.now(UTC).replace(microsecond=0)
    elapsed = ctx.Value("d", 0.0)
    clock = SharedClock(now, elapsed) if simulated else None
    sim = Simulator(
        tokens={TOKEN},
        page_size=page_size,
        max_page_size=max_page_size,
        seed=0,
        latency=latency,
        rate_limit=limit,
        clock=clock.now if clock else None,
        sleep=clock.sleep if clock else time.sleep,
    )
    add_import_paths()
    from vpsbackup.aws.state import StateTable

    seed(sim, fleet, now)
    with sim, _local_aws() as aws_env:
        table = StateTable.from_name(aws_env["STATE_TABLE_NAME"])
        clear_prune_state(table)
        if prepare is not None:
            prepare(sim, table, now)
        env = {
            **aws_env,
            "VPS_API_BASE_URL": sim.base_url,
            "VPS_API_PAGE_SIZE": str(page_size),
            "RETENTION_POLICY": json.dumps(POLICY),
            "POWERTOOLS_SERVICE_NAME": "prune-backups",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "Bench",
            "PYTHONPATH": str(ROOT),
            **(extra_env or {}),
        }
        yield _World(sim, table, now, elapsed, simulated, env, ctx)


def run_prune(
    fleet: Fleet,
    *,
    page_size: int = 100,
    max_page_size: int = 100,
    latency: float = 0.0,
    limit: RateLimit | None = None,
    simulated: bool = False,
    timeout_s: float = 900.0,
    extra_env: dict[str, str] | None = None,
    label: str = "",
    prepare: Callable[[Simulator, StateTable, datetime], None] | None = None,
) -> RunFigures:
    """Seed a simulator with ``fleet``, invoke the prune handler once in a child process, measure.

    ``prepare`` runs after the seeding, before the handler, with the simulator, the (local)
    ``StateTable`` and the run's "now": what earlier runs and deploys left (prune's state is
    cleared before each run)."""
    with _world(
        fleet,
        page_size=page_size,
        max_page_size=max_page_size,
        latency=latency,
        limit=limit,
        simulated=simulated,
        extra_env=extra_env,
        prepare=prepare,
    ) as world:
        figures = world.invoke({}, timeout_s)
        requests = world.sim.requests
    result = figures["result"]
    totals = result.get("totals") or {}
    timings = result.get("timings") or {}
    return RunFigures(
        label=label or fleet.label(),
        selection=result.get("selection"),
        requests=len(requests),
        throttled=sum(1 for r in requests if r.status == 429),
        listed=int(result.get("listed") or totals.get("listed") or 0),
        complete=bool(result.get("listing_complete", True)),
        deleted=int(totals.get("deleted", 0)),
        simulated_s=float(world.elapsed.value) if simulated else None,
        real_s=float(figures["real_s"]),
        peak_rss_mib=figures["peak_rss_kib"] / 1024,
        plan_s=timings.get("plan_s"),
        result_bytes=int(figures["result_bytes"]),
        largest_log_bytes=int(figures["largest_log_bytes"]),
    )


# -- a sweep as one run of chunks -------------------------------------------------------------------

EXECUTION_ARN = "arn:aws:states:eu-west-1:123456789012:execution:PruneStateMachine:{}"
# The Chunk state's retry of a chunk that failed (statemachines/prune.asl.json): 4 more attempts,
# 2 s then doubling.
CHUNK_RETRIES = (2.0, 4.0, 8.0, 16.0)


@dataclass(frozen=True)
class ChunkFigures:
    """One chunk: the phase it worked, its own peak RSS, its real and simulated seconds, and the CPU
    seconds of its process (imports included: a cold start's)."""

    phase: str
    peak_rss_mib: float
    real_s: float
    simulated_s: float
    cpu_s: float = 0.0


@dataclass(frozen=True)
class SweepFigures:
    """What a full sweep run as the state machine runs it did: every chunk, the requests, the
    deletions made and those of a single-pass plan over the same fleet."""

    label: str
    done: bool
    note: str
    chunks: tuple[ChunkFigures, ...]
    executions: int
    retries: int
    requests: int
    throttled: int
    rate: float
    simulated_s: float
    real_s: float
    seed_s: float
    deleted: tuple[int, ...]
    planned: tuple[int, ...]
    planned_totals: dict[str, int]
    # A daily (incremental) run: the servers its first chunk chose as due, and those it listed.
    due: int | None = None
    servers_listed: int | None = None

    @property
    def ideal_s(self) -> float:
        """The requests at the provider's rate: the least time the run can take."""
        return self.requests / self.rate

    @property
    def peak_rss_mib(self) -> float:
        return max((c.peak_rss_mib for c in self.chunks), default=0.0)

    def peak_by_phase(self) -> dict[str, tuple[int, float]]:
        """Per phase: its chunks and their largest peak RSS (MiB)."""
        phases: dict[str, tuple[int, float]] = {}
        for c in self.chunks:
            n, peak = phases.get(c.phase, (0, 0.0))
            phases[c.phase] = (n + 1, max(peak, c.peak_rss_mib))
        return phases


def _compact_listing(sim: Simulator) -> Any:
    """The simulator's fleet as a compact listing, as a single pass lists it (one backup at a time)."""
    from vpsbackup.provider.models import Backup
    from vpsbackup.prune.compact import CompactListing

    listing = CompactListing()
    for data in sim.iter_backups():
        listing.add(Backup.model_validate(data))
    return listing


def _single_pass_plan(listing: Any, env: dict[str, str], now: datetime, servers: frozenset[int] | None = None) -> Any:
    """The plan a single pass makes over ``listing`` (of ``servers``: None, all) at ``now``, with the
    function's settings (no holds)."""
    from vpsbackup.prune.compact import plan_fleet
    from vpsbackup.prune.job import PruneOptions
    from vpsbackup.prune.settings import PruneSettings
    from vpsbackup.settings import load_settings

    options = PruneOptions.from_settings(load_settings(PruneSettings, env))
    return plan_fleet(listing, options.plan_inputs(now=now, holds={}), server_ids=servers)


def _deleted_ids(requests: Any) -> tuple[int, ...]:
    return tuple(
        sorted(int(r.path.rstrip("/").rsplit("/", 1)[1]) for r in requests if r.method == "DELETE" and r.status == 204)
    )


def _invoke_with_retries(world: _World, event: dict[str, Any], timeout_s: float) -> tuple[dict[str, Any], int]:
    """A chunk as the definition's Chunk state runs it: a chunk that fails is tried again after 2,
    4, 8, 16 s (of the shared clock); the figures of the attempt that answered, and the retries."""
    for retry, wait in enumerate((*CHUNK_RETRIES, None)):
        try:
            return world.invoke(event, timeout_s), retry
        except RuntimeError:
            if wait is None:
                raise
            with world.elapsed.get_lock():
                world.elapsed.value += wait
    raise AssertionError("unreachable")


def run_sweep_in_chunks(
    fleet: Fleet,
    *,
    page_size: int = 50,
    latency: float = 0.02,
    limit: RateLimit | None = None,
    timeout_s: float = 900.0,
    extra_env: dict[str, str] | None = None,
    max_chunks: int = 100_000,
    request: dict[str, Any] | None = None,
    prepare: Callable[[Simulator, StateTable, datetime], None] | None = None,
) -> SweepFigures:
    """A full sweep (``{"sweep": true}``) as ONE run of the state machine, in simulated time: the
    bench loops the chunks as statemachines/prune.asl.json does (Start, then Chunk with the cursor
    each chunk returned until it is done; its Wait on ``wait_seconds``; a new execution on
    ``continue_as_new``; a failed chunk retried), each chunk a fresh interpreter whose peak RSS is
    measured, the shared clock carried across them. The deletions made are compared with a single
    pass's plan over the same fleet at the instant the run planned.

    ``request`` (default ``{"sweep": true}``) and ``prepare`` (what earlier runs and deploys left,
    as :func:`run_prune` takes it): ``{}`` after :func:`settled_fleet` is the daily incremental run,
    whose deletions are compared with a single pass's plan over the servers its first chunk chose."""
    limit = limit or RateLimit(limit=1, window=1.0, burst=10, headers="both")
    started = time.perf_counter()
    with _world(
        fleet,
        page_size=page_size,
        max_page_size=page_size,
        latency=latency,
        limit=limit,
        simulated=True,
        extra_env=extra_env,
        prepare=prepare,
    ) as world:
        listing = _compact_listing(world.sim)
        seed_s = time.perf_counter() - started
        execution = EXECUTION_ARN.format("bench-sweep")
        start = {"sweep": True} if request is None else request
        event: dict[str, Any] = {"prune_chunk": {"step": "start", "request": start, "execution": execution}}
        chunks: list[ChunkFigures] = []
        executions, retries, phase = 1, 0, "start"
        cursor: dict[str, Any] = {}
        while len(chunks) < max_chunks:
            before = float(world.elapsed.value)
            figures, retried = _invoke_with_retries(world, event, timeout_s)
            retries += retried
            cursor = figures["result"]
            chunks.append(
                ChunkFigures(
                    phase,
                    figures["peak_rss_kib"] / 1024,
                    float(figures["real_s"]),
                    world.elapsed.value - before,
                    float(figures.get("cpu_s", 0.0)),
                )
            )
            if cursor["done"]:
                break
            if cursor.get("continue_as_new"):
                executions += 1
                execution = EXECUTION_ARN.format(f"run-{cursor['run']}-from-chunk-{cursor['chunks']}")
            if cursor.get("wait_seconds"):
                with world.elapsed.get_lock():
                    world.elapsed.value += cursor["wait_seconds"]
            phase = cursor["phase"]
            event = {"prune_chunk": {"step": "next", "cursor": cursor, "execution": execution}}
        requests = world.sim.requests
        stored = _stored_plan(world.table, cursor.get("run"))
        plan_now = datetime.fromisoformat(stored["now"]) if stored else world.now
        due = _due_servers(world.table, cursor.get("run"))
        planned = _single_pass_plan(listing, world.env, plan_now, due)
        simulated_s = float(world.elapsed.value)
    return SweepFigures(
        label=fleet.label(),
        done=bool(cursor.get("done")),
        note=str(cursor.get("note", "")),
        chunks=tuple(chunks),
        executions=executions,
        retries=retries,
        requests=len(requests),
        throttled=sum(1 for r in requests if r.status == 429),
        rate=limit.rate,
        simulated_s=simulated_s,
        real_s=time.perf_counter() - started - seed_s,
        seed_s=seed_s,
        deleted=_deleted_ids(requests),
        planned=tuple(sorted(d.backup_id for d in planned.to_delete)),
        planned_totals=dict(planned.totals),
        due=None if due is None else len(due),
        servers_listed=len({r.query["server_id"] for r in requests if r.method == "GET" and "server_id" in r.query}),
    )


def _stored_plan(table: StateTable, run: str | None) -> dict[str, Any] | None:
    from vpsbackup.prune.run_store import PruneRunStore

    return None if run is None else PruneRunStore(table).plan(run)


def _due_servers(table: StateTable, run: str | None) -> frozenset[int] | None:
    """The servers an incremental run's first chunk chose (None: a fleet sweep, or not incremental)."""
    from vpsbackup.prune.run_store import PruneRunStore

    chosen = None if run is None else PruneRunStore(table).selection(run)
    servers = None if chosen is None else chosen.get("servers")
    return None if servers is None else frozenset(int(s) for s in servers)
