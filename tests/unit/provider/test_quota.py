"""The shared provider quota: its rules (pure), the slots one job takes through a store, and the store in StateTable."""

from __future__ import annotations

import bisect
import heapq
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpsbackup.provider.client import RetryPolicy, VpsClient
from vpsbackup.provider.errors import ApiTimeoutError
from vpsbackup.provider.quota import (
    JOBS,
    LEASE_AHEAD_S,
    RANK,
    WINDOW_S,
    Grant,
    Job,
    QuotaParams,
    QuotaState,
    Wait,
    Waiter,
    free_slots,
    hold,
    take,
    usable,
)
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
    # the fourth free slot now, the next one a second later; none further ahead than LEASE_AHEAD_S
    assert isinstance(second, Grant) and second.slots == (NOW, NOW + 1)
    assert take(second.state, NOW, "prune", params) == Wait(NOW + 2)
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


# -- who gets the next slot: restores first, then deploys, then prune --------------------------------------


@dataclass
class _Caller:
    """One invocation asking for ``demand`` slots the way SharedQuota does: it asks, sleeps until it
    is told (coming back up to ``late`` seconds later, within its lease), uses its slots in turn."""

    name: str
    job: Job
    demand: int
    late: float
    asked: float | None = None  # when its current request first asked (None: it has a slot)
    served: list[tuple[float, float, int]] = field(default_factory=list)  # (asked, granted, restore grants between)


@dataclass
class _Log:
    """What the decisions wrote, in their order: grants (time, job, caller, slots, order) and
    waiters registered (order, caller, job)."""

    grants: list[tuple[float, Job, str, tuple[float, ...], int]] = field(default_factory=list)
    registered: list[tuple[int, str, Job]] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return len(self.grants) + len(self.registered)


def _contend(params: QuotaParams, callers: list[_Caller], arrivals: list[float]) -> _Log:
    """Every caller through the rules, in time order, one decision at a time (the conditional
    writes' order); ties in arrival order."""
    state, log = QuotaState(), _Log()
    queue = [(NOW + at, i, i) for i, at in enumerate(arrivals)]
    heapq.heapify(queue)
    seq = len(queue)
    for _ in range(20_000):
        if not queue:
            return log
        now, _, index = heapq.heappop(queue)
        caller = callers[index]
        caller.asked = now if caller.asked is None else caller.asked
        decision = take(state, now, caller.job, params, ticket=caller.name)
        if isinstance(decision, Wait):
            if decision.state is not None:
                state = decision.state
                log.registered.append((log.writes, caller.name, caller.job))
            nxt = decision.until + caller.late
        else:
            state = decision.state
            log.grants.append((now, caller.job, caller.name, decision.slots, log.writes))
            restores_between = sum(1 for g in log.grants if g[1] == "restore" and caller.asked <= g[0] < now)
            caller.served.append((caller.asked, now, restores_between))
            caller.asked = None
            caller.demand -= len(decision.slots)
            if caller.demand <= 0:
                continue
            nxt = decision.slots[-1] + 0.01  # its last slot used, it asks again
        seq += 1
        heapq.heappush(queue, (nxt, seq, index))
    raise AssertionError("the callers never finished: someone starves")


_SAME_TIME = 1e-4
_CALLERS = st.lists(
    st.tuples(st.sampled_from(JOBS), st.floats(0, 20), st.integers(1, 12), st.floats(0, 1)), min_size=1, max_size=7
)


def _callers(params: QuotaParams, drawn: list[tuple[Job, float, int, float]]) -> tuple[list[_Caller], list[float]]:
    callers = [
        _Caller(f"{job}-{i}", job, demand, late * params.grace * 0.9) for i, (job, _, demand, late) in enumerate(drawn)
    ]
    return callers, [at for _, at, _, _ in drawn]


