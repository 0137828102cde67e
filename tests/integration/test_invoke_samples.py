"""`make invoke` as a user runs it: every sample in events/ ends as events/README.md says, with its exit code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EVENTS, ROOT

pytestmark = pytest.mark.integration

ROW = re.compile(r"^\| `([^`]+\.json)` \| (\w+) \| `([^`]+)` \| (\d) \|$")
ANSI = re.compile(r"\x1b\[")


def documented() -> dict[str, tuple[str, str, int]]:
    rows = {}
    for line in (EVENTS / "README.md").read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            name, function, ending, code = match.groups()
            rows[name] = (function, ending, int(code))
    return rows


def run_invoke(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m devtools.invoke`` in a fresh process, output to a pipe (not a terminal)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "VPS_"))}
    env.pop("NO_COLOR", None)
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "devtools.invoke", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


def test_every_sample_is_in_the_table() -> None:
    assert sorted(documented()) == sorted(p.name for p in EVENTS.glob("*.json"))


@pytest.mark.parametrize("name", sorted(p.name for p in EVENTS.glob("*.json")))
def test_the_sample_ends_as_documented(name: str) -> None:
    function, ending, code = documented()[name]
    # When a user runs `make invoke EVENT=events/<name>` (the function named by the file) ...
    done = run_invoke(f"events/{name}")
    # Then its last line is the documented ending, the exit code matches, and a pipe gets no colours
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr
    assert lines[-1].startswith(ending), f"{name}: {lines[-1]!r}\n{done.stderr[-2000:]}"
    assert done.returncode == code, done.stderr[-2000:]
    assert f"invoking {function} with events/{name}" in lines[0]
    assert not ANSI.search(done.stdout + done.stderr)
    assert "Traceback" not in done.stderr


def test_a_handler_that_raises_exits_1(tmp_path: Path) -> None:
    # Given a prune request the function refuses (it raises, as Lambda would record)
    bad = tmp_path / "prune-bad.json"
    bad.write_text('{"dry_run": "yes"}', encoding="utf-8")
    done = run_invoke("prune_backups", str(bad))
    assert done.returncode == 1
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("result: the handler raised InvalidPruneRequestError: ")
    assert "dry_run" in last


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "no event file"),
        ('{"trigger": ', "is not valid JSON: Expecting value at line 1"),
        ("[1, 2]", "holds a JSON list, not an object"),
    ],
)
def test_a_missing_or_invalid_event_file_is_one_line_and_exit_2(tmp_path: Path, content: str | None, says: str) -> None:
    path = tmp_path / "prune-x.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    done = run_invoke(str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("invoke: ") and says in line


def test_an_unknown_file_name_asks_for_the_function(tmp_path: Path) -> None:
    path = tmp_path / "something.json"
    path.write_text("{}", encoding="utf-8")
    done = run_invoke(str(path))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "pass FN=" in line
