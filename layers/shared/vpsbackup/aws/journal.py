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

Writing never blocks the act it records: :meth:`Journal.record` never raises. A failed write is
logged (with the whole entry, so the log still has it) and counted: ``JournalWriteFailed`` in the
metrics and :attr:`Journal.failed_writes`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from boto3.dynamodb.conditions import Key

from vpsbackup.aws.state import PK, SK, TTL_ATTRIBUTE, StateTable, epoch, utc_key_time
from vpsbackup.observability import logger, metrics
from vpsbackup.records import JournalAct, JournalEntry

DEFAULT_RETENTION = timedelta(days=400)
JOURNAL_PREFIX = "journal#"


def day_pk(moment: datetime) -> str:
    return f"journal#day#{moment.astimezone(UTC).strftime('%Y-%m-%d')}"


def server_journal_pk(server_id: int) -> str:
    return f"journal#server#{server_id}"


def backup_journal_pk(backup_id: int) -> str:
    return f"journal#backup#{backup_id}"


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

    def record(
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
    ) -> JournalEntry | None:
        """Write one entry; returns it, or None when it could not be written (logged and counted). Never raises."""
        try:
            entry = JournalEntry(
                entry_id=uuid.uuid4().hex,
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
            return None
        return entry if self.write(entry) else None

    def write(self, entry: JournalEntry) -> bool:
        """Store ``entry`` under each of its keys; False (logged, counted) if that failed. Never raises."""
        logger.info("journal entry", extra={"journal": entry.model_dump(mode="json")})
        if self.state is None:
            return True
        try:
            body = entry.model_dump_json()
            sk = f"{utc_key_time(entry.at)}#{entry.entry_id}"
            expiration = epoch(entry.at + self.retention)
            with self.state.table.batch_writer() as batch:
                for pk in entry_keys(entry):
                    batch.put_item(Item={PK: pk, SK: sk, "entry": body, TTL_ATTRIBUTE: expiration})
        except Exception:
            self._failed("journal write failed; the act it records is not affected", entry.model_dump(mode="json"))
            return False
        return True

    def _failed(self, message: str, what: Mapping[str, Any]) -> None:
        self.failed_writes += 1
        logger.exception(message, extra={"journal": dict(what)})
        try:
            metrics.add_metric(name="JournalWriteFailed", unit=MetricUnit.Count, value=1)
        except Exception:  # a metrics problem must not turn into a failed act either
            logger.warning("could not count the failed journal write")

    # -- reading -------------------------------------------------------------------------------

    def _query(self, pk: str, *, since: datetime | None = None, limit: int | None = None) -> list[JournalEntry]:
        if self.state is None:
            return []
        condition = Key(PK).eq(pk)
        if since is not None:
            condition = condition & Key(SK).gte(utc_key_time(since))
        kwargs: dict[str, Any] = {"KeyConditionExpression": condition, "ScanIndexForward": False}
        out: list[JournalEntry] = []
        while True:
            response = self.state.table.query(**kwargs)
            for item in response.get("Items", []):
                out.append(JournalEntry.model_validate_json(str(item["entry"])))
                if limit is not None and len(out) >= limit:
                    return out
            if "LastEvaluatedKey" not in response:
                return out
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

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
