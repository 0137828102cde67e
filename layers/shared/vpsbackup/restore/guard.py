"""The restore guardrails, enforced atomically in ``StateTable`` (docs/restore-on-alarm.md).

Two limits, claimed together in one DynamoDB ``TransactWriteItems`` so that duplicate and
concurrent alarms restore once and a storm of alarms cannot restore the whole fleet:

- **Per-server cooldown** — item ``pk=restore-lock#<id>``, ``sk=restore-lock``: who claimed the server
  (alarm transition, backup), when, and ``locked_until = claimed_at + RESTORE_COOLDOWN``. The put
  succeeds only if there is no lock, or it has expired, or it was released — and never for the
  transition that already holds or held it (a redelivery of the same alarm change is a duplicate,
  not a new incident, even after a release).
- **Fleet-wide rate** — ``MAX_RESTORES_PER_HOUR`` slot items ``pk=restores``, ``sk=slot#000`` …:
  a claim takes a slot whose last use is more than an hour old (or that is empty). This is an exact
  *sliding* window: at most N restores in any 60 minutes. A fixed clock-hour counter would be one
  item and simpler, but lets 2N restores through across an hour boundary (N at 10:59, N at 11:00)
  — exactly the alarm storm the valve is for. Each slot's condition is a plain comparison, so the
  window needs no read-modify-write: a claim that loses a slot to a concurrent claim tries the next
  free one; when none is left the claim is refused.

**The incident** (:mod:`vpsbackup.restore.recovery`): an automatic restore the API accepted leaves
``incident = open`` on the lock, and its follow-ups settle it (``recovered`` when the alarm is seen
in ``OK``, ``not_cleared`` when the check finds it still not ``OK``; a ``not_cleared`` lock loses its
expiry, so it outlives the cooldown). While the incident is ``open`` or ``not_cleared``, an
automatic claim on the server is refused (``incident_open``), after the cooldown too, in the
precheck and in the transaction's condition; a person's (``manual#``) claim is not.

Both puts succeed or neither does. When the restore then cannot have happened (the API refused it
with a 4xx, or answered ``429``/``503`` until the deadline, or the request never left), the claim
is **released**: the slot is freed (the fleet budget counts restores that happened or may have)
and the lock is marked released, so a *later* alarm transition may try again, while a redelivery of
this one may not (no retry loop). When the outcome is unknown (timeout after sending, ``5xx``
other than ``503``) the lock and slot are **kept**: the restore may be running, and a second one
must wait for the cooldown.

A person may override the cooldown (``vpsbackup restore --override-cooldown``), but never over a
restore that may still be running: any lock not ``released`` whose restore was claimed, or last
reported back (accepted, or sent with no clear answer), less than ``IN_FLIGHT`` ago
(:func:`override_refused_until`; the transaction's condition says the same).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from boto3.dynamodb.conditions import Key

from vpsbackup.aws.state import (
    PK,
    SK,
    TTL_ATTRIBUTE,
    StateTable,
    epoch,
    parse_key_time,
    server_pk,
    utc_key_time,
)
from vpsbackup.durations import describe_duration
from vpsbackup.observability import logger
from vpsbackup.restore.point import human_time
from vpsbackup.restore.recovery import OPEN_STATES, Incident, IncidentState

LOCK_SK = "restore-lock"
# Beside a server's lock, one item per cooldown whose refusal people were told of (an alarm that
# flaps inside the cooldown is journaled at each flap, notified once): sk ``cooldown-notice#<the
# lock's transition>``; it expires with its cooldown.
COOLDOWN_NOTICE_SK_PREFIX = "cooldown-notice#"
# The same for a refusal after the cooldown over an open incident (restore.recovery): sk
# ``incident-notice#<the incident's state>#<the lock's transition>``, expiring a day after it is written.
INCIDENT_NOTICE_SK_PREFIX = "incident-notice#"
# The lock's partition: restore's own prefix, so its IAM grant (dynamodb:LeadingKeys) covers no
# other job's items. Locks taken before the move live under ``server#<id>`` (LEGACY_LOCK_PK), which
# backup on deploy writes: they are still read, and a claim's transaction checks (never writes) the
# legacy lock with the same condition, so a cooldown claimed before an upgrade still holds after it.
# The legacy check can go once every legacy lock has expired (RESTORE_COOLDOWN after the upgrade).
LOCK_PK_PREFIX = "restore-lock#"
LEGACY_LOCK_PK = server_pk
# Transition keys of manual restores (``vpsbackup restore``) start with this; the rest is unique.
MANUAL_TRANSITION_PREFIX = "manual#"
# A cooldown override (a person's manual restore) is still refused while a restore claimed, accepted
# or sent without a clear answer this recently may be running right now.
IN_FLIGHT = timedelta(minutes=5)
RESTORES_PK = "restores"
RATE_WINDOW = timedelta(hours=1)

LockState = Literal["claimed", "restored", "outcome_unknown", "released"]
RefusalKind = Literal["duplicate", "cooldown", "rate_limit", "incident_open"]


def lock_pk(server_id: int) -> str:
    return f"{LOCK_PK_PREFIX}{server_id}"


def slot_sk(index: int) -> str:
    return f"slot#{index:03d}"


@dataclass(frozen=True)
class RestoreClaim:
    """A granted claim: this transition may restore ``server_id`` from ``backup_id``."""

    server_id: int
    backup_id: int
    transition_key: str
    alarm_name: str
    claimed_at: datetime
    locked_until: datetime
    slot: int
    overridden: LockHolder | None = None  # the cooldown lock a manual override took over


@dataclass(frozen=True)
class LockHolder:
    """What the server's restore lock says."""

    server_id: int
    transition_key: str
    alarm_name: str
    backup_id: int | None
    claimed_at: datetime
    locked_until: datetime
    state: str
    # When the restore call's outcome was written (accepted, or no clear answer); None before.
    reported_at: datetime | None = None
    incident: str | None = None  # restore.recovery's IncidentState; None: no incident (manual, not restored)
    restored_at: datetime | None = None

    @property
    def automatic(self) -> bool:
        return not self.transition_key.startswith(MANUAL_TRANSITION_PREFIX)

    def as_incident(self) -> Incident:
        return Incident(
            server_id=self.server_id,
            alarm_name=self.alarm_name,
            transition=self.transition_key,
            backup_id=self.backup_id,
            restored_at=self.restored_at,
            state=self.incident,
        )

    def describe(self) -> str:
        verb = {
            "restored": "was restored",
            "outcome_unknown": "had a restore requested (outcome unknown)",
            "released": "had a restore attempt that did not happen",
        }.get(self.state, "had a restore started")
        backup = f" from backup {self.backup_id}" if self.backup_id is not None else ""
        why = (
            f"by hand ({self.alarm_name})"
            if self.transition_key.startswith(MANUAL_TRANSITION_PREFIX)
            else f"for alarm {self.alarm_name!r}"
        )
        return f"server {self.server_id} {verb}{backup} at {human_time(self.claimed_at)} {why}"


