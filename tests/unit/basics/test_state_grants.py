"""Each function writes only its own items of ``StateTable`` (its IAM grants, read from the template).

Every DynamoDB write statement of every role must carry a ``dynamodb:LeadingKeys`` condition; each
function's prefixes are the ones its code writes (derived from the code's key constants); and the
journal is append-only: nothing but ``PutItem`` is granted on a journal key.
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
import re
from datetime import UTC, datetime
from typing import Any

import pytest

import vpsbackup
from tests.conftest import load_template
from vpsbackup.aws.journal import JOURNAL_PREFIX, backup_journal_pk, day_pk, server_journal_pk
from vpsbackup.aws.quota_store import QUOTA_PK
from vpsbackup.aws.state import (
    DEPLOYMENT_PK_PREFIX,
    HOLD_PK,
    PRUNE_BUDGET_PK,
    PRUNE_RUN_PK_PREFIX,
    PRUNE_STATE_PK,
    SERVER_PK_PREFIX,
)
from vpsbackup.restore.guard import LOCK_PK_PREFIX, RESTORES_PK, lock_pk
from vpsbackup.restore.wiring import IDEMPOTENCY_PK

# Actions that change items. ConditionCheckItem only reads (a transaction's check), but is held to
# the same rule: a role names the keys it touches.
WRITES = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
    "dynamodb:ConditionCheckItem",
}
# Actions that may overwrite or delete an item: never on a journal key.
OVERWRITES = WRITES - {"dynamodb:PutItem", "dynamodb:PartiQLInsert", "dynamodb:ConditionCheckItem"}
# Actions that delete an item (BatchWriteItem's DeleteRequest too).
DELETES = {"dynamodb:DeleteItem", "dynamodb:BatchWriteItem", "dynamodb:PartiQLDelete"}


def prefix(value: str) -> str:
    return f"{value}*"


JOURNAL = prefix(JOURNAL_PREFIX)
SAMPLE_JOURNAL_KEYS = ["journal#day#2026-01-01", "journal#server#7", "journal#backup#9"]
# What each function's code writes, from the code's own key constants.
OWN_KEYS = {
    "BackupOnDeployFunction": {
        prefix(DEPLOYMENT_PK_PREFIX),
        prefix(SERVER_PK_PREFIX),
        PRUNE_STATE_PK,
        JOURNAL,
        QUOTA_PK,
    },
    "RestoreOnAlarmFunction": {prefix(LOCK_PK_PREFIX), RESTORES_PK, HOLD_PK, IDEMPOTENCY_PK, JOURNAL, QUOTA_PK},
    "PruneBackupsFunction": {PRUNE_STATE_PK, PRUNE_BUDGET_PK, prefix(PRUNE_RUN_PK_PREFIX), JOURNAL, QUOTA_PK},
}
# What each function's code deletes: restore a released fleet slot and a failed run's idempotency
# record (Powertools deletes it), prune its own state. Nothing else: no function deletes a hold
# (prune would then delete the backup it protected) or a restore lock (marked released, kept).
OWN_DELETES = {
    "BackupOnDeployFunction": set(),
    "RestoreOnAlarmFunction": {RESTORES_PK, IDEMPOTENCY_PK},
    "PruneBackupsFunction": {PRUNE_STATE_PK, prefix(PRUNE_RUN_PK_PREFIX)},
}
NEVER_DELETED_BY_FUNCTIONS = [HOLD_PK, lock_pk(7), *SAMPLE_JOURNAL_KEYS]
# Checked, never written: restore's locks from before they had their own prefix.
CHECKED_ONLY = {"RestoreOnAlarmFunction": {prefix(SERVER_PK_PREFIX)}}
# Partition keys the code names that no function writes (a person's console writes them).
NOT_WRITTEN_BY_FUNCTIONS: set[str] = set()


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements_by_role(template: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every IAM statement of every role the template defines, by the resource that defines it."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind in ("AWS::Serverless::Function", "AWS::IAM::Role"):
            policies = [p.get("PolicyDocument", p) for p in props.get("Policies", []) if isinstance(p, dict)]
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            policies = [props["PolicyDocument"]]
        else:
            continue
        out[name] = [s for p in policies for s in _as_list(p.get("Statement", []))]
    return out


def is_dynamodb_write(action: str) -> bool:
    return any(fnmatch.fnmatch(write, action) for write in WRITES)


def leading_keys(statement: dict[str, Any]) -> list[str]:
    for operator, keys in statement.get("Condition", {}).items():
        if operator in ("ForAllValues:StringLike", "ForAllValues:StringEquals") and "dynamodb:LeadingKeys" in keys:
            return [str(k) for k in _as_list(keys["dynamodb:LeadingKeys"])]
    return []


@pytest.fixture(scope="module")
def roles() -> dict[str, list[dict[str, Any]]]:
    return statements_by_role(load_template())


def test_the_template_grants_dynamodb_writes_at_all(roles: dict[str, list[dict[str, Any]]]) -> None:
    # (the checks below must not pass because they found nothing to check)
    assert set(OWN_KEYS) <= set(roles)
    assert all(any(is_dynamodb_write(a) for s in roles[r] for a in _as_list(s["Action"])) for r in OWN_KEYS)


def test_every_dynamodb_write_statement_names_its_leading_keys(roles: dict[str, list[dict[str, Any]]]) -> None:
    for role, statements in roles.items():
        for statement in statements:
            if statement.get("Effect") != "Allow":
                continue
            actions = _as_list(statement["Action"])
            if any(is_dynamodb_write(a) for a in actions):
                keys = leading_keys(statement)
                assert keys, f"{role}: {statement.get('Sid')} writes DynamoDB without dynamodb:LeadingKeys"
                assert all(k.strip("*") for k in keys), f"{role}: {statement.get('Sid')} grants every key"


@pytest.mark.parametrize("role", sorted(OWN_KEYS))
def test_each_function_writes_only_the_keys_its_code_writes(roles: dict[str, list[dict[str, Any]]], role: str) -> None:
    granted = {
        key for s in roles[role] if any(is_dynamodb_write(a) for a in _as_list(s["Action"])) for key in leading_keys(s)
    }
    assert granted == OWN_KEYS[role] | CHECKED_ONLY.get(role, set())
    checked_only = {
        key
        for s in roles[role]
        if set(_as_list(s["Action"])) == {"dynamodb:ConditionCheckItem"}
        for key in leading_keys(s)
    }
    assert checked_only == CHECKED_ONLY.get(role, set())


def test_the_journal_is_append_only_for_every_role(roles: dict[str, list[dict[str, Any]]]) -> None:
    for role, statements in roles.items():
        for statement in statements:
            actions = _as_list(statement["Action"])
            if not any(fnmatch.fnmatch(o, a) for o in OVERWRITES for a in actions):
                continue
            keys = leading_keys(statement) or ["*"]  # no condition: every key
            for key in SAMPLE_JOURNAL_KEYS:
                assert not any(fnmatch.fnmatch(key, pattern) for pattern in keys), (role, statement.get("Sid"), key)


def test_the_sample_journal_keys_are_the_journal_s() -> None:
    assert [day_pk(datetime(2026, 1, 1, 12, tzinfo=UTC)), server_journal_pk(7), backup_journal_pk(9)] == (
        SAMPLE_JOURNAL_KEYS
    )
    assert all(key.startswith(JOURNAL_PREFIX) for key in SAMPLE_JOURNAL_KEYS)


def key_constants() -> dict[str, str]:
    """Every partition key (or prefix) the layer names: module constants ending in ``_PK`` or
    ``_PK_PREFIX`` (and the journal's prefix)."""
    found: dict[str, str] = {}
    for module_info in pkgutil.walk_packages(vpsbackup.__path__, prefix="vpsbackup."):
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if isinstance(value, str) and (re.fullmatch(r"[A-Z_]+_PK(_PREFIX)?", name) or name == "JOURNAL_PREFIX"):
                found[f"{module_info.name}.{name}"] = value
    return found


def test_every_partition_key_the_code_names_is_granted_to_a_function(roles: dict[str, list[dict[str, Any]]]) -> None:
    # A new kind of item (a new *_PK or *_PK_PREFIX constant) fails here until a role is granted it.
    granted = {
        key
        for statements in roles.values()
        for s in statements
        if any(is_dynamodb_write(a) for a in _as_list(s["Action"]))
        for key in leading_keys(s)
    }
    constants = key_constants()
    assert constants  # the sweep found the layer's keys
    for where, value in constants.items():
        sample = f"{value}1" if value.endswith("#") else value
        if value in NOT_WRITTEN_BY_FUNCTIONS:
            continue
        writable = any(fnmatch.fnmatch(sample, pattern) for pattern in granted)
        assert writable, f"{where} = {value!r}: no role may write it (grant it with dynamodb:LeadingKeys)"


def test_every_grant_is_a_statement_this_test_reads() -> None:
    # A SAM policy template (DynamoDBCrudPolicy), a managed policy or a connector grants what the
    # statements above never show: none may be used, so no write escapes the checks.
    template = load_template()
    assert "Policies" not in template.get("Globals", {}).get("Function", {})
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        assert resource["Type"] != "AWS::Serverless::Connector", name
        assert "Connectors" not in resource, name
        assert "ManagedPolicyArns" not in props, name
        if resource["Type"] in ("AWS::Serverless::Function", "AWS::IAM::Role"):
            for policy in _as_list(props.get("Policies", [])):
                document = policy.get("PolicyDocument", policy) if isinstance(policy, dict) else None
                assert isinstance(document, dict) and "Statement" in document, (name, policy)


def test_no_statement_allows_by_exclusion(roles: dict[str, list[dict[str, Any]]]) -> None:
    # NotAction / NotResource on an Allow grants everything else, DynamoDB writes included.
    for role, statements in roles.items():
        for statement in statements:
            if statement.get("Effect") == "Allow":
                assert "NotAction" not in statement, (role, statement.get("Sid"))
                assert "NotResource" not in statement, (role, statement.get("Sid"))


@pytest.mark.parametrize("role", sorted(OWN_DELETES))
def test_each_function_deletes_only_what_its_code_deletes(roles: dict[str, list[dict[str, Any]]], role: str) -> None:
    deletable = {
        key
        for s in roles[role]
        if any(fnmatch.fnmatch(d, a) for d in DELETES for a in _as_list(s["Action"]))
        for key in leading_keys(s) or ["*"]
    }
    assert deletable == OWN_DELETES[role]


def test_no_function_may_delete_a_hold_a_restore_lock_or_the_journal(roles: dict[str, list[dict[str, Any]]]) -> None:
    for role, statements in roles.items():
        for statement in statements:
            if statement.get("Effect") != "Allow":
                continue
            if not any(fnmatch.fnmatch(d, a) for d in DELETES for a in _as_list(statement["Action"])):
                continue
            keys = leading_keys(statement) or ["*"]  # no condition: every key
            for key in NEVER_DELETED_BY_FUNCTIONS:
                assert not any(fnmatch.fnmatch(key, pattern) for pattern in keys), (role, statement.get("Sid"), key)
