"""The small cursor a prune run's state machine hands from one chunk to the next, and the plan's
stored form (pure: no I/O).

The cursor says which run, which phase, and how far the phase got (pages stored, the link to read
next, the requested server reached, the deletions reached); everything larger (the listing, the
plan, each deletion's outcome) is in ``StateTable`` (:mod:`vpsbackup.prune.run_store`). A chunk
retried with the same cursor redoes only what the cursor does not record as done, and what it
redoes writes the same items again.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vpsbackup.prune.compact import FleetPlan, PartialPlan
from vpsbackup.prune.plan import BackupDecision

Phase = Literal["list", "plan", "delete", "report", "done"]


class Cursor(BaseModel):
    """Where a run is; the state payload carries nothing larger (well under 1 KB)."""

    model_config = ConfigDict(extra="forbid")

    run: str
    phase: Phase
    # An incremental run (PRUNE_SCOPE=managed, no server_ids): its first chunk chose the servers due
    # and stored them (the run's items, ``selection``); the listing walks them, the report writes
    # back what the run left of each.
    incremental: bool = False
    # The execution that ran the last chunk, and its chunks: a new execution (continued as new)
    # counts from 0 again.
    execution: str = ""
    chunks: Annotated[int, Field(ge=0)] = 0
    execution_chunks: Annotated[int, Field(ge=0)] = 0
    # The listing: pages stored, the link to read next (None: the walk's first page), the
    # requested or due server whose walk is under way (a run limited to server_ids, or incremental).
    pages: Annotated[int, Field(ge=0)] = 0
    next: str | None = None
    server_index: Annotated[int, Field(ge=0)] = 0
    # Backups on the pages stored (a listing of more than PLAN_PART_BACKUPS is planned, and its
    # servers' state written back, a part of its servers at a time: ``parts`` of them, ``part``
    # the one under way; 0: not decided yet).
    rows: Annotated[int, Field(ge=0)] = 0
    part: Annotated[int, Field(ge=0)] = 0
    parts: Annotated[int, Field(ge=0)] = 0
    # A listing that could not be read to its end: why (nothing is planned).
    stopped: str | None = None
    # The deletions: how many of the plan's, in its order, are done; delete chunks in a row that
    # deleted none and were told to wait.
    deleted: Annotated[int, Field(ge=0)] = 0
    stalled: Annotated[int, Field(ge=0)] = 0
    # Seconds the state machine waits before the next chunk (the provider's Retry-After).
    wait_seconds: Annotated[int, Field(ge=0, le=86_400)] = 0
    # The execution has run its share of chunks: the state machine goes on in a new execution
    # (well before Step Functions' 25,000 history events).
    continue_as_new: bool = False
    done: bool = False
    note: str = ""


class ChunkEvent(BaseModel):
    """What the state machine sends the prune function: ``start`` (the run's request) or ``next``
    (the cursor), and the execution's id."""

    model_config = ConfigDict(extra="forbid")

    step: Literal["start", "next"]
    execution: str = Field(min_length=1)
    request: dict[str, Any] | None = None
    cursor: Cursor | None = None


def run_id(execution: str) -> str:
    """A run's id, the same for every attempt of the execution's first chunk (a retried start
    finds the lock its first attempt took as its own)."""
    return hashlib.sha256(execution.encode()).hexdigest()[:20]


def advance(cursor: Cursor, *, execution: str, **changes: Any) -> Cursor:
    """The cursor after one more chunk of ``execution`` (its chunk count restarts in a new one)."""
    same = cursor.execution == execution
    return cursor.model_copy(
        update={
            "execution": execution,
            "chunks": cursor.chunks + 1,
            "execution_chunks": (cursor.execution_chunks if same else 0) + 1,
            "wait_seconds": 0,
            "continue_as_new": False,
            **changes,
        }
    )


# -- the plan, stored -----------------------------------------------------------------------------


def decision_to_dict(decision: BackupDecision) -> dict[str, Any]:
    return decision.to_dict()


def decision_from_dict(data: dict[str, Any]) -> BackupDecision:
    return BackupDecision(
        backup_id=int(data["backup_id"]),
        server_id=int(data["server_id"]),
        created_at=datetime.fromisoformat(str(data["created_at"])),
        status=str(data["status"]),
        backup_type=str(data["backup_type"]),
        action=data["action"],
        reasons=tuple(str(r) for r in data["reasons"]),
    )


def plan_to_dict(plan: FleetPlan) -> dict[str, Any]:
    """Everything :class:`FleetPlan` holds, as JSON."""
    return {
        "now": plan.now.isoformat(),
        "scope": plan.scope,
        "max_deletions": plan.max_deletions,
        "servers": plan.servers,
        "to_delete": [decision_to_dict(d) for d in plan.to_delete],
        "deferred": [decision_to_dict(d) for d in plan.deferred],
        "deferred_count": plan.deferred_count,
        "totals": dict(plan.totals),
        "by_reason": [[action, reason, n] for (action, reason), n in plan.by_reason.items()],
        "decisions": None if plan.decisions is None else [decision_to_dict(d) for d in plan.decisions],
    }


def plan_from_dict(data: dict[str, Any]) -> FleetPlan:
    """:func:`plan_to_dict` read back: an equal plan."""
    decisions = data.get("decisions")
    return FleetPlan(
        now=datetime.fromisoformat(str(data["now"])),
        scope=data["scope"],
        max_deletions=int(data["max_deletions"]),
        servers=int(data["servers"]),
        to_delete=tuple(decision_from_dict(d) for d in data["to_delete"]),
        deferred=tuple(decision_from_dict(d) for d in data["deferred"]),
        deferred_count=int(data["deferred_count"]),
        totals={action: int(n) for action, n in data["totals"].items()},
        by_reason={(action, reason): int(n) for action, reason, n in data["by_reason"]},
        decisions=None if decisions is None else tuple(decision_from_dict(d) for d in decisions),
    )


def partial_to_dict(part: PartialPlan) -> dict[str, Any]:
    return {
        "servers": part.servers,
        "deletions": [decision_to_dict(d) for d in part.deletions],
        "would_delete": part.would_delete,
        "kept": part.kept,
        "skipped": part.skipped,
        "by_reason": [[action, reason, n] for (action, reason), n in part.by_reason.items()],
    }


def partial_from_dict(data: dict[str, Any]) -> PartialPlan:
    """:func:`partial_to_dict` read back: an equal part."""
    return PartialPlan(
        servers=int(data["servers"]),
        deletions=tuple(decision_from_dict(d) for d in data["deletions"]),
        would_delete=int(data["would_delete"]),
        kept=int(data["kept"]),
        skipped=int(data["skipped"]),
        by_reason={(action, reason): int(n) for action, reason, n in data["by_reason"]},
    )
