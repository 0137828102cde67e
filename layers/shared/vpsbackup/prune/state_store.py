"""Prune's items in ``StateTable``: what each server's last listing left, and the run history.

All in the partition ``prune-state`` (see :mod:`vpsbackup.aws.state`), so one query reads the fleet:

- ``server#<server_id>`` (prune writes): ``listed_at``, ``settled``, ``stable_until``, ``policy``
  and ``holds`` (fingerprints), ``backups`` (manual backups listed), ``note`` (why, in words);
- ``recorded#<server_id>`` (the deploy job writes, :meth:`StateTable.note_backup_recorded`):
  ``recorded_at``, the last time it recorded a backup for the server;
- ``meta``: ``last_scheduled_at``, ``gaps_s`` (the last gaps between scheduled runs),
  ``last_sweep_complete``.

And, in a partition of its own (``prune-budget``, which only prune may write), the state of
``MAX_DELETIONS_PER_DAY`` (:class:`DeletionBudgetStore`).

Each item has one writer, so prune's batch writes never erase what the deploy job wrote.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Key

from vpsbackup.aws.state import (
    PK,
    PRUNE_BUDGET_PK,
    PRUNE_STATE_PK,
    PRUNE_STATE_TTL,
    SK,
    TTL_ATTRIBUTE,
    StateTable,
    epoch,
    parse_key_time,
    recorded_sk,
    utc_key_time,
)
from vpsbackup.observability import logger
from vpsbackup.prune.daily_budget import BudgetState
from vpsbackup.prune.incremental import RunHistory, ServerState

META_SK = "meta"
# Items per BatchWriteItem (DynamoDB's limit), and how often unprocessed items are sent.
_BATCH = 25
_ATTEMPTS = 5


def server_sk(server_id: int) -> str:
    return f"server#{server_id}"


def _time(value: Any) -> datetime | None:
    return parse_key_time(str(value)) if value else None


def _state_item(state: ServerState) -> dict[str, Any]:
    item: dict[str, Any] = {
        PK: PRUNE_STATE_PK,
        SK: server_sk(state.server_id),
        "server_id": state.server_id,
        "settled": state.settled,
        "policy": state.policy,
        "holds": state.holds,
        "backups": state.backups,
        "note": state.note[:500],
    }
    if state.listed_at is not None:
        item["listed_at"] = utc_key_time(state.listed_at)
        item[TTL_ATTRIBUTE] = epoch(state.listed_at + PRUNE_STATE_TTL)
    if state.stable_until is not None:
        item["stable_until"] = utc_key_time(state.stable_until)
    return item


class PruneStateStore:
    """Reads and writes prune's items; one consistent query reads them all."""

    def __init__(self, state: StateTable) -> None:
        self.table = state.table

    def load(self, keep: Callable[[int], bool] | None = None) -> tuple[dict[int, ServerState], RunHistory]:
        """Every known server (listed by prune, or recorded by the deploy job; only those ``keep``
        keeps, when given), and the run history. Each item is read into its state as it comes (a
        fleet of 100,000 servers is as many items: none is kept as read)."""
        listed: dict[int, ServerState] = {}
        recorded: dict[int, datetime] = {}
        history = RunHistory()
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key(PK).eq(PRUNE_STATE_PK), "ConsistentRead": True}
        while True:
            response = self.table.query(**kwargs)
            for item in response.get("Items", []):
                kind, _, _ = str(item[SK]).partition("#")
                if item[SK] == META_SK:
                    history = _history(item)
                elif kind not in ("server", "recorded") or (keep is not None and not keep(int(item["server_id"]))):
                    continue
                elif kind == "server":
                    listed[int(item["server_id"])] = _state(int(item["server_id"]), item, None)
                else:
                    recorded[int(item["server_id"])] = parse_key_time(str(item["recorded_at"]))
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        states = {
            sid: replace(listed.get(sid) or ServerState(server_id=sid), recorded_at=recorded.get(sid))
            for sid in sorted({*listed, *recorded})
        }
        return states, history

    def history(self) -> RunHistory:
        """The run history alone."""
        item = self.table.get_item(Key={PK: PRUNE_STATE_PK, SK: META_SK}, ConsistentRead=True).get("Item")
        return RunHistory() if item is None else _history(item)

    def save(
        self,
        put: Iterable[ServerState],
        *,
        forget: Iterable[tuple[int, datetime]] = (),
        history: RunHistory | None = None,
    ) -> None:
        """Write the servers' new states (batched), forget servers with nothing to prune, write the
        history. A server is forgotten with its deploy record only if no record came after its
        listing (``forget``: ``(server_id, listed_at)``): a newer record keeps it known. Never
        raises: a state not written leaves the server's triggers standing (it is listed again)."""
        unwritten = self._put_all([_state_item(state) for state in put])
        if unwritten:
            # Those servers keep their former state: their triggers still stand, the next run lists
            # them again. Costlier, never wrong.
            logger.warning("prune state not written for some servers", extra={"unwritten": unwritten})
        try:
            self._forget_and_record(forget, history)
        except Exception:
            logger.exception("prune state: forgetting servers or writing the run history failed")

    def _put_all(self, items: list[dict[str, Any]]) -> int:
        """``BatchWriteItem`` 25 items at a time, unprocessed items re-sent a few times; how many
        could not be written. Never raises."""
        client = self.table.meta.client  # the resource's: it takes plain Python values
        unwritten = 0
        for start in range(0, len(items), _BATCH):
            pending = [{"PutRequest": {"Item": item}} for item in items[start : start + _BATCH]]
            try:
                for attempt in range(_ATTEMPTS):
                    response = client.batch_write_item(RequestItems={self.table.name: pending})
                    pending = response.get("UnprocessedItems", {}).get(self.table.name, [])
                    if not pending:
                        break
                    time.sleep(0.05 * 2**attempt)  # throttled: back off
            except Exception:
                logger.exception("prune state batch write failed", extra={"items": len(pending)})
            unwritten += len(pending)
        return unwritten

    def _forget_and_record(self, forget: Iterable[tuple[int, datetime]], history: RunHistory | None) -> None:
        condition_failed = self.table.meta.client.exceptions.ConditionalCheckFailedException
        for server_id, listed_at in forget:
            self.table.delete_item(Key={PK: PRUNE_STATE_PK, SK: server_sk(server_id)})
            with contextlib.suppress(condition_failed):  # recorded since: the next run lists it
                self.table.delete_item(
                    Key={PK: PRUNE_STATE_PK, SK: recorded_sk(server_id)},
                    ConditionExpression="attribute_not_exists(recorded_at) OR recorded_at < :t",
                    ExpressionAttributeValues={":t": utc_key_time(listed_at)},
                )
        if history is not None:
            item: dict[str, Any] = {
                PK: PRUNE_STATE_PK,
                SK: META_SK,
                "gaps_s": [Decimal(str(round(gap, 3))) for gap in history.gaps_s],
            }
            if history.last_scheduled_at is not None:
                item["last_scheduled_at"] = utc_key_time(history.last_scheduled_at)
            if history.last_sweep_complete is not None:
                item["last_sweep_complete"] = history.last_sweep_complete
            self.table.put_item(Item=item)


