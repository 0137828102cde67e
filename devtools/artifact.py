"""The deployed artifact, checked as Lambda runs it: ``make artifact-check`` (part of ``make test``).

1. SharedLayer is built with its own recipe (``layers/shared/Makefile``), for the host's architecture
   when the host is not arm64 (same recipe, another ``PLATFORM`` tag). The wheels are downloaded once
   into ``.cache/artifact/`` (keyed on the layer's requirements) and installed from there.
2. The layer and each function folder are zipped the way ``sam build``/``sam deploy`` zip them (every
   entry dated 1980-01-01) and unzipped with those dates, as Lambda does.
3. A fresh Python 3.13 (``.venv-artifact``: only boto3, as on the Lambda runtime) imports each handler
   with the unzipped layer (``/opt/python``) and function folder (``/var/task``) on ``sys.path`` and the
   environment template.yaml gives the function. The check fails if an import fails, if a layer module
   is compiled from source (``python -v`` names the ``.py`` instead of its ``.pyc``), if a layer ``.py``
   has no byte-code valid without its source's date (``unchecked-hash``), if the layer carries the
   runtime's own boto3 tree or a ``bin/`` folder, or if the X-Ray SDK is loaded although the
   template's defaults turn tracing off (it costs about a third of a cold start).

Where the machine has no Python 3.13 the check says so and skips. ``devtools.bench`` reuses the same
build to measure cold starts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.local_env import FUNCTIONS, ROOT, load_template

__all__ = ["FUNCTIONS", "Artifact", "ArtifactError", "build_artifact", "find_python313", "measured"]

LAYER_SOURCE = ROOT / "layers" / "shared"
RUNTIME_VENV = ROOT / ".venv-artifact"
CACHE = ROOT / ".cache" / "artifact"
RUNTIME_PYTHON = "3.13"
# What the Lambda runtime provides and the layer must not carry (it would shadow the runtime's own).
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "python_dateutil", "six")
# The placeholders the check and the benchmark stand in for what a deployed stack fills in.
REGION = "eu-west-1"
ACCOUNT = "123456789012"
STACK = "vpsbackup"
SAM_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # zipfile.ZipInfo's default, which SAM's zips keep


class ArtifactError(Exception):
    """The artifact is not what Lambda should run; the message says what and where."""


# -- Python 3.13 and the runtime-like venv ----------------------------------------------------------


def find_python313() -> Path | None:
    """The real path of a Python 3.13 interpreter, or None. pyenv's shims need ``PYENV_VERSION``."""
    env = {**os.environ, "PYENV_VERSION": os.environ.get("PYENV_VERSION", "3.13.0")}
    candidates = [os.environ.get("PY313", ""), "python3.13"]
    for candidate in filter(None, candidates):
        try:
            out = subprocess.run(  # noqa: S603 - a fixed interpreter name, fixed code
                [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 13), sys.executable)"],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        ok, _, executable = out.stdout.strip().partition(" ")
        if out.returncode == 0 and ok == "True":
            return Path(executable)
    return None


def runtime_pins(requirements: Path = ROOT / "requirements-dev.txt") -> list[str]:
    """The pinned boto3 and botocore of the development requirements (what the tests run against)."""
    pins = [
        line.split("#", 1)[0].strip()
        for line in requirements.read_text(encoding="utf-8").splitlines()
        if re.match(r"^(boto3|botocore)==", line.strip())
    ]
    if sorted(p.split("==")[0] for p in pins) != ["boto3", "botocore"]:
        raise ArtifactError(f"{requirements.name}: expected boto3==<version> and botocore==<version> pins")
    return pins


def ensure_runtime_venv(python313: Path, venv: Path = RUNTIME_VENV) -> Path:
    """A Python 3.13 venv holding only boto3 (and its dependencies), as the Lambda runtime does."""
    pins = runtime_pins()
    stamp = venv / ".installed"
    if stamp.exists() and stamp.read_text(encoding="utf-8") == "\n".join(pins):
        return venv / "bin" / "python"
    shutil.rmtree(venv, ignore_errors=True)
    _run([str(python313), "-m", "venv", str(venv)])
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins])
    stamp.write_text("\n".join(pins), encoding="utf-8")
    return venv / "bin" / "python"


