"""Per-server FIFO slots that never let more than `max_in_flight` jobs onto a peer.

A job of a pool waits on every server of the pool at once and takes the first slot that
frees, so a fast GPU is never left idle behind a slow one. When several slots are free
already, it takes the server expected to start and finish it soonest.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence

from .config import ServerConfig

_EWMA_WEIGHT = 0.3
_TRIP_AFTER = 3
"""Consecutive failures that mark a server offline."""
_FIRST_COOLDOWN = 1.0
_MAX_COOLDOWN = 30.0


class Lane:
    """One server's slots, the jobs waiting for them, and what we learned of its speed."""

    def __init__(self, server: ServerConfig):
        self.server = server
        self.in_flight = 0
        self.external_queue = 0
        """Prompts in the peer's queue that are not ours."""
        self.seconds_per_job: float | None = None
        self.failures = 0
        """Consecutive failures of this server; a success resets it."""
        self.retry_at = 0.0
        """While tripped, the `time.monotonic()` before which no job should try it."""
        self._waiters: collections.deque[asyncio.Future[Lane]] = collections.deque()

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    def has_free_slot(self) -> bool:
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()  # granted by another lane, or given up
        return self.in_flight < self.server.max_in_flight and not self._waiters

    def release(self) -> None:
        """Hand the slot to the longest-waiting job, or give it back."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(self)  # the slot passes on; in_flight is unchanged
                return
        self.in_flight -= 1

    def grant_free_slots(self) -> None:
        """After `max_in_flight` grew: hand the new slots to waiting jobs."""
        while self._waiters and self.in_flight < self.server.max_in_flight:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(self)

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

    def record_duration(self, seconds: float) -> None:
        if self.seconds_per_job is None:
            self.seconds_per_job = seconds
        else:
            self.seconds_per_job += _EWMA_WEIGHT * (seconds - self.seconds_per_job)


async def acquire(lanes: Sequence[Lane]) -> Lane:
    """A slot on one of `lanes`: a free one now, else the first to free up (FIFO)."""
    free = [lane for lane in lanes if lane.has_free_slot()]
    if free:
        lane = _best(free)
        lane.in_flight += 1
        return lane
    waiter: asyncio.Future[Lane] = asyncio.get_running_loop().create_future()
    for lane in lanes:
        lane._waiters.append(waiter)
    try:
        return await waiter
    except BaseException:
        if waiter.done() and not waiter.cancelled():
            waiter.result().release()  # a slot was handed over just as we gave up
        raise


def _best(lanes: Sequence[Lane]) -> Lane:
    """Among free lanes: least foreign work queued, then fastest, then config order."""
    known = [lane.seconds_per_job for lane in lanes if lane.seconds_per_job is not None]
    default = sum(known) / len(known) if known else 1.0

    def score(item: tuple[int, Lane]) -> tuple[float, float, int]:
        index, lane = item
        speed = (lane.seconds_per_job or default) / lane.server.weight
        return (lane.external_queue * speed, speed, index)

    return min(enumerate(lanes), key=score)[1]
