"""``make demo`` end to end, in its own process (it starts its own simulator and local AWS, and sets
the environment): a hold placed with the console protects a backup from the prune, which says why;
``vpsbackup history --backup`` explains a deletion (by which run, under which policy); and the
journal has one entry per deletion and per restore of the demo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RUN = "import json; from devtools.demo import main; print('DEMO-SUMMARY ' + json.dumps(main()))"


def test_the_demo_holds_a_backup_through_the_prune_and_journals_every_deletion_and_restore() -> None:
    # Given a fresh process, When the demo runs
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VPS_", "STATE_", "NOTIFY_", "AWS_ENDPOINT"))}
    env["COLUMNS"] = "160"  # the console's tables as wide as the demo draws them (pytest may set 80)
    done = subprocess.run(  # noqa: S603 - the project's own demo
        [sys.executable, "-c", RUN], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "\033[" not in done.stdout, "piped, the demo writes no ANSI codes"
    story, summary_line = done.stdout.rsplit("DEMO-SUMMARY ", 1)
    summary = json.loads(summary_line)

    # Then the held backup was one the plan would delete, and the real prune kept it, saying why
    assert summary["deleted"], "the demo's prune deletes something"
    assert summary["held"] not in summary["deleted"]
    assert summary["held_kept"] is True
    assert any("before the db migration" in r for r in summary["held_reasons"])
    assert f"$ vpsbackup hold add {summary['held']} --for 3d --reason 'before the db migration'" in story
    assert f"backup {summary['held']}: keep, because hold until" in story

    # ... history explains a deletion: the reason, the run (the schedule's), the policy
    assert "$ vpsbackup history --backup " in story
    assert "no retention rule keeps it" in story
    assert "schedule (local-" in story
    assert "[policy last 3, daily 7, weekly 2]" in story

    # ... and the journal has one entry per deletion and per restore, and the hold's
    journal = summary["journal"]
    deletions = [e for e in journal if e["act"] == "backup_deleted"]
    assert sorted(e["backup_id"] for e in deletions) == summary["deleted"]
    assert {(e["by"], e["details"]["policy"]) for e in deletions} == {("schedule", "last 3, daily 7, weekly 2")}
    assert len({e["run"] for e in deletions}) == 1
    restores = [e for e in journal if e["act"] == "restore_requested"]
    assert len(restores) == summary["restores"] == 1
    acts = Counter(e["act"] for e in journal)
    assert (acts["hold_placed"], acts["backup_created"], acts["restore_refused"]) == (1, 2, 1)
    [hold] = [e for e in journal if e["act"] == "hold_placed"]
    assert hold["backup_id"] == summary["held"]
