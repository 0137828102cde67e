"""Mutation testing of the decision modules (``make mutate``; docs/mutation.md). Not run in CI.

A small tool of our own (standard library and coverage.py): it changes one thing at a time in a module (a
mutant), runs the module's tests against it, and counts the mutant *killed* when a test fails.
A mutant no test notices is a gap in the tests, or an *equivalent* mutant (it changes nothing a
caller can see): those are listed, with the reason, in ``devtools/mutation-equivalents.json``.

The operators are those of the outside review (issue "tests that catch a wrong decision"):
comparisons (``<`` ⇄ ``<=``, ``>`` ⇄ ``>=``, ``==`` ⇄ ``!=``, ``in`` ⇄ ``not in``, ``is`` ⇄ ``is not``),
boolean operators (``and`` ⇄ ``or``), a dropped ``not``, a negated ``if``/``while`` condition,
integer constants ±1, swapped arithmetic (``+`` ⇄ ``-``, ``*`` ⇄ ``/``), ``min`` ⇄ ``max``, a
dropped ``return`` value (``return None``), a dropped ``continue`` or ``break``. Docstrings,
f-strings and logging calls are not mutated (they change words, not decisions).

First the module's tests run once, unmutated, under coverage.py (``devtools/mutate_cover.py``):
which test runs which line. Then each mutant is written over the module in place (restored
afterwards, whatever happens) with bytecode caching off, and only the tests that run the mutated
lines run, fastest first, with ``-x`` (first failure ends the run) and a timeout of a few times
their clean run's. A mutant on lines no test runs survives without a run; one on a line run only
at import time (a constant, a default value) runs every test. Add a module by adding a row to
:data:`TARGETS`.

    python -m devtools.mutate                      # every target
    python -m devtools.mutate restore/point.py     # some
    python -m devtools.mutate --list restore/point.py   # the mutants only, nothing run
    python -m devtools.mutate --only 87:20 deploy/claims.py   # the mutants whose key starts so
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "layers" / "shared" / "vpsbackup"
EQUIVALENTS = ROOT / "devtools" / "mutation-equivalents.json"

# The tests of prune's engine (plan_fleet over compact_rules and buckets' walk).
_PRUNE_ENGINE_TESTS = (
    "tests/unit/prune/test_prune_decision_gaps.py",
    "tests/unit/prune/test_keep_at_least.py",
    "tests/unit/prune/test_pruning.py",
    "tests/unit/prune/test_compact_plan.py",
    "tests/unit/prune/test_buckets.py",
    "tests/unit/prune/test_retention_golden.py",
    "tests/unit/prune/test_pruning_properties.py",
    "tests/unit/prune/test_time_changes.py",
)

# module (relative to the package) -> the tests that must catch its mutants.
TARGETS: dict[str, tuple[str, ...]] = {
    "prune/compact.py": _PRUNE_ENGINE_TESTS,
    "prune/compact_rules.py": _PRUNE_ENGINE_TESTS,
    "prune/buckets.py": _PRUNE_ENGINE_TESTS,
    "prune/daily_budget.py": ("tests/unit/prune/test_daily_budget.py",),
    "prune/incremental.py": (
        "tests/unit/prune/test_incremental_decision_gaps.py",
        "tests/unit/prune/test_incremental.py",
        "tests/unit/prune/test_incremental_against_sweeps.py",
        "tests/unit/prune/test_time_changes.py",
    ),
    "restore/point.py": (
        "tests/unit/restore/test_restore_point.py",
        "tests/unit/restore/test_restore_point_boundaries.py",
        "tests/unit/restore/test_restore_point_safety.py",
    ),
    "restore/guard.py": ("tests/unit/restore/test_restore_guard.py",),
    "deploy/claims.py": (
        "tests/unit/deploy/test_claim_times.py",
        "tests/unit/deploy/test_deploy_dedup.py",
        "tests/unit/deploy/test_deploy_review.py",
        "tests/unit/deploy/test_queue_messages.py",
    ),
    "deploy/webhook.py": ("tests/unit/deploy/test_webhook.py",),
}

_COMPARE_SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_BINOP_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
}
_SYMBOL: dict[type[ast.AST], str] = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
}


@dataclass(frozen=True)
class Mutant:
    """One change: where (line, column), what (``operator``: ``<= -> <``), and which site."""

    module: str
    index: int  # the site's position in the walk (stable for one version of the module)
    line: int
    col: int
    operator: str

    @property
    def key(self) -> str:
        """The mutant's name in the equivalents file: ``line:col operator``."""
        return f"{self.line}:{self.col} {self.operator}"


