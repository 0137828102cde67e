"""What the console shows, as plain data: pure functions over the package's models.

Every read command prints one of these dicts with ``--json`` and a table made from the same dict
without it, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

from vpsbackup.deploy.claims import Claim, DeploymentMeta
from vpsbackup.durations import format_duration
from vpsbackup.markers import find_marker_token
from vpsbackup.provider.models import BACKUP_MANUAL, Backup
from vpsbackup.prune.plan import REASON_AUTOMATIC, BackupDecision
from vpsbackup.records import DeploymentRecord, Hold, JournalEntry


def age(now: datetime, then: datetime) -> str:
    """How long ago, in the duration grammar, to the minute under a day and to the hour above
    (``45m``, ``3h20m``, ``2w3d4h``); ``0s`` for the future."""
    seconds = int((now - then).total_seconds())
    if seconds <= 0:
        return "0s"
    if seconds < 60:
        return f"{seconds}s"
    unit = 3600 if seconds >= 86400 else 60
    return format_duration(timedelta(seconds=seconds - seconds % unit))


def deployment_of(description: str | None) -> str | None:
    """The deployment id in a backup's marker (None: not made by this project, or a long id's digest)."""
    token = find_marker_token(description)
    if token is None or token.startswith("sha256:"):
        return token
    return unquote(token)


def hold_view(hold: Hold, now: datetime) -> dict[str, Any]:
    return {
        "backup_id": hold.backup_id,
        "server_id": hold.server_id,
        "kind": hold.kind,
        "until": hold.until.isoformat(),
        "left": format_duration(hold.until - now),
        "reason": hold.reason,
        "placed_by": hold.placed_by,
        "placed_at": hold.placed_at.isoformat() if hold.placed_at else None,
    }


def prune_view(backup: Backup, decision: BackupDecision | None) -> dict[str, Any]:
    """What the prune function would do with the backup now, and why."""
    if decision is not None:
        return {"action": decision.action, "reasons": list(decision.reasons)}
    if backup.backup_type != BACKUP_MANUAL:
        # The prune function lists manual backups only: an automatic one is never a candidate.
        return {"action": "skip", "reasons": [REASON_AUTOMATIC]}
    return {"action": "skip", "reasons": ["not in the prune plan"]}


def backups_view(
    server_id: int,
    backups: Iterable[Backup],
    *,
    decisions: Mapping[int, BackupDecision],
    holds: Mapping[int, Sequence[Hold]],
    now: datetime,
    policy: str,
) -> dict[str, Any]:
    """One server's backups, newest first, each with its holds and what prune would do with it."""
    own = sorted((b for b in backups if b.server.id == server_id), key=lambda b: (b.created_at, b.id), reverse=True)
    rows = [
        {
            "backup_id": b.id,
            "server_id": b.server.id,
            "type": b.backup_type,
            "status": b.status,
            "created_at": b.created_at.isoformat(),
            "age": age(now, b.created_at),
            "size_mb": b.size_mb,
            "deployment_id": deployment_of(b.description),
            "description": b.description,
            "holds": [hold_view(h, now) for h in holds.get(b.id, ())],
            "prune": prune_view(b, decisions.get(b.id)),
        }
        for b in own
    ]
    return {"server_id": server_id, "now": now.isoformat(), "policy": policy, "backups": rows}


def holds_view(holds: Iterable[Hold], now: datetime, *, server_id: int | None = None) -> dict[str, Any]:
    """Holds in force, soonest to end first."""
    shown = sorted(
        (h for h in holds if h.until > now and (server_id is None or h.server_id == server_id)),
        key=lambda h: (h.until, h.backup_id, h.kind),
    )
    return {"now": now.isoformat(), "server_id": server_id, "holds": [hold_view(h, now) for h in shown]}


def entry_view(entry: JournalEntry) -> dict[str, Any]:
    return entry.model_dump(mode="json")


def history_view(entries: Iterable[JournalEntry], *, server_id: int | None, backup_id: int | None) -> dict[str, Any]:
    return {
        "server_id": server_id,
        "backup_id": backup_id,
        "entries": [entry_view(e) for e in entries],
    }


def deployment_records_view(server_id: int, records: Iterable[DeploymentRecord]) -> dict[str, Any]:
    rows = [
        {
            "deployment_id": r.deployment_id,
            "server_ids": [r.server_id],
            "received_at": r.received_at.isoformat(),
            "backup_ids": [r.backup_id] if r.backup_id is not None else [],
        }
        for r in sorted(records, key=lambda r: r.received_at, reverse=True)
    ]
    return {"server_id": server_id, "deployments": rows}


def deployment_metas_view(metas: Iterable[DeploymentMeta], claims: Mapping[str, Mapping[int, Claim]]) -> dict[str, Any]:
    rows = []
    for meta in sorted(metas, key=lambda m: m.received_at, reverse=True):
        of = claims.get(meta.deployment_id, {})
        rows.append(
            {
                "deployment_id": meta.deployment_id,
                "server_ids": list(meta.server_ids),
                "received_at": meta.received_at.isoformat(),
                "backup_ids": [c.backup_id for _, c in sorted(of.items()) if c.backup_id is not None],
            }
        )
    return {"server_id": None, "deployments": rows}


def status_view(
    meta: DeploymentMeta | None, claims: Mapping[int, Claim], live: Mapping[int, Backup | None], deployment_id: str
) -> dict[str, Any]:
    """A deployment's servers: the claim's state and the backup's live status from the API."""
    servers = sorted(set(meta.server_ids if meta else ()) | set(claims))
    rows = []
    for server_id in servers:
        claim = claims.get(server_id)
        backup_id = claim.backup_id if claim else None
        backup = live.get(server_id)
        rows.append(
            {
                "server_id": server_id,
                "claim": claim.state if claim else "not started",
                "backup_id": backup_id,
                "status": backup.status if backup is not None else ("missing" if backup_id is not None else None),
                "created_at": backup.created_at.isoformat() if backup is not None else None,
                "error": claim.error if claim else None,
            }
        )
    return {
        "deployment_id": deployment_id,
        "received_at": meta.received_at.isoformat() if meta else None,
        "deliveries": meta.deliveries if meta else None,
        "servers": rows,
    }