# -- the layer, built by its own recipe -------------------------------------------------------------


def host_platform_tag(machine: str | None = None) -> str:
    """The layer's wheel platform for this host: the recipe's arm64 default, else this machine's."""
    machine = (machine or platform.machine()).lower()
    if machine in ("aarch64", "arm64"):
        return "manylinux2014_aarch64"
    if machine in ("x86_64", "amd64"):
        return "manylinux2014_x86_64"
    raise ArtifactError(f"no manylinux wheels for this machine ({machine})")


def wheelhouse(platform_tag: str) -> Path:
    """The layer's wheels for ``platform_tag``, downloaded once per version of its requirements."""
    requirements = LAYER_SOURCE / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    folder = CACHE / f"wheels-{platform_tag}-py{RUNTIME_PYTHON}-{digest}"
    if (folder / ".complete").exists():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--platform",
            platform_tag,
            "--implementation",
            "cp",
            "--python-version",
            RUNTIME_PYTHON,
            "--only-binary=:all:",
            "--dest",
            str(partial),
            "-r",
            str(requirements),
        ]
    )
    (partial / ".complete").touch()
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    for old in CACHE.glob(f"wheels-{platform_tag}-*"):
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def build_layer(artifacts_dir: Path, *, platform_tag: str, python313: Path) -> Path:
    """Run the layer's ``build-SharedLayer`` recipe, pip reading only the cached wheels; its ``python/``."""
    wheels = wheelhouse(platform_tag)
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}
    _run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(LAYER_SOURCE),
            "build-SharedLayer",
            f"ARTIFACTS_DIR={artifacts_dir}",
            f"PLATFORM={platform_tag}",
            f"PY313={python313}",
        ],
        env=env,
    )
    return artifacts_dir / "python"


# -- the zip round trip -----------------------------------------------------------------------------


def sam_zip(source: Path, archive: Path) -> None:
    """Zip ``source`` as SAM does: deflated, permissions kept, every entry dated 1980-01-01."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(source.rglob("*")):
            if path.is_dir():
                continue
            info = zipfile.ZipInfo(path.relative_to(source).as_posix(), date_time=SAM_ZIP_DATE)
            info.external_attr = (path.stat().st_mode & 0xFFFF) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())


def lambda_unzip(archive: Path, destination: Path) -> None:
    """Unzip as Lambda does: every file keeps its entry's date (so 1980 for a SAM zip)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = Path(zf.extract(info, destination))
            stamp = time.mktime((*info.date_time, 0, 0, -1))
            os.utime(target, (stamp, stamp))


def round_trip(source: Path, workdir: Path, name: str) -> Path:
    """``source`` after a SAM zip and a Lambda unzip, in ``workdir/name``."""
    archive = workdir / f"{name}.zip"
    sam_zip(source, archive)
    unzipped = workdir / name
    lambda_unzip(archive, unzipped)
    return unzipped


# -- the template's environment ---------------------------------------------------------------------


def _sample_for_required(name: str, spec: Mapping[str, Any]) -> str:
    pattern = str(spec.get("AllowedPattern", ""))
    if "secretsmanager" in pattern:
        return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"
    raise ArtifactError(f"template parameter {name} has no Default: devtools/artifact.py needs a sample for it")


def parameter_values(template: Mapping[str, Any], overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every parameter's value for a deploy with the defaults (a sample where one is required)."""
    values = {
        name: str(spec["Default"]) if "Default" in spec else _sample_for_required(name, spec)
        for name, spec in template.get("Parameters", {}).items()
    }
    for name, value in (overrides or {}).items():
        if name not in values:
            raise ArtifactError(f"no template parameter {name}")
        values[name] = value
    return values


def _resource_ref(logical_id: str, resource: Mapping[str, Any]) -> str:
    if resource.get("Type") == "AWS::SNS::Topic":
        return f"arn:aws:sns:{REGION}:{ACCOUNT}:{logical_id}"
    return logical_id


def resolve(value: Any, template: Mapping[str, Any], params: Mapping[str, str]) -> Any:
    """A template value with Ref, If, Equals, Not, Sub and GetAtt resolved for the given parameters."""
    if isinstance(value, str | int | float | bool):
        return str(value).lower() if isinstance(value, bool) else str(value)
    if isinstance(value, dict) and len(value) == 1:
        (tag, arg), *_ = value.items()
        tag = tag.removeprefix("Fn::")
        if tag == "Ref":
            return _ref(arg, template, params)
        if tag in ("Condition", "If", "Equals", "Not"):
            return _conditional(tag, arg, template, params)
        if tag == "Sub" and isinstance(arg, str):
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str(resolve({"Ref": m.group(1)}, template, params)), arg)
        if tag == "GetAtt":
            return f"{arg if isinstance(arg, str) else '.'.join(arg)}-placeholder"
    raise ArtifactError(f"cannot resolve {value!r}: teach devtools/artifact.py this intrinsic")


