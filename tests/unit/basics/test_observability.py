"""The lazy tracer: X-Ray costs a cold start only when tracing is on (template parameter Tracing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from devtools import artifact
from tests.conftest import ROOT, load_template
from vpsbackup.observability import LazyTracer, tracing_enabled

IN_LAMBDA = {"LAMBDA_TASK_ROOT": "/var/task"}


@pytest.mark.parametrize(
    ("environ", "enabled"),
    [
        ({}, False),  # outside Lambda: Powertools would not trace either
        (IN_LAMBDA, True),
        ({**IN_LAMBDA, "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({**IN_LAMBDA, "POWERTOOLS_TRACE_DISABLED": "TRUE"}, False),
        ({**IN_LAMBDA, "POWERTOOLS_TRACE_DISABLED": "1"}, False),
        ({**IN_LAMBDA, "POWERTOOLS_TRACE_DISABLED": "false"}, True),
        ({**IN_LAMBDA, "POWERTOOLS_TRACE_DISABLED": "0"}, True),
        ({**IN_LAMBDA, "AWS_SAM_LOCAL": "true"}, False),
        ({**IN_LAMBDA, "AWS_CHALICE_CLI_MODE": "true"}, False),
    ],
)
def test_tracing_is_on_where_powertools_would_trace(environ: dict[str, str], enabled: bool) -> None:
    assert tracing_enabled(environ) is enabled


def test_with_tracing_off_the_decorators_return_what_they_decorate() -> None:
    tracer = LazyTracer({**IN_LAMBDA, "POWERTOOLS_TRACE_DISABLED": "true"})

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return event

    assert tracer.capture_lambda_handler(handler) is handler
    assert tracer.capture_method(handler) is handler
    assert tracer.enabled is False


def _import_all_handlers(trace_disabled: str) -> dict[str, bool]:
    """A fresh interpreter imports the three handlers in Lambda's environment; what got loaded."""
    code = (
        "import json, sys\n"
        "import backup_on_deploy, prune_backups, restore_on_alarm\n"
        "print(json.dumps({'xray': 'aws_xray_sdk' in sys.modules}))"
    )
    paths = [
        ROOT / "layers" / "shared",
        *(ROOT / "functions" / f for f in ("backup_on_deploy", "prune_backups", "restore_on_alarm")),
    ]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(str(p) for p in paths),
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_LAMBDA_FUNCTION_NAME": "test",
        "POWERTOOLS_SERVICE_NAME": "test",
        **IN_LAMBDA,
        "POWERTOOLS_TRACE_DISABLED": trace_disabled,
    }
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, timeout=120
    )
    result: dict[str, bool] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_importing_the_handlers_with_tracing_off_never_loads_the_x_ray_sdk() -> None:
    assert _import_all_handlers("true")["xray"] is False


def test_with_tracing_on_the_x_ray_sdk_is_loaded() -> None:
    assert _import_all_handlers("false")["xray"] is True


@pytest.mark.parametrize("logical_id", ["BackupOnDeployFunction", "PruneBackupsFunction", "RestoreOnAlarmFunction"])
def test_the_template_s_tracing_parameter_switches_lambda_and_the_tracer_together(logical_id: str) -> None:
    template = load_template()
    assert template["Parameters"]["Tracing"]["Default"] == "PassThrough"
    assert template["Globals"]["Function"]["Tracing"] == {"Ref": "Tracing"}
    for mode, traced in (("PassThrough", False), ("Active", True)):
        env = artifact.lambda_environment(template, logical_id, Tracing=mode)
        assert tracing_enabled(env) is traced, mode