def override_refused_until(holder: LockHolder, now: datetime) -> datetime | None:
    """Until when a cooldown override must not take ``holder``'s lock, or None if it may now.

    Every state but ``released`` may have a restore running at the provider: ``claimed`` (the call
    may be on its way, or the run died), ``outcome_unknown`` (sent, no clear answer), ``restored``
    (accepted, and restoring). Such a lock is refused until ``IN_FLIGHT`` after the later of its
    claim and its report; a released lock (the restore certainly did not happen) never is.
    """
    if holder.state == "released":
        return None
    since = max(holder.claimed_at, holder.reported_at or holder.claimed_at)
    until = since + IN_FLIGHT
    return until if now < until else None


@dataclass(frozen=True)
class GuardRefusal:
    """A claim the guardrails refused, and why, in words."""

    kind: RefusalKind
    reason: str
    not_before: datetime | None = None
    holder: LockHolder | None = None


def _incident_refusal(holder: LockHolder) -> GuardRefusal:
    server = holder.server_id
    if holder.incident == "not_cleared":
        why = (
            f"{holder.describe()} and that restore did not clear the alarm: no automatic restore of server {server} "
            "until the alarm has been seen in OK (restore by hand with vpsbackup restore if it still needs one)"
        )
    else:
        why = (
            f"{holder.describe()} and that alarm has not been seen in OK since: no automatic restore of server "
            f"{server} until it has (the restore's check, RESTORE_VERIFY_AFTER, is still to come)"
        )
    return GuardRefusal("incident_open", why, holder=holder)


