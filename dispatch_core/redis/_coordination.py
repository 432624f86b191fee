"""A dispatcher's part in a queue on Redis: it queues its callers' jobs for every process,
takes jobs for its own servers' free slots, and hands each caller its job's result.

Its caller's side: `run` queues the job (one script: the job, its place, its record, an
event; the jobs submitted at once share a write, see `_link`) and waits for its
end, told by the event of the process that ran it, or at once when it ran here; a wait
that missed its event (Redis restarted) is checked every heartbeat, and a job a Redis
without persistence forgot is queued again. Its taker's side is `_executor.Executor`.
Redis not answering fails a new job at once with `QueueUnreachable`, naming the URL;
jobs already on peers run on and are told later.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from ..errors import QueueUnreachable
from ..job import JobState
from ..result import DispatchResult
from . import _scripts
from ._events import Events
from ._executor import Executor
from ._link import Link, LinkedScript
from ._wire import PROMPT_SLOT, SERVER_SLOT, data_of, error_from, record_of, spec_of, text

if TYPE_CHECKING:
    from .._dispatcher import Dispatcher
    from .._job import JobRun

__all__ = ["RedisCoordination"]

_log = logging.getLogger("dispatch_core.redis")

RECENT = 1000
"""Job records kept for the panels' lists, newest first."""

RecordListener = Callable[[dict[str, Any]], None]


@functools.lru_cache(maxsize=256)
def _names(names: tuple[str, ...]) -> str:
    """A list of names as JSON: the same few lists (a route's servers, no models) for
    every job, made once."""
    return json.dumps(list(names))


class _Counted(aioredis.Redis):
    """A Redis client that counts its round trips (each command, each script; a pipeline
    is counted by its caller), for the benchmark's round trips per job."""

    round_trips = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.round_trips += 1
        return await super().execute_command(*args, **options)


