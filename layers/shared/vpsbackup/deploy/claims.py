"""Exactly one backup per (deployment, server): the claim protocol in ``StateTable``.

Each (deployment, server) pair has one claim item (pk ``deployment#<id>``, sk ``server#<server_id>``)
whose ``state`` moves only by conditional writes, so two deliveries of the same deployment can
never both believe they own it:

============  ===========================================================  =======================
state         meaning                                                      next delivery does
============  ===========================================================  =======================
(no item)     nobody has tried                                             ``CREATE``: claim, POST
``claimed``   ``owner`` is creating it; ``lease_until`` is past the        ``WAIT`` while the lease
              owner's Lambda timeout, so an expired lease means the owner  runs; then ``RECONCILE``
              is dead (its POST may or may not have been applied)
``created``   the backup exists: ``backup_id``                             ``REUSE``
``failed``    the API definitely did not create it (404, 400, 409, ...)   ``RETRY``: claim, POST
``unknown``   a POST's outcome is unknown and listing did not settle it    ``RECONCILE``
============  ===========================================================  =======================

An ``unknown`` claim left by a POST that got no answer (timeout, dropped connection, 502/504) also
carries ``settles_at``: until then the provider may still be making that backup without listing it
yet, so a reconcile that finds nothing must not POST (it leaves the claim ``unknown``); after it,
finding nothing means the POST was never applied. An expired ``claimed`` lease needs no such time:
the lease already ends ``LEASE_MARGIN`` after the owner's Lambda.

``RECONCILE`` takes the claim over (compare-and-swap on the state and owner it read), lists the
server's manual backups and looks for the deployment's marker (:func:`find_marked_backup`); only if
none is there does it POST. Taking over, creating and recording are all conditional on the owner,
so a delivery that lost its claim cannot overwrite the result of the one that took it.

The deployment's ``meta`` item (same pk, sk ``meta``) keeps the servers asked for and the time
the request was FIRST received: repeats never move it, so the deployment history the restore job
reads stays put.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from boto3.dynamodb.conditions import Attr, Key
from pydantic import BaseModel, ConfigDict

from vpsbackup.aws.state import PK, SK, TTL_ATTRIBUTE, StateTable, deployment_pk, epoch, paged_items, utc_key_time
from vpsbackup.markers import marker_matches
from vpsbackup.provider.models import AwareDatetime, Backup
from vpsbackup.records import CLAIM_LEASE_MARGIN, LAMBDA_LONGEST_RUN

META_SK = "meta"
CLAIM_SK_PREFIX = "server#"
# Claims and meta items outlive any redelivery or CI retry by far, then expire.
RECORD_TTL = timedelta(days=400)
# Added to the owner's remaining Lambda time: a POST the provider is still processing when the
# owner's Lambda is killed must have landed before anyone reconciles by listing. The restore job
# counts on the same bound (records.DEPLOYMENT_BACKUP_LATEST).
LEASE_MARGIN = CLAIM_LEASE_MARGIN
# A server of a queued deployment that no worker has reached this long after the deployment's last
# progress (queued_at) is reported as an error: the queue gave up on it (its dead-letter queue).
QUEUE_PATIENCE = timedelta(hours=1)
# Without a Lambda context (local tools), assume Lambda's longest timeout.
DEFAULT_REMAINING = LAMBDA_LONGEST_RUN

ClaimState = Literal["claimed", "created", "failed", "unknown"]


class Action(enum.StrEnum):
    """What a delivery does about one (deployment, server) pair, given the claim it read."""

    CREATE = "create"
    RETRY = "retry"
    RECONCILE = "reconcile"
    REUSE = "reuse"
    WAIT = "wait"


class Claim(BaseModel):
    """One (deployment, server) claim item."""

    model_config = ConfigDict(frozen=True)

    deployment_id: str
    server_id: int
    state: ClaimState
    owner: str
    claimed_at: AwareDatetime
    lease_until: AwareDatetime
    received_at: AwareDatetime
    attempts: int = 1
    backup_id: int | None = None
    backup_status: str | None = None
    error: str | None = None
    # An outcome-unknown POST: before this time, "not listed" does not mean "not made".
    settles_at: AwareDatetime | None = None


class DeploymentMeta(BaseModel):
    """The deployment's ``meta`` item: what was asked for and when it was first received."""

    model_config = ConfigDict(frozen=True)

    deployment_id: str
    server_ids: tuple[int, ...]
    received_at: AwareDatetime
    last_received_at: AwareDatetime
    deliveries: int
    # A large deployment's servers went to the deploy queue: when they last did (the worker's progress too).
    queued_at: AwareDatetime | None = None


# -- pure decisions ------------------------------------------------------------------------------


def decide(claim: Claim | None, now: datetime) -> Action:
    """The action for a delivery that read ``claim`` at ``now`` (see the module's table)."""
    if claim is None:
        return Action.CREATE
    if claim.state == "created":
        return Action.REUSE
    if claim.state == "failed":
        return Action.RETRY
    if claim.state == "unknown":
        return Action.RECONCILE
    return Action.WAIT if now < claim.lease_until else Action.RECONCILE


