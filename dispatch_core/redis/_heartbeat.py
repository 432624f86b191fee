"""A dispatcher process's heartbeat on the shared queue: it says the process lives,
renews the slot leases of the jobs it runs, learns who else lives and what every process
measured of the servers, and takes over the jobs of a process that stopped.

A process silent for `DEAD_BEATS` heartbeats is taken as dead by the first that notices:
its prompts on peers are attached to, and those it had not sent yet (their ids were
recorded as they were taken) are sent by the one that took over, on the same server. A
lease lasts `LEASE_BEATS` heartbeats, far longer than a death takes to be noticed, so
that a reaped job's slot is still its own when it is taken over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from ._wire import text

if TYPE_CHECKING:
    from ._executor import Executor

__all__ = ["DEAD_BEATS", "LEASE_BEATS", "Heartbeat"]

_log = logging.getLogger("dispatch_core.redis")

LEASE_BEATS = 10
DEAD_BEATS = 3


class Heartbeat:
    """One a second while the executor runs, or at once with `beat()`."""

    def __init__(self, executor: Executor):
        self.executor = executor
        self.coordination = executor.coordination
        self.processes: list[dict[str, Any]] = []
        """The processes alive at the last heartbeat, this one included."""
        self.connected = False
        """Whether the last heartbeat reached Redis."""
        self.speeds: dict[str, float] = {}
        """Server → seconds of its last warm job, as every process measured it."""
        self._since = time.time()
        self._suspects: set[str] = set()

    async def loop(self) -> None:
        while not self.executor.closing:
            try:
                await self.beat()
                self.connected = True
            except (RedisError, OSError) as error:
                self.connected = False
                _log.debug("heartbeat to %s failed: %s", self.coordination.url, error)
            await self.executor.until_stopped(self.coordination.heartbeat)

    def fingerprint(self) -> dict[str, str]:
        """What every process sharing the queue must agree on (servers and routes), in
        short: a process whose differs is shown so in the panel."""
        config = self.executor.dispatcher.config
        servers = {n: [s.url, s.max_in_flight, s.enabled] for n, s in config.servers.items()}
        canonical = json.dumps([servers, dict(config.routes)], sort_keys=True)
        return {"config": hashlib.sha256(canonical.encode()).hexdigest()[:12]}

    async def beat(self) -> None:
        """Say this process lives and learn who else does, now."""
        beat = self.coordination.heartbeat
        about = {"id": self.coordination.process, "since": self._since, **self.fingerprint()}
        args: list[Any] = [self.coordination.prefix, self.coordination.process, json.dumps(about)]
        args += [int(beat * DEAD_BEATS * 1000), int(beat * LEASE_BEATS * 1000)]
        leases = json.dumps(self.executor.leases())
        alive, dead, held, speeds = await self.coordination.scripts["HEARTBEAT"](
            args=[*args, leases]
        )
        self.processes = [json.loads(x) for x in alive]
        self.speeds = {text(k): float(v) for k, v in zip(speeds[::2], speeds[1::2], strict=True)}
        await self._orphans({text(x) for x in held})
        for process in dead:
            await self._reap(text(process))
        await self.coordination.check_waiting()

    async def _orphans(self, held: set[str]) -> None:
        """Jobs Redis says this process took that it does not run: a take whose answer was
        lost with its connection. Seen so twice in a row (not a take on its way back),
        they go back to the queue."""
        orphans = held - self.executor.owned()
        for job_id in orphans & self._suspects:
            _log.warning("job %s was taken but its answer lost: queued again", job_id)
            await self.executor.requeue(job_id, down=0.0)
        self._suspects = orphans

    async def _reap(self, process: str) -> None:
        """A dead process's jobs: attached to (or sent, if its peer never had the prompt)
        where its prompt was recorded; queued again where none was."""
        lease_ms = int(self.coordination.heartbeat * LEASE_BEATS * 1000)
        args = [self.coordination.prefix, process, self.coordination.process, lease_ms]
        found = await self.coordination.scripts["REAP"](args=args)
        for item in found:
            job_id, server, prompt_id, spec = (text(x) for x in item)
            _log.info("took over job %s of %s, which stopped", job_id, process)
            if prompt_id:
                self.executor.spawn(job_id, server, spec, attach_to=prompt_id)
            else:
                await self.executor.requeue(job_id, down=0.0)
