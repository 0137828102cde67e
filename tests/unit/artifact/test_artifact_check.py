"""The artifact check's own parts (devtools/artifact.py): it must fail on what breaks a cold start.

The check itself (build, zip round trip, imports in Python 3.13) runs in `make test` as
`make artifact-check`; these tests show each of its verdicts can fail, on small inputs.
"""

from __future__ import annotations

import importlib.util
import os
import py_compile
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from devtools import artifact
from tests.conftest import load_template

FUNCTIONS = {
    "BackupOnDeployFunction": "backup-on-deploy",
    "PruneBackupsFunction": "prune-backups",
    "RestoreOnAlarmFunction": "restore-on-alarm",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _package(root: Path, mode: py_compile.PycInvalidationMode) -> Path:
    """A two-module package under ``root/python``, byte-compiled in ``mode``."""
    package = root / "python" / "toy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from toy import core\n", encoding="utf-8")
    (package / "core.py").write_text("ANSWER = 42\n", encoding="utf-8")
    for source in package.glob("*.py"):
        py_compile.compile(str(source), doraise=True, invalidation_mode=mode)
    return root / "python"


def _verbose_import(path: Path) -> str:
    """``python -v`` of a fresh interpreter importing the toy package from ``path`` (nothing written)."""
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-I", "-B", "-v", "-c", f"import sys; sys.path.insert(0, {str(path)!r}); import toy"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stderr


# -- the zip round trip and what python -v says ----------------------------------------------------


def test_a_sam_zip_dates_every_entry_1980_and_the_unzip_keeps_the_date(tmp_path: Path) -> None:
    # Given a built folder with today's dates
    source = _package(tmp_path / "build", py_compile.PycInvalidationMode.TIMESTAMP)
    # When it goes through a SAM zip and a Lambda unzip
    unzipped = artifact.round_trip(source, tmp_path, "opt")
    # Then every entry is dated 1980-01-01 and every file carries that date
    with zipfile.ZipFile(tmp_path / "opt.zip") as zf:
        assert {info.date_time for info in zf.infolist()} == {artifact.SAM_ZIP_DATE}
    files = [p for p in unzipped.rglob("*") if p.is_file()]
    assert len(files) == 4  # two sources, two .pyc
    expected = time.mktime((*artifact.SAM_ZIP_DATE, 0, 0, -1))
    assert {os.stat(p).st_mtime for p in files} == {expected}


def test_timestamp_byte_code_is_compiled_again_after_the_round_trip_and_the_check_says_so(tmp_path: Path) -> None:
    # Given a package compiled in the default (timestamp) mode, valid before the zip
    source = _package(tmp_path / "build", py_compile.PycInvalidationMode.TIMESTAMP)
    before = artifact.trace_imports(_verbose_import(source), source)
    tag = sys.implementation.cache_tag
    assert sorted(before.from_pyc) == [f"toy/__pycache__/__init__.{tag}.pyc", f"toy/__pycache__/core.{tag}.pyc"]
    assert before.from_source == ()
    # When it is zipped with SAM's dates and unzipped
    unzipped = artifact.round_trip(source, tmp_path, "opt")
    after = artifact.trace_imports(_verbose_import(unzipped), unzipped)
    # Then both modules are compiled from source at import, and the static check flags both
    assert sorted(after.from_source) == ["toy/__init__.py", "toy/core.py"]
    assert after.from_pyc == ()
    problems = artifact.pyc_problems(unzipped, importlib.util.MAGIC_NUMBER, sys.implementation.cache_tag)
    assert problems == [
        "toy/__init__.py: timestamp byte-code (needs --invalidation-mode unchecked-hash)",
        "toy/core.py: timestamp byte-code (needs --invalidation-mode unchecked-hash)",
    ]


def test_unchecked_hash_byte_code_survives_the_round_trip(tmp_path: Path) -> None:
    source = _package(tmp_path / "build", py_compile.PycInvalidationMode.UNCHECKED_HASH)
    unzipped = artifact.round_trip(source, tmp_path, "opt")
    trace = artifact.trace_imports(_verbose_import(unzipped), unzipped)
    assert trace.from_source == ()
    assert len(trace.from_pyc) == 2
    assert artifact.pyc_problems(unzipped, importlib.util.MAGIC_NUMBER, sys.implementation.cache_tag) == []


def test_missing_checked_or_foreign_byte_code_is_a_problem(tmp_path: Path) -> None:
    layer = _package(tmp_path, py_compile.PycInvalidationMode.CHECKED_HASH)
    (layer / "toy" / "extra.py").write_text("X = 1\n", encoding="utf-8")
    tag = sys.implementation.cache_tag
    assert artifact.pyc_problems(layer, importlib.util.MAGIC_NUMBER, tag) == [
        "toy/__init__.py: checked-hash byte-code (needs --invalidation-mode unchecked-hash)",
        "toy/core.py: checked-hash byte-code (needs --invalidation-mode unchecked-hash)",
        f"toy/extra.py: no extra.{tag}.pyc",
    ]
    assert (
        artifact.pyc_problems(layer, b"\x00\x00\r\n", tag)[0]
        == f"toy/__init__.py: __init__.{tag}.pyc is for another Python"
    )