def lease_for(remaining: timedelta | None) -> timedelta:
    """How long a claim stays exclusive: past the moment the owner's Lambda is surely dead."""
    return (remaining if remaining is not None else DEFAULT_REMAINING) + LEASE_MARGIN


def find_marked_backup(backups: Iterable[Backup], deployment_id: str, server_id: int) -> Backup | None:
    """The manual backup of ``server_id`` whose description carries ``deployment_id``'s marker.

    Should there be several (they can only come from outside this protocol), the oldest one is the
    deployment's backup: it is the one the first delivery made.
    """
    matches = [
        b for b in backups if b.server_id == server_id and b.is_manual and marker_matches(b.description, deployment_id)
    ]
    return min(matches, key=lambda b: (b.created_at, b.id)) if matches else None


# -- the table -----------------------------------------------------------------------------------


def _claim_sk(server_id: int) -> str:
    return f"{CLAIM_SK_PREFIX}{server_id}"


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _claim_from_item(item: dict[str, Any]) -> Claim:
    return Claim(
        deployment_id=str(item["deployment_id"]),
        server_id=int(item["server_id"]),
        state=item["state"],
        owner=str(item["owner"]),
        claimed_at=_time(item["claimed_at"]),
        lease_until=_time(item["lease_until"]),
        received_at=_time(item["received_at"]),
        attempts=int(item.get("attempts", 1)),
        backup_id=int(item["backup_id"]) if item.get("backup_id") is not None else None,
        backup_status=item.get("backup_status"),
        error=item.get("error"),
        settles_at=_time(item["settles_at"]) if item.get("settles_at") else None,
    )


def _meta_from_item(item: dict[str, Any]) -> DeploymentMeta:
    servers: Iterable[Decimal | int] = item.get("server_ids") or ()
    return DeploymentMeta(
        deployment_id=str(item["deployment_id"]),
        server_ids=tuple(sorted(int(s) for s in servers)),
        received_at=_time(item["received_at"]),
        last_received_at=_time(item["last_received_at"]),
        deliveries=int(item.get("deliveries", 1)),
        queued_at=_time(item["queued_at"]) if item.get("queued_at") else None,
    )


