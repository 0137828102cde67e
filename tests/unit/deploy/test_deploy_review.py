"""Adversarial scenarios for backup on deploy: a fake provider whose timing the test controls, and
moto for the claims. Each test is one way the exactly-once promise could break."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest

from tests.conftest import AwsEnv
from vpsbackup.aws.state import StateTable
from vpsbackup.deploy.claims import LEASE_MARGIN, ClaimStore
from vpsbackup.deploy.job import BackupOnDeploy, back_up_deployment, deployment_status
from vpsbackup.deploy.request import DeployRequest
from vpsbackup.markers import marker_matches
from vpsbackup.provider.client import NO_WAIT, VpsClient
from vpsbackup.provider.errors import OutcomeUnknownError, ServerError, VpsApiError
from vpsbackup.provider.models import Backup, CreatedBackup
from vpsbackup.provider.token import StaticTokenProvider
from vpsbackup.records import DeploymentRecord

T0 = datetime(2025, 1, 16, 15, 45, tzinfo=UTC)
SERVER = 12345


class FakeApi:
    """Creates backups in memory. ``fail_next`` makes the next create raise after (or instead of)
    applying it; ``hidden`` backups exist but are not listed yet (the provider is still on it)."""

    def __init__(self) -> None:
        self.backups: list[Backup] = []
        self.hidden: set[int] = set()
        self.creates = 0
        self.fail_next: Callable[[Backup], None] | None = None
        self.apply_failed = True

    def create_backup(self, server_id: int, description: str | None = None) -> CreatedBackup:
        self.creates += 1
        made = CreatedBackup.model_validate(
            {
                "id": 500 + self.creates,
                "server": {"id": server_id},
                "backup_type": "manual",
                "status": "in_progress",
                "created_at": T0,
                "description": description,
            }
        )
        fail, self.fail_next = self.fail_next, None
        if fail is None or self.apply_failed:
            self.backups.append(made)
        if fail is not None:
            fail(made)
        return made

    def list_backups(self, *, server_id: int | None = None, backup_type: str | None = None, **_: Any) -> list[Backup]:
        return [b for b in self.backups if b.id not in self.hidden and (server_id is None or b.server_id == server_id)]

    def marked(self, deployment_id: str) -> list[Backup]:
        return [b for b in self.backups if marker_matches(b.description, deployment_id)]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def table(aws: AwsEnv) -> StateTable:
    return StateTable.from_name(aws.table_name)


def deliver(
    api: Any, table: StateTable, clock: Clock, deployment_id: str = "d-1", servers: tuple[int, ...] = (SERVER,)
) -> Any:
    """One delivery of the deploy request (its own owner), at the clock's time."""
    deps = BackupOnDeploy(
        client=cast(VpsClient, api),
        claims=ClaimStore(table),
        state=table,
        owner=f"owner-{uuid.uuid4().hex}",
        lease=timedelta(seconds=120) + LEASE_MARGIN,
        wait_for_claim=0.0,
        clock=clock,
        sleep=lambda _s: None,
    )
    return back_up_deployment(DeployRequest(deployment_id=deployment_id), list(servers), deps)


def timeout(_made: Backup) -> None:
    raise OutcomeUnknownError("POST /backups/: ReadTimeout", cause="ReadTimeout")


# -- an outcome-unknown create is not re-sent before the provider could show it -------------------


def test_a_retry_soon_after_a_timed_out_create_does_not_post_a_second_backup(table: StateTable) -> None:
    # Given a create that timed out while the provider was still making the backup (not listed yet)
    api, clock = FakeApi(), Clock()
    api.fail_next = lambda made: (api.hidden.add(made.id), timeout(made))[1]
    first = deliver(api, table, clock)
    assert first.servers[0].outcome == "failed"

    # When CI retries a few seconds later, before the provider lists the backup
    clock.now = T0 + timedelta(seconds=5)
    soon = deliver(api, table, clock)

    # Then nothing is POSTed again and the server is reported as not settled yet (not a success)
    assert api.creates == 1
    assert soon.servers[0].outcome == "failed"
    assert soon.http_status == 502

    # When the provider shows it and the request comes again later
    api.hidden.clear()
    clock.now = T0 + timedelta(minutes=3)
    later = deliver(api, table, clock)

    # Then it is found, recorded, and there is still only one backup
    assert api.creates == 1
    assert later.servers[0].outcome == "reconciled"
    assert later.servers[0].backup_id == api.backups[0].id
    assert len(api.marked("d-1")) == 1


def test_a_timed_out_create_that_was_never_applied_is_posted_again_once_it_has_settled(table: StateTable) -> None:
    # Given a create that timed out and that the provider never applied
    api, clock = FakeApi(), Clock()
    api.apply_failed = False
    api.fail_next = timeout
    deliver(api, table, clock)

    # When the request comes again once the outcome has surely settled
    clock.now = T0 + LEASE_MARGIN + timedelta(seconds=1)
    again = deliver(api, table, clock)

    # Then one new create makes the backup
    assert api.creates == 2
    assert again.servers[0].outcome == "created"
    assert len(api.marked("d-1")) == 1


