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
``server#<server_id>``     ``restore-lock``                    restore: the per-server cooldown lock
``restores``               ``…``                               restore: the fleet-wide rate window
``hold``                   ``backup#<backup_id>``              restore writes, prune reads: a hold
``idempotency#<function>`` ``<hash>``                          Powertools Idempotency records
=========================  ==================================  =====================================

``received_at`` in sort keys is UTC ISO 8601 with microseconds (``2025-01-16T15:45:00.000000Z``),
fixed width, so the lexical order of sort keys is the time order.
This module holds the table wrapper, the key conventions and the two record kinds that cross job
boundaries (deployment history, holds). Job-specific items live with the job's module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from boto3.dynamodb.conditions import Key

from vpsbackup.records import DeploymentRecord, Hold

PK = "pk"
SK = "sk"
TTL_ATTRIBUTE = "expiration"
HOLD_PK = "hold"


def utc_key_time(moment: datetime) -> str:
    """Fixed-width UTC timestamp for sort keys: lexical order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch(moment: datetime) -> int:
    """Whole epoch seconds, for the TTL attribute."""
    return int(moment.timestamp())


def deployment_pk(deployment_id: str) -> str:
    return f"deployment#{deployment_id}"


def server_pk(server_id: int) -> str:
    return f"server#{server_id}"


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

    def put_deployment_record(self, record: DeploymentRecord, *, ttl: timedelta = timedelta(days=400)) -> None:
        """Write one server's deployment history item. A record without a backup never erases the
        backup id already written (concurrent deliveries of one deployment may finish in any order;
        a deployment's backup, once made, never changes)."""
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

    def latest_deployment_before(self, server_id: int, before: datetime) -> DeploymentRecord | None:
        """The server's most recent deployment whose request was received strictly before ``before``."""
        response = self.table.query(
            KeyConditionExpression=Key(PK).eq(server_pk(server_id))
            & Key(SK).between("deployment#", f"deployment#{utc_key_time(before)}"),
            ScanIndexForward=False,
            ConsistentRead=True,
        )
        for item in response.get("Items", []):
            record = DeploymentRecord(
                deployment_id=item["deployment_id"],
                server_id=int(item["server_id"]),
                received_at=datetime.fromisoformat(item["received_at"]),
                backup_id=int(item["backup_id"]) if "backup_id" in item else None,
            )
            if record.received_at < before:
                return record
        return None

    # -- holds (written by restore on alarm, read by prune) ------------------------------------

    def put_hold(self, hold: Hold) -> None:
        """Hold a backup until ``hold.until``; an existing hold is only ever extended, never shortened."""
        condition_failed = self.table.meta.client.exceptions.ConditionalCheckFailedException
        # A longer hold already standing makes the condition fail: keep it.
        with contextlib.suppress(condition_failed):
            self.table.update_item(
                Key={PK: HOLD_PK, SK: f"backup#{hold.backup_id}"},
                UpdateExpression="SET server_id = :s, #u = :u, reason = :r, #e = :e",
                ConditionExpression="attribute_not_exists(#u) OR #u < :u",
                ExpressionAttributeNames={"#u": "until", "#e": TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":s": hold.server_id,
                    ":u": utc_key_time(hold.until),
                    ":r": hold.reason,
                    ":e": epoch(hold.until + timedelta(days=1)),
                },
            )

    def iter_holds(self) -> Iterator[Hold]:
        """Every hold item, expired or not (TTL deletion is lazy); callers compare ``until`` to now."""
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key(PK).eq(HOLD_PK), "ConsistentRead": True}
        while True:
            response = self.table.query(**kwargs)
            for item in response.get("Items", []):
                yield Hold(
                    backup_id=int(item[SK].split("#", 1)[1]),
                    server_id=int(item["server_id"]),
                    until=datetime.strptime(item["until"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
                    reason=str(item.get("reason", "")),
                )
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def active_hold(self, backup_id: int, now: datetime) -> Hold | None:
        """The hold in force on one backup at ``now`` (a consistent read), or None."""
        item = self.table.get_item(Key={PK: HOLD_PK, SK: f"backup#{backup_id}"}, ConsistentRead=True).get("Item")
        if item is None:
            return None
        hold = Hold(
            backup_id=backup_id,
            server_id=int(item["server_id"]),
            until=datetime.strptime(item["until"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
            reason=str(item.get("reason", "")),
        )
        return hold if hold.until > now else None

    def active_holds(self, now: datetime) -> dict[int, Hold]:
        """Holds still in force at ``now``, by backup id."""
        return {hold.backup_id: hold for hold in self.iter_holds() if hold.until > now}