def _conditional(tag: str, arg: Any, template: Mapping[str, Any], params: Mapping[str, str]) -> Any:
    """``Condition``, ``If``, ``Equals`` and ``Not``."""
    if tag == "Condition":
        return condition(arg, template, params)
    if tag == "If":
        name, when_true, when_false = arg
        return resolve(when_true if condition(name, template, params) else when_false, template, params)
    if tag == "Equals":
        left, right = (resolve(a, template, params) for a in arg)
        return left == right
    return not resolve(arg[0], template, params)


_PSEUDO_PARAMETERS = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::StackName": STACK,
}


def _ref(arg: str, template: Mapping[str, Any], params: Mapping[str, str]) -> str:
    """``!Ref arg``: a parameter's value, a resource's reference, or a pseudo parameter."""
    if arg in params:
        return params[arg]
    if arg in template.get("Resources", {}):
        return _resource_ref(arg, template["Resources"][arg])
    if arg in _PSEUDO_PARAMETERS:
        return _PSEUDO_PARAMETERS[arg]
    raise ArtifactError(f"!Ref {arg}: neither a parameter nor a resource")


def condition(name: str, template: Mapping[str, Any], params: Mapping[str, str]) -> bool:
    conditions = template.get("Conditions", {})
    if name not in conditions:
        raise ArtifactError(f"no template condition {name}")
    return bool(resolve(conditions[name], template, params))


