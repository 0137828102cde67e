"""One provider quota shared by three jobs at once: prune, a deploy and a burst of alarms' restores
run their real handlers in threads, each with its own client (as three Lambda functions would),
against a simulator that enforces the limit with a token bucket and answers 429 beyond it; the
quota lives in StateTable (moto).

The quota's clock is real (the jobs run for a few seconds at 30 requests/second). Nothing is timed
on the wall clock: the test counts 429s and reads the order of what happened (whether a job's
request slept for its slot, which requests the simulator served after which). How soon a restore's
call came after its alarm is counted in the provider's time: the requests it served in between,
at its rate (the provider serves no more than that, however fast or slow the machine).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import backup_on_deploy
import prune_backups
import restore_on_alarm
from devtools.simulator import RateLimit, Simulator
from tests.conftest import AwsEnv, FakeLambdaContext
from tests.integration.test_restore_on_alarm import eventbridge as alarm_event
from vpsbackup.aws import runtime
from vpsbackup.aws.quota_store import DynamoQuotaStore
from vpsbackup.aws.state import StateTable
from vpsbackup.provider.client import RetryPolicy, VpsClient
from vpsbackup.provider.quota import Job, QuotaParams
from vpsbackup.provider.shared_quota import SharedQuota
from vpsbackup.provider.token import SecretsManagerTokenProvider
from vpsbackup.settings import SharedSettings

pytestmark = pytest.mark.integration

RATE = 30.0
# One second of burst (30 slots, 15 kept for restores) so that the jobs contend within a short run.
PARAMS = QuotaParams(RATE, restore_share=0.5, burst_seconds=1.0)
PRUNED = tuple(range(7001, 7013))  # 12 servers, 10 old manual backups each: prune lists and deletes
DEPLOYED = tuple(range(8001, 8025))  # 24 servers: the deploy creates 24 backups
RESTORED = (9001, 9002, 9003)  # three alarms at once


@pytest.fixture
def quota_env(
    monkeypatch: pytest.MonkeyPatch, shared_env: AwsEnv, simulator: Simulator, atomic_moto: None
) -> dict[Job, VpsClient]:
    """Every job's settings; one client per job with its own place in one shared quota."""
    monkeypatch.setenv("RETENTION_POLICY", '{"keep_last": 2}')
    monkeypatch.setenv("PRUNE_SCOPE", "manual")
    monkeypatch.setenv("MAX_DELETIONS_PER_RUN", "1000")
    monkeypatch.setenv("MAX_DELETIONS_PER_DAY", "10000")
    monkeypatch.setenv("ALARM_NAME_PREFIX", "vps-restore-")
    monkeypatch.setenv("MAX_RESTORES_PER_HOUR", "10")
    monkeypatch.setenv("VPS_API_RATE_LIMIT", str(RATE))
    store = DynamoQuotaStore(StateTable.from_name(shared_env.table_name), shared_env.secret_id)
    clients: dict[Job, VpsClient] = {}
    for job in ("prune", "deploy", "restore"):
        client = VpsClient(
            simulator.base_url,
            SecretsManagerTokenProvider(shared_env.secret_id),
            retry=RetryPolicy(max_attempts=8, base_delay=0.05, max_delay=0.2),
        )
        client.quota = SharedQuota(store, PARAMS, job, record_waits=True)
        clients[job] = client

    def client_for(settings: SharedSettings, job: Job | None = None) -> VpsClient:
        assert job is not None, "every function names its job in the shared quota"
        client = clients[job]
        client.configure(page_size=settings.vps_api_page_size, max_rps=settings.vps_api_max_rps, quota=client.quota)
        return client

    monkeypatch.setattr(runtime, "api_client_for", client_for)
    prune_backups.settings.cache_clear()
    backup_on_deploy.settings.cache_clear()
    restore_on_alarm.reset()
    yield clients
    for client in clients.values():
        client.close()
    prune_backups.settings.cache_clear()
    backup_on_deploy.settings.cache_clear()
    restore_on_alarm.reset()


def seed(sim: Simulator) -> None:
    now = datetime.now(UTC)
    for server in PRUNED:
        sim.add_server(server, f"app-{server}")
        for day in range(10):
            sim.add_backup(server, "manual", "completed", now - timedelta(days=day + 1), f"Backup {day}")
    for server in DEPLOYED:
        sim.add_server(server, f"web-{server}")
    for server in RESTORED:
        sim.add_server(server, f"db-{server}")
        sim.add_backup(server, "manual", "completed", now - timedelta(hours=3), "Nightly")