@settings(max_examples=300, deadline=None)
@given(_RATE, _SHARE, _CALLERS)
def test_next_slot_rate_held_and_waiting_restores_served_before_anyone_else(
    rate: float, share: float, drawn: list[tuple[Job, float, int, float]]
) -> None:
    """Callers of every job arriving at any time, each coming back late within its lease:

    - the limit: at most ``burst + rate * w`` slots start in any ``w`` seconds (times closer
      than ``_SAME_TIME`` are one: the rules' sums of intervals, the store's microseconds);
    - from the write that registers a waiting restore until that restore's grant, no deploy or
      prune is granted a slot (and no prune while a deploy waits);
    - no deploy or prune slot starts more than LEASE_AHEAD_S after the write that took it;
    - a restore that waited is served within LEASE_AHEAD_S plus, for itself and each restore
      served meanwhile, one interval and its own lateness;
    - everybody is served in the end.
    """
    params = QuotaParams(rate, share)
    callers, arrivals = _callers(params, drawn)
    log = _contend(params, callers, arrivals)
    # the limit, over every window that starts at a slot
    starts = sorted(slot for grant in log.grants for slot in grant[3])
    for i, first in enumerate(starts):
        j = bisect.bisect_right(starts, first + 60.0)
        for k in range(i, j):
            assert k - i + 1 <= params.burst + params.rate * (starts[k] - first + _SAME_TIME)
    # priority: nobody ranking lower is granted between a waiter's registration and its grant
    for order, name, job in log.registered:
        served = min(g[4] for g in log.grants if g[2] == name and g[4] > order)
        lower = [g for g in log.grants if order < g[4] < served and RANK[g[1]] > RANK[job]]
        assert not lower, f"{lower[0][2]} was granted while {name} waited"
    # bounded promises
    for at, job, _, slots, _ in log.grants:
        assert slots[0] == at
        if job != "restore":
            assert max(slots) <= at + LEASE_AHEAD_S + _SAME_TIME
    # ... and the minute's: at most window_slots requests in any WINDOW_S, each slot used within
    # its grace (this test's callers use theirs up to 0.9 of it late)
    if params.window_slots:
        late = {caller.name: caller.late for caller in callers}
        uses = sorted(slot + late[name] for _, _, name, slots, _ in log.grants for slot in slots)
        for i, first in enumerate(uses):
            assert bisect.bisect_left(uses, first + WINDOW_S) - i <= params.window_slots
    # a waiting restore's wait (the minute's count aside: a minute of restores makes the next wait)
    window_binds = params.window_slots > 0 and sum(demand for _, _, demand, _ in drawn) > params.window_slots - 2
    for caller in callers:
        assert caller.demand <= 0
        if caller.job == "restore" and not window_binds:
            for asked, granted, between in caller.served:
                bound = LEASE_AHEAD_S + (between + 1) * (params.interval + caller.late)
                assert granted - asked <= bound + 1e-6, (asked - NOW, granted - NOW, between)


def test_three_restores_behind_a_busy_deploy_and_prune_take_every_slot_that_frees() -> None:
    # Given prune and a deploy that keep the bucket at their floors (1 request/second, burst 10, reserve 3)
    params = QuotaParams(1.0)
    callers = [_Caller("prune", "prune", 60, 0.0), _Caller("deploy", "deploy", 60, 0.0)]
    callers += [_Caller(f"restore-{i}", "restore", 3, 0.0) for i in range(3)]
    # When three restores of 3 requests each come 20 s in
    log = _contend(params, callers, [0.0, 0.0, 20.0, 20.0, 20.0])
    # Then the restores' 9 slots are the 4 free at once, then every slot that frees: all by 26 s
    restore_slots = sorted(s for _, job, _, slots, _ in log.grants if job == "restore" for s in slots)
    assert len(restore_slots) == 9 and restore_slots[-1] - NOW <= 20.0 + 5.0 + 0.05
    others = [g for g in log.grants if g[1] != "restore" and NOW + 20 <= g[0] < restore_slots[-1]]
    assert not others
    # (before, a deploy's batch held slots up to 2 s ahead: the restores' last slot came at 26 s)


def test_a_waiting_restore_holds_back_deploy_and_prune_until_its_grant_or_its_lease_ends() -> None:
    params = QuotaParams(1.0)  # grace 2 s
    held = QuotaState(not_before=NOW + 30, version=7)  # a 429's Retry-After: nobody before NOW + 30
    # a restore that finds no slot writes its waiter: back at NOW + 30, its lease until then + grace
    told = take(held, NOW, "restore", params, ticket="r1")
    assert isinstance(told, Wait) and told.until == NOW + 30 and told.state is not None
    registered = told.state
    assert registered.waiting == (Waiter("r1", "restore", NOW + 32),)
    assert (registered.version, registered.not_before) == (8, NOW + 30)
    # asking again before it is told writes nothing more
    assert take(registered, NOW + 10, "restore", params, ticket="r1") == Wait(NOW + 30)
    # the hold ends and the deploy and prune ask first: they are told to look again (the deploy
    # writes its own waiter, to go before prune; prune writes nothing)
    for job in ("deploy", "prune"):
        refused = take(registered, NOW + 30, job, params, ticket=job)
        assert isinstance(refused, Wait) and refused.until == NOW + 31
        assert (refused.state is None) == (job == "prune")
    # the restore's grant removes its waiter; then the deploy goes
    granted = take(registered, NOW + 30.5, "restore", params, ticket="r1")
    assert isinstance(granted, Grant) and granted.slots == (NOW + 30.5,) and granted.state.waiting == ()
    assert isinstance(take(granted.state, NOW + 30.5, "deploy", params, ticket="d1"), Grant)
    # a restore that never came back (its invocation died) holds nobody back after its lease
    late_deploy = take(registered, NOW + 32.01, "deploy", params, ticket="d1")
    assert isinstance(late_deploy, Grant) and late_deploy.state.waiting == ()