def test_trace_imports_keeps_only_the_files_under_the_folder() -> None:
    stderr = "\n".join(
        [
            "import 'json' # <_frozen_importlib_external.SourceFileLoader object at 0x7f>",
            "# code object from '/opt/python/pydantic/__pycache__/main.cpython-313.pyc'",
            "# code object from /opt/python/vpsbackup/settings.py",
            "# code object from '/usr/lib/python3.13/__pycache__/json.cpython-313.pyc'",
            "# code object from /var/task/prune_backups.py",
            "# /opt/python/vpsbackup/__pycache__/settings.cpython-313.pyc matches /opt/python/vpsbackup/settings.py",
        ]
    )
    trace = artifact.trace_imports(stderr, Path("/opt/python"))
    assert trace.from_pyc == ("pydantic/__pycache__/main.cpython-313.pyc",)
    assert trace.from_source == ("vpsbackup/settings.py",)


# -- what the layer may hold -----------------------------------------------------------------------


def test_the_runtimes_own_packages_and_bin_scripts_are_flagged(tmp_path: Path) -> None:
    for name in (
        "boto3",
        "botocore-1.44.5.dist-info",
        "s3transfer",
        "jmespath",
        "urllib3",
        "dateutil",
        "python_dateutil-2.9.0.dist-info",
        "bin",
        "httpx",
        "pydantic",
        "vpsbackup",
    ):
        (tmp_path / name).mkdir()
    (tmp_path / "six.py").write_text("", encoding="utf-8")
    (tmp_path / "typing_extensions.py").write_text("", encoding="utf-8")
    assert artifact.forbidden_entries(tmp_path) == [
        "bin/",
        "boto3/",
        "botocore-1.44.5.dist-info/",
        "dateutil/",
        "jmespath/",
        "python_dateutil-2.9.0.dist-info/",
        "s3transfer/",
        "six.py",
        "urllib3/",
    ]


@pytest.mark.parametrize(
    ("machine", "tag"),
    [("x86_64", "manylinux2014_x86_64"), ("AMD64", "manylinux2014_x86_64"), ("aarch64", "manylinux2014_aarch64")],
)
def test_the_layer_is_built_for_the_hosts_architecture(machine: str, tag: str) -> None:
    assert artifact.host_platform_tag(machine) == tag


def test_an_unknown_architecture_is_refused_by_name() -> None:
    with pytest.raises(artifact.ArtifactError, match="riscv64"):
        artifact.host_platform_tag("riscv64")


# -- the template's environment --------------------------------------------------------------------


@pytest.mark.parametrize(("logical_id", "service"), FUNCTIONS.items())
def test_each_function_gets_every_variable_the_template_gives_it(
    template: dict[str, Any], logical_id: str, service: str
) -> None:
    env = artifact.function_environment(template, logical_id)
    declared = {
        **template["Globals"]["Function"]["Environment"]["Variables"],
        **template["Resources"][logical_id]["Properties"]["Environment"]["Variables"],
    }
    assert set(env) == set(declared)
    assert env["POWERTOOLS_SERVICE_NAME"] == service
    assert env["STATE_TABLE_NAME"] == "StateTable"
    assert env["NOTIFY_TOPIC_ARN"].startswith("arn:aws:sns:")
    assert env["VPS_API_TOKEN_SECRET"].startswith("arn:aws:secretsmanager:")
    assert env["POWERTOOLS_LOG_LEVEL"] == template["Parameters"]["LogLevel"]["Default"]


def test_parameter_overrides_apply_and_unknown_ones_are_refused(template: dict[str, Any]) -> None:
    env = artifact.function_environment(template, "PruneBackupsFunction", {"LogLevel": "DEBUG"})
    assert env["POWERTOOLS_LOG_LEVEL"] == "DEBUG"
    with pytest.raises(artifact.ArtifactError, match="NoSuchParameter"):
        artifact.function_environment(template, "PruneBackupsFunction", {"NoSuchParameter": "x"})


def test_an_intrinsic_the_check_cannot_resolve_is_named() -> None:
    template: dict[str, Any] = {"Parameters": {}, "Resources": {}}
    with pytest.raises(artifact.ArtifactError, match="Select"):
        artifact.resolve({"Fn::Select": [0, ["a"]]}, template, {})
    with pytest.raises(artifact.ArtifactError, match="Nope"):
        artifact.resolve({"Ref": "Nope"}, template, {})


def test_a_required_parameter_without_a_known_sample_is_named() -> None:
    template = {"Parameters": {"Mystery": {"Type": "String"}}}
    with pytest.raises(artifact.ArtifactError, match="Mystery"):
        artifact.parameter_values(template)


def test_the_layers_pip_is_the_runtime_pythons_not_the_callers(tmp_path: Path) -> None:
    # sam build runs the layer's recipe with the caller's PATH: `python3` there may be SAM's own
    # virtualenv's (an old pip, a resolver error far from the cause). pip runs on PY313.
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(  # noqa: S603 - make, on the project's own Makefiles
        [  # noqa: S607
            "make",
            "-n",
            "-C",
            str(root / "layers/shared"),
            "build-SharedLayer",
            f"ARTIFACTS_DIR={tmp_path}",
            "PY313=/opt/py313",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    [pip_line] = [line for line in done.stdout.splitlines() if " pip " in line]
    assert pip_line.strip().startswith("/opt/py313 -m pip install"), pip_line


def test_make_build_says_first_in_one_line_that_the_layer_needs_python_3_13() -> None:
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    if shutil.which("python3.13", path=env["PATH"]):
        pytest.skip("this machine has python3.13 in /usr/bin")

    done = subprocess.run(  # noqa: S603 - make, on the project's own Makefiles
        ["make", "-s", "-C", str(root), "build"],  # noqa: S607
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode != 0
    assert done.stdout == ""
    [line] = done.stderr.splitlines()[:1]
    assert "Python 3.13" in line and "python3.13 on PATH" in line and "PYENV_VERSION=" in line, done.stderr
    assert "sam" not in done.stderr.split(line, 1)[1].replace("make: ***", ""), "sam build never ran"
