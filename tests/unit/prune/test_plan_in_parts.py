"""A listing planned, and written back, a part of its servers at a time (prune/chunks.py, a run of
more than PLAN_PART_BACKUPS backups) decides exactly as the whole listing does: read through the
run store's filtered path (``PruneRunStore.pages(run, keep)``), each part's would-be deletions
through their stored form, merged under the valve; every part counts the whole listing's progress;
the write-back in parts writes the same states and the same summary."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from boto3.dynamodb.types import Binary
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.prune.strategies import policies
from tests.unit.prune.test_compact_plan import NOW, STATUSES, TYPES, backup, backup_copy_on
from vpsbackup.provider.models import Backup, BackupPage, InvalidItem
from vpsbackup.prune import job
from vpsbackup.prune.chunks import _FIRST, read_listing
from vpsbackup.prune.compact import merge_plans, plan_part, server_part
from vpsbackup.prune.cursor import partial_from_dict, partial_to_dict, plan_to_dict
from vpsbackup.prune.incremental import RunHistory, ServerState
from vpsbackup.prune.incremental_run import listed_from, write_back_history, write_back_servers
from vpsbackup.prune.job import DeletionResult, PruneOptions, PruneReport, plan_listing, without_servers_left_alone
from vpsbackup.prune.request import PruneRequest
from vpsbackup.prune.retention import RetentionPolicies
from vpsbackup.prune.run_store import SK, PruneRunStore
from vpsbackup.records import Hold


class StoredItems(PruneRunStore):
    """The run store over items in memory (its own reading of them: the filtered path included)."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def _query(self, run: str, prefix: str) -> Iterator[dict[str, Any]]:
        return iter(self.items)


class Holds:
    def __init__(self, holds: Mapping[int, Hold]) -> None:
        self.holds = holds

    def active_holds(self, now: datetime) -> Mapping[int, Hold]:
        return self.holds

    def active_hold(self, backup_id: int, now: datetime) -> Hold | None:
        return self.holds.get(backup_id)


class States:
    """The state store in memory: what was written."""

    def __init__(self) -> None:
        self.put: dict[int, ServerState] = {}
        self.forget: list[int] = []
        self.history: RunHistory | None = None

    def load(self) -> tuple[dict[int, ServerState], RunHistory]:
        return dict(self.put), RunHistory()

    def save(self, put: Any, *, forget: Any = (), history: RunHistory | None = None) -> None:
        self.put.update({state.server_id: state for state in put})
        self.forget += [server_id for server_id, _ in forget]
        self.history = history or self.history


@st.composite
def fleets(draw: st.DrawFn) -> tuple[int, list[Backup]]:
    """Up to 12 servers' copies: backups listed again alike, with other data, or under another server."""
    servers = draw(st.integers(1, 12))
    listed: list[Backup] = []
    for backup_id in draw(st.lists(st.integers(1, 400), unique=True, max_size=60)):
        item = backup(
            backup_id,
            draw(st.integers(1, servers)),
            hours=draw(st.integers(0, 24 * 40)),
            status=draw(st.sampled_from(STATUSES)),
            backup_type=draw(st.sampled_from(TYPES)),
            managed=draw(st.booleans()),
        )
        listed.append(item)
        again = draw(st.sampled_from(["no"] * 4 + ["same", "changed", "moved", "moved"]))
        if again == "same":
            listed.append(item)
        elif again == "changed":
            listed.append(item.model_copy(update={"status": draw(st.sampled_from(STATUSES)), "size_mb": None}))
        elif again == "moved":
            listed.append(backup_copy_on(item, draw(st.integers(1, servers))))
    return servers, draw(st.permutations(listed))


def stored_pages(
    data: st.DataObject, listed: list[Backup], servers: int, walks: list[int] | None
) -> tuple[list[dict[str, Any]], int]:
    """The run's stored pages of the fleet's walk or of each server's (a page now and then with an
    invalid item), perhaps a page an attempt cut short left past the last; and how many pages."""
    items: list[dict[str, Any]] = []

    def store(page: BackupPage, url: str, walk: int | None) -> None:
        item = {SK: f"page#{len(items) + 1:08d}", "url": url}
        item["page"] = Binary(zlib.compress(page.model_dump_json().encode()))
        items.append(item if walk is None else {**item, "walk_server": walk})

    for walk in walks or [None]:
        backups = [b for b in listed if walk is None or b.server_id == walk or data.draw(st.integers(0, 20)) == 0]
        size = data.draw(st.integers(1, 7))
        for k, start in enumerate(range(0, max(1, len(backups)), size)):
            invalid = [InvalidItem(backup_id=999, server_id=data.draw(st.integers(1, servers)), reason="bad")]
            page = BackupPage(
                count=len(backups) if k == 0 else None,
                previous=None if k == 0 else "previous",
                results=backups[start : start + size],
                invalid=invalid if data.draw(st.integers(0, 15)) == 0 else [],
            )
            store(page, _FIRST if k == 0 else f"link-{walk}-{k}", walk)
    pages = len(items)
    if data.draw(st.booleans()):  # written by an attempt cut short, past the last page
        stale = backup(7777, 1, 3, status="completed", backup_type="manual", managed=True)
        store(BackupPage(results=[stale]), "stale", None)
    return items, pages


