"""What each server can run (its node classes and model files), read when jobs need it,
and how many node results its cache keeps (its `/system_stats` command line).

A pool job goes only to servers that have what its workflow names. Reads are shared by
the jobs that need them at once, re-read when older than `max_age`, and not retried for
a while after a failure; a hung server is judged unknown (able) after a few seconds, so
that it cannot hold every pool job up while its read goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._inventory import Inventory
from ._lanes import Lane
from ._residency import cached_results
from ._servers import Servers
from .errors import BadResponse, DispatchError, RoutingError

if TYPE_CHECKING:
    from ._job import JobRun

__all__ = ["Inventories"]

_WAIT = 5.0
"""Longest a pool job waits for the servers' inventories before going on without them."""
_RETRY = 30.0
"""Seconds before the inventory of a server that could not be read is asked again."""


class Inventories:
    """Server → Inventory, read through the servers' clients."""

    def __init__(self, servers: Servers):
        self._servers = servers
        self.found: dict[str, Inventory] = {}
        self.max_age = 300.0
        """Seconds before a server's inventory is read again, when a pool job needs it."""
        self._reads: dict[str, asyncio.Task[None]] = {}
        self._failed: dict[str, float] = {}
        """Server → when reading its inventory last failed: not tried again for a while."""
        self._inside: dict[int, asyncio.Event] = {}
        """Jobs checked here now, by order of arrival: each event is set as its job leaves."""

    async def refresh(self, server: str | None = None) -> dict[str, Inventory]:
        """Read each server's (or one's) inventory now; one that cannot be read is left out."""
        names = [server] if server is not None else list(self._servers.lanes)
        reads = [asyncio.shield(self._read(name)) for name in names]
        found = await asyncio.gather(*reads, return_exceptions=True)
        for failure in found:
            if isinstance(failure, BaseException) and not isinstance(failure, DispatchError):
                raise failure
        return {n: self.found[n] for n in names if n in self.found}

    async def able(self, run: JobRun, lanes: Sequence[Lane], wait: float) -> Sequence[Lane]:
        """The lanes whose servers have every node class and model file the job names.

        A server whose inventory cannot be read (within `wait`) counts as able: the peer
        itself will say.
        """
        left = self._inside[run.arrival] = asyncio.Event()
        try:
            stale = [lane.name for lane in lanes if self._stale(lane.name)]
            if stale:
                run.waiting_for = f"the inventory of {', '.join(stale)}"
                reads = [self._read(name) for name in stale]  # the wait never cancels them
                await asyncio.wait(reads, timeout=min(_WAIT, wait))
            await self._after_earlier(run.arrival)
        finally:
            del self._inside[run.arrival]
            left.set()
        lacking = {}
        for lane in lanes:
            inventory = self.found.get(lane.name)
            missing = inventory.missing(run.needs) if inventory is not None else []
            if missing:
                lacking[lane.name] = missing
        if not lacking:
            return lanes  # the usual case: no new list kept per waiting job
        able = [lane for lane in lanes if lane.name not in lacking]
        if not able:
            where = "; ".join(f"{name} lacks {', '.join(m)}" for name, m in lacking.items())
            raise RoutingError(
                f"no server of route {run.spec.route!r} can run this workflow: {where}"
            )
        return able

    async def _after_earlier(self, arrival: int) -> None:
        """Jobs leave in their order of arrival: one that came while the inventories were
        read must not pass those that waited for them (it would take their slots)."""
        for earlier in [e for order, e in self._inside.items() if order < arrival]:
            await earlier.wait()

    def forget(self, name: str) -> None:
        self.found.pop(name, None)

    async def close(self) -> None:
        for task in self._reads.values():
            task.cancel()
        await asyncio.gather(*self._reads.values(), return_exceptions=True)

    def _stale(self, name: str) -> bool:
        now = time.time()
        old = name not in self.found or now - self.found[name].fetched_at > self.max_age
        return old and now - self._failed.get(name, 0.0) > _RETRY

    def _read(self, name: str) -> asyncio.Task[None]:
        """The read of one server's inventory, shared by every job that asks meanwhile."""
        task = self._reads.get(name)
        if task is None or task.done():
            task = asyncio.create_task(self._fetch(name), name=f"inventory:{name}")
            task.add_done_callback(_retrieve)  # a failure is recorded, not an error to log
            self._reads[name] = task
        return task

    async def _fetch(self, name: str) -> None:
        """Its `/object_info` and, beside it rather than after, its `/system_stats`."""
        peer = self._servers.peer(name)
        answers: tuple[dict[str, Any] | BaseException, ...] = await asyncio.gather(
            peer.object_info(), peer.system_stats(), return_exceptions=True
        )
        info, stats = answers
        if isinstance(info, BaseException):
            if isinstance(info, DispatchError):
                self._failed[name] = time.time()
            raise info
        try:
            inventory = Inventory.from_object_info(info)
        except (AttributeError, TypeError, ValueError):  # a hostile shape deep inside
            self._failed[name] = time.time()
            raise BadResponse(
                "GET /object_info answered node specs of the wrong shape", server=name
            ) from None
        self._note_cache_size(name, stats)
        self.found[name] = inventory  # once whole: a job that finds it uses the cache size
        self._failed.pop(name, None)

    def _note_cache_size(self, name: str, stats: dict[str, Any] | BaseException) -> None:
        """How many models the server may keep, for the plan: nothing said if its stats
        could not be read."""
        if isinstance(stats, BaseException) and not isinstance(stats, DispatchError):
            raise stats  # not the peer's doing
        lane = self._servers.lanes.get(name)
        if lane is not None:
            lane.residency.cached_results = cached_results(stats)


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
