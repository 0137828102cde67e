"""The shared provider quota: its rules (pure), the slots one job takes through a store, and the store in StateTable."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpsbackup.provider.client import RetryPolicy, VpsClient
from vpsbackup.provider.errors import ApiTimeoutError
from vpsbackup.provider.quota import JOBS, Grant, Job, QuotaParams, QuotaState, Wait, free_slots, hold, take, usable
from vpsbackup.provider.ratelimit import BudgetExhaustedError
from vpsbackup.provider.shared_quota import InMemoryQuotaStore, QuotaStore, SharedQuota
from vpsbackup_local.simulator.clock import SimulatedClock

NOW = 1_800_000_000.0


# -- the rules ---------------------------------------------------------------------------------------


def test_shape_at_hetzner_digitalocean_and_linode_limits() -> None:
    hetzner, digitalocean, linode = QuotaParams(1.0), QuotaParams(250 / 60), QuotaParams(200 / 60)
    assert (hetzner.burst, hetzner.reserve, hetzner.batch("prune"), hetzner.batch("restore")) == (10, 3, 3, 1)
    assert (digitalocean.burst, digitalocean.reserve, digitalocean.batch("deploy")) == (41, 12, 10)
    assert (linode.burst, linode.reserve) == (33, 10)
    for params in (hetzner, digitalocean, linode, QuotaParams(0.01), QuotaParams(0.2, 0.9), QuotaParams(1000, 0.05)):
        assert params.floor("restore") == 0 < params.floor("deploy") < params.floor("prune") < params.burst
        assert params.batch("deploy") <= params.reserve


def test_a_full_bucket_gives_a_batch_now_and_spaces_the_rest() -> None:
    params = QuotaParams(1.0)  # burst 10, reserve 3, prune's floor 6: 4 free slots for prune
    grant = take(QuotaState(), NOW, "prune", params)
    assert isinstance(grant, Grant)
    assert grant.slots == (NOW, NOW, NOW) and grant.state.version == 1
    second = take(grant.state, NOW, "prune", params)
    assert isinstance(second, Grant) and second.slots == (NOW, NOW + 1, NOW + 2)
    assert take(second.state, NOW, "prune", params) == Wait(NOW + 3)
    # the deploy still starts now, and so does a restore after it
    deploy = take(second.state, NOW, "deploy", params)
    assert isinstance(deploy, Grant) and deploy.slots[0] == NOW
    restore = take(deploy.state, NOW, "restore", params)
    assert isinstance(restore, Grant) and restore.slots == (NOW,)


def test_a_hold_stops_every_job_until_it_ends() -> None:
    params = QuotaParams(1.0)
    held = hold(QuotaState(), NOW + 30)
    assert held is not None and hold(held, NOW + 10) is None
    for job in JOBS:
        assert take(held, NOW, job, params) == Wait(NOW + 30)
        assert isinstance(take(held, NOW + 30, job, params), Grant)


def test_a_slot_is_usable_until_its_grace_only() -> None:
    params = QuotaParams(1.0)
    assert usable(NOW, NOW + params.grace, params) and not usable(NOW, NOW + params.grace + 0.01, params)
    assert free_slots(QuotaState(), NOW, params) == params.burst


_JOB = st.sampled_from(JOBS)
_STEP = st.tuples(st.floats(0, 5), _JOB, st.floats(0, 1))
_RATE = st.sampled_from([0.2, 1.0, 250 / 60, 200 / 60, 7.0])
_SHARE = st.sampled_from([0.05, 0.3, 0.5, 0.9])


def _run(rate: float, share: float, steps: list[tuple[float, Job, float]]) -> tuple[QuotaParams, list[float]]:
    """Every job taking whenever it may, each slot used some time within its grace: the use times."""
    params = QuotaParams(rate, share)
    state, now, uses = QuotaState(), NOW, []
    for dt, job, lateness in steps:
        now += dt
        decision = take(state, now, job, params)
        if isinstance(decision, Grant):
            state = decision.state
            uses.extend(slot + lateness * params.grace for slot in decision.slots)
    return params, sorted(uses)


@given(_RATE, _SHARE, st.lists(_STEP, max_size=120))
def test_the_provider_never_sees_more_than_the_limit(rate: float, share: float, steps: list[Any]) -> None:
    """Whatever the jobs do, the requests fit a provider bucket of the same rate holding
    ``burst + rate * grace``: no 429 from a provider whose bucket is at least that deep."""
    params, uses = _run(rate, share, steps)
    capacity = params.burst + params.rate * params.grace
    tokens, last = capacity, NOW
    for at in uses:
        tokens = min(capacity, tokens + (at - last) * params.rate)
        last = at
        assert tokens >= 1 - 1e-6, f"a request at {at - NOW:.3f} s found the provider's bucket empty"
        tokens -= 1


@given(_RATE, _SHARE, st.lists(st.tuples(st.floats(0, 5), st.sampled_from(["deploy", "prune"])), max_size=120))
def test_a_restore_never_waits_behind_deploys_and_prunes(rate: float, share: float, steps: list[Any]) -> None:
    params = QuotaParams(rate, share)
    state, now = QuotaState(), NOW
    for dt, job in steps:
        now += dt
        decision = take(state, now, job, params)
        if isinstance(decision, Grant):
            state = decision.state
        restore = take(state, now, "restore", params)
        assert isinstance(restore, Grant) and restore.slots == (now,)


@given(_RATE, _SHARE, st.lists(st.floats(0, 5), max_size=120))
def test_a_deploy_never_waits_behind_prunes(rate: float, share: float, steps: list[float]) -> None:
    params = QuotaParams(rate, share)
    state, now = QuotaState(), NOW
    for dt in steps:
        now += dt
        decision = take(state, now, "prune", params)
        if isinstance(decision, Grant):
            state = decision.state
        deploy = take(state, now, "deploy", params)
        assert isinstance(deploy, Grant) and deploy.slots[0] == now


# -- one job's slots through a store ---------------------------------------------------------------------


def quota(store: QuotaStore, job: Job, clock: SimulatedClock, rate: float = 1.0) -> SharedQuota:
    return SharedQuota(store, QuotaParams(rate), job, clock=clock.time, sleep=clock.sleep, record_waits=True)


def test_one_conditional_write_per_batch_and_the_limit_held() -> None:
    clock, store = SimulatedClock(), InMemoryQuotaStore()
    prune = quota(store, "prune", clock)
    starts = []
    for _ in range(30):
        prune.acquire()
        starts.append(clock.time())
    assert store.writes == prune.stats.writes == 10  # batches of 3
    # 4 at once (the free slots above prune's floor), then one a second
    assert starts[4] - starts[0] == pytest.approx(1.0)
    assert starts[-1] - starts[0] == pytest.approx(26.0)


def test_a_restore_goes_first_while_prune_and_deploy_spend_the_quota() -> None:
    clock, store = SimulatedClock(), InMemoryQuotaStore()
    prune, deploy, restore = (quota(store, job, clock) for job in ("prune", "deploy", "restore"))
    for _ in range(20):
        prune.acquire()
        deploy.acquire()
    assert restore.acquire() == 0.0
    assert restore.acquire() == 0.0  # the reserve holds more than one request
    # deploy before prune: prune waited for every slot the two spent, deploy for none
    assert prune.stats.waited > 0 and deploy.stats.waited == 0.0


class FlakyStore(InMemoryQuotaStore):
    """Fails its first ``failures`` reads and writes (DynamoDB throttling or unreachable)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.calls = 0

    def _fail(self) -> None:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("dynamodb is not answering")

    def read(self) -> QuotaState:
        self._fail()
        return super().read()

    def swap(self, new: QuotaState, *, expected_version: int) -> bool:
        self._fail()
        return super().swap(new, expected_version=expected_version)


