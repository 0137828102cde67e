"""The deletion budget per 24 hours (``MAX_DELETIONS_PER_DAY``), on top of the per-run safety valve.

The rule is a rolling window: at most ``limit`` deletions sent in any 24 hours, whatever the number
of runs (scheduled, by hand, several at once). The state is the list of the instants at which the
deletions of the last 24 hours were sent (at most ``limit`` of them), with a ``version`` that each
write moves on; a run takes its slots before it sends any deletion, with one compare-and-swap write
(:class:`DailyDeletionBudget`, the store behind :class:`BudgetStore`: ``StateTable`` in the function,
:mod:`vpsbackup.prune.state_store`; memory in tests). Two runs racing for the last slots never get
more than the budget between them: the second write fails on the version and reads again.

Counted: every deletion a run sends (one that failed or found the backup already gone too: it may
have deleted it). A slot taken for a deletion that was not sent (out of time, held since the plan)
is given back. Fail safe: a budget that cannot be read or written lets no deletion through.

Pure: :func:`take` and :func:`give_back` decide; :class:`DailyDeletionBudget` only loops on the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

WINDOW = timedelta(hours=24)
# Compare-and-swap attempts before a run gives up (and deletes nothing).
SWAP_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class BudgetState:
    """The instants (UNIX seconds, oldest first) of the deletions sent in the window, and a version."""

    sent: tuple[float, ...] = ()
    version: int = 0


@dataclass(frozen=True, slots=True)
class Taken:
    """What :func:`take` decided: ``granted`` slots (of ``asked``), the state to write, and when the
    next slot frees when fewer were granted than asked (None: never, the limit is 0)."""

    asked: int
    granted: int
    state: BudgetState
    frees_at: datetime | None


def stamp(moment: datetime) -> float:
    """An instant as the state keeps it: UNIX seconds to the millisecond (exact through a store)."""
    return round(moment.timestamp(), 3)


def _window(sent: tuple[float, ...], now: datetime) -> tuple[float, ...]:
    start = (now - WINDOW).timestamp()
    return tuple(sorted(t for t in sent if t > start))


def take(state: BudgetState, *, asked: int, limit: int, now: datetime) -> Taken:
    """Up to ``asked`` slots at ``now`` under ``limit`` deletions per 24 hours.

    A deletion sent exactly 24 hours before ``now`` no longer counts. ``frees_at`` is when the oldest
    counted deletion leaves the window (the next slot), when the budget fell short.
    """
    if asked < 0 or limit < 0:
        raise ValueError(f"asked and limit must be >= 0, got {asked} and {limit}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    sent = _window(state.sent, now)
    granted = max(0, min(asked, limit - len(sent)))
    after = tuple(sorted(sent + (stamp(now),) * granted))
    frees_at = None
    if granted < asked and limit > 0:
        frees_at = datetime.fromtimestamp(after[-limit], UTC) + WINDOW
    return Taken(asked, granted, BudgetState(after, state.version + 1), frees_at)


def give_back(state: BudgetState, *, at: float, count: int) -> BudgetState:
    """``state`` without ``count`` of the slots taken at ``at`` (deletions that were not sent)."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    sent = list(state.sent)
    for _ in range(count):
        if at not in sent:
            break
        sent.remove(at)
    return BudgetState(tuple(sent), state.version + 1)


class BudgetStore(Protocol):
    """Where the state lives; any exception means the budget is unknown (nothing is deleted)."""

    def read(self) -> BudgetState:
        """The current state (the empty one when nothing was written yet)."""
        ...

    def swap(self, new: BudgetState, *, expected_version: int) -> bool:
        """Write ``new`` if the stored version is still ``expected_version``; False if it moved on."""
        ...


class BudgetUnavailableError(Exception):
    """The budget could not be read or written: no deletion may be sent."""


@dataclass(frozen=True, slots=True)
class Reservation:
    """The slots a run holds: ``granted`` of ``asked``, taken at ``at`` (UNIX seconds)."""

    limit: int
    asked: int
    granted: int
    at: float
    frees_at: datetime | None

    @property
    def short(self) -> bool:
        return self.granted < self.asked


class DailyDeletionBudget:
    """``MAX_DELETIONS_PER_DAY`` over a :class:`BudgetStore`."""

    def __init__(self, store: BudgetStore, limit: int, *, clock: Callable[[], datetime] | None = None) -> None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.store = store
        self.limit = limit
        self._clock = clock or (lambda: datetime.now(UTC))

    def reserve(self, asked: int) -> Reservation:
        """Take up to ``asked`` slots; raises :class:`BudgetUnavailableError` when the store fails or
        keeps moving (then nothing may be deleted)."""
        now = self._clock()
        if asked == 0:
            return Reservation(self.limit, 0, 0, stamp(now), None)
        for _ in range(SWAP_ATTEMPTS):
            try:
                state = self.store.read()
                taken = take(state, asked=asked, limit=self.limit, now=now)
                if taken.granted == 0 or self.store.swap(taken.state, expected_version=state.version):
                    return Reservation(self.limit, asked, taken.granted, stamp(now), taken.frees_at)
            except Exception as exc:
                raise BudgetUnavailableError(f"{type(exc).__name__}: {exc}") from exc
        raise BudgetUnavailableError(f"the budget kept changing under {SWAP_ATTEMPTS} attempts")

    def release(self, reservation: Reservation, count: int) -> bool:
        """Give back ``count`` of ``reservation``'s slots (deletions not sent). False when it could not:
        the slots then stay counted (the budget only gets stricter)."""
        if count <= 0:
            return True
        for _ in range(SWAP_ATTEMPTS):
            try:
                state = self.store.read()
                if self.store.swap(give_back(state, at=reservation.at, count=count), expected_version=state.version):
                    return True
            except Exception:
                return False
        return False


@dataclass(frozen=True, slots=True)
class BudgetReport:
    """What the budget did to one run's deletions: ``granted`` of ``asked`` could be sent under
    ``limit`` per 24 hours; the next slot frees at ``frees_at``; ``error`` when the budget could not be
    read or written (then nothing was sent)."""

    limit: int
    asked: int
    granted: int
    frees_at: datetime | None = None
    error: str | None = None

    @classmethod
    def of(cls, reservation: Reservation) -> BudgetReport:
        return cls(reservation.limit, reservation.asked, reservation.granted, reservation.frees_at)

    @property
    def held_back(self) -> int:
        """Deletions the budget kept from being sent this run."""
        return self.asked - self.granted

    def reason(self) -> str:
        """Why a deletion was not sent, in words (each held-back deletion's detail)."""
        if self.error is not None:
            return f"daily deletion budget unreadable ({self.error}): not deleted; the next run tries again"
        if self.frees_at is None:
            return f"daily deletion budget: MAX_DELETIONS_PER_DAY is {self.limit}; not deleted"
        when = self.frees_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return (
            f"daily deletion budget: {self.limit} deletions in 24 hours reached (MAX_DELETIONS_PER_DAY); "
            f"the next slot frees at {when}; a later run picks it up"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "limit": self.limit,
            "asked": self.asked,
            "granted": self.granted,
            "held_back": self.held_back,
            "frees_at": self.frees_at.isoformat() if self.frees_at else None,
            "error": self.error,
        }