@given(data=st.data())
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
def test_a_listing_planned_and_written_back_in_parts_decides_as_the_whole(
    data: st.DataObject, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given stored pages of a fleet's walk or of some servers' walks (some failed), holds, settings,
    # a plan made lean (as a listing in parts always is), and a number of parts
    monkeypatch.setattr(job, "FULL_PLAN_LIMIT", -1)
    servers, listed = data.draw(fleets())
    walks = sorted(set(data.draw(st.lists(st.integers(1, servers), min_size=1)))) if data.draw(st.booleans()) else None
    items, expected = stored_pages(data, listed, servers, walks)
    store = StoredItems(items)

    def pages(keep: Any) -> Any:
        return store.pages("run", keep)

    held = data.draw(st.lists(st.integers(1, 400), max_size=5))
    holds = {b: Hold(backup_id=b, server_id=1, until=NOW + timedelta(hours=5)) for b in held}
    options = PruneOptions(
        policies=RetentionPolicies(data.draw(policies()), {2: data.draw(policies())}),
        tz=UTC,
        scope=data.draw(st.sampled_from(["managed", "manual"])),
        failed_grace=timedelta(hours=24),
        max_deletions=data.draw(st.integers(0, 8)),
        concurrency=1,
        dry_run=True,
        keep_at_least=data.draw(st.integers(1, 3)),
    )
    failed = {sid: "unreachable" for sid in data.draw(st.lists(st.integers(1, servers), max_size=2))} if walks else {}
    planned = None if walks is None else frozenset(walks) - failed.keys()
    parts = data.draw(st.integers(2, 6))

    # When it is planned whole, and a part at a time (each part's would-be deletions stored and read back)
    whole = read_listing(pages, expected, walks)
    assert whole.problem is None
    request = PruneRequest()
    plan = plan_listing(
        whole.listing, whole.progress, planned, request, options, holds=Holds(holds), now=NOW, timings={}
    )
    partials = []
    for part in range(parts):
        piece = read_listing(pages, expected, walks, part, parts)
        assert piece.problem is None
        # ... every part counts the whole listing's progress
        assert piece.progress.to_stored() == whole.progress.to_stored()
        ours = without_servers_left_alone(piece.listing, planned, piece.progress.invalid)
        made = plan_part(piece.listing, options.plan_inputs(now=NOW, holds=holds), server_ids=ours)
        partials.append(partial_from_dict(partial_to_dict(made)))
    merged = merge_plans(partials, now=NOW, scope=options.scope, max_deletions=options.max_deletions)

    # Then the plans are the same (their counts by reason stored in another order)
    assert merged == plan
    assert sorted(map(tuple, plan_to_dict(merged)["by_reason"])) == sorted(map(tuple, plan_to_dict(plan)["by_reason"]))

    # ... and written back whole and a part at a time, the states and the summary are the same
    report = PruneReport(
        request=request,
        dry_run=True,
        listing="fleet" if walks is None else "per-server",
        listed=whole.progress.listed,
        plan=plan,
        results=tuple(DeletionResult(d.backup_id, "dry_run") for d in plan.to_delete),
        progress=whole.progress,
    )
    known = data.draw(st.lists(st.integers(1, servers + 3), max_size=6))
    states = {sid: ServerState(server_id=sid, listed_at=NOW - timedelta(days=1)) for sid in known}
    everything = listed_from(whole.listing, whole.progress, walks, failed)
    args: dict[str, Any] = {"options": options, "holds": holds, "now": NOW, "listed_at": NOW}
    at_once, in_parts = States(), States()
    written = [write_back_servers(report, everything, store=at_once, states=states, **args)]
    by_part = []
    for part in range(parts):
        piece = read_listing(pages, expected, walks, part, parts)
        servers_listed = listed_from(piece.listing, piece.progress, walks, failed)
        mine = [sid for sid in servers_listed.servers if server_part(sid, parts) == part]
        ours_states = {sid: state for sid, state in states.items() if server_part(sid, parts) == part}
        ours = dataclasses.replace(servers_listed, servers=mine)
        by_part.append(write_back_servers(report, ours, store=in_parts, states=ours_states, **args))
    assert in_parts.put == at_once.put
    assert sorted(in_parts.forget) == sorted(at_once.forget)
    finish: dict[str, Any] = {"history": RunHistory(), "request": request, "chosen": {"selected": len(walks or [])}}
    one = write_back_history(report, everything, written, store=at_once, listed_at=NOW, **finish)
    other = write_back_history(report, everything, by_part, store=in_parts, listed_at=NOW, **finish)
    assert one.selection == other.selection
    assert in_parts.history == at_once.history