# -- a 500 on create may have been applied ---------------------------------------------------------


def test_a_retry_after_a_create_answered_500_that_made_the_backup_does_not_make_another(table: StateTable) -> None:
    # Given the provider made the backup but answered 500 (e.g. it failed rendering the answer)
    api, clock = FakeApi(), Clock()

    def http_500(_made: Backup) -> None:
        raise ServerError("POST /backups/: HTTP 500", status_code=500)

    api.fail_next = http_500

    # When the request is delivered, and retried
    first = deliver(api, table, clock)
    clock.now = T0 + timedelta(minutes=2)
    again = deliver(api, table, clock)

    # Then there is one backup, and both deliveries report it
    assert api.creates == 1
    assert len(api.marked("d-1")) == 1
    assert first.servers[0].backup_id == again.servers[0].backup_id == api.backups[0].id


# -- a truncated listing is not "no backup" ---------------------------------------------------------


def _page(results: list[dict[str, Any]], next_url: str | None) -> dict[str, Any]:
    return {"count": 30, "next": next_url, "previous": None, "results": results}


def test_a_listing_cut_short_by_a_foreign_next_link_is_not_taken_as_no_backup(table: StateTable) -> None:
    # Given the provider answers the create with 504 (it did make the backup), and lists it on a
    # second page whose ``next`` link names another host (e.g. a proxy's)
    posts: list[httpx.Request] = []
    marked_description = "Pre-deploy backup for deployment d-1 [vpsbackup deployment=d-1]"

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posts.append(request)
            return httpx.Response(504)
        if request.url.host == "api.test":
            return httpx.Response(200, json=_page([], "https://internal.proxy/api/v1/backups/?page=2"))
        made = {
            "id": 777,
            "server": {"id": SERVER},
            "backup_type": "manual",
            "status": "in_progress",
            "created_at": "2025-01-16T15:45:00Z",
            "description": marked_description,
        }
        return httpx.Response(200, json=_page([made], None))

    client = VpsClient(
        "https://api.test/api/v1", StaticTokenProvider("t"), retry=NO_WAIT, transport=httpx.MockTransport(handler)
    )
    clock = Clock()

    # When the request is delivered, and delivered again once the create has settled
    deliver(client, table, clock)
    clock.now = T0 + timedelta(minutes=5)
    deliver(client, table, clock)

    # Then only one create was ever sent: an incomplete listing never counts as "not there"
    assert len(posts) == 1


def test_a_listing_cut_short_raises_instead_of_stopping_early() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=_page([], "https://elsewhere.test/api/v1/backups/?page=2"))

    client = VpsClient(
        "https://api.test/api/v1", StaticTokenProvider("t"), retry=NO_WAIT, transport=httpx.MockTransport(handler)
    )
    # Every listing is strict (there is no lenient mode any more): the whole listing or an error
    with pytest.raises(VpsApiError, match="incomplete"):
        client.list_backups(server_id=SERVER)


# -- the deployment record keeps its backup id ----------------------------------------------------


def test_a_late_write_without_a_backup_does_not_erase_the_recorded_backup(table: StateTable) -> None:
    # Given a deployment record with its backup (written by the delivery that found it)
    table.put_deployment_record(DeploymentRecord(deployment_id="d-1", server_id=SERVER, received_at=T0, backup_id=9))

    # When a slower delivery of the same deployment, whose attempt failed, writes its record last
    table.put_deployment_record(DeploymentRecord(deployment_id="d-1", server_id=SERVER, received_at=T0))

    # Then the restore job still finds the backup
    record = table.latest_deployment_before(SERVER, T0 + timedelta(hours=1))
    assert record is not None
    assert record.backup_id == 9


# -- status: a server no delivery ever got to ----------------------------------------------------


def test_status_of_a_server_no_delivery_got_to_is_an_error_once_every_delivery_is_surely_over(
    table: StateTable,
) -> None:
    # Given a deployment registered for two servers, whose delivery died before reaching the second
    claims = ClaimStore(table)
    claims.register_deployment("d-1", [SERVER, 12346], T0)
    claims.claim_new("d-1", SERVER, owner="a", now=T0, lease=timedelta(minutes=3), received_at=T0)
    api = FakeApi()

    # When CI asks right away, Then it is in progress; when it asks after any Lambda would have
    # ended, Then it is an error CI can act on, not "in progress" forever
    soon = deployment_status("d-1", cast(VpsClient, api), claims, now=T0 + timedelta(seconds=5))
    assert soon is not None
    assert {e["server_id"]: e["status"] for e in soon.backups}[12346] == "in_progress"
    late = deployment_status("d-1", cast(VpsClient, api), claims, now=T0 + timedelta(hours=1))
    assert late is not None
    entry = {e["server_id"]: e for e in late.backups}[12346]
    assert entry["status"] == "error"
    assert "send the deploy request again" in entry["error"]
