"""The journal: every irreversible act and every refusal, kept in ``StateTable`` for ``JOURNAL_RETENTION``.

Written by the function or the command that acted (backup created, backup deleted, restore
requested, hold placed or released, cooldown overridden, a deletion or restore refused by a guard),
read by ``vpsbackup history``. Each entry is stored three times, as whole copies in one batch
request, so that it can be found by day, by server and by backup without an index:

==========================  ============================  ==============================
pk                          sk                            found by
==========================  ============================  ==============================
``journal#day#2025-01-16``  ``<at>#<entry_id>``           ``history`` (recent, fleet-wide)
``journal#server#<id>``     ``<at>#<entry_id>``           ``history --server ID``
``journal#backup#<id>``     ``<at>#<entry_id>``           ``history --backup ID``
==========================  ============================  ==============================

``<at>`` is fixed-width UTC (:func:`~vpsbackup.aws.state.utc_key_time`), so the sort key's order is
time order. The entry itself is one JSON attribute (``entry``), read back as a
:class:`~vpsbackup.records.JournalEntry`.

Writing never blocks the act it records: :meth:`Journal.record` and :meth:`Journal.write_many` never
raise. A failed write is logged (with the whole entry, so the log still has it) and counted:
``JournalWriteFailed`` in the metrics and :attr:`Journal.failed_writes`. The journal is append-only:
each copy of an entry is one ``PutItem`` conditional on a new key (never ``BatchWriteItem``, which
may overwrite or delete, and which no function is granted on the journal's prefix); a run with many
entries (a prune's deletions, a deploy's backups) writes them in groups of 25 items, checking the
time left before each group (:meth:`Journal.write_many`).
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from boto3.dynamodb.conditions import Key

from vpsbackup.aws.state import PK, SK, TTL_ATTRIBUTE, StateTable, epoch, paged_items, utc_key_time
from vpsbackup.observability import logger, metrics
from vpsbackup.records import JournalAct, JournalEntry

DEFAULT_RETENTION = timedelta(days=400)
JOURNAL_PREFIX = "journal#"
# Items written between two checks of the time left (write_many's time_left).
MAX_BATCH_ITEMS = 25
# No batch is started with less than this left of the invocation (write_many's time_left).
WRITE_MARGIN_S = 5.0


def day_pk(moment: datetime) -> str:
    return f"journal#day#{moment.astimezone(UTC).strftime('%Y-%m-%d')}"


def server_journal_pk(server_id: int) -> str:
    return f"journal#server#{server_id}"


def backup_journal_pk(backup_id: int) -> str:
    return f"journal#backup#{backup_id}"


def _sort_key(entry: JournalEntry) -> str:
    return f"{utc_key_time(entry.at)}#{entry.entry_id}"


def _batches(entries: Iterable[JournalEntry]) -> Iterator[list[JournalEntry]]:
    """The entries in groups of at most 25 copies, the time left checked before each group."""
    batch: list[JournalEntry] = []
    items = 0
    for entry in entries:
        copies = len(entry_keys(entry))
        if batch and items + copies > MAX_BATCH_ITEMS:
            yield batch
            batch, items = [], 0
        batch.append(entry)
        items += copies
    if batch:
        yield batch


def entry_keys(entry: JournalEntry) -> list[str]:
    """The partition keys one entry is stored under (day, and its server and backup when it has them)."""
    keys = [day_pk(entry.at)]
    if entry.server_id is not None:
        keys.append(server_journal_pk(entry.server_id))
    if entry.backup_id is not None:
        keys.append(backup_journal_pk(entry.backup_id))
    return keys


class Journal:
    """Writes and reads journal entries. ``state`` None: entries are only logged (no table configured)."""

    def __init__(
        self,
        state: StateTable | None,
        *,
        source: str,
        retention: timedelta = DEFAULT_RETENTION,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.state = state
        self.source = source
        self.retention = retention
        self._clock = clock
        self.failed_writes = 0

    # -- writing -------------------------------------------------------------------------------

    def entry(
        self,
        act: JournalAct,
        *,
        by: str,
        outcome: str,
        server_id: int | None = None,
        backup_id: int | None = None,
        run: str | None = None,
        reasons: Iterable[str] = (),
        details: Mapping[str, Any] | None = None,
        at: datetime | None = None,
        entry_id: str | None = None,
    ) -> JournalEntry | None:
        """A new entry (not written yet), or None when it cannot be made (logged and counted). Never raises.
        ``at`` and ``entry_id`` (default: now, a random id) make its keys: an entry written again
        with the same two replaces itself."""
        try:
            return JournalEntry(
                entry_id=entry_id or uuid.uuid4().hex,
                at=at or self._clock(),
                act=act,
                by=by,
                source=self.source,
                outcome=outcome,
                server_id=server_id,
                backup_id=backup_id,
                run=run,
                reasons=tuple(reasons),
                details=dict(details or {}),
            )
        except Exception:  # a bad value must not stop the act being recorded
            self._failed(
                "journal entry could not be built", {"act": act, "server_id": server_id, "backup_id": backup_id}
            )
            self._count(1)
            return None

    def record(self, act: JournalAct, **entry: Any) -> JournalEntry | None:
        """Write one entry (the arguments of :meth:`entry`); returns it, or None when it could not be
        written (logged and counted). Never raises."""
        made = self.entry(act, **entry)
        return made if made is not None and self.write(made) else None

    def write(self, entry: JournalEntry) -> bool:
        """Store ``entry`` under each of its keys; False (logged, counted) if that failed. Never raises."""
        logger.info("journal entry", extra={"journal": entry.model_dump(mode="json")})
        return self.state is None or self._store([entry])[1] == 0

    def write_many(
        self, entries: Iterable[JournalEntry], *, time_left: Callable[[], float | None] = lambda: None
    ) -> int:
        """Store many entries, in groups of 25 copies (an entry's copies in one group), reading
        ``entries`` as it goes; returns how many could not
        be written (each logged whole, and counted). With less than :data:`WRITE_MARGIN_S` of
        ``time_left``, the rest are only logged: the invocation must still finish. Never raises."""
        if self.state is None:
            for entry in entries:
                logger.info("journal entry", extra={"journal": entry.model_dump(mode="json")})
            return 0
        written, failed = self._store(entries, time_left=time_left)
        logger.info("journal entries written", extra={"written": written, "failed": failed})
        return failed

    def _store(
        self, entries: Iterable[JournalEntry], *, time_left: Callable[[], float | None] = lambda: None
    ) -> tuple[int, int]:
        """(written, failed): ``entries`` batch by batch, the failed ones logged whole and counted."""
        written = failed = 0
        out_of_time = False
        for batch in _batches(entries):
            if not out_of_time:
                left = time_left()
                out_of_time = left is not None and left < WRITE_MARGIN_S
            unwritten = list(batch) if out_of_time else self._put_batch(batch)
            message = (
                "journal write skipped: the invocation is out of time"
                if out_of_time
                else "journal write failed; the act it records is not affected"
            )
            for entry in unwritten:
                self._failed(message, entry.model_dump(mode="json"))
            written += len(batch) - len(unwritten)
            failed += len(unwritten)
        if failed:
            self._count(failed)
        return written, failed

    def _put_batch(self, batch: Sequence[JournalEntry]) -> list[JournalEntry]:
        """Each copy of each entry by a conditional ``PutItem`` on a new key: the journal is
        append-only (no function is granted ``BatchWriteItem``, ``UpdateItem`` or ``DeleteItem`` on
        its prefix, and none overwrites an entry). A copy already there is this entry written
        before (the key holds its unique ``entry_id``). The entries not (wholly) written."""
        assert self.state is not None
        table = self.state.table
        exists = table.meta.client.exceptions.ConditionalCheckFailedException
        unwritten: list[JournalEntry] = []
        for entry in batch:
            try:
                for item in self._items(entry):
                    with contextlib.suppress(exists):
                        table.put_item(
                            Item=item,
                            ConditionExpression="attribute_not_exists(#pk)",
                            ExpressionAttributeNames={"#pk": PK},
                        )
            except Exception:
                logger.exception("journal put refused", extra={"entry_id": entry.entry_id})
                unwritten.append(entry)  # some copies may be written; the log has the whole entry
        return unwritten

    def _items(self, entry: JournalEntry) -> list[dict[str, Any]]:
        body = entry.model_dump_json()
        expiration = epoch(entry.at + self.retention)
        sk = _sort_key(entry)
        return [{PK: pk, SK: sk, "entry": body, TTL_ATTRIBUTE: expiration} for pk in entry_keys(entry)]

    def _failed(self, message: str, what: Mapping[str, Any]) -> None:
        self.failed_writes += 1
        logger.error(message, extra={"journal": dict(what)}, exc_info=sys.exc_info()[0] is not None)

    @staticmethod
    def _count(failed: int) -> None:
        try:
            metrics.add_metric(name="JournalWriteFailed", unit=MetricUnit.Count, value=failed)
        except Exception:  # a metrics problem must not turn into a failed act either
            logger.warning("could not count the failed journal writes", extra={"failed": failed})

    # -- reading -------------------------------------------------------------------------------

    def _query(self, pk: str, *, since: datetime | None = None, limit: int | None = None) -> list[JournalEntry]:
        if self.state is None:
            return []
        condition = Key(PK).eq(pk)
        if since is not None:
            condition = condition & Key(SK).gte(utc_key_time(since))
        out: list[JournalEntry] = []
        for item in paged_items(self.state.table.query, KeyConditionExpression=condition, ScanIndexForward=False):
            out.append(JournalEntry.model_validate_json(str(item["entry"])))
            if limit is not None and len(out) >= limit:
                break
        return out

    def for_server(
        self, server_id: int, *, since: datetime | None = None, limit: int | None = None
    ) -> list[JournalEntry]:
        """The server's entries, newest first."""
        return self._query(server_journal_pk(server_id), since=since, limit=limit)

    def for_backup(
        self, backup_id: int, *, since: datetime | None = None, limit: int | None = None
    ) -> list[JournalEntry]:
        """The backup's entries, newest first."""
        return self._query(backup_journal_pk(backup_id), since=since, limit=limit)

    def recent(self, since: datetime, *, now: datetime | None = None, limit: int | None = None) -> list[JournalEntry]:
        """Every entry from ``since`` to ``now``, fleet-wide, newest first (one query per day)."""
        now = now or self._clock()
        out: list[JournalEntry] = []
        day = now.astimezone(UTC)
        while day.date() >= since.astimezone(UTC).date():
            left = None if limit is None else limit - len(out)
            if left is not None and left <= 0:
                break
            out.extend(self._query(day_pk(day), since=since, limit=left))
            day -= timedelta(days=1)
        return out
