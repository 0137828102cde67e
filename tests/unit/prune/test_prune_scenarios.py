"""Golden plans and notifications of named prune scenarios (tests/unit/prune/golden/scenarios/).

Each ``<name>.json`` is a fleet and its settings; ``<name>.plan.txt`` is what the prune plan
(:func:`~vpsbackup.prune.compact.plan_fleet`) decides for every backup and why, and
``<name>.notification.txt`` what people are told when the run needs a look (the deletions listed
under ``failed`` in the scenario fail). A change to any decision, reason or wording shows here as a
diff to review.

To rewrite the expected files after an intended change, run these tests with
``VPSBACKUP_REGENERATE_GOLDEN=1`` (never with ``CI`` set), review ``git diff`` and commit: every
test that rewrote its file fails, so a regeneration never passes unseen.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter

from tests.unit.prune.strategies import plan_backups
from vpsbackup.durations import Duration
from vpsbackup.markers import make_marker
from vpsbackup.provider.models import Backup
from vpsbackup.prune import messages
from vpsbackup.prune.compact import FleetPlan
from vpsbackup.prune.plan import BackupDecision
from vpsbackup.prune.request import PruneRequest
from vpsbackup.prune.retention import RetentionPolicies, RetentionPolicy, parse_retention_overrides
from vpsbackup.records import Hold

SCENARIOS = Path(__file__).parent / "golden" / "scenarios"
REGENERATE = os.environ.get("VPSBACKUP_REGENERATE_GOLDEN") == "1"
DURATION: TypeAdapter[Any] = TypeAdapter(Duration)


def _names() -> list[str]:
    return sorted(path.stem for path in SCENARIOS.glob("*.json"))


def _backup(item: dict[str, Any]) -> Backup:
    managed = item.get("managed", True)
    return Backup.model_validate(
        {
            "id": item["id"],
            "server": {"id": item["server"], "name": f"srv-{item['server']}"},
            "backup_type": item.get("type", "manual"),
            "status": item.get("status", "completed"),
            "created_at": item["created_at"],
            "description": make_marker(f"d{item['id']}") if managed else "made by hand",
            **({"size_mb": item["size_mb"]} if "size_mb" in item else {}),
        }
    )


def _plan(scenario: dict[str, Any]) -> FleetPlan:
    now = datetime.fromisoformat(scenario["now"])
    holds = {
        hold["backup_id"]: Hold.model_validate({"server_id": 0, "kind": "manual", **hold})
        for hold in scenario.get("holds", [])
    }
    return plan_backups(
        [_backup(item) for item in scenario["backups"]],
        policy_for=RetentionPolicies(
            RetentionPolicy.model_validate(scenario["policy"]),
            parse_retention_overrides(json.dumps(scenario.get("overrides", {}))),
        ),
        tz=ZoneInfo(scenario.get("timezone", "UTC")),
        now=now,
        scope=scenario.get("scope", "managed"),
        holds=holds,
        failed_grace=DURATION.validate_python(scenario.get("failed_grace", "24h")),
        max_deletions=scenario.get("max_deletions", 50),
        keep_at_least=scenario.get("keep_at_least", 1),
    )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def plan_text(plan: FleetPlan) -> str:
    """The plan as the golden file holds it: every decision (by server, newest first), then what
    is deleted and deferred, oldest first, and the totals."""
    assert plan.decisions is not None
    lines = [f"plan at {_when(plan.now)} UTC, scope {plan.scope}, at most {plan.max_deletions} deletions", ""]
    for d in plan.decisions:
        lines.append(
            f"server {d.server_id:<3} backup {d.backup_id:<5} {_when(d.created_at)}  {d.status:<11} "
            f"{d.backup_type:<9} {d.action:<6} {'; '.join(d.reasons)}".rstrip()
        )
    lines += [
        "",
        f"to delete, oldest first: {', '.join(str(d.backup_id) for d in plan.to_delete) or '-'}",
        f"deferred, oldest first: {', '.join(str(d.backup_id) for d in plan.deferred) or '-'}",
        "totals: " + ", ".join(f"{action} {n}" for action, n in plan.totals.items()),
    ]
    return "\n".join(lines) + "\n"


def notification_text(scenario: dict[str, Any], plan: FleetPlan) -> str:
    """What people read after the run, the deletions named under ``failed`` failing and the others
    done; "no notification" when the run needs no look."""
    failing = {int(backup_id): detail for backup_id, detail in scenario.get("failed", {}).items()}
    failed: list[tuple[BackupDecision, str]] = [
        (d, failing[d.backup_id]) for d in plan.to_delete if d.backup_id in failing
    ]
    if not failed and not plan.valve_tripped:
        return "no notification\n"
    totals = {
        "deleted": len(plan.to_delete) - len(failed),
        "already_gone": 0,
        "kept": plan.totals["keep"],
        "skipped": plan.totals["skip"],
    }
    subject, text = messages.needs_a_look(
        PruneRequest(trigger="scheduled-event"), plan, totals, failed=failed, not_started=()
    )
    return f"subject: {subject}\n\n{text}\n"


def _check(path: Path, actual: str) -> None:
    if REGENERATE:
        if os.environ.get("CI"):
            pytest.fail("golden files are never regenerated in CI")
        if not path.is_file() or path.read_text(encoding="utf-8") != actual:
            path.write_text(actual, encoding="utf-8")
            pytest.fail(f"{path.name} rewritten: review `git diff` and commit it")
        return
    assert path.is_file(), f"{path.name} is missing: see this module's docstring to write it"
    assert actual == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", _names())
def test_the_plan_is_the_golden_plan(name: str) -> None:
    # Given a named scenario, When it is planned, Then every decision and reason is the golden file's
    scenario = json.loads((SCENARIOS / f"{name}.json").read_text(encoding="utf-8"))
    _check(SCENARIOS / f"{name}.plan.txt", plan_text(_plan(scenario)))


@pytest.mark.parametrize("name", _names())
def test_the_notification_is_the_golden_notification(name: str) -> None:
    # Given a named scenario, When its run ends, Then people read the golden file's words
    scenario = json.loads((SCENARIOS / f"{name}.json").read_text(encoding="utf-8"))
    _check(SCENARIOS / f"{name}.notification.txt", notification_text(scenario, _plan(scenario)))


def test_there_are_scenarios_and_each_has_its_golden_files() -> None:
    names = _names()
    assert len(names) >= 6
    expected = {f"{n}.{kind}.txt" for n in names for kind in ("plan", "notification")}
    assert {p.name for p in SCENARIOS.glob("*.txt")} == expected