def deploy_event() -> dict[str, Any]:
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "Deployment Started",
        "source": "ci.deploy",
        "account": "123456789012",
        "time": datetime.now(UTC).isoformat(),
        "region": "eu-west-1",
        "resources": [],
        "detail": {"deployment_id": "gh-quota-1", "server_ids": list(DEPLOYED), "actor": "alice"},
    }


def run_in_thread(name: str, work: Callable[[], Any], results: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        try:
            results[name] = work()
        except BaseException as exc:  # reported by the test
            results[name] = exc

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


def test_prune_a_deploy_and_three_restores_share_one_quota_restores_first_no_429(
    quota_env: dict[Job, VpsClient], simulator: Simulator
) -> None:
    # Given a provider enforcing 30 requests/second, its bucket as deep as the quota needs
    seed(simulator)
    depth = PARAMS.burst + math.ceil(PARAMS.rate * PARAMS.grace)
    simulator.set_rate_limit(RateLimit(limit=30, window=1.0, burst=depth))
    context = FakeLambdaContext(remaining_ms=600_000)
    results: dict[str, Any] = {}

    # When prune and a 24-server deploy run, and three alarms fire while both are busy
    prune = run_in_thread("prune", lambda: prune_backups.handler({"server_ids": list(PRUNED)}, context), results)
    deploy = run_in_thread("deploy", lambda: backup_on_deploy.handler(deploy_event(), context), results)
    busy = threading.Event()

    def contended() -> bool:  # prune has had to wait for a slot: the quota is spent
        return quota_env["prune"].quota.stats.waited > 0 or not prune.is_alive()  # type: ignore[union-attr]

    while not contended():
        busy.wait(0.01)
    served_before_alarms = len(simulator.requests)
    alarms = {server: alarm_event(alarm=f"vps-restore-{server}", server=server) for server in RESTORED}
    restores = [
        run_in_thread(f"restore-{server}", lambda event=event: restore_on_alarm.handler(event, context), results)
        for server, event in alarms.items()
    ]
    for thread in (prune, deploy, *restores):
        thread.join(timeout=300)

    # Then every job did its work
    errors = {name: value for name, value in results.items() if isinstance(value, BaseException)}
    assert not errors
    assert results["prune"]["totals"]["deleted"] == len(PRUNED) * 8
    assert {b["status"] for b in results["deploy"]["backups"]} <= {"in_progress", "completed"}
    assert len(results["deploy"]["backups"]) == len(DEPLOYED)
    for server in RESTORED:
        [outcome] = results[f"restore-{server}"]["outcomes"]
        assert outcome["outcome"] == "restored", outcome
    # no request met a 429: together they never went past the provider's limit
    assert simulator.rate_limit_counts == {"served": len(simulator.requests), "throttled": 0}
    # the alarms came while prune was waiting for slots (the quota spent)...
    assert served_before_alarms < len(simulator.requests)
    stats = {job: client.quota.stats for job, client in quota_env.items()}  # type: ignore[union-attr]
    assert stats["prune"].waited > 0
    # ...and not one restore request slept for its slot: none waited behind prune's or deploy's
    assert stats["restore"].waits and all(w == 0.0 for w in stats["restore"].waits)
    # prune and deploy were still going after the restores' requests (the restores cut in)
    restore_posts = [i for i, r in enumerate(simulator.requests) if r.path.endswith("/restore/")]
    others_after = [
        r
        for r in simulator.requests[max(restore_posts) :]
        if r.method == "DELETE" or (r.method == "POST" and r.path.endswith("/backups/"))
    ]
    assert len(restore_posts) == len(RESTORED) and others_after
    # each restore's call within 5 s of its alarm, in the provider's time
    for server in RESTORED:
        call = next(i for i, r in enumerate(simulator.requests) if r.path == f"/api/v1/servers/{server}/restore/")
        assert (call - served_before_alarms) / RATE <= 5.0, f"restore {server}: {call - served_before_alarms} requests"
    # and deploy batches cost one StateTable write each, not one per request
    assert (
        stats["deploy"].writes
        <= math.ceil(stats["deploy"].slots_used / PARAMS.batch("deploy"))
        + stats["deploy"].conflicts
        + stats["deploy"].slots_dropped
        + stats["deploy"].registrations  # a deploy that waited wrote its waiter (to go before prune)
    )
    assert json.dumps(results["deploy"])  # the EventBridge answer is the deployment's body
