"""A chunked prune run's items in ``StateTable``: what one chunk leaves the next (docs/prune.md).

A run started by the state machine is worked in chunks (:mod:`vpsbackup.prune.chunks`); what a
chunk must hand on is kept here, never in the state payload. Partition ``prune-run#lock``: the one
lock (which run holds it, until when). Partition ``prune-run#<run>``, one per run:

- ``meta``: the request and when the run started;
- ``page#<n>``: the ``n``-th page of the run's listing (the page as listed, compressed JSON), and
  the link it was read from; a chunk retried after a kill writes the same pages again, same keys;
- ``plan#<n>``: the plan, compressed JSON in parts under DynamoDB's 400 KB an item (each part names
  its write: a reader takes only the parts of the write part 0 names);
- ``selection#<n>`` (an incremental run): the servers due, in listing order, and why, chosen once
  by the first chunk; ``holds#<n>``: the holds in force its plan saw; ``failed#<i>``: a due server
  whose listing failed (left for the next run);
- ``deletion#<backup id>``: ``started`` written before its DELETE is sent, its outcome after: a
  retried chunk never re-sends a deletion whose outcome is known, and reads a 404 on one that was
  only started as the earlier attempt's success. With the outcome, ``stopped_by_hold`` when
  set: the journal reads it, never the detail's words.

Every item expires (``PRUNE_RUN_TTL``); the lock is deleted when the run ends.
"""

from __future__ import annotations

import contextlib
import json
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from boto3.dynamodb.conditions import Key
from boto3.dynamodb.types import Binary

from vpsbackup.aws.state import (
    PK,
    PRUNE_RUN_PK_PREFIX,
    SK,
    TTL_ATTRIBUTE,
    StateTable,
    epoch,
    parse_key_time,
    utc_key_time,
)
from vpsbackup.provider.models import BackupPage

LOCK_PK = f"{PRUNE_RUN_PK_PREFIX}lock"
LOCK_SK = "lock"
META_SK = "meta"
# Written once the run's report is published: a retried report chunk does not publish it twice.
REPORTED_SK = "reported"
# The first attempt's instant at the run's report (its journal entries' time).
REPORTING_SK = "reporting"
PRUNE_RUN_TTL = timedelta(days=14)
# Compressed bytes per plan item (DynamoDB takes 400 KB an item, keys and names included).
_PART = 350_000
_BATCH = 25


def run_pk(run: str) -> str:
    return f"{PRUNE_RUN_PK_PREFIX}{run}"


def page_sk(n: int) -> str:
    return f"page#{n:08d}"


def _pack(value: Any) -> bytes:
    return zlib.compress(json.dumps(value, separators=(",", ":"), default=str).encode(), 6)


class StoredOutcome(NamedTuple):
    """One deletion's outcome as stored: ``started`` (sent, or about to be) or a
    :data:`~vpsbackup.prune.job.DeletionOutcome`, its detail for people, and whether a hold stopped
    it (:class:`~vpsbackup.prune.job.DeletionResult`'s flag, which the journal reads; the daily
    budget's holds are kept apart, ``budget#``)."""

    outcome: str
    detail: str = ""
    stopped_by_hold: bool = False


# The flags stored with an outcome, only when set.
_FLAGS = ("stopped_by_hold",)


@dataclass(frozen=True, slots=True)
class LockHolder:
    """The run holding the lock, the execution that started it, since and until when."""

    run: str
    execution: str
    since: datetime
    until: datetime


@dataclass(frozen=True, slots=True)
class StoredPage:
    """One page of a run's listing, as stored: its number, the link it was read from, the page."""

    n: int
    url: str
    page: BackupPage
    # The requested server whose walk the page is of (None: the fleet's walk).
    walk_server: int | None = None
    # Read for one part of the fleet: the ids of the backups left out of ``page``; every backup of
    # the page, counted.
    others: Sequence[int] = ()
    listed: int = 0


