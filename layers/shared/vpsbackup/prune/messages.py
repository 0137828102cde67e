"""What people read after a prune run that needs a look: a deletion failed, the safety valve held,
the listing was incomplete or had items that did not validate.

Pure: :func:`needs_a_look` takes the run's request, plan, totals and the backups that failed or did
not start (each with its detail) and returns the notification's subject and text;
:func:`vpsbackup.prune.report_render.notification` decides whether one is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from vpsbackup.prune.compact import FleetPlan
from vpsbackup.prune.daily_budget import BudgetReport
from vpsbackup.prune.plan import BackupDecision
from vpsbackup.prune.request import PruneRequest

# Backups named one by one in a notification; the rest are counted.
NOTIFY_LIST_LIMIT = 20


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _backup_line(decision: BackupDecision, detail: str = "") -> str:
    line = f"- backup {decision.backup_id} of server {decision.server_id}, made {_when(decision.created_at)}"
    return f"{line}: {detail}" if detail else line


def _listed(lines: list[str]) -> list[str]:
    if len(lines) <= NOTIFY_LIST_LIMIT:
        return lines
    return [*lines[:NOTIFY_LIST_LIMIT], f"- … and {len(lines) - NOTIFY_LIST_LIMIT} more (see the function's log)"]


def _problems(
    plan: FleetPlan, *, failed: int, invalid: Mapping[str, Any] | None, budget: BudgetReport | None
) -> list[str]:
    """The subject's parts: what needs a look, in a few words each."""
    problems = []
    if failed:
        problems.append(f"{_plural(failed, 'deletion')} failed")
    if invalid and invalid["count"]:
        problems.append(
            f"{_plural(invalid['count'], 'listed item')} not valid, "
            f"{_plural(invalid['servers_left_alone_count'], 'server')} left alone"
        )
    if plan.valve_tripped:
        problems.append(f"safety valve held back {_plural(plan.deferred_count, 'deletion')}")
    if budget is not None and budget.error is not None:
        problems.append("daily deletion budget unreadable, nothing deleted")
    elif budget is not None and budget.held_back:
        problems.append(f"daily deletion budget held back {_plural(budget.held_back, 'deletion')}")
    return problems


def needs_a_look(
    request: PruneRequest,
    plan: FleetPlan,
    totals: Mapping[str, int],
    *,
    failed: Sequence[tuple[BackupDecision, str]],
    not_started: Sequence[tuple[BackupDecision, str]],
    invalid: Mapping[str, Any] | None = None,
    budget: BudgetReport | None = None,
) -> tuple[str, str]:
    """Subject and text; ``failed`` and ``not_started`` pair each backup with its outcome's detail
    (``not_started``: those the daily budget did not hold back); ``invalid`` is the report's
    ``invalid_items``; ``budget`` what ``MAX_DELETIONS_PER_DAY`` did."""
    subject = "VPS backup prune: " + ", ".join(_problems(plan, failed=len(failed), invalid=invalid, budget=budget))

    lines = [
        f"{_the_run(request)} at {_when(plan.now)} needs a look.",
        "",
        f"Deleted {_plural(totals['deleted'] + totals['already_gone'], 'backup')}"
        + (f" ({totals['already_gone']} of them were already gone)" if totals["already_gone"] else "")
        + f", kept {totals['kept']} that the retention policy keeps, left alone {totals['skipped']} "
        "(automatic backups, backups made by people or still in progress).",
    ]
    if failed:
        lines += [
            "",
            f"{_plural(len(failed), 'backup')} could not be deleted. They are still there and the next run will "
            "try again; if this repeats, check the provider's status and the API token:",
            *_listed([_backup_line(d, detail) for d, detail in failed]),
        ]
    if plan.valve_tripped:
        lines += [
            "",
            f"Safety valve: one run deletes at most {plan.max_deletions} backups (MAX_DELETIONS_PER_RUN), and the "
            f"retention policy wanted {plan.max_deletions + plan.deferred_count} deletions. The oldest "
            f"{plan.max_deletions} went first; the {plan.deferred_count} others wait for the next runs. "
            "This is expected the first time prune runs or after the policy was tightened. If neither happened, "
            "check RETENTION_POLICY before raising the limit: a policy that keeps too little looks like this.",
        ]
    if budget is not None and budget.held_back:
        lines += ["", _budget_line(budget)]
    if invalid and invalid["count"]:
        lines += ["", *_invalid_lines(invalid)]
    if not_started:
        lines += [
            "",
            f"{_plural(len(not_started), 'deletion')} did not start ({not_started[0][1]}); the next run picks them up.",
        ]
    return subject, "\n".join(lines)