class RedisCoordination:
    """Every dispatcher process given the same Redis URL acts as one."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str = "dispatch:", heartbeat: float = 1.0):
        self.url = url
        self.prefix = prefix
        self.heartbeat = heartbeat
        """Seconds between heartbeats; a process silent for three is taken as dead."""
        self.process = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.on_queued: Callable[[str], None] | None = None
        """Told each job id of this process once it is in the queue."""
        self._on_record: RecordListener | None = None
        self.client: _Counted | None = None
        self.scripts: dict[str, LinkedScript] = {}
        self._links: list[Link] = []
        self.executor = Executor(self)
        self.events = Events(self)
        self._waiting: dict[str, tuple[JobRun, asyncio.Future[DispatchResult]]] = {}
        self._queued: set[str] = set()
        self._enqueued: dict[str, asyncio.Event] = {}
        """Set once a job submitted here is in the queue (see `queued`)."""
        """Jobs waited for here that are in the queue (a check before is a false alarm)."""
        self._dispatcher: Dispatcher | None = None
        self._pool: aioredis.ConnectionPool | None = None

    # -- life -----------------------------------------------------------------------------

    async def open(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        # Jobs submitted at once share a few connections, waiting their turn for one. A
        # command cut off (Redis restarted) is sent again: each step is safe to repeat, or
        # its lost answer is found by the heartbeat (see `Executor._orphans`).
        pool = self._pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=32,
            timeout=None,  # a job waits its turn; its own timeout bounds it
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
            health_check_interval=1,
            password=os.environ.get("DISPATCH_REDIS_PASSWORD") or None,
            socket_connect_timeout=2.0,
            socket_timeout=10.0,
        )
        self.client = _Counted(connection_pool=pool)
        # The jobs submitted at once are queued on a link of their own, gathered: a burst
        # of thousands does not hold up, behind it, the steps of the jobs running, each
        # sent at once (a job's end takes the next job for a server that waits for it).
        steps, arrivals = Link(pool, gather=False), Link(pool)
        self._links = [steps, arrivals]
        for name in _scripts.__all__:
            link = arrivals if name == "ENQUEUE" else steps
            self.scripts[name] = LinkedScript(link, getattr(_scripts, name))
        dispatcher._runner.journal = None  # the queue journals: ENQUEUE, and each take
        self.executor.start(dispatcher)
        self.events.start()
        if self._on_record is not None:
            self.events.follow_records()

    async def close(self) -> None:
        """Hand the jobs this process runs back to the queue, then stop."""
        await self.executor.close()
        await self.events.close()
        if self.client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.client.delete(self.key("proc", self.process))
            await self.client.aclose()
        for link in self._links:
            await link.close()
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
        self.client = None

    @property
    def on_record(self) -> RecordListener | None:
        """Told every job record that changes, in any process (the service's job list):
        while one is set, this process hears every job's events."""
        return self._on_record

    @on_record.setter
    def on_record(self, listener: RecordListener | None) -> None:
        self._on_record = listener
        if listener is not None and self.client is not None:
            self.events.follow_records()

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @property
    def round_trips(self) -> int:
        """Commands, pipelines and writes of scripts sent to Redis so far by this process."""
        trips = sum(link.round_trips for link in self._links)
        return trips + (self.client.round_trips if self.client is not None else 0)

    def describe(self) -> dict[str, Any]:
        mine = self.executor.heartbeat.fingerprint()["config"] if self._dispatcher else ""
        return {
            "backend": self.name,
            "url": self.url,
            "process": self.process,
            "processes": self.executor.processes,
            "connected": self.executor.connected,
            "config": mine,
            "same_config": all(p.get("config") == mine for p in self.executor.processes),
        }

    # -- the caller's side ----------------------------------------------------------------

    async def run(self, run: JobRun) -> DispatchResult:
        future = asyncio.get_running_loop().create_future()
        self._waiting[run.job_id] = (run, future)
        try:
            sent = await self._enqueue(run, look=True)
            if sent is not None:  # the same request was sent before, by any process
                found = await self.executor.attach(run, *sent)
                if found is not None:
                    return found
                await self._enqueue(run, look=False)
            self._queued.add(run.job_id)
            self._enqueued.setdefault(run.job_id, asyncio.Event()).set()
            if self.on_queued is not None:
                self.on_queued(run.job_id)
            return await future
        except asyncio.CancelledError:
            with contextlib.suppress(RedisError, OSError):
                await asyncio.shield(self.cancel(run.job_id))
            raise
        finally:
            self._waiting.pop(run.job_id, None)
            self._queued.discard(run.job_id)
            self._enqueued.pop(run.job_id, None)

    async def queued(self, job_id: str, ended: asyncio.Future[Any]) -> None:
        """Until the job is in the queue, where a process dying cannot lose it, or has
        ended (failed to be queued, say): what `POST /dispatch/run` waits for before 202."""
        event = self._enqueued.setdefault(job_id, asyncio.Event())
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({waiter, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if ended.done():
                self._enqueued.pop(job_id, None)

    async def _enqueue(self, run: JobRun, *, look: bool = False) -> tuple[str, str] | None:
        """Queue the job; with `look`, first ask the journal: the server and prompt id of
        the same request sent before, if any (then nothing is queued)."""
        spec = await spec_of(run)
        data = data_of(run)
        queue = f"server:{run.spec.server}" if run.spec.server else run.spec.route
        servers = _names(tuple(lane.name for lane in run.lanes))
        models = _names(tuple(sorted(run.needs.model_files)))
        record = record_of(data, JobState.QUEUED, server=run.spec.server)
        started = record_of(data, JobState.RUNNING, server=SERVER_SLOT, prompt_id=PROMPT_SLOT)
        args = [self.prefix, run.job_id, queue, spec, servers, models, record, run.queued, RECENT]
        args += [run.request_key, "1" if look else "0", started, self.process]
        try:
            answer = await self.scripts["ENQUEUE"](args=args)
        except (RedisError, OSError) as error:
            raise self.unreachable(error) from None
        if isinstance(answer, list):
            server, prompt_id, _ = text(answer[1]).split("\n")
            return server, prompt_id
        self.executor.wake()
        return None

    def local_run(self, job_id: str) -> JobRun | None:
        """The job's own JobRun, when it was submitted here (no need to rebuild it)."""
        waiting = self._waiting.get(job_id)
        return waiting[0] if waiting is not None else None

    def unreachable(self, error: BaseException) -> QueueUnreachable:
        return QueueUnreachable(
            f"the shared queue at {self.url} cannot be reached ({error}); the job was not queued",
            url=self.url,
        )

    async def cancel(self, job_id: str) -> bool:
        if self.client is None:
            return False
        found = await self.client.hget(self.key("job", job_id), "record")
        if found is None:
            return False
        data = json.loads(found)
        record = record_of(data, JobState.CANCELLED, error="cancelled")
        state = await self.scripts["CANCEL"](args=[self.prefix, job_id, record])
        return bool(state) and state not in (b"done", b"failed", b"cancelled")

    def deliver(self, job_id: str, outcome: DispatchResult | BaseException) -> bool:
        """Hand a job that ran here to its caller, if it waits in this process."""
        waiting = self._waiting.get(job_id)
        if waiting is None or waiting[1].done():
            return False
        if isinstance(outcome, BaseException):
            waiting[1].set_exception(outcome)
        else:
            waiting[1].set_result(outcome)
        return True

    async def check_waiting(self) -> None:
        """Jobs waited for here whose end was missed, or which Redis forgot (restarted
        without persistence): told, or queued again. Redis picks them out (`ENDED`): a
        heartbeat reads back a few answers, not the state of every job waited for."""
        assert self.client is not None
        waiting = {i: run for i, (run, _) in self._waiting.items() if i in self._queued}
        if not waiting:
            return
        found = await self.scripts["ENDED"](args=[self.prefix, json.dumps(list(waiting))])
        for job_id, state in zip(map(text, found[::2]), found[1::2], strict=True):
            if job_id not in self._waiting:
                continue
            if not state:
                _log.warning("job %s was forgotten by the queue: queued again", job_id)
                await self._enqueue(waiting[job_id])
            else:
                await self.ended(job_id)

    async def ended(self, job_id: str, told: dict[str, Any] | None = None) -> None:
        """A job ended in another process: its result or error, for its caller here. From
        `told`, the event of its end, when that carries them; else read from Redis."""
        waiting = self._waiting.get(job_id)
        if waiting is None or waiting[1].done() or self.client is None:
            return
        if self.executor.runs(job_id):
            return  # its end is handed over here by `deliver`, with the peer's whole entry
        if told is None or "state" not in told:
            fields = await self.client.hmget(self.key("job", job_id), ["state", "result", "error"])
            told = {
                "state": text(fields[0]) if fields[0] else None,
                "result": json.loads(fields[1]) if fields[1] else None,
                "error": json.loads(fields[2]) if fields[2] else None,
            }
        self._settle(job_id, told["state"], told.get("result"), told.get("error"))

    def _settle(
        self, job_id: str, state: str | None, result: Any, error: dict[str, Any] | None
    ) -> None:
        """Hand the caller waiting here the end of its job, as the queue tells it."""
        waiting = self._waiting.get(job_id)
        if waiting is None or waiting[1].done():
            return
        run, future = waiting
        if state == "done" and isinstance(result, dict):
            assert self._dispatcher is not None
            peer = self._dispatcher.peer(result["server"])
            run.reason = result.get("reason", "")
            future.set_result(run.result(peer, result["prompt_id"], {"outputs": result["outputs"]}))
        elif state in ("failed", "cancelled"):
            future.set_exception(error_from(error or {"message": "failed"}))

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        """The newest job records, oldest first, for a panel's list at start."""
        assert self.client is not None
        try:
            ids = await self.client.zrange(self.key("recent"), -limit, -1)
            async with self.client.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hget(self.key("job", text(job_id)), "record")
                found = await pipe.execute()
        except (RedisError, OSError):
            return []  # the list fills in from the events once Redis answers
        return [json.loads(text) for text in found if text]

    async def in_flight(self, servers: list[str]) -> dict[str, int]:
        """The slots leased on each server by every process: what a status shows, where
        each process's own lanes know only their own."""
        assert self.client is not None
        now_ms = int(time.time() * 1000)  # a lease is scored by its expiry (Redis TIME, ms)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for server in servers:
                    pipe.zcount(self.key("slots", server), now_ms, "+inf")
                counts = await pipe.execute()
        except (RedisError, OSError):
            return {}
        return {server: int(count) for server, count in zip(servers, counts, strict=True)}

    async def record(self, job_id: str) -> dict[str, Any] | None:
        """One job's record, from whichever process ran it."""
        if self.client is None or len(job_id) > 100:
            return None
        try:
            found = await self.client.hget(self.key("job", job_id), "record")
        except (RedisError, OSError):
            return None  # what this process holds is all it can tell
        return json.loads(found) if found else None
