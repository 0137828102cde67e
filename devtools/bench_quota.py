"""Benchmark: the three jobs on one provider quota, in real time. ``make bench-quota``.

Prune (a fleet sweep), a large deploy (answered at once, its creates made by the deploy queue's
worker) and a burst of alarms' restores run their real handlers at the same time, each with its
own API client (as three Lambda functions would), against the local simulator enforcing the
provider's limit with a token bucket (``429`` beyond it). The quota lives in a local (moto)
``StateTable``. The alarms fire once prune and the deploy are both busy.

Measured, never asserted (docs/benchmarks.md): requests in any 60 s against the limit, ``429``
answers, how soon each restore's first request went out after its alarm, and each job's totals.
At the default 1 request/second the run takes about ten minutes of real time: the waits are the
point, so they are not simulated. ``--quick`` runs a smaller mix at 5 requests/second.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from devtools.local_env import add_import_paths, create_resources, set_alarm_state, sqs_event

TOKEN = "bench-token"  # noqa: S105 - the simulator's token, local only
REGION = "eu-west-1"
ACCOUNT = "123456789012"


@dataclass(frozen=True)
class Mix:
    """What runs together."""

    rate: float  # the provider's limit, requests/second (VPS_API_RATE_LIMIT)
    prune_servers: int  # servers of the prune sweep, 30 manual backups each, 2 of them due
    deploy_servers: int  # servers of the deploy
    alarms: int  # alarms fired at once, one server each
    latency_s: float = 0.02
    page_size: int = 50


FULL = Mix(rate=1.0, prune_servers=20, deploy_servers=500, alarms=3)
QUICK = Mix(rate=5.0, prune_servers=6, deploy_servers=60, alarms=3)


@dataclass
class Figures:
    mix: Mix
    wall_s: float = 0.0
    requests: int = 0
    throttled: int = 0
    max_per_60s: int = 0
    max_per_1s: int = 0
    first_restore_request_s: list[float] = field(default_factory=list)
    restore_call_s: list[float] = field(default_factory=list)
    restores: list[str] = field(default_factory=list)
    deleted: int = 0
    created: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    def row(self) -> str:
        m = self.mix
        first = ", ".join(f"{s:.1f} s" for s in self.first_restore_request_s) or "none"
        call = ", ".join(f"{s:.1f} s" for s in self.restore_call_s) or "none"
        return (
            f"| {m.rate:g} req/s, {m.latency_s * 1000:.0f} ms latency, pages of {m.page_size} "
            f"| prune sweep {m.prune_servers} servers × 30, deploy {m.deploy_servers} servers, {m.alarms} alarms "
            f"| {self.wall_s:.0f} s | {self.requests} requests, at most {self.max_per_60s} in any 60 s "
            f"(limit {m.rate * 60:.0f}), at most {self.max_per_1s} in any 1 s; {self.throttled} answered 429 "
            f"| first request of each restore {first} after its alarm, its restore call {call}; "
            f"restores: {', '.join(self.restores) or 'none'}; "
            f"{self.created} backups created, {self.deleted} deleted |"
        )


@contextmanager
def _local_aws() -> Iterator[None]:
    """moto in this process, its DynamoDB serialised (real DynamoDB applies each request atomically)."""
    from moto import mock_aws
    from moto.dynamodb.models import DynamoDBBackend

    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        os.environ[name] = value
    lock = threading.RLock()
    originals = {}
    for name in ("put_item", "update_item", "delete_item", "get_item", "query", "transact_write_items"):
        original: Callable[..., Any] = getattr(DynamoDBBackend, name)
        originals[name] = original

        def locked(*args: Any, __original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            with lock:
                return __original(*args, **kwargs)

        setattr(DynamoDBBackend, name, locked)
    try:
        with mock_aws():
            yield
    finally:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)


def _seed(sim: Any, mix: Mix) -> tuple[list[int], list[int], list[int]]:
    from vpsbackup.markers import describe_with_marker

    now = datetime.now(UTC)
    pruned = list(range(7001, 7001 + mix.prune_servers))
    deployed = list(range(20_001, 20_001 + mix.deploy_servers))
    restored = list(range(9001, 9001 + mix.alarms))
    for server in pruned:
        sim.add_server(server, f"app-{server}")
        for day in range(30):
            at = now - timedelta(days=day + 1)
            description = describe_with_marker(f"Release {day}", f"d-{server}-{day}")
            sim.add_backup(server, "manual", "completed", at, description)
    for server in deployed:
        sim.add_server(server, f"web-{server}")
    for server in restored:
        sim.add_server(server, f"db-{server}")
        sim.add_backup(server, "manual", "completed", now - timedelta(hours=3), "Nightly")
    return pruned, deployed, restored


class _Context:
    """A Lambda context with 15 minutes to go."""

    def __init__(self, name: str, seconds: float = 900.0) -> None:
        self.function_name = name
        self.memory_limit_in_mb = 256
        self.aws_request_id = f"bench-{name}-{time.monotonic_ns()}"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        self._deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _deploy_and_drain(queue_url: str, deployed: list[int]) -> int:  # the servers: SERVER_GROUPS "fleet"
    """The deploy request (answered at once), then the worker on every queued message until none is left."""
    import boto3

    import backup_on_deploy

    event = {
        "version": "0",
        "id": "bench-deploy",
        "detail-type": "Deployment Started",
        "source": "ci.deploy",
        "account": ACCOUNT,
        "time": datetime.now(UTC).isoformat(),
        "region": REGION,
        "resources": [],
        "detail": {"deployment_id": "bench-1", "environment": "fleet", "actor": "bench"},
    }
    backup_on_deploy.handler(event, _Context("backup_on_deploy", 120))
    sqs = boto3.client("sqs")
    for _ in itertools.count():
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1, VisibilityTimeout=900).get(
            "Messages", []
        )
        if not messages:
            break
        answer = backup_on_deploy.handler(sqs_event(messages, queue="deploy-queue"), _Context("backup_on_deploy", 120))
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            else:
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
    return len(deployed)


def _alarm_event(server: int) -> dict[str, Any]:
    name = f"vps-restore-{server}"
    set_alarm_state(name, "ALARM", metrics=[{"ServerId": str(server)}])
    at = datetime.now(UTC)
    return {
        "version": "0",
        "id": f"bench-alarm-{server}",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": ACCOUNT,
        "time": at.isoformat(),
        "region": REGION,
        "resources": [f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"],
        "detail": {
            "alarmName": name,
            "state": {"value": "ALARM", "reason": "bench", "timestamp": at.isoformat()},
            "previousState": {"value": "OK", "reason": "bench", "timestamp": (at - timedelta(minutes=5)).isoformat()},
            "configuration": {
                "metrics": [
                    {
                        "id": "m1",
                        "metricStat": {
                            "metric": {"namespace": "App", "name": "Errors", "dimensions": {"ServerId": str(server)}},
                            "period": 60,
                            "stat": "Sum",
                        },
                        "returnData": True,
                    }
                ]
            },
        },
    }


def _windows(times: list[float], width: float) -> int:
    """The most requests in any ``width`` seconds."""
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


def run(mix: Mix) -> Figures:
    # Before the handlers' modules are imported: their loggers and metrics read these then.
    os.environ.update({"POWERTOOLS_METRICS_NAMESPACE": "Bench", "POWERTOOLS_LOG_LEVEL": "ERROR"})
    add_import_paths()
    with _local_aws():
        return _run(mix)


def _run(mix: Mix) -> Figures:
    import boto3

    import backup_on_deploy
    import prune_backups
    import restore_on_alarm
    from devtools.simulator import RateLimit, Simulator
    from vpsbackup.aws import runtime
    from vpsbackup.aws.quota_store import DynamoQuotaStore
    from vpsbackup.aws.state import StateTable
    from vpsbackup.provider.client import RetryPolicy, VpsClient
    from vpsbackup.provider.quota import Job, QuotaParams
    from vpsbackup.provider.shared_quota import SharedQuota
    from vpsbackup.provider.token import SecretsManagerTokenProvider
    from vpsbackup.settings import SharedSettings

    figures = Figures(mix)
    resources = create_resources(table_name="vpsbackup-state", api_token=TOKEN, webhook_key="bench-key")
    queue_url = boto3.client("sqs").create_queue(QueueName="deploy-queue")["QueueUrl"]
    sim = Simulator(tokens={TOKEN}, page_size=mix.page_size, latency=mix.latency_s, seed=0)
    _, deployed, restored = _seed(sim, mix)
    params = QuotaParams(mix.rate)
    depth = params.burst + math.ceil(params.rate * params.grace)
    sim.set_rate_limit(RateLimit(limit=max(1, round(mix.rate)), window=1.0, burst=depth))
    sim.start()
    os.environ.update(
        {
            "VPS_API_BASE_URL": sim.base_url,
            "VPS_API_TOKEN_SECRET": resources.secret_id,
            "STATE_TABLE_NAME": resources.table_name,
            "NOTIFY_TOPIC_ARN": resources.topic_arn,
            "WEBHOOK_SECRET": resources.webhook_secret_id,
            "DEPLOY_QUEUE_URL": queue_url,
            "SERVER_GROUPS": json.dumps({"fleet": deployed}),
            "VPS_API_RATE_LIMIT": str(mix.rate),
            "VPS_API_PAGE_SIZE": str(mix.page_size),
            "VPS_API_MAX_RPS": "1000",
            "RETENTION_POLICY": json.dumps({"keep_last": 28}),
            "PRUNE_SCOPE": "manual",
            "MAX_DELETIONS_PER_RUN": "1000",
            "MAX_DELETIONS_PER_DAY": "10000",
            "ALARM_NAME_PREFIX": "vps-restore-",
            "MAX_RESTORES_PER_HOUR": str(mix.alarms),
        }
    )
    store = DynamoQuotaStore(StateTable.from_name(resources.table_name), resources.secret_id)
    clients: dict[Job, VpsClient] = {}
    for job in ("prune", "deploy", "restore"):
        client = VpsClient(sim.base_url, SecretsManagerTokenProvider(resources.secret_id), retry=RetryPolicy())
        client.quota = SharedQuota(store, params, job, record_waits=True)
        clients[job] = client

    def client_for(settings: SharedSettings, job: Job | None = None) -> VpsClient:
        client = clients[job or "prune"]
        client.configure(page_size=settings.vps_api_page_size, max_rps=settings.vps_api_max_rps, quota=client.quota)
        return client

    runtime.api_client_for = client_for
    prune_backups.settings.cache_clear()
    backup_on_deploy.settings.cache_clear()
    restore_on_alarm.reset()
    results: dict[str, Any] = {}

    def thread(name: str, work: Callable[[], Any]) -> threading.Thread:
        def go() -> None:
            try:
                results[name] = work()
            except BaseException as exc:  # reported in the figures
                results[name] = exc

        t = threading.Thread(target=go, name=name, daemon=True)
        t.start()
        return t

    started = time.monotonic()
    started_at = datetime.now(UTC)
    prune = thread("prune", lambda: prune_backups.handler({"sweep": True}, _Context("prune_backups")))
    deploy = thread("deploy", lambda: _deploy_and_drain(queue_url, deployed))
    while prune.is_alive() and clients["prune"].quota.stats.waited == 0:  # type: ignore[union-attr]
        time.sleep(0.05)
    time.sleep(2.0)  # both busy, the quota spent
    fired: dict[int, datetime] = {}
    alarms = []
    for server in restored:
        event = _alarm_event(server)
        fired[server] = datetime.now(UTC)
        alarms.append(thread(f"restore-{server}", functools.partial(restore_on_alarm.handler, event, _Context("r"))))
    for t in (prune, deploy, *alarms):
        t.join()
    figures.wall_s = time.monotonic() - started
    sim.stop()

    _tally(figures, sim, started_at, fired, results)
    for client in clients.values():
        client.close()
    return figures


def _tally(
    figures: Figures, sim: Any, started_at: datetime, fired: dict[int, datetime], results: dict[str, Any]
) -> None:
    """The figures of a finished mix: the simulator's request log, and what each thread returned."""
    served = [r for r in sim.requests if r.status is not None]
    times = [(r.at - started_at).total_seconds() for r in served]
    figures.requests = len(served)
    figures.throttled = sim.rate_limit_counts["throttled"]
    figures.max_per_60s = _windows(times, 60.0)
    figures.max_per_1s = _windows(times, 1.0)
    for server, at in fired.items():
        _restore_delays(figures, served, server, at)
    for name, value in results.items():
        if isinstance(value, BaseException):
            figures.errors[name] = f"{type(value).__name__}: {value}"
        elif name.startswith("restore-"):
            figures.restores += [o["outcome"] for o in value["outcomes"]]
    prune_result = results.get("prune")
    if isinstance(prune_result, dict):
        figures.deleted = prune_result["totals"]["deleted"]
    figures.created = sum(1 for r in served if r.method == "POST" and r.path.endswith("/backups/"))


def _restore_delays(figures: Figures, served: list[Any], server: int, fired: datetime) -> None:
    """How long after its alarm ``server``'s first request, and its restore call, were served."""
    mine = [r for r in served if str(server) in r.path or r.query.get("server_id") == str(server)]
    after = [r.at for r in mine if r.at >= fired]
    if after:
        figures.first_restore_request_s.append((min(after) - fired).total_seconds())
    calls = [r.at for r in mine if r.method == "POST" and r.path.endswith("/restore/")]
    if calls:
        figures.restore_call_s.append((min(calls) - fired).total_seconds())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller mix at 5 requests/second (a smoke run)")
    args = parser.parse_args()
    figures = run(QUICK if args.quick else FULL)
    print("| provider | what runs together | wall | requests | restores and totals |")
    print("|---|---|---|---|---|")
    print(figures.row())
    if figures.errors:
        print("errors:", json.dumps(figures.errors, indent=2))


if __name__ == "__main__":
    main()