def _state(server_id: int, item: dict[str, Any] | None, recorded_at: datetime | None) -> ServerState:
    if item is None:
        return ServerState(server_id=server_id, recorded_at=recorded_at)
    return ServerState(
        server_id=server_id,
        listed_at=_time(item.get("listed_at")),
        settled=bool(item.get("settled", False)),
        stable_until=_time(item.get("stable_until")),
        policy=str(item.get("policy", "")),
        holds=str(item.get("holds", "")),
        backups=int(item.get("backups", 0)),
        recorded_at=recorded_at,
        note=str(item.get("note", "")),
    )


def _history(item: dict[str, Any]) -> RunHistory:
    complete = item.get("last_sweep_complete")
    return RunHistory(
        last_scheduled_at=_time(item.get("last_scheduled_at")),
        gaps_s=tuple(float(gap) for gap in item.get("gaps_s", [])),
        last_sweep_complete=None if complete is None else bool(complete),
    )


BUDGET_SK = "deletions"
# The budget's item outlives its window by a day; a quiet budget is an empty one.
_BUDGET_TTL = timedelta(days=2)


class DeletionBudgetStore:
    """``MAX_DELETIONS_PER_DAY``'s state (:class:`vpsbackup.prune.daily_budget.BudgetStore`): one item,
    pk ``prune-budget``, sk ``deletions``, its ``sent`` instants and a ``version``; every write is a
    ``PutItem`` conditional on the version read (prune's grant on that partition is ``PutItem`` alone)."""

    def __init__(self, state: StateTable) -> None:
        self.table = state.table
        self.key = {PK: PRUNE_BUDGET_PK, SK: BUDGET_SK}
        self._condition_failed = self.table.meta.client.exceptions.ConditionalCheckFailedException

    def read(self) -> BudgetState:
        item = self.table.get_item(Key=self.key, ConsistentRead=True).get("Item")
        if not item:
            return BudgetState()
        return BudgetState(tuple(float(t) for t in item.get("sent", [])), int(item["version"]))

    def swap(self, new: BudgetState, *, expected_version: int) -> bool:
        condition = "attribute_not_exists(#v) OR #v = :seen" if expected_version == 0 else "#v = :seen"
        newest = max(new.sent, default=time.time())
        try:
            self.table.put_item(
                Item={
                    **self.key,
                    "sent": [Decimal(repr(t)) for t in new.sent],
                    "version": new.version,
                    TTL_ATTRIBUTE: int(newest + _BUDGET_TTL.total_seconds()),
                },
                ConditionExpression=condition,
                ExpressionAttributeNames={"#v": "version"},
                ExpressionAttributeValues={":seen": expected_version},
            )
        except self._condition_failed:
            return False
        return True