def test_a_waiting_deploy_holds_back_prune_not_restores_and_prune_writes_no_waiter() -> None:
    params = QuotaParams(1.0)
    full = QuotaState(tat=NOW + params.burst * params.interval)
    prune = take(full, NOW, "prune", params, ticket="p1")
    assert isinstance(prune, Wait) and prune.state is None  # nobody ranks below prune
    deploy = take(full, NOW, "deploy", params, ticket="d1")
    assert isinstance(deploy, Wait) and deploy.state is not None
    later = NOW + 9  # room for everyone, were nobody waiting
    assert isinstance(take(deploy.state, later - 4.5, "prune", params, ticket="p1"), Wait)
    assert isinstance(take(deploy.state, later - 4.5, "restore", params, ticket="r1"), Grant)
    # two restores wait: a deploy is held back until both are served
    one = take(full, NOW, "restore", params, ticket="r1")
    assert isinstance(one, Wait) and one.state is not None
    two = take(one.state, NOW, "restore", params, ticket="r2")
    assert isinstance(two, Wait) and two.state is not None and len(two.state.waiting) == 2
    first = take(two.state, NOW + 1, "restore", params, ticket="r1")
    assert isinstance(first, Grant)
    assert isinstance(take(first.state, NOW + 1.5, "deploy", params, ticket="d1"), Wait)


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
    # a batch of 3 from the full bucket, then 2 a write (a slot now and one within LEASE_AHEAD_S)
    assert store.writes == prune.stats.writes == 15
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


def test_a_restores_client_is_paced_by_the_shared_quota_alone_the_others_by_the_providers_headers_too() -> None:
    clock, store = SimulatedClock(), InMemoryQuotaStore()
    client = VpsClient("https://api.test/v1", _Tokens(), clock=clock.monotonic)
    for job, paced in (("restore", False), ("deploy", True), ("prune", True)):
        client.configure(page_size=None, max_rps=2, quota=quota(store, job, clock))
        assert client.budget.paced is paced
    client.configure(page_size=None, max_rps=2, quota=None)
    assert client.budget.paced


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


def _same(a: QuotaState, b: QuotaState) -> bool:
    """Equal states, times to the store's microsecond, waiters in any order."""
    ours, theirs = (sorted(s.waiting, key=lambda w: w.ticket) for s in (a, b))
    times = [(a.tat, b.tat), (a.not_before, b.not_before)]
    times += [(x.until, y.until) for x, y in zip(ours, theirs, strict=False)]
    same_waiters = [(w.ticket, w.job) for w in ours] == [(w.ticket, w.job) for w in theirs]
    return a.version == b.version and same_waiters and all(math.isclose(x, y, abs_tol=2e-6) for x, y in times)


class _VirtualTime:
    """Time that moves only when every one of ``callers`` threads sleeps (or has finished): then to
    the earliest wake-up. Threads racing over a store see the same clock, and no sleep lets time
    run ahead of a thread still deciding."""

    def __init__(self, start: float, callers: int) -> None:
        self.now = start
        self._active = callers
        self._sleeping: dict[int, float] = {}
        self._cond = threading.Condition()

    def time(self) -> float:
        with self._cond:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._cond:
            wake = self.now + max(0.0, seconds)
            self._sleeping[threading.get_ident()] = wake
            self._advance()
            while self.now < wake:
                self._cond.wait()
            del self._sleeping[threading.get_ident()]

    def done(self) -> None:
        with self._cond:
            self._active -= 1
            self._advance()

    def _advance(self) -> None:
        if self._sleeping and len(self._sleeping) >= self._active:
            self.now = max(self.now, min(self._sleeping.values()))
            self._cond.notify_all()