class PruneRunStore:
    """Reads and writes one chunked run's items (see the module)."""

    def __init__(self, state: StateTable) -> None:
        self.table = state.table
        self._condition_failed = self.table.meta.client.exceptions.ConditionalCheckFailedException

    # -- the lock ---------------------------------------------------------------------------------

    def take_lock(self, run: str, execution: str, now: datetime, until: datetime) -> LockHolder | None:
        """Take the lock for ``run`` until ``until``: None when taken, else the run that holds it (a
        lock past its ``until`` is free: its run stopped or failed and was not redriven in time)."""
        try:
            self.table.put_item(
                Item={
                    PK: LOCK_PK,
                    SK: LOCK_SK,
                    "run": run,
                    "execution": execution,
                    "since": utc_key_time(now),
                    "until": utc_key_time(until),
                    TTL_ATTRIBUTE: epoch(now + PRUNE_RUN_TTL),
                },
                ConditionExpression="attribute_not_exists(#pk) OR #until < :now OR #run = :run",
                ExpressionAttributeNames={"#pk": PK, "#until": "until", "#run": "run"},
                ExpressionAttributeValues={":now": utc_key_time(now), ":run": run},
            )
        except self._condition_failed:
            return self.lock_holder() or LockHolder(run="?", execution="?", since=now, until=until)
        return None

    def lock_holder(self) -> LockHolder | None:
        item = self.table.get_item(Key={PK: LOCK_PK, SK: LOCK_SK}, ConsistentRead=True).get("Item")
        if item is None:
            return None
        return LockHolder(
            run=str(item["run"]),
            execution=str(item.get("execution", "")),
            since=parse_key_time(str(item["since"])),
            until=parse_key_time(str(item["until"])),
        )

    def renew_lock(self, run: str, execution: str, now: datetime, until: datetime) -> bool:
        """Keep the lock for ``run`` until ``until``; False when another run holds it now."""
        holder = self.lock_holder()
        if holder is None or holder.run != run:
            return False
        return self.take_lock(run, execution, now, until) is None

    def release_lock(self, run: str) -> None:
        """Free the lock if ``run`` still holds it."""
        with contextlib.suppress(self._condition_failed):
            self.table.delete_item(
                Key={PK: LOCK_PK, SK: LOCK_SK},
                ConditionExpression="#run = :run",
                ExpressionAttributeNames={"#run": "run"},
                ExpressionAttributeValues={":run": run},
            )

    # -- the run's own items ----------------------------------------------------------------------

    def _put(self, run: str, sk: str, now: datetime, **attributes: Any) -> None:
        self.table.put_item(Item={PK: run_pk(run), SK: sk, TTL_ATTRIBUTE: epoch(now + PRUNE_RUN_TTL), **attributes})

    def _query(self, run: str, prefix: str) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key(PK).eq(run_pk(run)) & Key(SK).begins_with(prefix),
            "ConsistentRead": True,
        }
        while True:
            response = self.table.query(**kwargs)
            yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def put_meta(self, run: str, now: datetime, request: dict[str, Any]) -> None:
        self._put(run, META_SK, now, started_at=utc_key_time(now), request=json.dumps(request))

    def meta(self, run: str) -> tuple[datetime, dict[str, Any]] | None:
        item = self.table.get_item(Key={PK: run_pk(run), SK: META_SK}, ConsistentRead=True).get("Item")
        if item is None:
            return None
        return parse_key_time(str(item["started_at"])), json.loads(str(item["request"]))

    def report_started(self, run: str, now: datetime) -> datetime:
        """When the run's first attempt at its report began (``now`` when this is it): the instant
        of its journal entries, so that a retried attempt writes the same entries again."""
        at = utc_key_time(now)
        item = {PK: run_pk(run), SK: REPORTING_SK, TTL_ATTRIBUTE: epoch(now + PRUNE_RUN_TTL), "at": at}
        try:
            self.table.put_item(
                Item=item, ConditionExpression="attribute_not_exists(#pk)", ExpressionAttributeNames={"#pk": PK}
            )
        except self._condition_failed:
            first = self.table.get_item(Key={PK: run_pk(run), SK: REPORTING_SK}, ConsistentRead=True)["Item"]
            at = str(first["at"])
        return parse_key_time(at)

    def put_reported(self, run: str, now: datetime) -> None:
        """The run's report is published (its notification sent): an attempt of the report chunk
        retried after it does not publish it again."""
        self._put(run, REPORTED_SK, now, reported_at=utc_key_time(now))

    def reported(self, run: str) -> bool:
        item = self.table.get_item(Key={PK: run_pk(run), SK: REPORTED_SK}, ConsistentRead=True).get("Item")
        return item is not None

    def put_page(self, run: str, n: int, url: str, page: BackupPage, now: datetime, *, walk_server: int | None) -> None:
        extra = {} if walk_server is None else {"walk_server": walk_server}
        data = Binary(zlib.compress(page.model_dump_json().encode(), 6))
        self._put(run, page_sk(n), now, url=url, page=data, **extra)

    def pages(self, run: str, keep: Callable[[int], bool] | None = None) -> Iterator[StoredPage]:
        """The run's pages in order (a retried chunk's rewrites included: same keys). ``keep``: only
        the backups of the servers it keeps are read into models (a part of a large listing); the
        others' ids are in ``StoredPage.others``, and every backup counts in ``StoredPage.listed``."""
        for item in self._query(run, "page#"):
            data = item["page"]
            raw = zlib.decompress(data.value if isinstance(data, Binary) else bytes(data))
            others: list[int] = []
            if keep is None:
                page = BackupPage.model_validate_json(raw)
                listed = len(page.results)
            else:
                fields = json.loads(raw)
                results = fields.get("results") or []
                listed = len(results)
                mine = []
                for result in results:  # each backup's server asked once: kept, or only its id
                    if keep(int(result["server"]["id"])):
                        mine.append(result)
                    else:
                        others.append(int(result["id"]))
                page = BackupPage.model_validate({**fields, "results": mine})
            yield StoredPage(
                n=int(str(item[SK]).removeprefix("page#")),
                url=str(item["url"]),
                page=page,
                walk_server=int(item["walk_server"]) if "walk_server" in item else None,
                others=others,
                listed=listed,
            )

    def _put_blob(self, run: str, prefix: str, value: Any, now: datetime) -> None:
        """``value`` as compressed JSON in parts under DynamoDB's 400 KB an item, each part naming the
        write it belongs to; part 0 written last, so a reader never mixes two writes (a retried chunk
        rewriting a shorter value, or a write cut short, leaves parts the reader does not take)."""
        blob = _pack(value)
        parts = [blob[i : i + _PART] for i in range(0, len(blob), _PART)] or [b""]
        write = uuid.uuid4().hex
        for n in reversed(range(len(parts))):
            self._put(run, f"{prefix}#{n:04d}", now, data=Binary(parts[n]), parts=len(parts), write=write)

    def _blob(self, run: str, prefix: str) -> Any:
        """What :meth:`_put_blob` last wrote whole under ``prefix`` (None: nothing, or not whole)."""
        items = list(self._query(run, f"{prefix}#"))
        if not items or str(items[0][SK]) != f"{prefix}#0000":
            return None
        head = items[0]
        wanted = [i for i in items if i.get("write") == head.get("write")][: int(head["parts"])]
        if len(wanted) < int(head["parts"]):
            return None
        blob = b"".join(i["data"].value if isinstance(i["data"], Binary) else bytes(i["data"]) for i in wanted)
        return json.loads(zlib.decompress(blob))

    def put_part(self, run: str, kind: str, part: int, value: Any, now: datetime) -> None:
        """What one part of a run's plan or write-back left for the next (``kind``: ``plan``,
        ``written``; part ``-1``: the plan's instant and holds, for every part)."""
        self._put_blob(run, f"part-{kind}{part:+05d}", value, now)

    def part(self, run: str, kind: str, part: int) -> Any:
        return self._blob(run, f"part-{kind}{part:+05d}")

    def put_plan(self, run: str, plan: dict[str, Any], now: datetime) -> None:
        self._put_blob(run, "plan", plan, now)

    def plan(self, run: str) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self._blob(run, "plan")
        return value

    def put_progress(self, run: str, progress: dict[str, Any], now: datetime) -> None:
        """How the listing the plan was made on went (its counts, its invalid items): the report reads
        it instead of every page again."""
        self._put_blob(run, "progress", progress, now)

    def progress(self, run: str) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self._blob(run, "progress")
        return value

    def put_selection(self, run: str, selection: dict[str, Any], now: datetime) -> None:
        """An incremental run's choice of servers (the servers due, in listing order; why)."""
        self._put_blob(run, "selection", selection, now)

    def selection(self, run: str) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self._blob(run, "selection")
        return value

    def put_holds(self, run: str, holds: Sequence[dict[str, Any]], now: datetime) -> None:
        """The holds in force the plan was made with (an incremental run's write-back reads them)."""
        self._put_blob(run, "holds", list(holds), now)

    def holds(self, run: str) -> list[dict[str, Any]]:
        value: list[dict[str, Any]] | None = self._blob(run, "holds")
        return value or []

    def put_failed(self, run: str, index: int, server_id: int, detail: str, now: datetime) -> None:
        """A server of an incremental run whose listing failed (the ``index``-th due): not planned."""
        self._put(run, f"failed#{index:08d}", now, server_id=server_id, detail=detail[:1000])

    def failed(self, run: str) -> dict[int, tuple[int, str]]:
        """The servers whose listing failed: index → (server, why)."""
        return {
            int(str(item[SK]).removeprefix("failed#")): (int(item["server_id"]), str(item.get("detail", "")))
            for item in self._query(run, "failed#")
        }

    def forget_failed(self, run: str, from_index: int) -> None:
        """Drop the failures recorded at ``from_index`` or after (an attempt cut short wrote them;
        its retry lists those servers again)."""
        for index in [i for i in self.failed(run) if i >= from_index]:
            self.table.delete_item(Key={PK: run_pk(run), SK: f"failed#{index:08d}"})

    def deletion_started(self, run: str, backup_id: int, now: datetime) -> None:
        """Written before the DELETE is sent (a chunk killed after it leaves this behind)."""
        self._put(run, f"deletion#{backup_id}", now, backup_id=backup_id, outcome="started")

    def forget_started(self, run: str, backup_ids: Iterable[int]) -> None:
        """Marks of deletions that were not sent after all (their turn came too late, or after
        another's 429): the next chunk sends them as new ones, within the daily budget."""
        for backup_id in backup_ids:
            with contextlib.suppress(self._condition_failed):  # an outcome stored meanwhile stays
                self.table.delete_item(
                    Key={PK: run_pk(run), SK: f"deletion#{backup_id}"},
                    ConditionExpression="#outcome = :started",
                    ExpressionAttributeNames={"#outcome": "outcome"},
                    ExpressionAttributeValues={":started": "started"},
                )

    def put_outcomes(self, run: str, outcomes: Iterable[tuple[int, StoredOutcome]], now: datetime) -> None:
        """Each deletion's outcome, detail and whether a hold stopped it, batched."""
        items = [
            {
                PK: run_pk(run),
                SK: f"deletion#{backup_id}",
                TTL_ATTRIBUTE: epoch(now + PRUNE_RUN_TTL),
                "backup_id": backup_id,
                "outcome": stored.outcome,
                "detail": stored.detail[:1000],
                **{flag: True for flag in _FLAGS if getattr(stored, flag)},
            }
            for backup_id, stored in outcomes
        ]
        with self.table.batch_writer() as batch:
            for item in items:
                batch.put_item(Item=item)

    def put_budget_hold(self, run: str, chunk: int, budget: dict[str, Any], held: Sequence[int], now: datetime) -> None:
        """What ``MAX_DELETIONS_PER_DAY`` held back in the delete chunk starting at ``chunk`` (a retried
        chunk overwrites its own item): the budget's report and the deletions it kept from being sent."""
        self._put(run, f"budget#{chunk:08d}", now, budget=json.dumps(budget), held=[int(b) for b in held])

    def budget_holds(self, run: str) -> list[tuple[dict[str, Any], list[int]]]:
        """Each delete chunk's :meth:`put_budget_hold`, in the run's order."""
        return [
            (json.loads(str(item["budget"])), [int(b) for b in item.get("held", [])])
            for item in self._query(run, "budget#")
        ]

    def outcomes(self, run: str) -> dict[int, StoredOutcome]:
        """Every deletion's outcome so far (``started``: sent, or about to be, outcome unknown)."""
        return {
            int(item["backup_id"]): StoredOutcome(
                str(item["outcome"]), str(item.get("detail", "")), *(bool(item.get(flag)) for flag in _FLAGS)
            )
            for item in self._query(run, "deletion#")
        }