def test_a_store_that_fails_makes_requests_wait_never_go_without_a_slot() -> None:
    clock, store = SimulatedClock(), FlakyStore(failures=4)
    prune = quota(store, "prune", clock)
    assert prune.acquire() == pytest.approx(0.2 + 0.4 + 0.8 + 1.6)
    assert prune.stats.store_errors == 4 and store.writes == 1


def test_a_store_that_stays_down_starts_nothing_before_the_deadline() -> None:
    clock, store = SimulatedClock(), FlakyStore(failures=10**6)
    prune = quota(store, "prune", clock)
    with pytest.raises(BudgetExhaustedError):
        prune.acquire(max_wait=30)
    assert prune.stats.slots_used == 0 and store.writes == 0
    assert clock.monotonic() <= 30


def test_a_late_slot_is_dropped_not_used() -> None:
    clock, store = SimulatedClock(), InMemoryQuotaStore()
    prune = quota(store, "prune", clock)
    prune.acquire()
    clock.advance(60)  # the batch's other slots are long past their grace
    prune.acquire()
    assert prune.stats.slots_dropped == 2 and prune.stats.writes == 2


def test_a_slot_past_the_callers_deadline_is_kept_for_the_next_request() -> None:
    clock, store = SimulatedClock(), InMemoryQuotaStore()
    prune = quota(store, "prune", clock)
    for _ in range(5):
        prune.acquire()
    with pytest.raises(BudgetExhaustedError):
        prune.acquire(max_wait=0.1)
    assert prune.acquire() == pytest.approx(1.0)


