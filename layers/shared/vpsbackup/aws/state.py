"""``StateTable``: the one DynamoDB table every job shares, and its item layout.

The table has a string partition key ``pk``, a string sort key ``sk`` and TTL on ``expiration``
(epoch seconds). Items, by owner:

=========================  ==================================  =====================================
pk                         sk                                  what
=========================  ==================================  =====================================
``deployment#<id>``        ``server#<server_id>``              backup on deploy: the per-(deployment,
                                                               server) claim that makes the create
                                                               exactly-once (``deploy.claims``)
``deployment#<id>``        ``meta``                            backup on deploy: the request summary
``server#<server_id>``     ``deployment#<received_at>#<id>``   backup on deploy writes, restore reads:
                                                               one server's deployments in time order
``restore-lock#<id>``      ``restore-lock``                    restore: the per-server cooldown lock
                                                               (before: under ``server#<id>``, still
                                                               read: ``restore.guard``)
``restores``               ``…``                               restore: the fleet-wide rate window
``hold``                   ``backup#<backup_id>``              restore writes, prune reads: a hold
``hold``                   ``backup#<backup_id>#manual``       a person's hold (``vpsbackup hold``)
``journal#day#<date>``     ``<at>#<entry_id>``                 the journal (``aws.journal``), and
``journal#server#<id>``                                        the same entry under its server and
``journal#backup#<id>``                                        backup, to find it by either
``prune-state``            ``recorded#<server_id>``            backup on deploy writes, prune reads:
                                                               when a backup was last recorded for
                                                               the server (``recorded_at``)
``prune-state``            ``server#<server_id>``              prune: what its last listing of the
                                                               server left (``prune.state_store``)
``prune-state``            ``meta``                            prune: the last scheduled runs, and
                                                               whether the last fleet sweep finished
``idempotency#<function>`` ``<hash>``                          Powertools Idempotency records
``quota``                  ``token#<hash of the secret id>``   every function: the provider quota
                                                               they share (``aws.quota_store``)
=========================  ==================================  =====================================

``received_at`` in sort keys is UTC ISO 8601 with microseconds (``2025-01-16T15:45:00.000000Z``),
fixed width, so the lexical order of sort keys is the time order.
This module holds the table wrapper, the key conventions and the two record kinds that cross job
boundaries (deployment history, holds). Job-specific items live with the job's module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from boto3.dynamodb.conditions import Key

from vpsbackup.records import DeploymentRecord, Hold, HoldKind

PK = "pk"
SK = "sk"
TTL_ATTRIBUTE = "expiration"
HOLD_PK = "hold"
PRUNE_STATE_PK = "prune-state"
# MAX_DELETIONS_PER_DAY's state (prune/daily_budget.py): prune alone writes this partition.
PRUNE_BUDGET_PK = "prune-budget"
# Partition-key prefixes (each job's IAM grant names its own: tests/unit/basics/test_state_grants.py).
DEPLOYMENT_PK_PREFIX = "deployment#"
SERVER_PK_PREFIX = "server#"
# A prune run's items (its lock, its listing, its plan, its deletions), one partition a run.
PRUNE_RUN_PK_PREFIX = "prune-run#"
# How long prune remembers that a backup was recorded for a server, and what it knows of the server.
PRUNE_STATE_TTL = timedelta(days=400)


def utc_key_time(moment: datetime) -> str:
    """Fixed-width UTC timestamp for sort keys: lexical order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch(moment: datetime) -> int:
    """Whole epoch seconds, for the TTL attribute."""
    return int(moment.timestamp())


