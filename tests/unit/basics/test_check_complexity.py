"""The complexity check of ``make lint`` names every function above the limit, and only those."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.check_complexity import DEFAULT_PATHS, LIMIT, main, offenders_in


def branches(name: str, complexity: int, indent: str = "") -> str:
    """A function whose cyclomatic complexity is ``complexity`` (one plus one per ``if``)."""
    body = "".join(f"{indent}    if x == {n}:\n{indent}        return {n}\n" for n in range(complexity - 1))
    return f"{indent}def {name}(x):\n{body}{indent}    return -1\n"


def test_a_function_at_the_limit_passes_and_one_above_is_named() -> None:
    source = branches("at_limit", LIMIT) + branches("above", LIMIT + 1)

    line = source.splitlines().index("def above(x):") + 1

    offenders = offenders_in(source, "mod.py")

    assert [(o.name, o.complexity, o.line) for o in offenders] == [("above", LIMIT + 1, line)]
    assert str(offenders[0]) == f"mod.py:{line}: above has complexity {LIMIT + 1} (limit {LIMIT})"


def test_methods_and_nested_classes_are_checked_once() -> None:
    source = "class Client:\n" + branches("_request", LIMIT + 5, "    ") + "    class Inner:\n"
    source += branches("deep", LIMIT + 1, "        ")

    offenders = offenders_in(source, "mod.py")

    assert [(o.name, o.complexity) for o in offenders] == [
        ("Client._request", LIMIT + 5),
        ("Client.Inner.deep", LIMIT + 1),
    ]


def test_main_fails_naming_every_offender(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ok.py").write_text(branches("small", 3))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "bad.py").write_text(branches("one", LIMIT + 1) + branches("two", LIMIT + 9))

    assert main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"bad.py:1: one has complexity {LIMIT + 1}" in out
    assert f"two has complexity {LIMIT + 9}" in out
    assert "2 function(s) above complexity" in out

    (tmp_path / "pkg" / "bad.py").write_text(branches("fine", LIMIT))
    assert main([str(tmp_path)]) == 0
    assert "no function above" in capsys.readouterr().out


def test_the_layer_the_handlers_the_console_and_the_devtools_are_within_the_limit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = Path(__file__).resolve().parents[3]

    assert set(DEFAULT_PATHS) == {"layers/shared/vpsbackup", "functions", "console", "devtools"}
    assert main([str(root / path) for path in DEFAULT_PATHS]) == 0, capsys.readouterr().out