def _skipped(node: ast.AST) -> bool:
    """Words, not decisions: docstrings, f-strings, logging calls, annotations."""
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        target = node.func.value
        return isinstance(target, ast.Name) and target.id == "logger"
    return False


def _sites(tree: ast.AST) -> Iterator[tuple[ast.AST, str, str]]:
    """Every (node, kind, description) that can be mutated, in a fixed order."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if _skipped(node):
            continue
        yield from _node_sites(node)
        children: list[ast.AST | None] = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            children = [*node.body, *node.decorator_list, *node.args.defaults, *node.args.kw_defaults]
        elif isinstance(node, ast.AnnAssign):
            children = [node.value] if node.value is not None else []
        elif isinstance(node, ast.arg):
            children = []
        stack.extend(reversed([child for child in children if child is not None]))


def _node_sites(node: ast.AST) -> Iterator[tuple[ast.AST, str, str]]:
    # Each node is of one kind at most: the operators', or the values' and statements'.
    yield from _operator_sites(node)
    yield from _statement_sites(node)


def _operator_sites(node: ast.AST) -> Iterator[tuple[ast.AST, str, str]]:
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in _COMPARE_SWAPS:
                swapped = _COMPARE_SWAPS[type(op)]
                yield node, f"compare:{i}", f"{_SYMBOL[type(op)]} -> {_SYMBOL[swapped]}"
    elif isinstance(node, ast.BoolOp):
        yield node, "boolop", "and -> or" if isinstance(node.op, ast.And) else "or -> and"
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield node, "drop_not", "not x -> x"
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAPS:
        operator = _BINOP_SWAPS[type(node.op)]
        yield node, "binop", f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[operator]}"


def _statement_sites(node: ast.AST) -> Iterator[tuple[ast.AST, str, str]]:
    if isinstance(node, ast.If | ast.While | ast.IfExp):
        yield node, "negate", "if c -> if not c"
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        yield node, "plus1", f"{node.value} -> {node.value + 1}"
        yield node, "minus1", f"{node.value} -> {node.value - 1}"
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("min", "max"):
        yield node, "minmax", f"{node.func.id} -> {'max' if node.func.id == 'min' else 'min'}"
    elif isinstance(node, ast.Return) and node.value is not None:
        if not (isinstance(node.value, ast.Constant) and node.value.value is None):
            yield node, "return_none", "return x -> return None"
    elif isinstance(node, ast.Continue | ast.Break):
        yield node, "drop_jump", f"{type(node).__name__.lower()} -> pass"


def _apply(node: ast.AST, kind: str) -> ast.AST:
    """The mutated replacement of ``node`` (a copy)."""
    new = copy.deepcopy(node)
    if isinstance(new, ast.Compare | ast.BoolOp | ast.UnaryOp | ast.BinOp):
        return _apply_to_operator(new, kind)
    if isinstance(new, ast.If | ast.While | ast.IfExp):
        new.test = ast.UnaryOp(op=ast.Not(), operand=new.test)
    elif isinstance(new, ast.Constant) and isinstance(new.value, int):
        new.value = new.value + (1 if kind == "plus1" else -1)
    elif isinstance(new, ast.Call) and isinstance(new.func, ast.Name):
        new.func.id = "max" if new.func.id == "min" else "min"
    elif isinstance(new, ast.Return):
        new.value = None
    elif isinstance(new, ast.Continue | ast.Break):
        return ast.Pass()
    return new


def _apply_to_operator(new: ast.AST, kind: str) -> ast.AST:
    if isinstance(new, ast.Compare) and kind.startswith("compare:"):
        i = int(kind.split(":")[1])
        new.ops[i] = _COMPARE_SWAPS[type(new.ops[i])]()
    elif isinstance(new, ast.BoolOp):
        new.op = ast.Or() if isinstance(new.op, ast.And) else ast.And()
    elif isinstance(new, ast.UnaryOp) and kind == "drop_not":
        return new.operand
    elif isinstance(new, ast.BinOp):
        new.op = _BINOP_SWAPS[type(new.op)]()
    return new


class _Replace(ast.NodeTransformer):
    def __init__(self, target: ast.AST, replacement: ast.AST) -> None:
        self.target, self.replacement = target, replacement

    def visit(self, node: ast.AST) -> ast.AST:
        if node is self.target:
            return ast.copy_location(self.replacement, node)
        visited: ast.AST = super().visit(node)
        return visited


def mutants_of(module: str) -> list[Mutant]:
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    return [
        Mutant(module, i, getattr(node, "lineno", 0), getattr(node, "col_offset", 0), f"{kind.split(':')[0]} {what}")
        for i, (node, kind, what) in enumerate(_sites(tree))
    ]


def mutated_source(module: str, index: int) -> str:
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    node, kind, _ = list(_sites(tree))[index]
    mutated = _Replace(node, _apply(node, kind)).visit(tree)
    return ast.unparse(ast.fix_missing_locations(mutated))


@contextlib.contextmanager
def _written_over(path: Path, text: str) -> Iterator[None]:
    """``path`` holds ``text`` inside the block; its own content again after it, whatever happens."""
    original = path.read_bytes()
    try:
        path.write_text(text, encoding="utf-8")
        shutil.rmtree(path.parent / "__pycache__", ignore_errors=True)
        yield
    finally:
        path.write_bytes(original)
        shutil.rmtree(path.parent / "__pycache__", ignore_errors=True)


def _pytest(
    tests: Sequence[str], timeout: float, extra_env: dict[str, str] | None = None, plugins: Sequence[str] = ()
) -> str:
    """``killed``, ``survived`` or ``timeout``. Many node ids go through an ``@file`` argument."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(extra_env or {})}
    with tempfile.NamedTemporaryFile("w", suffix=".args", delete=False, encoding="utf-8") as args:
        args.write("\n".join(tests))
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header"]
    try:
        done = subprocess.run(  # noqa: S603 - our own test suite
            [*command, *(f"-p{plugin}" for plugin in plugins), f"@{args.name}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "timeout"
    finally:
        os.unlink(args.name)
    return "survived" if done.returncode == 0 else "killed"


@dataclass(frozen=True)
class CoverageMap:
    """Which tests run which line of the module (``""``: only while the tests were collected)."""

    lines: dict[int, list[str]]
    durations: dict[str, float]

    def tests_for(self, first: int, last: int, all_tests: Sequence[str]) -> list[str]:
        """The tests that run a line of ``first..last``, fastest first; every test when a line there
        runs at import time (a constant, a default value: its effect shows in any test); none when
        no test runs those lines (the mutant survives without a run)."""
        found: set[str] = set()
        for line in range(first, last + 1):
            found.update(self.lines.get(line, ()))
        if "" in found:
            return list(all_tests)
        return sorted(found, key=lambda test: (self.durations.get(test, 0.0), test))


def _coverage_map(module: str, tests: Sequence[str]) -> CoverageMap:
    """Run the module's tests once, unmutated, recording which test runs which line."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "map.json"
        env = {"VPSBACKUP_MUTATE_COVER": str(PACKAGE / module), "VPSBACKUP_MUTATE_MAP": str(out)}
        if _pytest(tests, timeout=3600, extra_env=env, plugins=["devtools.mutate_cover"]) != "survived":
            raise SystemExit(f"{module}: its tests fail without any mutant; fix them first")
        data = json.loads(out.read_text(encoding="utf-8"))
    return CoverageMap({int(k): v for k, v in data["lines"].items()}, data["durations"])


@dataclass
class ModuleScore:
    module: str
    total: int = 0
    killed: int = 0
    timeout: int = 0
    survived: list[Mutant] = field(default_factory=list)
    equivalent: list[Mutant] = field(default_factory=list)

    @property
    def non_equivalent(self) -> int:
        return self.total - len(self.equivalent)

    @property
    def score(self) -> float:
        caught = self.killed + self.timeout
        return 100.0 * caught / self.non_equivalent if self.non_equivalent else 100.0


def load_equivalents() -> dict[str, dict[str, str]]:
    """module -> {mutant key: why it is equivalent}."""
    if not EQUIVALENTS.exists():
        return {}
    data: dict[str, dict[str, str]] = json.loads(EQUIVALENTS.read_text(encoding="utf-8"))
    return data


def _lines(node: ast.AST) -> tuple[int, int]:
    """The source lines a mutant changes: an ``if``'s or a ``while``'s test, else the node."""
    where = node.test if isinstance(node, ast.If | ast.While) else node
    first = getattr(where, "lineno", 0)
    return first, getattr(where, "end_lineno", None) or first


def _selected(mutant: Mutant, only: Sequence[str]) -> bool:
    return not only or any(mutant.key.startswith(prefix) for prefix in only)


def mutate(module: str, equivalents: dict[str, str], *, only: Sequence[str] = (), verbose: bool = True) -> ModuleScore:
    tests = TARGETS[module]
    started = time.monotonic()
    cover = _coverage_map(module, tests)
    if verbose:
        took = time.monotonic() - started
        print(f"{module}: {len(cover.durations)} tests, clean run with coverage {took:.0f} s", flush=True)
    all_tests = sorted(cover.durations, key=lambda test: (cover.durations[test], test))
    score = ModuleScore(module)
    path = PACKAGE / module
    tree = ast.parse(path.read_text(encoding="utf-8"))
    sites = list(_sites(tree))
    for mutant in mutants_of(module):
        if not _selected(mutant, only):
            continue
        score.total += 1
        chosen = cover.tests_for(*_lines(sites[mutant.index][0]), all_tests)
        if chosen:
            timeout = max(60.0, 60.0 + 4 * sum(cover.durations.get(t, 1.0) for t in chosen))
            with _written_over(path, mutated_source(module, mutant.index)):
                outcome = _pytest(chosen, timeout)
        else:
            outcome = "survived"
        _count(score, mutant, outcome, equivalents)
        if verbose:
            print(f"  {module}:{mutant.key}: {outcome} ({len(chosen)} tests)", flush=True)
    return score


def _count(score: ModuleScore, mutant: Mutant, outcome: str, equivalents: dict[str, str]) -> None:
    if outcome == "killed":
        score.killed += 1
    elif outcome == "timeout":
        score.timeout += 1
    elif mutant.key in equivalents:
        score.equivalent.append(mutant)
    else:
        score.survived.append(mutant)


def report(scores: Sequence[ModuleScore]) -> str:
    lines = [
        "| module | mutants | killed (incl. timeouts) | equivalent | survived | killed of non-equivalent |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in scores:
        lines.append(
            f"| `{s.module}` | {s.total} | {s.killed + s.timeout} | {len(s.equivalent)} | {len(s.survived)} "
            f"| {s.score:.1f} % |"
        )
    for s in scores:
        for m in s.survived:
            lines.append(f"- survived: `{s.module}` {m.key} (not in {EQUIVALENTS.name})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.mutate", description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"modules of the package (default: all of {sorted(TARGETS)})")
    parser.add_argument("--list", action="store_true", help="list the mutants; run nothing")
    parser.add_argument(
        "--only", action="append", default=[], metavar="KEY", help="only the mutants whose key starts so (e.g. 87:20)"
    )
    parser.add_argument("--goal", type=float, default=95.0, help="exit 1 if a module scores below (default 95)")
    args = parser.parse_args(argv)
    modules = args.modules or sorted(TARGETS)
    unknown = [m for m in modules if m not in TARGETS]
    if unknown:
        parser.error(f"modules: not a target: {', '.join(unknown)} (targets: {', '.join(sorted(TARGETS))})")
    if args.list:
        for module in modules:
            for mutant in mutants_of(module):
                print(f"{module}:{mutant.key}")
        return 0
    equivalents = load_equivalents()
    scores = [mutate(module, equivalents.get(module, {}), only=args.only) for module in modules]
    print(report(scores))
    return 0 if all(s.score >= args.goal for s in scores) else 1


if __name__ == "__main__":
    raise SystemExit(main())
