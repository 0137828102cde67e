"""What ``pip install`` puts on a machine: the layer's package, the console and its local world, no
top-level ``devtools`` (a popular PyPI package has that name); ``--local`` says in one line that it
needs the ``local`` extra when moto is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import load_template
from vpsbackup_local.world import STATE_TABLE

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # The venv's setuptools (pinned in requirements-dev.txt, as pyproject.toml's build-system asks):
    # no download, so the test runs offline.
    subprocess.run(  # noqa: S603 - our own interpreter's pip
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    [built] = out.glob("*.whl")
    return built


def test_the_wheel_carries_the_project_packages_and_no_development_tools(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"vpsbackup", "vpsbackup_console", "vpsbackup_local"}
    assert "vpsbackup_local/simulator/server.py" in names
    assert "vpsbackup_local/world.py" in names
    # each package's type information (PEP 561), the shared package's above all
    assert {"vpsbackup/py.typed", "vpsbackup_console/py.typed", "vpsbackup_local/py.typed"} <= set(names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Provides-Extra: local" in text
    assert 'Requires-Dist: moto[server]==5.2.5; extra == "local"' in text


def test_the_local_extra_pins_the_moto_the_tests_run() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    pins = [line.strip() for line in (ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines()]
    assert extra["local"] == [p for p in pins if p.startswith("moto[")]


def test_the_local_world_builds_state_table_as_the_template_declares_it() -> None:
    props = load_template()["Resources"]["StateTable"]["Properties"]
    assert {key: props[key] for key in STATE_TABLE} == STATE_TABLE


def test_local_without_the_extra_says_so_in_one_line() -> None:
    # moto made unimportable, as on a machine where the extra is not installed: starting a world
    code = (
        "import sys; sys.modules['moto'] = None; sys.modules['moto.server'] = None; "
        "from vpsbackup_console.cli import main; sys.argv = ['vpsbackup', '--local']; main()"
    )
    # The packages from the checkout, installed or not (make test-compat does not install the project).
    path = os.pathsep.join(str(ROOT / folder) for folder in ("console", "layers/shared"))
    done = subprocess.run(  # noqa: S603 - our own interpreter and console
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "vpsbackup: failed: --local needs the local extra (moto is missing): pip install 'vps-backup-automation[local]'"
    ]
