"""pytest plugin of ``make mutate`` (devtools/mutate.py): which test runs which line of one module.

Loaded with ``-p devtools.mutate_cover`` when ``VPSBACKUP_MUTATE_COVER`` names the module's file and
``VPSBACKUP_MUTATE_MAP`` the JSON file to write. coverage.py measures that module only, switching
its context to each test's node id, so every line maps to the tests that ran it; lines run only
while the tests were being collected (module-level constants, default values) map to ``""``. The
map also keeps each test's duration, so the mutation run starts with the fastest tests.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator
from pathlib import Path

import coverage
import pytest

_TARGET = os.environ.get("VPSBACKUP_MUTATE_COVER", "")
_MAP = os.environ.get("VPSBACKUP_MUTATE_MAP", "")
_cov = coverage.Coverage(data_file=None, include=[_TARGET]) if _TARGET else None
_durations: dict[str, float] = {}
if _cov is not None:
    _cov.start()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    if _cov is not None:
        _cov.switch_context(item.nodeid)
    started = time.monotonic()
    yield
    _durations[item.nodeid] = time.monotonic() - started
    if _cov is not None:
        _cov.switch_context("")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _cov is None or not _MAP:
        return
    _cov.stop()
    data = _cov.get_data()
    lines: dict[int, list[str]] = {}
    for measured in data.measured_files():
        if Path(measured).resolve() == Path(_TARGET).resolve():
            for line, contexts in data.contexts_by_lineno(measured).items():
                lines[line] = sorted(contexts)
    Path(_MAP).write_text(json.dumps({"lines": lines, "durations": _durations}), encoding="utf-8")
