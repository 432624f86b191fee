"""What a process hears from the queue, on the channels it acts on (see `_scripts`).

Every job makes a few events (queued, running, ended), and every process that hears one
reads it and decodes it, on the same loop that drives the peers. So a process hears only
what it acts on: the wakes and cancels meant for every process (`control`), and the ends
of the jobs submitted here that another process ran (`ends:{process}`). The records of
every job (`events`) are heard only while something here listens to them: the service's
job list, which the panels show. A job submitted and run here is handed to its caller
in-process (`RedisCoordination.deliver`) and makes no event for this process to read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

if TYPE_CHECKING:
    from ._coordination import RedisCoordination

__all__ = ["Events"]

_log = logging.getLogger("dispatch_core.redis")

WAKE = b'{"t":"wake"}'
_JOB = b'{"t":"job",'
QUEUED = b',"wake":true}'
"""How the event of a job queued into an empty queue ends, on `events`: a wake too."""

Handler = Callable[[bytes], Awaitable[None]]


class Events:
    """This process's subscriptions, each a task it owns until `close`."""

    def __init__(self, coordination: RedisCoordination):
        self.coordination = coordination
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self) -> None:
        """Hear the wakes and cancels, and the ends of this process's jobs run elsewhere."""
        prefix, process = self.coordination.prefix, self.coordination.process
        channels = [prefix + "control", f"{prefix}ends:{process}"]
        self._spawn("control", channels, self._on_control, self._caught_up)

    def follow_records(self) -> None:
        """Hear every job's record from now on, for `coordination.on_record`."""
        if "records" not in self._tasks:
            channels = [self.coordination.prefix + "events"]
            self._spawn("records", channels, self._on_record, None)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:  # a listener whose cancellation the client took ends with it
            await asyncio.wait(tasks, timeout=self.coordination.heartbeat)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = {}

    def _spawn(
        self,
        name: str,
        channels: list[str],
        handle: Handler,
        subscribed: Callable[[], Awaitable[None]] | None,
    ) -> None:
        listen = self._listen(channels, handle, subscribed)
        self._tasks[name] = asyncio.create_task(listen, name=f"redis-{name}")

    async def _listen(
        self,
        channels: list[str],
        handle: Handler,
        subscribed: Callable[[], Awaitable[None]] | None,
    ) -> None:
        """Hear `channels` while the process lives, subscribing again after a cut."""
        while not self.coordination.executor.closing:
            try:
                await self._listen_once(channels, handle, subscribed)
            except (RedisError, OSError) as error:
                _log.debug("events from %s cut: %s", self.coordination.url, error)
            await asyncio.sleep(self.coordination.heartbeat)  # Redis is away: try again soon

    async def _listen_once(
        self,
        channels: list[str],
        handle: Handler,
        subscribed: Callable[[], Awaitable[None]] | None,
    ) -> None:
        assert self.coordination.client is not None
        async with self.coordination.client.pubsub() as pubsub:
            await pubsub.subscribe(*channels)
            if subscribed is not None:
                await subscribed()
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                try:
                    await handle(message["data"])
                except (ValueError, TypeError, AttributeError) as error:  # not one of ours
                    _log.warning(
                        "ignored a message on %s that is not the queue's: %s", channels, error
                    )

    async def _caught_up(self) -> None:
        """Listening again: what ended meanwhile, and the slots freed meanwhile."""
        await self.coordination.check_waiting()
        self.coordination.executor.wake()

    async def _on_control(self, raw: bytes) -> None:
        if raw == WAKE:  # a slot freed, or a job queued into an empty queue
            self.coordination.executor.wake()
            return
        event: dict[str, Any] = json.loads(raw)
        if event.get("t") == "cancel":
            self.coordination.executor.cancel(str(event.get("id")))
        elif event.get("t") == "job" and "state" in event:
            await self.coordination.ended(str(event.get("id")), event)

    async def _on_record(self, raw: bytes) -> None:
        """A job's record, for the job list (the wakes and cancels are heard on `control`)."""
        listener = self.coordination.on_record
        if listener is None or not raw.startswith(_JOB):
            return
        record = json.loads(raw).get("record")
        if isinstance(record, dict):
            listener(record)