def function_environment(
    template: Mapping[str, Any], logical_id: str, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment variables template.yaml gives ``logical_id`` (Globals, then its own)."""
    params = parameter_values(template, overrides)
    globals_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    own = template["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    return {name: str(resolve(value, template, params)) for name, value in {**globals_env, **own}.items()}


def lambda_environment(template: Mapping[str, Any], logical_id: str, **overrides: str) -> dict[str, str]:
    """What a Lambda process of ``logical_id`` sees: the template's variables plus the runtime's own."""
    props = template["Resources"][logical_id]["Properties"]
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{RUNTIME_PYTHON}",
        "AWS_LAMBDA_FUNCTION_NAME": f"stack-{logical_id}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "_HANDLER": str(props["Handler"]),
        **function_environment(template, logical_id, overrides),
    }


# -- what ``python -v`` says about the imports ------------------------------------------------------

_CODE_FROM = re.compile(r"^# code object from (?P<quote>'?)(?P<path>.+?)(?P=quote)$")


@dataclass(frozen=True)
class ImportTrace:
    """Where each module's code came from, per ``python -v``, among the files under one folder."""

    from_pyc: tuple[str, ...]
    from_source: tuple[str, ...]


def trace_imports(verbose_stderr: str, under: Path) -> ImportTrace:
    """Split the ``code object from`` lines of ``python -v`` for files under ``under``: byte-code
    read from a ``.pyc``, or a ``.py`` compiled at import (what a cold start should never pay)."""
    prefix = str(under).rstrip("/") + "/"
    from_pyc: list[str] = []
    from_source: list[str] = []
    for line in verbose_stderr.splitlines():
        match = _CODE_FROM.match(line.strip())
        if match is None or not match["path"].startswith(prefix):
            continue
        (from_pyc if match["path"].endswith(".pyc") else from_source).append(match["path"][len(prefix) :])
    return ImportTrace(tuple(from_pyc), tuple(from_source))


# -- what the layer holds ---------------------------------------------------------------------------


def forbidden_entries(layer_python: Path) -> list[str]:
    """Top-level entries of the layer that Lambda provides itself, and any ``bin/`` scripts."""
    found = []
    for entry in sorted(layer_python.iterdir()):
        base = re.split(r"[-.]", entry.name, maxsplit=1)[0].lower()
        if base in RUNTIME_PROVIDED or entry.name == "bin":
            found.append(entry.name + ("/" if entry.is_dir() else ""))
    return found


def pyc_problems(layer_python: Path, magic: bytes, cache_tag: str = "cpython-313") -> list[str]:
    """Each layer ``.py`` whose byte-code is missing, for another Python, or checked against its
    source's date (which a zip to 1980 breaks): Lambda would compile it on every cold start."""
    problems = []
    tag = cache_tag
    for source in sorted(layer_python.rglob("*.py")):
        pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        where = source.relative_to(layer_python).as_posix()
        if not pyc.exists():
            problems.append(f"{where}: no {pyc.name}")
            continue
        header = pyc.read_bytes()[:8]
        flags = int.from_bytes(header[4:8], "little")
        if header[:4] != magic:
            problems.append(f"{where}: {pyc.name} is for another Python")
        elif flags != 0b01:  # bit 0: hash-based; bit 1: check the source. unchecked-hash is 0b01.
            kind = "timestamp" if flags == 0 else "checked-hash"
            problems.append(f"{where}: {kind} byte-code (needs --invalidation-mode unchecked-hash)")
    return problems


# -- one shipped artifact ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    """The unzipped layer and function folders, and the runtime-like interpreter to run them."""

    python: Path
    layer_python: Path  # the unzipped layer's python/ (Lambda's /opt/python)
    layer_build: Path  # the build folder's python/, before the zip (its .pyc dates still match)
    functions: dict[str, Path]  # module name -> unzipped function folder
    template: dict[str, Any]

    def logical_id(self, module: str) -> str:
        return FUNCTIONS[module]

    def run(
        self,
        module: str,
        code: str,
        *,
        verbose: bool = False,
        env: Mapping[str, str] | None = None,
        layer: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``code`` in a fresh runtime-like process, with ``module``'s folder and the layer on sys.path
        (as argv 1 and 2; ``-B``: nothing written, as on Lambda's read-only /opt and /var/task)."""
        environment = dict(env) if env is not None else lambda_environment(self.template, self.logical_id(module))
        flags = ["-I", "-B", *(["-v"] if verbose else [])]
        layer = layer or self.layer_python
        return subprocess.run(  # noqa: S603 - our own venv's interpreter, our own code
            [str(self.python), *flags, "-c", code, str(self.functions[module]), str(layer)],
            capture_output=True,
            text=True,
            env=environment,
            timeout=120,
            check=False,
        )


def build_artifact(workdir: Path, python313: Path) -> Artifact:
    """Build the layer by its recipe, zip-and-unzip it and the function folders as SAM and Lambda do."""
    template = load_template()
    layer_build = build_layer(workdir / "build" / "SharedLayer", platform_tag=host_platform_tag(), python313=python313)
    # A layer zip holds python/...; Lambda unzips it into /opt.
    layer_root = round_trip(layer_build.parent, workdir, "opt")
    functions = {}
    for module, logical_id in FUNCTIONS.items():
        code_uri = ROOT / template["Resources"][logical_id]["Properties"]["CodeUri"]
        staged = workdir / "build" / logical_id
        shutil.copytree(code_uri, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        functions[module] = round_trip(staged, workdir, f"task-{module}")
    return Artifact(ensure_runtime_venv(python313), layer_root / "python", layer_build, functions, template)


def measured(body: str) -> str:
    """Code running ``body`` (argv 1 and 2 put first on sys.path), then printing as JSON its wall and
    CPU seconds, the process's peak resident set and whether the X-Ray SDK was loaded. Peak RSS is
    /proc's VmHWM, which exec resets: ``ru_maxrss`` would also count the parent it was forked from."""
    return f"""
import json, resource, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
started, cpu_started = time.perf_counter(), time.process_time()
{body}
seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
try:
    with open("/proc/self/status") as status:
        peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
xray = "aws_xray_sdk" in sys.modules
print(json.dumps({{"seconds": seconds, "cpu_seconds": cpu_seconds, "max_rss_kib": peak_kib, "xray_loaded": xray}}))
"""


def import_handler_code(handler: str) -> str:
    """Code importing ``module.attribute`` (as template.yaml's Handler names it), printing its cost."""
    module, _, attribute = handler.rpartition(".")
    return measured(
        f"import importlib; handler = getattr(importlib.import_module({module!r}), {attribute!r})\n"
        f"assert callable(handler), {handler + ' is not callable'!r}"
    )


@dataclass(frozen=True)
class HandlerImport:
    module: str
    seconds: float
    max_rss_mib: float
    xray_loaded: bool
    trace: ImportTrace


def import_handler(artifact: Artifact, module: str) -> HandlerImport:
    """Import ``module``'s handler as Lambda's runtime would (verbose); raise if anything is wrong."""
    handler = artifact.template["Resources"][artifact.logical_id(module)]["Properties"]["Handler"]
    done = artifact.run(module, import_handler_code(handler), verbose=True)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if not line.startswith(("#", "import "))]
        tail = "\n".join(errors[-15:])
        raise ArtifactError(f"{module}: importing {handler} failed:\n{tail}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return HandlerImport(
        module,
        result["seconds"],
        result["max_rss_kib"] / 1024,
        result["xray_loaded"],
        trace_imports(done.stderr, artifact.layer_python),
    )


def check(workdir: Path, python313: Path) -> list[str]:
    """Every problem of the shipped artifact (empty when it is fine); prints what it verified."""
    artifact = build_artifact(workdir, python313)
    problems = [
        f"layer holds {entry}: " + ("pip's leftover scripts" if entry == "bin/" else "the Lambda runtime provides it")
        for entry in forbidden_entries(artifact.layer_python)
    ]
    magic = bytes.fromhex(
        _run(
            [str(artifact.python), "-I", "-c", "import importlib.util; print(importlib.util.MAGIC_NUMBER.hex())"]
        ).strip()
    )
    stale = pyc_problems(artifact.layer_python, magic)
    problems += [f"layer {p}" for p in stale[:20]] + ([f"... and {len(stale) - 20} more"] if len(stale) > 20 else [])
    sources = sum(1 for _ in artifact.layer_python.rglob("*.py"))
    print(
        f"artifact-check: layer built for {host_platform_tag()}: {sources} modules, "
        f"{len(stale)} without valid byte-code"
    )
    for module in FUNCTIONS:
        try:
            imported = import_handler(artifact, module)
        except ArtifactError as exc:
            problems.append(str(exc))
            continue
        trace = imported.trace
        print(
            f"artifact-check: {module}: handler imported in {imported.seconds * 1000:.0f} ms "
            f"(peak RSS {imported.max_rss_mib:.0f} MiB), "
            f"{len(trace.from_pyc)} layer modules from .pyc, {len(trace.from_source)} compiled from source"
        )
        if trace.from_source:
            problems.append(
                f"{module}: layer modules compiled from source at import: {', '.join(trace.from_source[:10])}"
            )
        tracing = function_environment(artifact.template, artifact.logical_id(module))
        if imported.xray_loaded and tracing.get("POWERTOOLS_TRACE_DISABLED") == "true":
            problems.append(f"{module}: the X-Ray SDK is imported although the template's default turns tracing off")
        if not trace.from_pyc:
            problems.append(f"{module}: python -v reported no layer module read from .pyc (is the layer on sys.path?)")
    return problems


def _run(command: Iterable[str], env: Mapping[str, str] | None = None) -> str:
    args = list(command)
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)  # noqa: S603 - fixed tools
    if done.returncode != 0:
        raise ArtifactError(f"{' '.join(args[:4])} ... failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="build into this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    python313 = find_python313()
    if python313 is None:
        print("artifact-check: skipped, no Python 3.13 on this machine (the Lambda runtime's version)")
        return
    started = time.perf_counter()
    try:
        if args.keep:
            shutil.rmtree(args.keep, ignore_errors=True)
            args.keep.mkdir(parents=True)
            problems = check(args.keep.resolve(), python313)
        else:
            with tempfile.TemporaryDirectory(prefix="artifact-check-") as tmp:
                problems = check(Path(tmp), python313)
    except ArtifactError as exc:
        problems = [str(exc)]
    if problems:
        print("artifact-check: FAILED\n" + "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
        raise SystemExit(1)
    print(f"artifact-check: ok ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
