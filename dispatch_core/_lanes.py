"""Per-server FIFO queues that never hold more than `max_in_flight` jobs on a peer.

A pool sends each job to the lane that will start it soonest: the jobs ahead of it, here
and in the peer's own queue, times that server's observed seconds per job.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import Sequence

from .config import ServerConfig

_EWMA_WEIGHT = 0.3


class Lane:
    """One server's slots: a fair (FIFO) semaphore plus what we learned about its speed."""

    def __init__(self, server: ServerConfig):
        self.server = server
        self.in_flight = 0
        self.external_queue = 0
        """Prompts in the peer's queue that are not ours."""
        self.seconds_per_job: float | None = None
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    async def acquire(self) -> None:
        if self.in_flight < self.server.max_in_flight and not self.waiting:
            self.in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed to us just as we gave up
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; in_flight is unchanged
                return
        self.in_flight -= 1

    def record_duration(self, seconds: float) -> None:
        if self.seconds_per_job is None:
            self.seconds_per_job = seconds
        else:
            self.seconds_per_job += _EWMA_WEIGHT * (seconds - self.seconds_per_job)

    def expected_start(self, default_seconds: float) -> float:
        """Seconds until a job joining now would start here."""
        capacity = self.server.max_in_flight
        ahead = self.waiting + self.in_flight + self.external_queue
        rounds = math.ceil(max(ahead - capacity + 1, 0) / capacity)
        speed = self.seconds_per_job if self.seconds_per_job is not None else default_seconds
        return rounds * speed / self.server.weight


def pick_lane(lanes: Sequence[Lane]) -> Lane:
    """The lane that will start a new job soonest; ties go to the least loaded, then order."""
    known = [lane.seconds_per_job for lane in lanes if lane.seconds_per_job is not None]
    default = sum(known) / len(known) if known else 1.0

    def score(item: tuple[int, Lane]) -> tuple[float, float, int]:
        index, lane = item
        load = (lane.in_flight + lane.waiting) / lane.server.max_in_flight
        return (lane.expected_start(default), load / lane.server.weight, index)

    return min(enumerate(lanes), key=score)[1]