def test_quotas_racing_in_threads_over_statetable_lose_no_write_and_serve_restores_first(
    aws: Any, atomic_moto: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restores, deploys and a prune in threads, each its own quota object (as separate invocations
    are), over one quota item in StateTable (moto, each request atomic as in DynamoDB)."""
    from vpsbackup.aws.quota_store import DynamoQuotaStore
    from vpsbackup.aws.state import StateTable
    from vpsbackup.provider import shared_quota

    params = QuotaParams(20.0, 0.3, burst_seconds=1.0)  # burst 20, 6 kept for restores
    demand: list[tuple[Job, int]] = [("prune", 40), ("deploy", 40), ("deploy", 40), ("restore", 15), ("restore", 15)]
    clock = _VirtualTime(NOW, len(demand))
    committed: list[tuple[QuotaState, QuotaState, Job, str, float, Grant | Wait]] = []
    asked = threading.local()
    real_take = shared_quota.take

    def recorded_take(state: QuotaState, now: float, job: Job, p: QuotaParams, **kwargs: Any) -> Grant | Wait:
        decision = real_take(state, now, job, p, **kwargs)
        asked.last = (state, job, kwargs["ticket"], now, decision)
        return decision

    class RecordingStore(DynamoQuotaStore):
        def swap(self, new: QuotaState, *, expected_version: int) -> bool:
            written = super().swap(new, expected_version=expected_version)
            if written:
                seen, job, ticket, now, decision = asked.last
                committed.append((seen, new, job, ticket, now, decision))
            return written

    monkeypatch.setattr(shared_quota, "take", recorded_take)
    store = RecordingStore(StateTable.from_name(aws.table_name), "arn:secret:token", clock=clock.time)

    def late(seconds: float) -> None:  # a restore comes back 0.4 s after it is told: longer than the reserve lasts
        clock.sleep(seconds + 0.4)

    quotas = [
        SharedQuota(store, params, job, clock=clock.time, sleep=late if job == "restore" else clock.sleep)
        for job, _ in demand
    ]
    store.hold_until(clock.time() + 1.0)  # a 429's Retry-After: everybody waits, then they race
    failures: list[BaseException] = []

    def work(quota: SharedQuota, requests: int) -> None:
        try:
            for _ in range(requests):
                quota.acquire()
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            clock.done()

    threads = [threading.Thread(target=work, args=(q, n)) for q, (_, n) in zip(quotas, demand, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures and not any(t.is_alive() for t in threads)

    # no write lost, none made twice: each committed write was decided on the state it replaced
    committed.sort(key=lambda c: c[1].version)
    assert (
        [c[1].version for c in committed]
        == list(range(2, len(committed) + 2))
        == list(range(2, store.read().version + 1))
    )
    previous = committed[0][0]
    assert previous.version == 1 and previous.not_before == pytest.approx(NOW + 1.0)
    for seen, new, *_ in committed:
        assert _same(seen, previous)
        previous = new
    assert _same(store.read(), previous)
    # every slot a quota object took is one of a committed grant, counted once
    grants = [c for c in committed if isinstance(c[5], Grant)]
    assert sum(len(c[5].slots) for c in grants) == sum(q.stats.slots_taken for q in quotas)
    assert sum(q.stats.slots_used for q in quotas) == sum(n for _, n in demand)
    # the limit over every window
    starts = sorted(slot for c in grants for slot in c[5].slots)
    for i, first in enumerate(starts):
        for k in range(i, bisect.bisect_right(starts, first + 10.0)):
            assert k - i + 1 <= params.burst + params.rate * (starts[k] - first + _SAME_TIME)
    # no grant while a live waiter ranking above the grantee stood in the state it replaced
    for seen, _, job, ticket, now, _ in grants:
        assert not [w for w in seen.live(now) if RANK[w.job] < RANK[job]], (job, ticket)
    # the restores did wait (the hold), so the check above had waiters to respect
    assert any(c[2] == "restore" and isinstance(c[5], Wait) for c in committed)


def test_a_busy_minute_holds_no_more_than_the_limit_and_a_restore_still_finds_a_slot() -> None:
    # Given a prune taking every slot it may for five minutes, at 1 request/second (a burst of 10)
    params = QuotaParams(1.0)
    state, now, starts = QuotaState(), NOW, list[float]()
    while now < NOW + 300:
        decision = take(state, now, "prune", params)
        if isinstance(decision, Grant):
            state, now = decision.state, max(now, decision.slots[-1])
            starts.extend(decision.slots)
        else:
            now = decision.until
    # Then no minute held more than the limit's 60 (the burst alone would let 70 through): prune
    # stops 2 short of it, for a deploy and a restore
    busiest = max(bisect.bisect_left(starts, first + WINDOW_S) - i for i, first in enumerate(starts))
    assert busiest == params.window_slots - 2 == 58
    # ... at a pace within a few per cent of the limit over the five minutes
    assert len(starts) >= 0.9 * 300
    # ... and a restore asking in that full minute starts at once
    restore = take(state, now, "restore", params)
    assert isinstance(restore, Grant) and restore.slots == (now,)