def _budget_line(budget: BudgetReport) -> str:
    """What people read when ``MAX_DELETIONS_PER_DAY`` held deletions back."""
    if budget.error is not None:
        return (
            f"Daily deletion budget: it could not be read or written ({budget.error}), so none of the "
            f"{budget.asked} planned deletions was sent. The next run tries again; if this repeats, check "
            "the function's access to StateTable."
        )
    if budget.frees_at is None:
        return (
            f"Daily deletion budget: MAX_DELETIONS_PER_DAY is {budget.limit}, so none of the {budget.asked} "
            "planned deletions was sent."
        )
    return (
        f"Daily deletion budget: at most {budget.limit} deletions are sent in any 24 hours "
        f"(MAX_DELETIONS_PER_DAY). This run sent {budget.granted} of its {budget.asked}, the oldest first; "
        f"the {budget.held_back} others wait for a later run (the next slot frees at {_when(budget.frees_at)}). "
        "If the policy was not just tightened, check RETENTION_POLICY before raising the budget."
    )


def _invalid_lines(invalid: Mapping[str, Any]) -> list[str]:
    """What people read about the listed items that did not validate (the report's ``invalid_items``)."""
    count, servers = invalid["count"], invalid["servers_left_alone"]
    left = invalid["servers_left_alone_count"]
    named = ", ".join(str(s) for s in servers) + (f" and {left - len(servers)} more" if left > len(servers) else "")
    items = [
        f"- backup {i['backup_id'] if i['backup_id'] is not None else '(no readable id)'}"
        f" of server {i['server_id'] if i['server_id'] is not None else '(none readable)'}: {i['reason']}"
        for i in invalid["items"]
    ]
    if count > len(items):
        items.append(f"- … and {count - len(items)} more (see the function's log)")
    return [
        f"{_plural(count, 'listed item')} did not validate. Each was skipped: never deleted, never restored"
        + (f"; {_plural(left, 'server')} whose listing misses one of them left alone this run: {named}" if left else "")
        + ". The other servers were pruned. Ask the provider about these items:",
        *items,
    ]


def _the_run(request: PruneRequest) -> str:
    """``The scheduled prune of manual VPS backups for servers 1, 2``, as a sentence's subject."""
    what = "The scheduled prune" if request.trigger != "manual" else "A prune run started by hand"
    scope = " for servers " + ", ".join(str(s) for s in request.server_ids) if request.server_ids else ""
    return f"{what} of manual VPS backups{scope}"


def listing_incomplete(request: PruneRequest, now: datetime, progress: Mapping[str, Any]) -> tuple[str, str]:
    """Subject and text for a run whose listing could not be followed to its end (its pagination)."""
    subject = "VPS backup prune: listing incomplete, nothing deleted"
    lines = [
        f"{_the_run(request)} at {_when(now)} could not list the backups to the end.",
        "",
        f"It read {progress['listed']:,} backups in {progress['pages']:,} pages, then stopped: {progress['stopped']}.",
        "Nothing was deleted: a plan made on part of the listing could delete what the rest would keep. "
        "The next run lists afresh, and will stop the same way until the provider's pagination is fixed: "
        "every next link must repeat no page and keep the scheme, host and port of VPS_API_BASE_URL.",
    ]
    return subject, "\n".join(lines)


def listing_out_of_time(request: PruneRequest, now: datetime, progress: Mapping[str, Any]) -> tuple[str, str]:
    """Subject and text for a run whose listing did not finish inside the invocation's time."""
    listed, expected, pages = progress["listed"], progress.get("expected"), progress["pages"]
    how_far = f"{listed:,} of {expected:,} backups" if expected else f"{listed:,} backups"
    if expected:
        how_far += f" ({100 * listed // max(expected, 1)}%)"
    subject = "VPS backup prune: out of time while listing, nothing deleted"
    lines = [
        f"{_the_run(request)} at {_when(now)} ran out of time while listing the backups.",
        "",
        f"It listed {how_far} in {pages:,} pages in {progress['seconds']:,.0f} s, then stopped: "
        f"{progress.get('stopped') or 'out of time'}.",
        "Nothing was deleted: a plan made on part of the listing could delete what the rest would keep. "
        "The next run starts the listing afresh, and will stop the same way while the fleet stays this large.",
        "",
        "To make the listing fit one run: larger pages (VPS_API_PAGE_SIZE, if the provider allows them), "
        "more requests per second (VPS_API_MAX_RPS, if the provider's limit allows it), or a longer function "
        "timeout (at most 15 minutes).",
    ]
    return subject, "\n".join(lines)
