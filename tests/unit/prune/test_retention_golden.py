"""Conformance: the retention engine reproduces restic's own golden cases for ``restic forget``.

The JSON (restic's TestApplyPolicy data, converted) lives outside the project, in the shared
``conformance`` folder beside the repository; CI provides it there. Several snapshots share a
timestamp, so kept times and reasons are compared as multisets, as the file asks.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.unit.prune.test_buckets import walked
from vpsbackup.prune.retention import RetentionPolicy, apply_policy

GOLDEN = Path(__file__).parents[4] / "shared" / "conformance" / "restic-forget-golden.json"
UTC = ZoneInfo("UTC")


def _load() -> dict[str, Any]:
    if not GOLDEN.is_file():
        pytest.skip(f"restic golden data not found at {GOLDEN} (it lives in ../shared/conformance)")
    data: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return data


def _cases() -> list[Any]:
    if not GOLDEN.is_file():
        return [pytest.param(None, id="golden-data-missing")]
    return [pytest.param(case, id=f"restic-case-{case['restic_case']}") for case in _load()["cases"]]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize("case", _cases())
def test_reproduces_restic_case(case: dict[str, Any] | None) -> None:
    # Given restic's snapshot list and one of its policies
    data = _load()
    assert case is not None
    snapshots = [(index, _time(text)) for index, text in enumerate(data["snapshots"])]
    policy = RetentionPolicy.model_validate(case["policy"])

    # When the policy is applied with UTC buckets
    decisions = apply_policy(snapshots, policy, UTC)

    # Then the kept times and each kept time's reasons match restic's, as multisets
    kept = [d for d in decisions if d.keep]
    assert Counter(d.time for d in kept) == Counter(_time(t) for t in case["keep"])
    expected_reasons = Counter((_time(r["time"]), tuple(r["matches"])) for r in case["reasons"])
    assert Counter((d.time, d.restic_matches) for d in kept) == expected_reasons
    assert len(decisions) == len(snapshots)


@pytest.mark.parametrize("case", _cases())
def test_the_fleet_engine_reproduces_restic_case(case: dict[str, Any] | None) -> None:
    # Given restic's snapshot list and one of its policies
    data = _load()
    assert case is not None
    snapshots = [(index, _time(text)) for index, text in enumerate(data["snapshots"])]
    times = dict(snapshots)
    policy = RetentionPolicy.model_validate(case["policy"])

    # When the fleet plan's walk (prune/buckets.py) applies it with UTC buckets
    walk = walked(snapshots, policy, UTC, None)

    # Then the kept times and each kept time's reasons match restic's, as multisets
    kept = [(times[index], tuple(m.restic for m in matches)) for index, matches in walk if matches]
    assert Counter(t for t, _ in kept) == Counter(_time(t) for t in case["keep"])
    assert Counter(kept) == Counter((_time(r["time"]), tuple(r["matches"])) for r in case["reasons"])
    assert len(walk) == len(snapshots)


def test_golden_file_covers_every_rule() -> None:
    # Guards against a truncated conversion: every rule this project exposes is exercised.
    data = _load()
    used = {rule for case in data["cases"] for rule in case["policy"]}
    assert used == set(RetentionPolicy.model_fields)