def test_the_client_waits_for_the_quota_and_shares_a_429s_retry_after() -> None:
    clock, store = SimulatedClock(), InMemoryQuotaStore()
    answers = iter([httpx.Response(429, headers={"Retry-After": "30"}), httpx.Response(200, json=[])])
    client = VpsClient(
        "https://api.test/v1",
        _Tokens(),
        retry=RetryPolicy(max_attempts=1, sleep=clock.sleep),
        clock=clock.monotonic,
        transport=httpx.MockTransport(lambda request: next(answers)),
    )
    client.configure(page_size=None, max_rps=None, quota=quota(store, "deploy", clock))
    with pytest.raises(Exception, match="429"):
        client.list_backups()
    assert store.state.not_before >= clock.time() + 29  # every function now holds back
    restore = quota(store, "restore", clock)
    assert restore.acquire() >= 29


def test_the_client_starts_nothing_when_the_quota_cannot_be_had_before_its_deadline() -> None:
    clock, store = SimulatedClock(), FlakyStore(failures=10**6)
    sent: list[httpx.Request] = []
    client = VpsClient(
        "https://api.test/v1",
        _Tokens(),
        retry=RetryPolicy(sleep=clock.sleep),
        clock=clock.monotonic,
        transport=httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(200, json=[])),
    )
    client.configure(page_size=None, max_rps=None, quota=quota(store, "restore", clock))
    client.set_deadline(20)
    with pytest.raises(ApiTimeoutError, match="VPS_API_RATE_LIMIT"):
        client.list_backups()
    assert sent == []


class _Tokens:
    def get_token(self, *, force_refresh: bool = False) -> str:
        return "t"


# -- the store in StateTable (moto) ----------------------------------------------------------------------


def test_the_statetable_store_swaps_on_the_version_and_keeps_the_longest_hold(aws: Any) -> None:
    from vpsbackup.aws.quota_store import QUOTA_PK, DynamoQuotaStore, quota_sk
    from vpsbackup.aws.state import StateTable

    store = DynamoQuotaStore(StateTable.from_name(aws.table_name), "arn:secret:token", clock=lambda: NOW)
    assert store.read() == QuotaState()
    first = QuotaState(tat=NOW + 1.5, not_before=0.0, version=1)
    assert store.swap(first, expected_version=0)
    assert not store.swap(QuotaState(tat=NOW + 9, version=1), expected_version=0)  # someone else's write won
    assert store.read() == first
    store.hold_until(NOW + 30)
    store.hold_until(NOW + 10)  # shorter: ignored
    held = store.read()
    assert held.not_before == NOW + 30 and held.version == 2 and held.tat == NOW + 1.5
    item = aws.table().get_item(Key={"pk": QUOTA_PK, "sk": quota_sk("arn:secret:token")})["Item"]
    assert "arn:secret:token" not in str(item) and int(item["expiration"]) > NOW


def test_the_statetable_store_throttled_then_back(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    from vpsbackup.aws.quota_store import DynamoQuotaStore
    from vpsbackup.aws.state import StateTable

    store = DynamoQuotaStore(StateTable.from_name(aws.table_name), "arn:secret:token")
    real, failures = store.table.update_item, [2]

    def throttled(**kwargs: Any) -> Any:
        if failures[0]:
            failures[0] -= 1
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "UpdateItem")
        return real(**kwargs)

    monkeypatch.setattr(store.table, "update_item", throttled)
    clock = SimulatedClock()
    deploy = quota(store, "deploy", clock)
    assert deploy.acquire() == pytest.approx(0.2 + 0.4)
    assert deploy.stats.store_errors == 2 and store.read().version == 1
    assert math.isclose(store.read().tat, clock.time() + 1.0, abs_tol=1e-3) or store.read().tat > clock.time()
