"""The prune state machine's REAL definition (statemachines/prune.asl.json) executed by moto, its
Lambda tasks served in-process by the real handler over the simulator.

The seam (documented in docs/deploying.md, "What runs offline"): moto runs Step Functions
definitions with ``mock_aws(config={"stepfunctions": {"execute_state_machine": True}})``, and its
Lambda backend would run the function in Docker; for the test's duration
``LambdaBackend.invoke`` is replaced by :func:`serve_in_process`, which hands the task's payload to
``prune_backups.handler`` and answers its result (or, when it raised, a function error, as Lambda
does). Everything else is the definition as deployed: its Choice, Wait, Retry, the
continue-as-new task.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

import prune_backups
from devtools.simulator import Fault, Simulator
from tests.conftest import AwsEnv, FakeLambdaContext
from tests.integration.test_prune_backups import expected_plan, prune_env, remaining_ids
from tests.integration.test_prune_chunks import Killed, delete_counts, kill_at, small_fleet
from vpsbackup.aws import runtime
from vpsbackup.prune.run_store import PruneRunStore

pytestmark = pytest.mark.integration
__all__ = ["prune_env"]

DEFINITION = Path(__file__).resolve().parents[2] / "statemachines" / "prune.asl.json"
REGION = "eu-west-1"


def serve_in_process(handler: Callable[[dict[str, Any], Any], Any]) -> Callable[..., bytes]:
    """moto's ``LambdaBackend.invoke``, answered by ``handler`` in this process."""

    def invoke(
        self: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: dict[str, str]
    ) -> bytes:
        event = json.loads(body) if body else {}
        try:
            result = handler(event, FakeLambdaContext(remaining_ms=900_000))
        except BaseException as exc:  # a crash, or a kill the test makes: a function error, as Lambda's
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
        return json.dumps(result).encode()

    return invoke


def camel_case_start_execution(real: Callable[..., Any]) -> Callable[..., Any]:
    """moto's ``states:startExecution`` task, with the names AWS converts: moto (5.2.5) hands the
    definition's ``StateMachineArn``/``Input``/``Name`` to boto3 as they are, and boto3 wants
    ``stateMachineArn``/``input``/``name`` (it fails with ``KeyError: 'StateMachineArn'``)."""

    def evaluate(self: Any, *args: Any, normalised_parameters: dict[str, Any], **kwargs: Any) -> Any:
        renamed = {key[:1].lower() + key[1:]: value for key, value in normalised_parameters.items()}
        return real(self, *args, normalised_parameters=renamed, **kwargs)

    return evaluate


