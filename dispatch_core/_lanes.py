"""Per-server slots that never let more than `max_in_flight` jobs onto a peer.

A lane is one server's slots, the jobs waiting in turn for them, and what its jobs showed
of it: failures, and what it holds and what its jobs cost (`Residency`). Which waiting job
takes a slot that frees is the scheduler's decision (`_scheduler`): the lane only tells it.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Callable, Sequence

from ._residency import Booking, Residency
from .config import ServerConfig

__all__ = ["Lane", "Waiter", "preferred"]

_TRIP_AFTER = 3
"""Consecutive failures that mark a server offline."""
_FIRST_COOLDOWN = 1.0
_MAX_COOLDOWN = 30.0


_arrivals = itertools.count()


def arrival() -> int:
    """The next place in the order of arrival. A job takes it when it is made, so that it
    takes a slot in that order, however long its own lookups took before it asked."""
    return next(_arrivals)


def insert_in_order(waiters: collections.deque[Waiter] | list[Waiter], waiter: Waiter) -> None:
    """Put `waiter` after every earlier arrival: at the end, unless one that came later
    asked first."""
    index = len(waiters)
    while index and waiters[index - 1].order > waiter.order:
        index -= 1
    waiters.insert(index, waiter)


class Waiter:
    """A job waiting for a slot on one of its lanes, and the models it would use."""

    __slots__ = ("booking", "future", "lanes", "models", "nodes", "order", "planned")

    def __init__(
        self,
        lanes: Sequence[Lane],
        models: frozenset[str],
        order: int,
        planned: bool = True,
        nodes: int = 1,
    ):
        self.future: asyncio.Future[Lane] = asyncio.get_running_loop().create_future()
        self.lanes = lanes
        """The caller's own sequence, not a copy: thousands of jobs may wait at once."""
        self.models = models
        self.nodes = nodes
        """Nodes of its workflow: how much of a server's result cache it fills."""
        self.order = order
        """Its place in the order of arrival."""
        self.planned = planned and bool(models)
        """It waits for the plan (it names models and affinity is on), not in turn."""
        self.booking: Booking | None = None
        """Made on the lane it was granted, the moment it was granted."""


class Lane:
    """One server's slots, the jobs waiting in turn for them, and what we learned of it."""

    def __init__(self, server: ServerConfig, on_free: Callable[[], None] = lambda: None):
        self.server = server
        self.on_free = on_free
        """Called when a slot frees: the scheduler hands it on."""
        self.in_flight = 0
        self.external_queue = 0
        """Prompts in the peer's queue that are not ours."""
        self.failures = 0
        """Consecutive failures of this server; a success resets it."""
        self.retry_at = 0.0
        """While tripped, the `time.monotonic()` before which no job should try it."""
        self.calibrated: float | None = None
        """Seconds per job measured by a calibration run; a speed known before any job."""
        self.residency = Residency()
        """What the server holds and what its jobs cost it."""
        self.planned = 0
        """Jobs waiting for the scheduler's plan that may run here."""
        self._waiters: collections.deque[Waiter] = collections.deque()

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def loaded(self) -> frozenset[str]:
        """The model files the server holds, as far as its jobs show."""
        return self.residency.held

    @property
    def seconds_per_job(self) -> float | None:
        """Its time for a job whose models are loaded (loading time left out)."""
        return self.residency.run_seconds

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.future.done()) + self.planned

    def has_free_slot(self) -> bool:
        return self.in_flight < self.server.max_in_flight

    def queue(self, waiter: Waiter) -> None:
        """Wait in turn for a slot here (the job may wait on other lanes as well)."""
        insert_in_order(self._waiters, waiter)

    def first_waiting(self) -> Waiter | None:
        """The job that has waited longest in turn here, if any still waits."""
        while self._waiters and self._waiters[0].future.done():
            self._waiters.popleft()  # granted by another lane, or given up
        return self._waiters[0] if self._waiters else None

    def release(self) -> None:
        """Give the slot back; the scheduler hands it to a waiting job."""
        self.in_flight -= 1
        self.on_free()

    def grant_free_slots(self) -> None:
        """After `max_in_flight` grew: hand the new slots to waiting jobs."""
        self.on_free()

    @property
    def tripped(self) -> bool:
        """The circuit breaker is open: the server failed too often in a row."""
        return self.failures >= _TRIP_AFTER

    def record_failure(self, now: float) -> None:
        self.failures += 1
        if self.tripped:
            cooldown = _FIRST_COOLDOWN * 2 ** (self.failures - _TRIP_AFTER)
            self.retry_at = now + min(cooldown, _MAX_COOLDOWN)

    def record_success(self) -> None:
        self.failures = 0
        self.retry_at = 0.0


def speeds(lanes: Sequence[Lane]) -> dict[Lane, float]:
    """Expected seconds per warm job on each lane: measured there, else calibrated, else
    what the others measured (weighted), else guessed from cold first jobs."""
    warm = [s for lane in lanes if (s := lane.seconds_per_job) is not None]
    guessed = [s for lane in lanes if (s := lane.residency.run_guess) is not None]
    others = warm or guessed
    mean = sum(others) / len(others) if others else 1.0
    found = {}
    for lane in lanes:
        measured = lane.seconds_per_job
        if measured is None and lane.calibrated is not None:
            measured = lane.calibrated / lane.server.weight
        if measured is None and not warm:
            measured = lane.residency.run_guess
        found[lane] = measured if measured is not None else mean / lane.server.weight
    return found


def preferred(lanes: Sequence[Lane]) -> list[Lane]:
    """Lanes in the order a job takes a free one: least foreign work queued, then fastest,
    then config order."""
    speed = speeds(lanes)

    def score(item: tuple[int, Lane]) -> tuple[float, float, int]:
        index, lane = item
        return (lane.external_queue * speed[lane], speed[lane], index)

    return [lane for _, lane in sorted(enumerate(lanes), key=score)]
