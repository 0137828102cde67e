"""Fail when a function of the layer, a handler, the console or the developer tools is above the
complexity limit (``make lint``).

Cyclomatic complexity as radon measures it (``radon cc``): a function above ``LIMIT`` is a decision
that has not been split into named steps yet. Every offender is named with its file, line and
complexity, so the fix starts from the message::

    python -m devtools.check_complexity [PATH ...]   # default: the layer, functions, the console, devtools
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radon.complexity import cc_visit
from radon.visitors import Class, Function

LIMIT = 15
DEFAULT_PATHS = ("layers/shared/vpsbackup", "functions", "console", "devtools")


@dataclass(frozen=True, order=True)
class Offender:
    path: str
    line: int
    name: str
    complexity: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.name} has complexity {self.complexity} (limit {LIMIT})"


def _functions(blocks: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every function and method (closures and nested classes included) with its dotted name."""
    for block in blocks:
        if isinstance(block, Class):
            yield from _functions([*block.methods, *block.inner_classes], f"{prefix}{block.name}.")
        elif isinstance(block, Function):
            yield f"{prefix}{block.name}", block
            yield from _functions(block.closures, f"{prefix}{block.name}.")


def offenders_in(source: str, path: str, *, limit: int = LIMIT) -> list[Offender]:
    """The functions of one module's ``source`` whose complexity is above ``limit``."""
    # cc_visit lists a class's methods both inside the class and on their own: keep each once.
    found = {
        Offender(path, block.lineno, name, block.complexity)
        for name, block in _functions(b for b in cc_visit(source) if not (isinstance(b, Function) and b.is_method))
        if block.complexity > limit
    }
    return sorted(found)


def python_files(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise SystemExit(f"check_complexity: {raw} does not exist")
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def main(argv: Sequence[str] | None = None) -> int:
    paths = list(argv if argv is not None else sys.argv[1:]) or list(DEFAULT_PATHS)
    files = python_files(paths)
    offenders = [o for file in files for o in offenders_in(file.read_text(encoding="utf-8"), str(file))]
    for offender in offenders:
        print(offender)
    if offenders:
        print(f"{len(offenders)} function(s) above complexity {LIMIT}: split them into named steps")
        return 1
    print(f"complexity: {len(files)} files, no function above {LIMIT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
