"""The shared provider quota's state in ``StateTable`` (:class:`vpsbackup.provider.shared_quota.QuotaStore`).

One item per provider token: pk ``quota``, sk ``token#<first 16 hex digits of the SHA-256 of the
token's secret id>`` (the id, not the token: the table never holds a secret). Its attributes are the
GCRA state of :mod:`vpsbackup.provider.quota`: ``tat`` and ``not_before`` (UNIX seconds), the
requests ``waiting`` for a slot (a map: ticket -> ``{"job", "until"}``), the ``recent`` slots' start
times (a list: the minute's count) and a ``version`` every
write moves on. A batch of slots, or a waiter written, is one conditional ``UpdateItem`` on the
version read; a provider's hold (``Retry-After``) one conditional on ``not_before`` being earlier.
The item expires a day after its last write (TTL): a quiet bucket is a full one.

The three functions may write this partition only for it (IAM ``dynamodb:LeadingKeys`` = ``quota``).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from vpsbackup.aws.state import PK, SK, TTL_ATTRIBUTE, StateTable
from vpsbackup.provider.quota import JOBS, QuotaState, Waiter

QUOTA_PK = "quota"
QUOTA_TTL_S = 86_400


def quota_sk(token_secret_id: str) -> str:
    """The item of one provider token (its secret's id, hashed)."""
    return "token#" + hashlib.sha256(token_secret_id.encode("utf-8")).hexdigest()[:16]


def _number(value: float) -> Decimal:
    return Decimal(str(round(value, 6)))


class DynamoQuotaStore:
    """The quota item of one provider token in ``StateTable``."""

    def __init__(self, state: StateTable, token_secret_id: str, *, clock: Callable[[], float] = time.time) -> None:
        self.table = state.table
        self.key = {PK: QUOTA_PK, SK: quota_sk(token_secret_id)}
        self._clock = clock
        self._condition_failed = self.table.meta.client.exceptions.ConditionalCheckFailedException

    def read(self) -> QuotaState:
        item = self.table.get_item(Key=self.key, ConsistentRead=True).get("Item")
        if not item:
            return QuotaState()
        return QuotaState(
            tat=float(item.get("tat", 0)),
            not_before=float(item.get("not_before", 0)),
            version=int(item["version"]),
            waiting=_waiters(item.get("waiting")),
            recent=tuple(float(t) for t in item.get("recent") or () if isinstance(t, Decimal)),
        )

    def swap(self, new: QuotaState, *, expected_version: int) -> bool:
        condition = "attribute_not_exists(#v) OR #v = :seen" if expected_version == 0 else "#v = :seen"
        try:
            self.table.update_item(
                Key=self.key,
                UpdateExpression="SET tat = :tat, not_before = :nb, waiting = :w, recent = :r, #v = :v, #e = :e",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#v": "version", "#e": TTL_ATTRIBUTE},
                ExpressionAttributeValues=self._values(new) | {":seen": expected_version},
            )
        except self._condition_failed:
            return False
        return True

    def hold_until(self, until: float) -> None:
        with contextlib.suppress(self._condition_failed):  # a later hold already stands
            self.table.update_item(
                Key=self.key,
                UpdateExpression="SET not_before = :nb, #e = :e ADD #v :one",
                ConditionExpression="attribute_not_exists(not_before) OR not_before < :nb",
                ExpressionAttributeNames={"#v": "version", "#e": TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":nb": _number(until),
                    ":one": 1,
                    ":e": int(self._clock()) + QUOTA_TTL_S,
                },
            )

    def _values(self, new: QuotaState) -> dict[str, Any]:
        return {
            ":tat": _number(new.tat),
            ":nb": _number(new.not_before),
            ":v": new.version,
            ":w": {w.ticket: {"job": w.job, "until": _number(w.until)} for w in new.waiting},
            ":r": [_number(t) for t in new.recent],
            ":e": int(max(self._clock(), new.not_before)) + QUOTA_TTL_S,
        }


def _waiters(stored: Any) -> tuple[Waiter, ...]:
    """The waiters of a stored item (none when it has none; an entry that is not one is left out)."""
    if not isinstance(stored, dict):
        return ()
    found = []
    for ticket, entry in sorted(stored.items()):
        job = entry.get("job") if isinstance(entry, dict) else None
        if job in JOBS and isinstance(entry.get("until"), Decimal):
            found.append(Waiter(str(ticket), job, float(entry["until"])))
    return tuple(found)