def parse_key_time(value: str) -> datetime:
    """The inverse of :func:`utc_key_time`."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def hold_sk(backup_id: int, kind: HoldKind = "restore") -> str:
    # Restore holds keep the original key, so holds written before manual holds existed still count.
    return f"backup#{backup_id}" if kind == "restore" else f"backup#{backup_id}#{kind}"


def _hold_from_item(item: dict[str, Any]) -> Hold:
    parts = str(item[SK]).split("#")
    return Hold(
        backup_id=int(parts[1]),
        server_id=int(item["server_id"]),
        until=parse_key_time(str(item["until"])),
        reason=str(item.get("reason", "")),
        kind="manual" if len(parts) > 2 and parts[2] == "manual" else "restore",
        placed_by=str(item.get("placed_by", "")),
        placed_at=parse_key_time(str(item["placed_at"])) if item.get("placed_at") else None,
    )


def _longest(holds: Iterable[Hold]) -> dict[int, Hold]:
    out: dict[int, Hold] = {}
    for hold in holds:
        if hold.backup_id not in out or hold.until > out[hold.backup_id].until:
            out[hold.backup_id] = hold
    return out


def paged_items(read: Callable[..., Any], **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every item of a DynamoDB ``query`` or ``scan`` (``read``) with ``kwargs``, page after page; the
    next page is read only when the caller asks for more."""
    while True:
        response = read(**kwargs)
        yield from response.get("Items", [])
        if "LastEvaluatedKey" not in response:
            return
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _record_from_item(item: dict[str, Any]) -> DeploymentRecord:
    return DeploymentRecord(
        deployment_id=item["deployment_id"],
        server_id=int(item["server_id"]),
        received_at=datetime.fromisoformat(item["received_at"]),
        backup_id=int(item["backup_id"]) if "backup_id" in item else None,
    )


def deployment_pk(deployment_id: str) -> str:
    return f"{DEPLOYMENT_PK_PREFIX}{deployment_id}"


def server_pk(server_id: int) -> str:
    return f"{SERVER_PK_PREFIX}{server_id}"


def recorded_sk(server_id: int) -> str:
    return f"recorded#{server_id}"