@pytest.fixture
def machine(prune_env: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The state machine, created from the definition file, its task served by the real handler."""
    from moto import mock_aws
    from moto.awslambda.models import LambdaBackend

    monkeypatch.setenv("PRUNE_CHUNK_PAGES", "2")
    monkeypatch.setenv("PRUNE_CHUNK_DELETIONS", "8")
    prune_backups.settings.cache_clear()
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_sfn

    monkeypatch.setattr(LambdaBackend, "invoke", serve_in_process(prune_backups.handler))
    service = state_task_service_sfn.StateTaskServiceSfn
    monkeypatch.setattr(service, "_eval_service_task", camel_case_start_execution(service._eval_service_task))
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(RoleName="prune-sm", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("prune_backups.py", "def handler(event, context): ...\n")
        function = boto3.client("lambda", region_name=REGION).create_function(
            FunctionName="prune-backups",
            Runtime="python3.13",
            Role=role,
            Handler="prune_backups.handler",
            Code={"ZipFile": code.getvalue()},
        )["FunctionArn"]
        own = f"arn:aws:states:{REGION}:123456789012:stateMachine:test-prune"
        definition = DEFINITION.read_text().replace("${PruneFunctionArn}", function)
        definition = definition.replace("${PruneStateMachineArn}", own)
        arn = boto3.client("stepfunctions", region_name=REGION).create_state_machine(
            name="test-prune", definition=definition, roleArn=role, type="STANDARD"
        )["stateMachineArn"]
        assert arn == own
        yield arn
    prune_backups.settings.cache_clear()


def start(machine: str, request: dict[str, Any]) -> str:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn: str = sfn.start_execution(stateMachineArn=machine, name=uuid.uuid4().hex, input=json.dumps(request))[
        "executionArn"
    ]
    return arn


def finished(execution: str, limit_s: float = 120.0) -> dict[str, Any]:
    """The execution once it has left RUNNING (a guard against a hang, not a timing assertion)."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    deadline = time.monotonic() + limit_s
    while True:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            return described
        time.sleep(0.05)


def run_to_end(machine: str, request: dict[str, Any]) -> list[dict[str, Any]]:
    """Start a run and follow it through every execution it continues as; each one, described."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    seen: list[dict[str, Any]] = [finished(start(machine, request))]
    while seen[-1]["status"] == "SUCCEEDED" and output(seen[-1]).get("cursor", {}).get("continue_as_new"):
        # Continued: the next execution is the one whose input is this one's last cursor.
        followers = [
            e["executionArn"]
            for e in sfn.list_executions(stateMachineArn=machine)["executions"]
            if e["executionArn"] not in {d["executionArn"] for d in seen}
        ]
        if not followers:
            break
        seen.append(finished(followers[0]))
    return seen


def output(described: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(described.get("output") or "{}")
    return value


def history(execution: str) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    events: list[dict[str, Any]] = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
    return events


def test_a_sweep_bigger_than_a_chunk_runs_to_the_end_deleting_exactly_the_single_pass_plan(
    machine: str, simulator: Simulator
) -> None:
    # Given a fleet listed in several chunks, and the plan a single pass makes of it
    small_fleet(simulator)
    before = remaining_ids(simulator)
    expected = {d.backup_id for d in expected_plan(simulator).to_delete}

    # When a person starts a sweep
    [described] = run_to_end(machine, {"sweep": True})

    # Then the execution succeeded after many chunks, and deleted exactly the plan, each once
    assert described["status"] == "SUCCEEDED", described
    assert output(described)["done"] and output(described)["chunks"] >= 6
    assert len(expected) > 16
    assert before - remaining_ids(simulator) == expected
    assert max(delete_counts(simulator).values()) == 1
    tasks = [e for e in history(described["executionArn"]) if e["type"] == "TaskScheduled"]
    assert len(tasks) == output(described)["chunks"]


def test_a_run_goes_on_as_a_new_execution_before_the_history_fills(
    machine: str, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given executions that go on as new ones every 3 chunks
    monkeypatch.setenv("PRUNE_CHUNKS_PER_EXECUTION", "3")
    prune_backups.settings.cache_clear()
    small_fleet(simulator)
    before = remaining_ids(simulator)
    expected = {d.backup_id for d in expected_plan(simulator).to_delete}

    executions = run_to_end(machine, {"sweep": True})

    # Then the run spans several executions, each one short, the last one reporting; the same run
    assert len(executions) >= 3
    assert all(e["status"] == "SUCCEEDED" for e in executions)
    assert all(len(history(e["executionArn"])) < 60 for e in executions)
    assert output(executions[-1])["done"]
    run = output(executions[0])["cursor"]["run"]
    assert all(e["name"].startswith(f"run-{run}-from-chunk-") for e in executions[1:])
    assert before - remaining_ids(simulator) == expected


@pytest.mark.parametrize(
    "point",
    [
        "listing: after a page is stored",
        "deleting: before the outcomes are stored",
        "deleting: after a DELETE was made",
    ],
)
def test_a_chunk_killed_is_retried_by_the_definition_no_deletion_twice_none_lost(
    machine: str, simulator: Simulator, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    small_fleet(simulator)
    before = remaining_ids(simulator)
    expected = {d.backup_id for d in expected_plan(simulator).to_delete}
    kill_at(monkeypatch, point)

    [described] = run_to_end(machine, {"sweep": True})

    assert described["status"] == "SUCCEEDED", described
    failures = [e for e in history(described["executionArn"]) if e["type"] == "TaskFailed"]
    assert [f["taskFailedEventDetails"]["error"] for f in failures] == [Killed.__name__]
    assert before - remaining_ids(simulator) == expected
    assert max(delete_counts(simulator).values()) == 1
    assert f"deleted {len(expected)}" in output(described)["note"]


def test_one_run_at_a_time_a_start_while_a_run_is_in_progress_does_nothing_and_says_so(
    machine: str, simulator: Simulator, prune_env: AwsEnv
) -> None:
    small_fleet(simulator)
    before = remaining_ids(simulator)
    store = PruneRunStore(runtime.state_table(prune_env.table_name))
    now = datetime.now(UTC)
    assert store.take_lock("a-run", "arn:aws:states:::execution:other", now, now + timedelta(minutes=45)) is None

    # While another run holds the lock, a start ends at once, saying which run is in progress
    [described] = run_to_end(machine, {"sweep": True})
    assert described["status"] == "SUCCEEDED"
    assert "in progress" in output(described)["note"] and "a-run" in output(described)["note"]
    assert remaining_ids(simulator) == before

    # Two starts at once: one run prunes, the other says a run is in progress
    store.release_lock("a-run")
    expected = {d.backup_id for d in expected_plan(simulator).to_delete}
    first, second = start(machine, {"sweep": True}), start(machine, {"sweep": True})
    notes = [output(finished(e))["note"] for e in (first, second)]
    assert Counter("in progress" in note for note in notes) == Counter([True, False])
    assert before - remaining_ids(simulator) == expected
    assert max(delete_counts(simulator).values()) == 1


def test_a_chunk_a_429_stops_makes_the_execution_wait_the_retry_after_then_go_on(
    machine: str, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

    # Given a provider that answers the run's first listing request 429, Retry-After 120 s (longer
    # than the client waits within a chunk), and Wait states that record their seconds, not sleep
    small_fleet(simulator)
    before = remaining_ids(simulator)
    expected = {d.backup_id for d in expected_plan(simulator).to_delete}
    simulator.inject(Fault("status", status=429, method="GET", path_prefix="/backups/", retry_after=120))
    waits: list[int] = []
    monkeypatch.setattr(WaitFunction, "_wait_interval", lambda self, env, wait_seconds: waits.append(wait_seconds))

    [described] = run_to_end(machine, {"sweep": True})

    # Then the chunk ended there, the execution waited the 120 s the provider said, then went on
    assert described["status"] == "SUCCEEDED", described
    assert waits == [120]
    events = history(described["executionArn"])
    [entered] = [i for i, e in enumerate(events) if e["type"] == "WaitStateEntered"]
    assert json.loads(events[entered]["stateEnteredEventDetails"]["input"])["cursor"]["wait_seconds"] == 120
    assert [e["type"] for e in events[entered + 1 :] if e["type"].endswith("Scheduled")][:1] == ["TaskScheduled"]
    assert next(r.status for r in simulator.requests if r.method == "GET") == 429
    # and the run deleted exactly the plan, each once
    assert before - remaining_ids(simulator) == expected
    assert max(delete_counts(simulator).values()) == 1


def test_a_deletion_answered_429_makes_the_execution_wait_the_retry_after_then_go_on(
    machine: str, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

    # Given a provider that answers the run's first DELETE 429, Retry-After 90 s (longer than the
    # client waits within a chunk), and Wait states that record their seconds, not sleep
    small_fleet(simulator)
    before = remaining_ids(simulator)
    expected = {d.backup_id for d in expected_plan(simulator).to_delete}
    simulator.inject(Fault("status", status=429, method="DELETE", path_prefix="/backups/", retry_after=90))
    waits: list[int] = []
    monkeypatch.setattr(WaitFunction, "_wait_interval", lambda self, env, wait_seconds: waits.append(wait_seconds))

    [described] = run_to_end(machine, {"sweep": True})

    # Then the deletions stopped there, the execution waited the 90 s the provider said, then went
    # on: the refused one sent again and deleted, every planned deletion made, each once
    assert described["status"] == "SUCCEEDED", described
    assert waits == [90]
    refused = [r.path for r in simulator.requests if r.method == "DELETE" and r.status == 429]
    assert len(refused) == 1 and delete_counts(simulator)[refused[0]] == 1
    assert before - remaining_ids(simulator) == expected
    assert max(delete_counts(simulator).values()) == 1
    assert "deleted" in output(described)["note"] and "failed" not in output(described)["note"]


def test_a_stopped_execution_keeps_the_lock_until_its_lease_ends_then_a_new_run_starts(
    machine: str, simulator: Simulator, prune_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from moto.awslambda.models import LambdaBackend

    from vpsbackup.prune import chunks

    # Given a run whose second chunk is held in flight, and a clock the chunks read that can move on
    small_fleet(simulator)
    later = [timedelta(0)]

    class Clock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) + later[0]

    monkeypatch.setattr(chunks, "datetime", Clock)
    in_flight, go_on = threading.Event(), threading.Event()

    def held(event: dict[str, Any], context: Any) -> Any:
        if event.get("prune_chunk", {}).get("step") == "next" and not go_on.is_set():
            in_flight.set()
            go_on.wait(60)
        return prune_backups.handler(event, context)

    monkeypatch.setattr(LambdaBackend, "invoke", serve_in_process(held))
    sfn = boto3.client("stepfunctions", region_name=REGION)
    stopped = start(machine, {"sweep": True})
    assert in_flight.wait(60)

    # When a person stops it (its chunk in flight finishes, its result unused)
    sfn.stop_execution(executionArn=stopped, error="Operator", cause="stopped by hand")
    go_on.set()
    assert finished(stopped)["status"] == "ABORTED"
    store = PruneRunStore(runtime.state_table(prune_env.table_name))
    holder = store.lock_holder()
    assert holder is not None and holder.execution == stopped
    deleted_before = len([r for r in simulator.requests if r.method == "DELETE"])

    # Then a start within the lease does nothing and says which run (and execution) holds the lock
    later[0] = timedelta(minutes=44)
    [refused] = run_to_end(machine, {"sweep": True})
    assert refused["status"] == "SUCCEEDED"
    note = output(refused)["note"]
    assert "in progress" in note and holder.run in note and stopped in note and "does nothing" in note
    assert len([r for r in simulator.requests if r.method == "DELETE"]) == deleted_before
    assert store.lock_holder() == holder

    # and once the lease has ended (45 minutes after the stopped run last renewed it) a start runs
    later[0] = timedelta(minutes=46)
    [ran] = run_to_end(machine, {"sweep": True})
    assert ran["status"] == "SUCCEEDED", ran
    assert output(ran)["done"] and "in progress" not in output(ran)["note"]
    assert output(ran)["run"] != holder.run
    assert len([r for r in simulator.requests if r.method == "DELETE"]) > deleted_before
    assert max(delete_counts(simulator).values()) == 1


def test_a_bad_request_fails_the_execution_at_once_naming_the_field(machine: str, simulator: Simulator) -> None:
    [described] = run_to_end(machine, {"dry-run": True})

    assert described["status"] == "FAILED"
    failures = [e for e in history(described["executionArn"]) if e["type"] == "TaskFailed"]
    assert len(failures) == 1  # not retried
    assert "dry-run" in failures[0]["taskFailedEventDetails"]["cause"]
    assert not [r for r in simulator.requests if r.method == "DELETE"]
