"""Backup on deploy, a create that may have been applied: every such answer settles before a retry
creates (docs/backup-on-deploy.md#exactly-once). Over the provider simulator (real HTTP) and moto,
on one simulated clock shared by the simulator and the job, so "a minute later" takes no time.

The provider applies the create and then answers a ``500`` (or a ``201`` whose body cannot be read,
or nothing at all), and lists the new backup only some time later. A CI retry inside the settle time
that does not find the backup answers ``502`` and creates nothing; once the backup is listed the
retry reports it; past the settle time, a backup still not listed was never made, and the retry
creates it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from devtools.simulator import Fault, Simulator
from devtools.simulator.pytest_plugin import SIM_SERVERS, SIM_TOKEN
from tests.conftest import AwsEnv
from vpsbackup.aws.state import StateTable
from vpsbackup.deploy.claims import LEASE_MARGIN, ClaimStore, lease_for
from vpsbackup.deploy.job import BackupOnDeploy, DeploymentResult, back_up_deployment
from vpsbackup.deploy.request import DeployRequest
from vpsbackup.markers import marker_matches
from vpsbackup.provider.client import NO_WAIT, VpsClient
from vpsbackup.provider.token import StaticTokenProvider
from vpsbackup_local.simulator.clock import SimulatedClock

pytestmark = pytest.mark.integration

SERVER = 12345
DEPLOYMENT = "gh-4711-1"
# Each applied create, then the answer the client got.
APPLIED_THEN = {
    "500": Fault(kind="status_after", status=500, method="POST", path_prefix="/backups/"),
    "unreadable 201": Fault(
        kind="status_after", status=201, body="<html>oops</html>", method="POST", path_prefix="/backups/"
    ),
    "no answer": Fault(kind="drop_after", method="POST", path_prefix="/backups/"),
}


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(start=datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def provider(clock: SimulatedClock) -> Iterator[Simulator]:
    """A simulator on the simulated clock; a backup a POST makes is listed 30 s after it was made."""
    sim = Simulator(tokens={SIM_TOKEN}, clock=clock.now, sleep=clock.sleep)
    for server_id, name in SIM_SERVERS:
        sim.add_server(server_id, name)
    sim.set_listing_delay(30)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def deliver(aws: AwsEnv, provider: Simulator, clock: SimulatedClock, owner: str) -> DeploymentResult:
    """One delivery of the deployment, through the deploy job, at the clock's time."""
    client = VpsClient(provider.base_url, StaticTokenProvider(SIM_TOKEN), retry=NO_WAIT)
    table = StateTable.from_name(aws.table_name)
    deps = BackupOnDeploy(
        client=client,
        claims=ClaimStore(table),
        state=table,
        owner=owner,
        lease=lease_for(timedelta(seconds=120)),
        wait_for_claim=0.0,
        clock=clock.now,
        sleep=clock.sleep,
    )
    try:
        return back_up_deployment(DeployRequest(deployment_id=DEPLOYMENT), [SERVER], deps)
    finally:
        client.close()


def marked(provider: Simulator) -> list[int]:
    return [b["id"] for b in provider.backups if marker_matches(b["description"], DEPLOYMENT)]


def creates(provider: Simulator) -> int:
    return sum(1 for r in provider.requests if r.method == "POST" and r.path.endswith("/backups/"))


@pytest.mark.parametrize("answer", sorted(APPLIED_THEN))
def test_a_retry_inside_the_settle_time_answers_502_and_creates_nothing_then_reports_the_backup(
    aws: AwsEnv, provider: Simulator, clock: SimulatedClock, answer: str
) -> None:
    # Given the provider makes the backup, answers (or not) as `answer`, and lists it 30 s later
    provider.inject(APPLIED_THEN[answer])
    first = deliver(aws, provider, clock, "delivery-1")
    assert first.http_status == 502
    assert len(marked(provider)) == 1

    # When CI sends the request again 5 s later: the backup is not listed yet
    clock.advance(5)
    retry = deliver(aws, provider, clock, "delivery-2")

    # Then it answers 502 for the server and creates nothing
    assert retry.http_status == 502
    [result] = retry.servers
    assert result.http_status == 502
    assert "not creating another before" in (result.error or "")
    assert creates(provider) == 1
    assert len(marked(provider)) == 1

    # And once the backup is listed, a retry reports that very backup, still with one create
    clock.advance(30)
    settled = deliver(aws, provider, clock, "delivery-3")
    [made] = marked(provider)
    assert [(r.outcome, r.backup_id) for r in settled.servers] == [("reconciled", made)]
    assert creates(provider) == 1


def test_past_the_settle_time_a_backup_still_not_listed_was_never_made_and_a_retry_creates_it(
    aws: AwsEnv, provider: Simulator, clock: SimulatedClock
) -> None:
    # Given a create answered 500 that the provider did NOT apply
    provider.inject(Fault(kind="status", status=500, method="POST", path_prefix="/backups/"))
    assert deliver(aws, provider, clock, "delivery-1").http_status == 502
    # When CI retries inside the settle time: nothing created; after it: the backup is created
    clock.advance(10)
    assert deliver(aws, provider, clock, "delivery-2").http_status == 502
    assert creates(provider) == 1
    clock.advance(LEASE_MARGIN.total_seconds())
    late = deliver(aws, provider, clock, "delivery-3")
    assert [r.outcome for r in late.servers] == ["created"]
    assert creates(provider) == 2
    assert len(marked(provider)) == 1