class ClaimStore:
    """The claim and meta items of backup on deploy; every method is one DynamoDB request."""

    def __init__(self, state: StateTable) -> None:
        self.table = state.table
        self._condition_failed = self.table.meta.client.exceptions.ConditionalCheckFailedException

    # -- meta --

    def register_deployment(self, deployment_id: str, server_ids: Iterable[int], now: datetime) -> DeploymentMeta:
        """Create or touch the meta item: add the servers, keep the FIRST receipt time."""
        response = self.table.update_item(
            Key={PK: deployment_pk(deployment_id), SK: META_SK},
            UpdateExpression=(
                "SET deployment_id = :d, received_at = if_not_exists(received_at, :now), "
                "last_received_at = :now, #e = :e ADD server_ids :servers, deliveries :one"
            ),
            ExpressionAttributeNames={"#e": TTL_ATTRIBUTE},
            ExpressionAttributeValues={
                ":d": deployment_id,
                ":now": utc_key_time(now),
                ":e": epoch(now + RECORD_TTL),
                ":servers": set(server_ids),
                ":one": 1,
            },
            ReturnValues="ALL_NEW",
        )
        return _meta_from_item(response["Attributes"])

    def mark_queued(self, deployment_id: str, now: datetime) -> None:
        """Some of the deployment's servers are (still) in the deploy queue, as of ``now``."""
        self.table.update_item(
            Key={PK: deployment_pk(deployment_id), SK: META_SK},
            UpdateExpression="SET queued_at = :now",
            ConditionExpression="attribute_exists(#pk)",
            ExpressionAttributeNames={"#pk": PK},
            ExpressionAttributeValues={":now": utc_key_time(now)},
        )

    def get_deployment(self, deployment_id: str) -> DeploymentMeta | None:
        """The deployment's ``meta`` item alone (one consistent read)."""
        item = self.table.get_item(Key={PK: deployment_pk(deployment_id), SK: META_SK}, ConsistentRead=True).get("Item")
        return _meta_from_item(item) if item else None

    def load_deployment(self, deployment_id: str) -> tuple[DeploymentMeta | None, dict[int, Claim]]:
        """The meta item and every claim of a deployment (one consistent query)."""
        meta: DeploymentMeta | None = None
        claims: dict[int, Claim] = {}
        items = paged_items(
            self.table.query, KeyConditionExpression=Key(PK).eq(deployment_pk(deployment_id)), ConsistentRead=True
        )
        for item in items:
            if item[SK] == META_SK:
                meta = _meta_from_item(item)
            elif str(item[SK]).startswith(CLAIM_SK_PREFIX):
                claim = _claim_from_item(item)
                claims[claim.server_id] = claim
        return meta, claims

    def iter_deployments(self) -> Iterator[DeploymentMeta]:
        """Every deployment's ``meta`` item. A scan of the whole table (filtered): for people's
        tools (``vpsbackup deployments``), never for the functions."""
        meta_items = Attr(SK).eq(META_SK) & Attr(PK).begins_with("deployment#")
        for item in paged_items(self.table.scan, FilterExpression=meta_items):
            yield _meta_from_item(item)

    # -- claims --

    def get(self, deployment_id: str, server_id: int) -> Claim | None:
        response = self.table.get_item(
            Key={PK: deployment_pk(deployment_id), SK: _claim_sk(server_id)}, ConsistentRead=True
        )
        item = response.get("Item")
        return _claim_from_item(item) if item else None

    def claim_new(
        self, deployment_id: str, server_id: int, *, owner: str, now: datetime, lease: timedelta, received_at: datetime
    ) -> Claim | None:
        """Claim a pair nobody has tried; None if another delivery got there first."""
        claim = Claim(
            deployment_id=deployment_id,
            server_id=server_id,
            state="claimed",
            owner=owner,
            claimed_at=now,
            lease_until=now + lease,
            received_at=received_at,
        )
        try:
            self.table.put_item(
                Item={
                    PK: deployment_pk(deployment_id),
                    SK: _claim_sk(server_id),
                    "deployment_id": deployment_id,
                    "server_id": server_id,
                    "state": "claimed",
                    "owner": owner,
                    "claimed_at": utc_key_time(now),
                    "lease_until": utc_key_time(claim.lease_until),
                    "received_at": utc_key_time(received_at),
                    "attempts": 1,
                    TTL_ATTRIBUTE: epoch(now + RECORD_TTL),
                },
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": PK},
            )
        except self._condition_failed:
            return None
        return claim

    def take_over(self, seen: Claim, *, owner: str, now: datetime, lease: timedelta) -> Claim | None:
        """Claim a pair whose last attempt failed, is unknown or whose owner died; compare-and-swap
        on the state and owner read in ``seen``. None if another delivery took it first."""
        condition = "#state = :seen_state AND #owner = :seen_owner"
        values: dict[str, Any] = {
            ":seen_state": seen.state,
            ":seen_owner": seen.owner,
            ":claimed": "claimed",
            ":owner": owner,
            ":now": utc_key_time(now),
            ":lease": utc_key_time(now + lease),
            ":one": 1,
        }
        if seen.state == "claimed":
            condition += " AND lease_until <= :now"
        try:
            self.table.update_item(
                Key={PK: deployment_pk(seen.deployment_id), SK: _claim_sk(seen.server_id)},
                UpdateExpression=(
                    "SET #state = :claimed, #owner = :owner, claimed_at = :now, lease_until = :lease "
                    "ADD attempts :one REMOVE #error"
                ),
                ConditionExpression=condition,
                ExpressionAttributeNames={"#state": "state", "#owner": "owner", "#error": "error"},
                ExpressionAttributeValues=values,
            )
        except self._condition_failed:
            return None
        return seen.model_copy(
            update={
                "state": "claimed",
                "owner": owner,
                "claimed_at": now,
                "lease_until": now + lease,
                "attempts": seen.attempts + 1,
                "error": None,
            }
        )

    def mark_created(self, claim: Claim, backup: Backup) -> bool:
        """Record the backup; False if ``claim.owner`` no longer holds the claim."""
        return self._finish(
            claim, "created", "SET backup_id = :b, backup_status = :s", {":b": backup.id, ":s": backup.status}
        )

    def mark_failed(self, claim: Claim, error: str) -> bool:
        """The API certainly did not create the backup: the next delivery may simply try again."""
        return self._finish(claim, "failed", "SET #error = :err", {":err": error[:1000]})

    def mark_unknown(self, claim: Claim, error: str) -> bool:
        """A POST's outcome is still unknown: the next delivery must list before it creates (and not
        create before ``claim.settles_at``, which is written when set)."""
        if claim.settles_at is None:
            return self._finish(claim, "unknown", "SET #error = :err", {":err": error[:1000]})
        return self._finish(
            claim,
            "unknown",
            "SET #error = :err, settles_at = :settles",
            {":err": error[:1000], ":settles": utc_key_time(claim.settles_at)},
        )

    def _finish(self, claim: Claim, state: ClaimState, update: str, values: dict[str, Any]) -> bool:
        names = {"#state": "state", "#owner": "owner"}
        if "#error" in update:
            names["#error"] = "error"
        try:
            self.table.update_item(
                Key={PK: deployment_pk(claim.deployment_id), SK: _claim_sk(claim.server_id)},
                UpdateExpression=f"{update}, #state = :state",
                ConditionExpression="#owner = :me AND #state = :claimed",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={**values, ":state": state, ":me": claim.owner, ":claimed": "claimed"},
            )
        except self._condition_failed:
            return False
        return True