class StateTable:
    """Thin wrapper over the DynamoDB table; every method is one or two requests."""

    def __init__(self, table: Any) -> None:
        self.table = table

    @classmethod
    def from_name(cls, table_name: str, *, session: boto3.session.Session | None = None) -> StateTable:
        resource = (session or boto3.session.Session()).resource("dynamodb")
        return cls(resource.Table(table_name))

    @property
    def name(self) -> str:
        return str(self.table.name)

    # -- deployment history (written by backup on deploy, read by restore on alarm) -------------

    def put_deployment_record(
        self, record: DeploymentRecord, *, ttl: timedelta = timedelta(days=400), recorded_at: datetime | None = None
    ) -> None:
        """Write one server's deployment history item. A record without a backup never erases the
        backup id already written (concurrent deliveries of one deployment may finish in any order;
        a deployment's backup, once made, never changes). A record with a backup also tells prune
        (:meth:`note_backup_recorded`, at ``recorded_at``, default now)."""
        update = "SET deployment_id = :d, server_id = :s, received_at = :r, #e = :e"
        values: dict[str, Any] = {
            ":d": record.deployment_id,
            ":s": record.server_id,
            ":r": record.received_at.astimezone(UTC).isoformat(),
            ":e": epoch(record.received_at + ttl),
        }
        if record.backup_id is not None:
            update += ", backup_id = :b"
            values[":b"] = record.backup_id
        self.table.update_item(
            Key={
                PK: server_pk(record.server_id),
                SK: f"deployment#{utc_key_time(record.received_at)}#{record.deployment_id}",
            },
            UpdateExpression=update,
            ExpressionAttributeNames={"#e": TTL_ATTRIBUTE},
            ExpressionAttributeValues=values,
        )
        if record.backup_id is not None:
            self.note_backup_recorded(record.server_id, recorded_at or datetime.now(UTC))

    def note_backup_recorded(self, server_id: int, at: datetime) -> None:
        """Tell prune that a backup of ``server_id`` was recorded at ``at`` (the time of the write,
        after the backup was made): its next run lists the server. Only ever moves forward."""
        condition_failed = self.table.meta.client.exceptions.ConditionalCheckFailedException
        with contextlib.suppress(condition_failed):  # a later record already stands
            self.table.update_item(
                Key={PK: PRUNE_STATE_PK, SK: recorded_sk(server_id)},
                UpdateExpression="SET server_id = :s, recorded_at = :t, #e = :e",
                ConditionExpression="attribute_not_exists(recorded_at) OR recorded_at < :t",
                ExpressionAttributeNames={"#e": TTL_ATTRIBUTE},
                ExpressionAttributeValues={":s": server_id, ":t": utc_key_time(at), ":e": epoch(at + PRUNE_STATE_TTL)},
            )

    def latest_deployment_before(self, server_id: int, before: datetime) -> DeploymentRecord | None:
        """The server's most recent deployment whose request was received strictly before ``before``."""
        response = self.table.query(
            KeyConditionExpression=Key(PK).eq(server_pk(server_id))
            & Key(SK).between("deployment#", f"deployment#{utc_key_time(before)}"),
            ScanIndexForward=False,
            ConsistentRead=True,
        )
        for item in response.get("Items", []):
            record = _record_from_item(item)
            if record.received_at < before:
                return record
        return None

    def deployments_of(self, server_id: int) -> list[DeploymentRecord]:
        """Every recorded deployment of one server, newest first."""
        items = paged_items(
            self.table.query,
            KeyConditionExpression=Key(PK).eq(server_pk(server_id)) & Key(SK).begins_with("deployment#"),
            ScanIndexForward=False,
        )
        return [_record_from_item(item) for item in items]

    # -- holds (written by restore on alarm, read by prune) ------------------------------------

    def put_hold(self, hold: Hold) -> bool:
        """Hold a backup until ``hold.until``; an existing hold of the same kind is only ever extended,
        never shortened. False when a longer hold of that kind already stands (it is kept)."""
        condition_failed = self.table.meta.client.exceptions.ConditionalCheckFailedException
        names = {"#u": "until", "#e": TTL_ATTRIBUTE}
        values: dict[str, Any] = {
            ":s": hold.server_id,
            ":u": utc_key_time(hold.until),
            ":r": hold.reason,
            ":e": epoch(hold.until + timedelta(days=1)),
            ":by": hold.placed_by,
            ":at": utc_key_time(hold.placed_at or datetime.now(UTC)),
        }
        try:
            self.table.update_item(
                Key={PK: HOLD_PK, SK: hold_sk(hold.backup_id, hold.kind)},
                UpdateExpression="SET server_id = :s, #u = :u, reason = :r, #e = :e, placed_by = :by, placed_at = :at",
                ConditionExpression="attribute_not_exists(#u) OR #u < :u",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except condition_failed:  # a longer hold already stands: keep it
            return False
        return True

    def delete_hold(self, backup_id: int, kind: HoldKind) -> bool:
        """Remove one backup's hold of one kind; False if there was none."""
        response = self.table.delete_item(Key={PK: HOLD_PK, SK: hold_sk(backup_id, kind)}, ReturnValues="ALL_OLD")
        return bool(response.get("Attributes"))

    def iter_holds(self) -> Iterator[Hold]:
        """Every hold item of every kind, expired or not (TTL deletion is lazy); callers compare
        ``until`` to now."""
        for item in paged_items(self.table.query, KeyConditionExpression=Key(PK).eq(HOLD_PK), ConsistentRead=True):
            yield _hold_from_item(item)

    def holds_of(self, backup_id: int) -> list[Hold]:
        """Every hold item of one backup (each kind at most once), expired or not; one consistent query."""
        # "backup#501" <= key <= "backup#501#~" takes backup#501 and backup#501#manual, never backup#5010.
        response = self.table.query(
            KeyConditionExpression=Key(PK).eq(HOLD_PK) & Key(SK).between(hold_sk(backup_id), f"backup#{backup_id}#~"),
            ConsistentRead=True,
        )
        return [_hold_from_item(item) for item in response.get("Items", [])]

    def active_hold(self, backup_id: int, now: datetime) -> Hold | None:
        """The hold in force on one backup at ``now`` (the longest, when there are several), or None."""
        return _longest([h for h in self.holds_of(backup_id) if h.until > now]).get(backup_id)

    def active_holds(self, now: datetime) -> dict[int, Hold]:
        """Holds still in force at ``now``, by backup id (the longest one of a backup held twice)."""
        return _longest([hold for hold in self.iter_holds() if hold.until > now])
