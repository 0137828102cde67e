"""Conformance: the prune job's retention walk reproduces restic's own golden cases for ``restic forget``.

The cases (restic's TestApplyPolicy data, converted to JSON, BSD-2-Clause: see golden/restic/)
run through :func:`~vpsbackup.prune.buckets.walk_policy`, the walk every prune plan makes. Several
snapshots share a timestamp, so kept times and reasons are compared as multisets.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from vpsbackup.prune.buckets import BucketCalendar, CompiledPolicy, MatchCache, micros, walk_policy
from vpsbackup.prune.retention import RetentionPolicy

GOLDEN = Path(__file__).parent / "golden" / "restic" / "forget-cases.json"
DATA: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))
UTC = ZoneInfo("UTC")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize("case", [pytest.param(c, id=f"restic-case-{c['restic_case']}") for c in DATA["cases"]])
def test_the_retention_walk_reproduces_restic_case(case: dict[str, Any]) -> None:
    # Given restic's snapshot list, newest first, and one of its policies
    walk = sorted((_time(text) for text in DATA["snapshots"]), reverse=True)
    policy = RetentionPolicy.model_validate(case["policy"])

    # When the prune job's walk applies it with UTC buckets
    kept = walk_policy([micros(t) for t in walk], CompiledPolicy.of(policy), BucketCalendar(UTC), MatchCache())

    # Then the kept times and each kept time's reasons match restic's, as multisets
    reasons = Counter((walk[nr], tuple(m.restic for m in matches)) for nr, matches in kept.items())
    assert Counter(t for t, _ in reasons.elements()) == Counter(_time(t) for t in case["keep"])
    assert reasons == Counter((_time(r["time"]), tuple(r["matches"])) for r in case["reasons"])


def test_the_golden_file_covers_every_rule() -> None:
    # Guards against a truncated copy: every rule a policy can set is exercised, by enough cases.
    used = {rule for case in DATA["cases"] for rule in case["policy"]}
    assert used == set(RetentionPolicy.model_fields)
    assert len(DATA["cases"]) >= 20
    assert len(DATA["snapshots"]) >= 50
