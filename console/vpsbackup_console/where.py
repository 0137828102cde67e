"""Where the console acts: a deployed stack (``--stack NAME``) or the functions' environment variables.

With ``--stack``, CloudFormation's ``DescribeStacks`` gives the stack's outputs (the table, the
topic) and parameters (the API URL, the token secret, the jobs' settings); they are mapped onto the
same environment variables the functions read, and validated by the same settings models. Without
it, those variables are read from the environment. Either way the AWS SDK's own variables
(``AWS_PROFILE``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` ...) say which account and endpoint.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import boto3
from pydantic import BaseModel

from vpsbackup.aws.journal import Journal
from vpsbackup.aws.state import StateTable
from vpsbackup.deploy.claims import ClaimStore
from vpsbackup.errors import ConfigurationError, describe_aws_error
from vpsbackup.provider.client import VpsClient
from vpsbackup.provider.token import SecretsManagerTokenProvider
from vpsbackup.settings import SharedSettings, load_settings

# template.yaml's outputs and parameters -> the environment variables the functions read.
STACK_OUTPUTS: Mapping[str, str] = {
    "StateTableName": "STATE_TABLE_NAME",
    "NotificationsTopicArn": "NOTIFY_TOPIC_ARN",
    "VpsApiBaseUrl": "VPS_API_BASE_URL",
    "VpsApiTokenSecretArn": "VPS_API_TOKEN_SECRET",
}
# Every parameter a function reads as an environment variable (template.yaml's Globals and each
# function's Environment), so the console decides with the settings the functions use;
# tests/unit/console/test_where.py checks this list against the template.
STACK_PARAMETERS: Mapping[str, str] = {
    # every function (Globals)
    "VpsApiBaseUrl": "VPS_API_BASE_URL",
    "VpsApiTokenSecretArn": "VPS_API_TOKEN_SECRET",
    "VpsApiPageSize": "VPS_API_PAGE_SIZE",
    "VpsApiMaxRps": "VPS_API_MAX_RPS",
    "VpsApiRateLimit": "VPS_API_RATE_LIMIT",
    "VpsApiRestoreShare": "VPS_API_RESTORE_SHARE",
    "NotifyFormat": "NOTIFY_FORMAT",
    "JournalRetention": "JOURNAL_RETENTION",
    "LogLevel": "POWERTOOLS_LOG_LEVEL",
    # backup on deploy
    "ServerGroups": "SERVER_GROUPS",
    "WebhookSecretArn": "WEBHOOK_SECRET",
    # prune
    "RetentionPolicy": "RETENTION_POLICY",
    "RetentionOverrides": "RETENTION_OVERRIDES",
    "RetentionTimezone": "RETENTION_TIMEZONE",
    "PruneScope": "PRUNE_SCOPE",
    "FailedBackupGrace": "FAILED_BACKUP_GRACE",
    "MaxDeletionsPerRun": "MAX_DELETIONS_PER_RUN",
    "MaxDeletionsPerDay": "MAX_DELETIONS_PER_DAY",
    "PruneDryRun": "DRY_RUN",
    "PruneConcurrency": "PRUNE_CONCURRENCY",
    "KeepAtLeast": "KEEP_AT_LEAST",
    "PruneVerifyEvery": "PRUNE_VERIFY_EVERY",
    "HeartbeatUrl": "HEARTBEAT_URL",
    "PruneChunkPages": "PRUNE_CHUNK_PAGES",
    "PruneChunkDeletions": "PRUNE_CHUNK_DELETIONS",
    "PruneChunksPerExecution": "PRUNE_CHUNKS_PER_EXECUTION",
    # restore on alarm
    "AlarmNamePrefix": "ALARM_NAME_PREFIX",
    "ServerIdDimension": "SERVER_ID_DIMENSION",
    "AlarmServerMap": "ALARM_SERVER_MAP",
    "RestoreMaxBackupAge": "RESTORE_MAX_BACKUP_AGE",
    "RestoreCooldown": "RESTORE_COOLDOWN",
    "MaxRestoresPerHour": "MAX_RESTORES_PER_HOUR",
    "RestoreMode": "RESTORE_MODE",
    "RestoreHold": "RESTORE_HOLD",
    "RestoreWatchWindow": "RESTORE_WATCH_WINDOW",
    "RestoreMaxAlarmAge": "RESTORE_MAX_ALARM_AGE",
    "RestoreVerifyAfter": "RESTORE_VERIFY_AFTER",
}
CONSOLE_SOURCE = "vpsbackup console"

SettingsT = TypeVar("SettingsT", bound=BaseModel)


class StackError(ConfigurationError):
    """The stack named with ``--stack`` cannot be read."""


def stack_environment(stack_name: str, *, cloudformation: Any = None) -> dict[str, str]:
    """The stack's outputs and parameters as the functions' environment variables.

    Outputs win over parameters (an output is what the stack made; a parameter what it was given).
    """
    cfn = cloudformation or boto3.client("cloudformation")
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except Exception as exc:
        raise StackError(f"--stack {stack_name}: cannot describe the stack: {describe_aws_error(exc)}") from None
    if not stacks:
        raise StackError(f"--stack {stack_name}: no such stack")
    stack = stacks[0]
    env: dict[str, str] = {}
    for parameter in stack.get("Parameters", []):
        name = STACK_PARAMETERS.get(parameter.get("ParameterKey", ""))
        value = parameter.get("ResolvedValue", parameter.get("ParameterValue"))
        if name and value is not None and value != "****":
            env[name] = str(value)
    for output in stack.get("Outputs", []):
        name = STACK_OUTPUTS.get(output.get("OutputKey", ""))
        if name and output.get("OutputValue") is not None:
            env[name] = str(output["OutputValue"])
    if "STATE_TABLE_NAME" not in env:
        raise StackError(f"--stack {stack_name}: the stack has no StateTableName output; is it this project's stack?")
    return env


@dataclass
class Where:
    """The environment the console acts in, and the objects built from it (each built once, lazily)."""

    environ: Mapping[str, str]
    stack: str | None = None
    _cache: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(cls, stack: str | None, *, environ: Mapping[str, str] | None = None) -> Where:
        base = dict(os.environ if environ is None else environ)
        if stack:
            base.update(stack_environment(stack))
        return cls(base, stack)

    def settings(self, cls: type[SettingsT]) -> SettingsT:
        key = f"settings:{cls.__name__}"
        if key not in self._cache:
            self._cache[key] = load_settings(cls, self.environ)
        found: SettingsT = self._cache[key]
        return found

    @property
    def shared(self) -> SharedSettings:
        return self.settings(SharedSettings)

    @functools.cached_property
    def client(self) -> VpsClient:
        """The provider client, with the page size and request budget the functions use."""
        shared = self.shared
        client = VpsClient(shared.vps_api_base_url, SecretsManagerTokenProvider(shared.vps_api_token_secret))
        client.configure(page_size=shared.vps_api_page_size, max_rps=shared.vps_api_max_rps)
        return client

    @functools.cached_property
    def state(self) -> StateTable:
        return StateTable.from_name(self.shared.state_table_name)

    @functools.cached_property
    def claims(self) -> ClaimStore:
        return ClaimStore(self.state)

    @functools.cached_property
    def journal(self) -> Journal:
        return Journal(self.state, source=CONSOLE_SOURCE, retention=self.shared.journal_retention)

    @functools.cached_property
    def who(self) -> str:
        """The caller's AWS identity (an ARN): who placed a hold, who restored."""
        try:
            arn = boto3.client("sts").get_caller_identity()["Arn"]
        except Exception as exc:
            user = self.environ.get("USER") or "unknown user"
            return f"{user} (AWS identity unknown: {type(exc).__name__})"
        return str(arn)

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