class RestoreGuard:
    """Claims and releases restores in ``StateTable``; see the module docstring for the design."""

    def __init__(
        self,
        state: StateTable,
        *,
        cooldown: timedelta,
        max_per_hour: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        conflict_attempts: int = 3,
    ) -> None:
        self.state = state
        self.cooldown = cooldown
        self.max_per_hour = max_per_hour
        self._clock = clock
        self._conflict_attempts = conflict_attempts

    @property
    def _client(self) -> Any:
        # The resource's client: it (de)serialises plain Python values, transactions included.
        return self.state.table.meta.client

    # -- reading -------------------------------------------------------------------------------

    def lock_holder(self, server_id: int) -> LockHolder | None:
        item = self.state.table.get_item(Key={PK: lock_pk(server_id), SK: LOCK_SK}, ConsistentRead=True).get("Item")
        if not item:  # a lock claimed before locks had their own prefix (see LOCK_PK_PREFIX)
            key = {PK: LEGACY_LOCK_PK(server_id), SK: LOCK_SK}
            item = self.state.table.get_item(Key=key, ConsistentRead=True).get("Item")
        if not item:
            return None
        return LockHolder(
            server_id=server_id,
            transition_key=str(item["transition"]),
            alarm_name=str(item.get("alarm_name", "")),
            backup_id=int(item["backup_id"]) if "backup_id" in item else None,
            claimed_at=parse_key_time(str(item["claimed_at"])),
            locked_until=parse_key_time(str(item["locked_until"])),
            state=str(item.get("lock_state", "claimed")),
            reported_at=parse_key_time(str(item["reported_at"])) if "reported_at" in item else None,
            incident=str(item["incident"]) if "incident" in item else None,
            restored_at=parse_key_time(str(item["restored_at"])) if "restored_at" in item else None,
        )

    def slot_times(self) -> dict[int, datetime]:
        """When each fleet slot was last taken (slots beyond the current limit included)."""
        response = self.state.table.query(KeyConditionExpression=Key(PK).eq(RESTORES_PK), ConsistentRead=True)
        out: dict[int, datetime] = {}
        for item in response.get("Items", []):
            sk = str(item[SK])
            if sk.startswith("slot#") and "taken_at" in item:
                out[int(sk.split("#", 1)[1])] = parse_key_time(str(item["taken_at"]))
        return out

    def _lock_refusal(
        self, holder: LockHolder | None, transition_key: str, now: datetime, *, override_cooldown: bool = False
    ) -> GuardRefusal | None:
        if holder is None:
            return None
        if holder.transition_key == transition_key:
            return GuardRefusal(
                "duplicate",
                f"this alarm change was already handled: {holder.describe()}",
                holder=holder,
            )
        incident_open = holder.incident in OPEN_STATES and not transition_key.startswith(MANUAL_TRANSITION_PREFIX)
        if holder.state == "released" or holder.locked_until <= now:
            # The cooldown is over; an open incident still refuses an automatic restore (restore.recovery).
            return _incident_refusal(holder) if incident_open else None
        if override_cooldown:
            if (until := override_refused_until(holder, now)) is not None:
                return GuardRefusal(
                    "cooldown",
                    f"{holder.describe()}, less than {describe_duration(IN_FLIGHT)} ago: it may be running right "
                    f"now, so the cooldown cannot be overridden before {human_time(until)}",
                    not_before=until,
                    holder=holder,
                )
            return None
        after = ""
        if incident_open:
            after = " (and after that only once the alarm has been seen in OK: its incident is open)"
        return GuardRefusal(
            "cooldown",
            f"{holder.describe()}; one restore per server per {describe_duration(self.cooldown)} (RESTORE_COOLDOWN), "
            f"so no new restore before {human_time(holder.locked_until)}{after}",
            not_before=holder.locked_until,
            holder=holder,
        )

    def _rate_refusal(self, now: datetime) -> GuardRefusal:
        if self.max_per_hour <= 0:
            return GuardRefusal("rate_limit", "restores are switched off (MAX_RESTORES_PER_HOUR is 0)")
        window_start = now - RATE_WINDOW
        recent = sorted(t for i, t in self.slot_times().items() if i < self.max_per_hour and t > window_start)
        not_before = recent[0] + RATE_WINDOW if recent else now
        shown = ", ".join(human_time(t) for t in recent)
        return GuardRefusal(
            "rate_limit",
            f"{len(recent)} restore(s) already in the last hour across the fleet (at {shown}); the limit is "
            f"{self.max_per_hour} per hour (MAX_RESTORES_PER_HOUR), so no new restore before {human_time(not_before)}",
            not_before=not_before,
        )

    def _precheck(
        self,
        server_id: int,
        transition_key: str,
        now: datetime,
        *,
        override_cooldown: bool = False,
        holder: LockHolder | None = None,
    ) -> GuardRefusal | list[int]:
        """A cheap read: the refusal the guard would give now, or the fleet slots free now."""
        holder = holder if holder is not None else self.lock_holder(server_id)
        if refusal := self._lock_refusal(holder, transition_key, now, override_cooldown=override_cooldown):
            return refusal
        if self.max_per_hour <= 0:
            return self._rate_refusal(now)
        window_start = now - RATE_WINDOW
        taken = self.slot_times()
        free = [i for i in range(self.max_per_hour) if i not in taken or taken[i] <= window_start]
        return free or self._rate_refusal(now)

    def first_cooldown_notice(self, holder: LockHolder) -> bool:
        """True the first time a refusal inside ``holder``'s cooldown asks to tell people, False after
        (one conditional ``PutItem``, so concurrent invocations agree). A write that fails otherwise
        answers True: people told twice rather than never."""
        sk = f"{COOLDOWN_NOTICE_SK_PREFIX}{holder.transition_key}"
        return self._first_notice(holder, sk, expires=holder.locked_until + timedelta(days=1))

    def first_incident_notice(self, holder: LockHolder) -> bool:
        """As :meth:`first_cooldown_notice`, for a refusal after the cooldown over ``holder``'s open
        incident: told once per incident state (``open``, then ``not_cleared``), and again a day later
        while it stays open (the notice expires; a ``not_cleared`` lock does not)."""
        sk = f"{INCIDENT_NOTICE_SK_PREFIX}{holder.incident}#{holder.transition_key}"
        return self._first_notice(holder, sk, expires=max(holder.locked_until, self._clock()) + timedelta(days=1))

    def _first_notice(self, holder: LockHolder, sk: str, *, expires: datetime) -> bool:
        item = {
            PK: lock_pk(holder.server_id),
            SK: sk,
            "server_id": holder.server_id,
            "noted_at": utc_key_time(self._clock()),
            "locked_until": utc_key_time(holder.locked_until),
            TTL_ATTRIBUTE: epoch(expires),
        }
        try:
            self.state.table.put_item(
                Item=item, ConditionExpression="attribute_not_exists(#pk)", ExpressionAttributeNames={"#pk": PK}
            )
        except self.state.table.meta.client.exceptions.ConditionalCheckFailedException:
            return False
        except Exception:
            logger.warning("could not note the cooldown notice; telling people anyway", exc_info=True)
        return True

    def check(self, *, server_id: int, transition_key: str, override_cooldown: bool = False) -> GuardRefusal | None:
        """Read-only: what :meth:`claim` would refuse now (None: it would be granted). Consumes nothing."""
        found = self._precheck(server_id, transition_key, self._clock(), override_cooldown=override_cooldown)
        return found if isinstance(found, GuardRefusal) else None

    # -- claiming ------------------------------------------------------------------------------

    def claim(
        self,
        *,
        server_id: int,
        backup_id: int,
        transition_key: str,
        alarm_name: str,
        override_cooldown: bool = False,
    ) -> RestoreClaim | GuardRefusal:
        """Atomically take the server's lock and one fleet slot, or say why not.

        ``override_cooldown`` (a person's manual restore, with a reason the caller journals) takes
        the lock even inside another transition's cooldown, unless that restore may be running right
        now (claimed less than ``IN_FLIGHT`` ago, not reported back). The fleet cap still applies.
        """
        now = self._clock()
        # A cheap read first, for a precise refusal; the transaction's conditions are the guarantee.
        holder = self.lock_holder(server_id)
        free = self._precheck(server_id, transition_key, now, override_cooldown=override_cooldown, holder=holder)
        if isinstance(free, GuardRefusal):
            return free
        overridden = (
            holder
            if override_cooldown and holder is not None and holder.state != "released" and holder.locked_until > now
            else None
        )
        locked_until = now + self.cooldown
        for slot in free:
            for attempt in range(1, self._conflict_attempts + 1):
                outcome = self._transact_claim(
                    server_id=server_id,
                    backup_id=backup_id,
                    transition_key=transition_key,
                    alarm_name=alarm_name,
                    now=now,
                    locked_until=locked_until,
                    slot=slot,
                    override_cooldown=overridden is not None,
                )
                if outcome == "granted":
                    logger.info(
                        "restore claimed",
                        extra={
                            "server_id": server_id,
                            "backup_id": backup_id,
                            "slot": slot,
                            "transition": transition_key,
                        },
                    )
                    return RestoreClaim(
                        server_id, backup_id, transition_key, alarm_name, now, locked_until, slot, overridden
                    )
                if outcome == "lock_taken":
                    holder = self.lock_holder(server_id)
                    refusal = self._lock_refusal(holder, transition_key, now, override_cooldown=override_cooldown)
                    return refusal or GuardRefusal(
                        "cooldown", f"another restore of server {server_id} was claimed at the same moment"
                    )
                if outcome == "slot_taken":
                    break  # a concurrent claim got this slot: try the next free one
                # A transaction conflict (DynamoDB serialises concurrent transactions on one item): try again.
                time.sleep(0.02 * attempt)
        return self._rate_refusal(now)

    def _transact_claim(
        self,
        *,
        server_id: int,
        backup_id: int,
        transition_key: str,
        alarm_name: str,
        now: datetime,
        locked_until: datetime,
        slot: int,
        override_cooldown: bool = False,
    ) -> Literal["granted", "lock_taken", "slot_taken", "conflict"]:
        lock_item = {
            PK: lock_pk(server_id),
            SK: LOCK_SK,
            "server_id": server_id,
            "backup_id": backup_id,
            "transition": transition_key,
            "alarm_name": alarm_name,
            "claimed_at": utc_key_time(now),
            "locked_until": utc_key_time(locked_until),
            "lock_state": "claimed",
            "slot": slot,
            TTL_ATTRIBUTE: epoch(locked_until + timedelta(days=1)),
        }
        slot_item = {
            PK: RESTORES_PK,
            SK: slot_sk(slot),
            "taken_at": utc_key_time(now),
            "server_id": server_id,
            "transition": transition_key,
            TTL_ATTRIBUTE: epoch(now + RATE_WINDOW + timedelta(days=1)),
        }
        lock_condition = "attribute_not_exists(#pk) OR (#tr <> :tr AND (#lu <= :now OR #st = :released))"
        lock_values = {":tr": transition_key, ":now": utc_key_time(now), ":released": "released"}
        lock_names = {"#pk": PK, "#tr": "transition", "#lu": "locked_until", "#st": "lock_state"}
        if override_cooldown:
            # Inside the cooldown, but never over a restore that may be running right now: in any
            # state but released, claimed and reported back at least IN_FLIGHT ago (override_refused_until).
            lock_condition = (
                "attribute_not_exists(#pk) OR (#tr <> :tr AND (#lu <= :now OR #st = :released "
                "OR (#ca <= :in_flight AND (attribute_not_exists(#rp) OR #rp <= :in_flight))))"
            )
            lock_values |= {":in_flight": utc_key_time(now - IN_FLIGHT)}
            lock_names |= {"#ca": "claimed_at", "#rp": "reported_at"}
        if not transition_key.startswith(MANUAL_TRANSITION_PREFIX):  # never over an open incident (restore.recovery)
            lock_condition = f"({lock_condition}) AND NOT (#inc IN (:open, :not_cleared))"
            lock_names["#inc"] = "incident"
            lock_values |= {":open": "open", ":not_cleared": "not_cleared"}
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.state.name,
                            "Item": lock_item,
                            "ConditionExpression": lock_condition,
                            "ExpressionAttributeNames": lock_names,
                            "ExpressionAttributeValues": lock_values,
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.state.name,
                            "Item": slot_item,
                            "ConditionExpression": "attribute_not_exists(#pk) OR #ta <= :window_start",
                            "ExpressionAttributeNames": {"#pk": PK, "#ta": "taken_at"},
                            "ExpressionAttributeValues": {":window_start": utc_key_time(now - RATE_WINDOW)},
                        }
                    },
                    {
                        # A lock from before the move to LOCK_PK_PREFIX: read-only, same condition.
                        "ConditionCheck": {
                            "TableName": self.state.name,
                            "Key": {PK: LEGACY_LOCK_PK(server_id), SK: LOCK_SK},
                            "ConditionExpression": lock_condition,
                            "ExpressionAttributeNames": lock_names,
                            "ExpressionAttributeValues": lock_values,
                        }
                    },
                ]
            )
        except self._client.exceptions.TransactionCanceledException as exc:
            codes = [str(r.get("Code", "None")) for r in exc.response.get("CancellationReasons", [])]
            codes += ["None"] * (3 - len(codes))
            if "ConditionalCheckFailed" in (codes[0], codes[2]):
                return "lock_taken"
            if codes[1] == "ConditionalCheckFailed":
                return "slot_taken"
            if "TransactionConflict" in codes:
                return "conflict"
            raise
        return "granted"

    # -- after the API call ------------------------------------------------------------------

    def _set_lock_state(self, claim: RestoreClaim, state: LockState, **extra: str) -> None:
        names = {"#st": "lock_state", "#tr": "transition", **{f"#{k}": k for k in extra}}
        values: dict[str, Any] = {":st": state, ":tr": claim.transition_key, **{f":{k}": v for k, v in extra.items()}}
        sets = ", ".join(["#st = :st", *(f"#{k} = :{k}" for k in extra)])
        condition_failed = self._client.exceptions.ConditionalCheckFailedException
        try:
            self.state.table.update_item(
                Key={PK: lock_pk(claim.server_id), SK: LOCK_SK},
                UpdateExpression=f"SET {sets}",
                ConditionExpression="#tr = :tr",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except condition_failed:
            # Only possible if the lock expired and another transition took it: leave theirs alone.
            logger.warning("restore lock no longer ours; not updated", extra={"server_id": claim.server_id})

    def mark_restored(self, claim: RestoreClaim, *, incident: bool = False) -> None:
        """The API accepted the restore: it is running now (``reported_at`` starts ``IN_FLIGHT`` again).
        ``incident``: an automatic one, whose follow-ups settle it (restore.recovery)."""
        now = utc_key_time(self._clock())
        if incident:
            self._set_lock_state(claim, "restored", restored_at=now, reported_at=now, incident="open")
        else:
            self._set_lock_state(claim, "restored", restored_at=now, reported_at=now)

    def settle_incident(self, holder: LockHolder, state: IncidentState, *, at: datetime) -> bool:
        """Move the lock's open incident to ``state`` (once: False when it was no longer open, or the
        lock is another restore's). ``not_cleared`` keeps the lock past its expiry (no TTL), so the
        incident blocks automatic restores until the alarm is seen in OK; ``recovered`` gives it back.
        An UpdateItem of restore's own lock (``restore-lock#``): a lock from before the prefix has no
        incident, so the condition fails on it and nothing under ``server#`` is written."""
        names = {"#tr": "transition", "#inc": "incident", "#at": f"{state}_at", "#ttl": TTL_ATTRIBUTE}
        values: dict[str, Any] = {":tr": holder.transition_key, ":state": state, ":at": utc_key_time(at)}
        if state == "not_cleared":
            update, condition = "SET #inc = :state, #at = :at REMOVE #ttl", "#tr = :tr AND #inc = :open"
            values[":open"] = "open"
        else:
            update = "SET #inc = :state, #at = :at, #ttl = :ttl"
            condition = "#tr = :tr AND #inc IN (:open, :not_cleared)"
            values |= {
                ":open": "open",
                ":not_cleared": "not_cleared",
                ":ttl": epoch(max(holder.locked_until, at) + timedelta(days=1)),
            }
        try:
            self.state.table.update_item(
                Key={PK: lock_pk(holder.server_id), SK: LOCK_SK},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            logger.info("incident already settled; not updated", extra={"server_id": holder.server_id, "to": state})
            return False
        return True

    def mark_outcome_unknown(self, claim: RestoreClaim, why: str) -> None:
        """Keep the lock and the slot: the restore may be running."""
        self._set_lock_state(claim, "outcome_unknown", reported_at=utc_key_time(self._clock()), note=why[:500])

    def release(self, claim: RestoreClaim, why: str) -> None:
        """The restore did not happen: free the fleet slot, mark the lock released (see module docstring)."""
        self._set_lock_state(claim, "released", released_at=utc_key_time(self._clock()), note=why[:500])
        with contextlib.suppress(self._client.exceptions.ConditionalCheckFailedException):
            self.state.table.delete_item(
                Key={PK: RESTORES_PK, SK: slot_sk(claim.slot)},
                ConditionExpression="#tr = :tr",
                ExpressionAttributeNames={"#tr": "transition"},
                ExpressionAttributeValues={":tr": claim.transition_key},
            )
        logger.info("restore claim released", extra={"server_id": claim.server_id, "why": why})
