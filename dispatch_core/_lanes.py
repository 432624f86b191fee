"""Per-server FIFO slots that never let more than `max_in_flight` jobs onto a peer.

A job of a pool waits on every server of the pool at once and takes the first slot that
frees, so a fast GPU is never left idle behind a slow one. When several slots are free
already, it takes the server expected to start and finish it soonest.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Sequence

from .config import ServerConfig

_EWMA_WEIGHT = 0.3
_TRIP_AFTER = 3
"""Consecutive failures that mark a server offline."""
_FIRST_COOLDOWN = 1.0
_MAX_COOLDOWN = 30.0
_AFFINITY_WINDOW = 16
"""How far down the queue a freed slot looks for a job that needs the models it holds."""
_MAX_PASSED_OVER = 4
"""How often a job may be passed over for others with warm models before it goes next."""


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
        self.loaded: frozenset[str] = frozenset()
        """The model files of the last job that used any: what the GPU holds now."""
        self.calibrated: float | None = None
        """Seconds per job measured by a calibration run; a speed known before any job."""
        self._waiters: collections.deque[_Waiter] = collections.deque()

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.future.done())

    def has_free_slot(self) -> bool:
        while self._waiters and self._waiters[0].future.done():
            self._waiters.popleft()  # granted by another lane, or given up
        return self.in_flight < self.server.max_in_flight and not self._waiters

    def release(self) -> None:
        """Hand the slot to a waiting job, or give it back.

        The longest-waiting job gets it, unless one of the next few needs the models this
        GPU holds: that one goes first, so models stay where they are. A job passed over
        `_MAX_PASSED_OVER` times is served next whatever it needs.
        """
        waiter = self._next_waiter()
        if waiter is None:
            self.in_flight -= 1
        else:
            waiter.future.set_result(self)  # the slot passes on; in_flight is unchanged

    def grant_free_slots(self) -> None:
        """After `max_in_flight` grew: hand the new slots to waiting jobs."""
        while self.in_flight < self.server.max_in_flight:
            waiter = self._next_waiter()
            if waiter is None:
                return
            self.in_flight += 1
            waiter.future.set_result(self)

    def _next_waiter(self) -> _Waiter | None:
        while self._waiters and self._waiters[0].future.done():
            self._waiters.popleft()
        if not self._waiters:
            return None
        head = self._waiters[0]
        if head.passed_over < _MAX_PASSED_OVER and not head.warm_on(self):
            window = itertools.islice(self._waiters, 1, _AFFINITY_WINDOW)
            warm = next((w for w in window if not w.future.done() and w.warm_on(self)), None)
            if warm is not None:
                for earlier in self._waiters:
                    if earlier is warm:
                        break
                    earlier.passed_over += 1
                self._waiters.remove(warm)
                return warm
        return self._waiters.popleft()

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


class _Waiter:
    """A job waiting for a slot on any of its lanes, and the models it would use."""

    __slots__ = ("future", "models", "passed_over")

    def __init__(self, future: asyncio.Future[Lane], models: frozenset[str]):
        self.future = future
        self.models = models
        self.passed_over = 0

    def warm_on(self, lane: Lane) -> bool:
        return bool(self.models) and self.models <= lane.loaded


async def acquire(
    lanes: Sequence[Lane], models: frozenset[str] = frozenset(), switch_cost: float = 0.0
) -> Lane:
    """A slot on one of `lanes`: a free one now, else the first to free up (FIFO).

    With `models` and a `switch_cost` (seconds a GPU takes to load other models), each
    lane costs its expected wait, plus the switch unless it holds the models already
    (warm). The job takes the cheapest lane if it is free; if it is busy, the job waits
    for the lanes that cheap, so that a GPU briefly idles rather than reloads a model, until
    the queue on the warm lanes outgrows the switch. A lane that frees hands its slot to a
    job it is warm for first (see `Lane.release`).
    """
    free = [lane for lane in lanes if lane.has_free_slot()]
    candidates = list(lanes)
    if models and switch_cost > 0:
        speed = _speeds(lanes)
        cost = {
            lane: _expected_wait(lane, speed[lane])
            + (0.0 if models <= lane.loaded else switch_cost)
            for lane in lanes
        }
        cheapest = min(cost.values())
        candidates = [lane for lane in lanes if cost[lane] <= cheapest + 1e-9]
        free = [lane for lane in free if lane in candidates]
    if free:
        lane = _best(free)
        lane.in_flight += 1
        return lane
    waiter = _Waiter(asyncio.get_running_loop().create_future(), models)
    for lane in candidates:
        lane._waiters.append(waiter)
    try:
        return await waiter.future
    except BaseException:
        if waiter.future.done() and not waiter.future.cancelled():
            waiter.future.result().release()  # a slot was handed over just as we gave up
        raise


def _speeds(lanes: Sequence[Lane]) -> dict[Lane, float]:
    """Expected seconds per job on each lane: measured, else calibrated, else the mean."""
    known = [s for lane in lanes if (s := lane.seconds_per_job or lane.calibrated) is not None]
    default = sum(known) / len(known) if known else 1.0
    return {
        lane: (lane.seconds_per_job or lane.calibrated or default) / lane.server.weight
        for lane in lanes
    }


def _expected_wait(lane: Lane, seconds_per_job: float) -> float:
    if lane.has_free_slot():
        return 0.0
    # the running job is half done on average; each waiting job takes a whole one
    return (lane.waiting + 0.5) * seconds_per_job / lane.server.max_in_flight


def _best(lanes: Sequence[Lane]) -> Lane:
    """Among free lanes: least foreign work queued, then fastest, then config order."""
    speed = _speeds(lanes)

    def score(item: tuple[int, Lane]) -> tuple[float, float, int]:
        index, lane = item
        return (lane.external_queue * speed[lane], speed[lane], index)

    return min(enumerate(lanes), key=score)[1]
