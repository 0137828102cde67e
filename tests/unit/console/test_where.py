"""``--stack``: the console reads every setting the functions read, from the stack's parameters."""

from __future__ import annotations

from typing import Any

from tests.conftest import load_template
from vpsbackup_console.where import STACK_PARAMETERS, stack_environment

FUNCTIONS = ("BackupOnDeployFunction", "PruneBackupsFunction", "RestoreOnAlarmFunction")


def _parameter_variables(template: dict[str, Any]) -> set[tuple[str, str]]:
    """(parameter, variable) for every environment variable a function takes from a parameter."""
    parameters = template["Parameters"]
    blocks = [template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})]
    blocks += [template["Resources"][name]["Properties"]["Environment"]["Variables"] for name in FUNCTIONS]
    pairs: set[tuple[str, str]] = set()
    for variables in blocks:
        for variable, value in variables.items():
            if isinstance(value, dict) and value.get("Ref") in parameters:
                pairs.add((value["Ref"], variable))
    return pairs


def test_the_console_maps_every_parameter_a_function_reads() -> None:
    """One list, checked against the template: a parameter added to a function is read by --stack too."""
    expected = _parameter_variables(load_template())
    assert set(STACK_PARAMETERS.items()) == expected


class _Stacks:
    def __init__(self, parameters: dict[str, str]) -> None:
        self.parameters = parameters

    def describe_stacks(self, StackName: str) -> dict[str, Any]:
        return {
            "Stacks": [
                {
                    "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in self.parameters.items()],
                    "Outputs": [{"OutputKey": "StateTableName", "OutputValue": "table"}],
                }
            ]
        }


def test_the_settings_the_plan_and_the_restore_choice_depend_on_come_from_the_stack() -> None:
    given = {
        "KeepAtLeast": "3",
        "PruneVerifyEvery": "3d",
        "RestoreWatchWindow": "2h",
        "RestoreMaxAlarmAge": "10m",
        "VpsApiPageSize": "50",
    }
    env = stack_environment("s", cloudformation=_Stacks(given))
    assert env["KEEP_AT_LEAST"] == "3"
    assert env["PRUNE_VERIFY_EVERY"] == "3d"
    assert env["RESTORE_WATCH_WINDOW"] == "2h"
    assert env["RESTORE_MAX_ALARM_AGE"] == "10m"
    assert env["VPS_API_PAGE_SIZE"] == "50"


def test_the_console_client_pages_and_paces_as_the_functions_do() -> None:
    from vpsbackup_console.where import Where

    where = Where(
        {
            "VPS_API_BASE_URL": "https://api.example.test/v1",
            "VPS_API_TOKEN_SECRET": "arn:aws:secretsmanager:eu-central-1:123456789012:secret:t",
            "STATE_TABLE_NAME": "table",
            "VPS_API_PAGE_SIZE": "37",
            "VPS_API_MAX_RPS": "0.5",
        }
    )
    client = where.client
    try:
        assert client.page_size == 37
        assert client.budget.max_rps == 0.5
    finally:
        where.close()
