"""``make mutate``'s tool (devtools/mutate.py): each mutant changes the module, compiles, and is
undone afterwards; every target's tests exist."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from devtools.mutate import PACKAGE, ROOT, TARGETS, _written_over, main, mutants_of, mutated_source


@pytest.mark.parametrize("module", sorted(TARGETS))
def test_every_target_and_its_tests_exist(module: str) -> None:
    assert (PACKAGE / module).is_file()
    for test in TARGETS[module]:
        assert (ROOT / test).is_file(), test


def test_each_mutant_of_a_module_is_a_different_program_that_compiles() -> None:
    original = ast.unparse(ast.parse((PACKAGE / "restore/point.py").read_text(encoding="utf-8")))
    mutants = mutants_of("restore/point.py")
    assert len(mutants) > 50
    kinds = {m.operator.split()[0] for m in mutants}
    assert {"compare", "boolop", "negate", "return_none", "plus1", "minus1", "minmax"} <= kinds
    for mutant in mutants:
        source = mutated_source("restore/point.py", mutant.index)
        assert source != original, mutant
        compile(source, "point.py", "exec")


def test_words_are_not_mutated() -> None:
    # No mutant inside a docstring, an f-string or a logger call
    guard = (PACKAGE / "restore/guard.py").read_text(encoding="utf-8").splitlines()
    for mutant in mutants_of("restore/guard.py"):
        assert "logger." not in guard[mutant.line - 1], mutant


def test_the_module_is_restored_even_when_the_run_fails(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("x = 1\n", encoding="utf-8")
    seen: list[str] = []

    def run() -> None:
        with _written_over(path, "x = 2\n"):
            seen.append(path.read_text(encoding="utf-8"))
            raise RuntimeError

    with pytest.raises(RuntimeError):
        run()
    assert seen == ["x = 2\n"]
    assert path.read_text(encoding="utf-8") == "x = 1\n"


def test_an_unknown_module_is_a_usage_error_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["restore/nope.py"])
    assert exited.value.code == 2
    assert "restore/nope.py" in capsys.readouterr().err


def test_a_mutant_runs_the_tests_that_run_its_lines_fastest_first_and_every_test_for_an_import_time_line() -> None:
    from devtools.mutate import CoverageMap

    cover = CoverageMap(
        lines={10: ["t::slow", "t::fast"], 11: ["t::mid"], 20: [""], 21: ["", "t::slow"]},
        durations={"t::slow": 3.0, "t::fast": 0.1, "t::mid": 1.0},
    )
    everything = ["t::fast", "t::mid", "t::slow"]
    assert cover.tests_for(10, 11, everything) == ["t::fast", "t::mid", "t::slow"]
    assert cover.tests_for(10, 10, everything) == ["t::fast", "t::slow"]
    assert cover.tests_for(20, 20, everything) == everything  # a constant: its effect shows anywhere
    assert cover.tests_for(21, 21, everything) == everything
    assert cover.tests_for(30, 40, everything) == []  # no test runs it: survives without a run
