"""The taker's side of a queue on Redis: jobs taken for this process's free slots, run on
their peers, ended once.

A slot is a lease: a job id in the server's `slots` set, scored by when it expires. The
`TAKE` script leases a slot and takes a job in one move, so that `max_in_flight` holds
over every process. A job's end (`FINISH`) gives its slot back and, in the same move,
takes the next job for this process's free slots: a busy server goes from one job to the
next in one round trip, not two. The heartbeat (`_heartbeat`) renews the leases while
this process lives, and takes over the jobs of a process that stopped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from .._retry import counts_against_server, is_transient
from .._runner import Runner
from ..errors import DispatchError, DispatchTimeout, PromptLost
from ..job import JobState
from ..result import DispatchResult
from ._heartbeat import LEASE_BEATS, Heartbeat
from ._wire import KEEP_SECONDS, data_of, error_from, error_to, record_of, result_to, run_from, text

if TYPE_CHECKING:
    from .._dispatcher import Dispatcher
    from .._job import JobRun
    from .._lanes import Lane
    from ._coordination import RedisCoordination

__all__ = ["Executor"]

_log = logging.getLogger("dispatch_core.redis")


class Executor:
    """Takes jobs for this process's servers and runs them."""

    def __init__(self, coordination: RedisCoordination):
        self.coordination = coordination
        self.takes = 0
        """Take attempts, for the benchmark's round trips per job."""
        self._running: dict[str, tuple[str, asyncio.Task[None]]] = {}
        """Job id → (server, the task running it)."""
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.heartbeat = Heartbeat(self)
        self._stop = asyncio.Event()
        self._dispatcher: Dispatcher | None = None
        self._runner: Runner | None = None
        self._later: set[asyncio.Task[None]] = set()
        """Steps sent beside the work (STARTED) or waiting for Redis to answer again (a
        job's end or requeue)."""
        self._ending: set[str] = set()
        """Jobs whose end or requeue waits for Redis to answer again."""
        self._handed: set[str] = set()
        """Jobs whose FINISH took the next job for their server: no slot freed there."""
        self._head: tuple[object, str] = (None, "")
        """The config, and the JSON a take opens with under it (see `_take_head`)."""

    def start(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        runner = Runner(dispatcher.servers, None)  # each take journals its prompt
        runner.affinity = False  # the queue chose the server: no plan to wait for here
        runner.counts = dispatcher.counts
        self._runner = runner
        self._tasks = [
            asyncio.create_task(self._take_loop(), name="redis-take"),
            asyncio.create_task(self.heartbeat.loop(), name="redis-heartbeat"),
        ]

    async def close(self) -> None:
        self._closing = True
        self._stop.set()
        self._wake.set()  # each loop also ends on its own at its next turn (see `_take_loop`)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        running = [task for _, task in self._running.values()] + list(self._later)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        if self._runner is not None:
            await self._runner.close(grace=1.0)

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def processes(self) -> list[dict[str, Any]]:
        """The processes alive at the last heartbeat, this one included."""
        return self.heartbeat.processes

    @property
    def connected(self) -> bool:
        """Whether the last heartbeat reached Redis."""
        return self.heartbeat.connected

    async def beat(self) -> None:
        """A heartbeat now (else one a second)."""
        await self.heartbeat.beat()

    @property
    def dispatcher(self) -> Dispatcher:
        assert self._dispatcher is not None, "the executor is not started"
        return self._dispatcher

    async def until_stopped(self, seconds: float) -> None:
        """Wait `seconds`, or less if the executor closes meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()

    def leases(self) -> list[list[str]]:
        """[job id, server] of the jobs whose slot this process holds, to renew."""
        return [[i, server] for i, (server, _) in self._running.items()]

    def runs(self, job_id: str) -> bool:
        """Whether this process runs the job now (and so delivers its end to a caller here)."""
        return job_id in self._running

    def owned(self) -> set[str]:
        """The jobs this process runs, or whose end waits for Redis."""
        return set(self._running) | self._ending

    def wake(self) -> None:
        self._wake.set()

    def cancel(self, job_id: str) -> None:
        running = self._running.get(job_id)
        if running is not None:
            running[1].cancel()

    # -- taking ---------------------------------------------------------------------------

    async def _take_loop(self) -> None:
        # A loop checks `_closing` as well as being cancelled: a cancellation that lands
        # inside a Redis client's call may be taken there for a lost connection.
        while not self._closing:
            self._wake.clear()
            try:
                taken = await self._take()
            except (RedisError, OSError):
                taken = None
                await asyncio.sleep(self.coordination.heartbeat / 2)
            if taken is not None:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.coordination.heartbeat / 2):
                    await self._wake.wait()  # a slot freed, a job came, or a lease lapsed

    async def _take(self) -> str | None:
        """One job for a free slot here, started; None if there is none to take."""
        offer = self._offer()
        if not offer:
            return None
        self.takes += 1
        args = [self.coordination.prefix, self.coordination.process, *offer]
        return self._spawn_taken(await self.coordination.scripts["TAKE"](args=args))

    def _offer(self, ending: str | None = None) -> list[str]:
        """What a take asks for, as TAKE and FINISH both read it: [] when no slot here is
        free. `ending`: a job whose slot its FINISH gives back. The prompt id is minted
        here so that the take records where the prompt goes, in the same move."""
        servers = self._offered(ending)
        if not servers:
            return []
        prompt_id = json.dumps(str(uuid.uuid4()))
        return [f'{self._take_head()}"servers": {json.dumps(servers)}, "prompt_id": {prompt_id}}}']

    def _take_head(self) -> str:
        """The part of a take that changes only with the config: its JSON, opened and
        left open (made once a config, not once a job)."""
        config = self.dispatcher.config
        if self._head[0] is not config:
            lease_ms = int(self.coordination.heartbeat * LEASE_BEATS * 1000)
            queues = [*config.routes, *(f"server:{name}" for name in config.servers)]
            take = {"lease": lease_ms, "keep": KEEP_SECONDS, "queues": queues}
            self._head = (config, json.dumps(take)[:-1] + ", ")
        return self._head[1]

    def _spawn_taken(self, found: Any) -> str | None:
        """Start the job a TAKE or FINISH answered with, if it took one."""
        if not isinstance(found, list):
            return None
        job_id, server, spec, prompt_id = (text(x) for x in found)
        self.spawn(job_id, server, spec, send_as=prompt_id)
        return job_id

    def _offered(self, ending: str | None = None) -> list[list[Any]]:
        """[name, max_in_flight] of the servers with a free slot here, fastest first (by
        the speeds every process shares). A slot this process still leases in Redis (a
        job taken but not yet on its lane, or done but not yet ended) is not free: asking
        for it would be a round trip for nothing."""
        assert self._dispatcher is not None
        leased = collections.Counter(s for i, (s, _) in self._running.items() if i != ending)
        free = [
            lane
            for lane in self._dispatcher.servers.lanes.values()
            if lane.server.enabled
            and lane.has_free_slot()
            and leased[lane.name] < lane.server.max_in_flight
        ]
        speeds = self.heartbeat.speeds
        order = sorted(range(len(free)), key=lambda i: (speeds.get(free[i].name, 0.0), i))
        return [[free[i].name, free[i].server.max_in_flight] for i in order]

    def spawn(
        self, job_id: str, server: str, spec: str, *, attach_to: str = "", send_as: str = ""
    ) -> None:
        """Run a job taken here. `attach_to`: its prompt, maybe on the peer already (a job
        taken over); `send_as`: the prompt id its take recorded, to send it under."""
        task = asyncio.create_task(self._execute(job_id, server, spec, attach_to, send_as))
        self._running[job_id] = (server, task)
        task.add_done_callback(lambda _: self._ended(job_id))

    def _ended(self, job_id: str) -> None:
        self._running.pop(job_id, None)
        if job_id in self._handed:
            self._handed.discard(job_id)
        else:  # its lease no longer counts against a slot here: one may be free
            self.wake()

    # -- running --------------------------------------------------------------------------

    async def attach(self, run: JobRun, server: str, prompt_id: str) -> DispatchResult | None:
        """The result of the same request's prompt, sent before by any process, if its
        peer still has it and the job may use that server; else None."""
        assert self._dispatcher is not None and self._runner is not None
        lane = self._dispatcher.servers.lanes.get(server)
        if lane is None or lane not in run.lanes:
            return None
        return await self._runner.attach(run, lane, prompt_id)

    async def _execute(
        self, job_id: str, server: str, spec: str, attach_to: str, send_as: str
    ) -> None:
        local = self.coordination.local_run(job_id)  # submitted here: no need to rebuild it
        run, data = (local, data_of(local)) if local is not None else run_from(spec)
        assert self._dispatcher is not None and self._runner is not None
        lane = self._dispatcher.servers.lanes.get(server)
        if lane is None:
            await self.requeue(job_id, down=0.0)  # a server this process does not know
            return
        run.on_start = lambda name, prompt_id: self._started_soon(data, name, prompt_id, send_as)
        timeout = data.get("timeout") or self._dispatcher.config.timeouts.job
        left = max(float(data["queued_at"]) + timeout - time.time(), 0.001)
        try:
            async with asyncio.timeout(left):
                result = await self._run(run, lane, attach_to, send_as)
        except asyncio.CancelledError:
            await asyncio.shield(self._cancelled(job_id, data))
            raise
        except TimeoutError:
            error = DispatchTimeout(
                f"no result within {timeout:g} s; it was waiting for {run.waiting_for}",
                server=run.server,
                prompt_id=run.prompt_id,
            )
            await self._finish(job_id, data, run, error, lane)
        except DispatchError as error:
            if is_transient(error) and not self._closing:
                await self._retry(job_id, lane, error)
            else:
                await self._finish(job_id, data, run, error, lane)
        except Exception as error:  # a bug here must not leave the job taken forever
            _log.exception("job %s failed in this dispatcher", job_id)
            failure = DispatchError(f"the dispatcher failed: {type(error).__name__}: {error}")
            await self._finish(job_id, data, run, failure, lane)
        else:
            await self._finish(job_id, data, run, result, lane)

    async def _run(self, run: JobRun, lane: Lane, attach_to: str, send_as: str) -> DispatchResult:
        """The job run once on its leased server, or attached to its prompt there."""
        assert self._runner is not None
        if attach_to:
            found = await self._runner.attach(run, lane, attach_to)
            if found is not None:
                return found
        return await self._runner.run_on(run, [lane], send_as=send_as or None)

    async def _started_soon(
        self, data: dict[str, Any], server: str, prompt_id: str, recorded: str
    ) -> None:
        """Record where the prompt goes, unless its take did (`recorded`): beside sending
        it, not before, a round trip less before the prompt. Should this process die in
        the few milliseconds between, the job runs again (at least once) rather than
        being attached to."""
        if prompt_id == recorded:
            return
        task = asyncio.create_task(self._started(data, server, prompt_id))
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _started(self, data: dict[str, Any], server: str, prompt_id: str) -> None:
        record = record_of(data, JobState.RUNNING, server=server, prompt_id=prompt_id)
        args = [self.coordination.prefix, data["id"], self.coordination.process, prompt_id]
        args += [record, data["request_key"], f"{server}\n{prompt_id}\n{time.time()}"]
        try:
            await self.coordination.scripts["STARTED"](args=[*args, KEEP_SECONDS])
        except (RedisError, OSError):  # the job runs on; should this process die, it runs again
            _log.warning("could not record prompt %s of job %s", prompt_id, data["id"])

    async def _retry(self, job_id: str, lane: Lane, error: DispatchError) -> None:
        """A failure that may pass: the job goes back to the head of its queue, and its
        server rests while its breaker is open."""
        down = 0.0
        if not isinstance(error, PromptLost) and counts_against_server(error):
            lane.record_failure(time.monotonic())
            if lane.tripped:
                down = max(lane.retry_at - time.monotonic(), 0.0)
        await self.requeue(job_id, down=down)

    async def requeue(self, job_id: str, *, down: float) -> None:
        args = [self.coordination.prefix, job_id, self.coordination.process, int(down * 1000)]
        try:
            await self.coordination.scripts["REQUEUE"](args=args)
        except (RedisError, OSError):
            self._later_script("REQUEUE", args, job_id)

    async def _cancelled(self, job_id: str, data: dict[str, Any]) -> None:
        """Closing: the job goes back to the queue for another process. Else it was
        cancelled by its caller: it ends so (a caller waiting here is told here: the queue
        tells only the callers of other processes)."""
        with contextlib.suppress(RedisError, OSError):
            if self._closing:
                await self.requeue(job_id, down=0.0)
                return
            record = record_of(data, JobState.CANCELLED, error="cancelled")
            error = error_to(asyncio.CancelledError())
            await self._end(job_id, "cancelled", "", error, record)
            self.coordination.deliver(job_id, error_from(error))

    async def _finish(
        self,
        job_id: str,
        data: dict[str, Any],
        run: JobRun,
        outcome: DispatchResult | DispatchError,
        lane: Lane,
    ) -> None:
        """End the job once: in Redis (if this process still owns it) and for its caller."""
        if isinstance(outcome, DispatchResult):
            record = record_of(data, JobState.DONE, result=outcome)
            state, result, error = "done", result_to(outcome), ""
        else:
            record = record_of(
                data,
                JobState.FAILED,
                server=run.server,
                prompt_id=run.prompt_id,
                error=str(outcome),
            )
            state, result, error = "failed", "", error_to(outcome)
        held = json.dumps(sorted(lane.loaded)) if lane.loaded else ""
        speed = lane.seconds_per_job
        extra = [held, "" if speed is None else f"{speed:.4f}"]
        args = self._finish_args(job_id, state, result, error, record, extra)
        try:
            answer = await self.coordination.scripts["FINISH"](args=args + self._offer(job_id))
        except (RedisError, OSError):
            answer = 1  # Redis away: the caller here hears it now, the others later
            self._later_script("FINISH", args, job_id)  # later, without taking a job
        if self._spawn_taken(answer) is not None and text(answer[1]) == lane.name:
            self._handed.add(job_id)
        if answer:  # not ours if another process took it over: that one delivers it
            self.coordination.deliver(job_id, outcome)

    def _finish_args(
        self, job_id: str, state: str, result: str, error: str, record: str, extra: list[str]
    ) -> list[Any]:
        args = [self.coordination.prefix, job_id, self.coordination.process, state, result]
        return [*args, error, record, *extra, KEEP_SECONDS]

    async def _end(self, job_id: str, state: str, result: str, error: str, record: str) -> None:
        args = self._finish_args(job_id, state, result, error, record, ["", ""])
        await self.coordination.scripts["FINISH"](args=args)

    def _later_script(self, name: str, args: list[Any], job_id: str) -> None:
        """Run a step (a job's end, its requeue) once Redis answers again, so that the
        other processes hear of it; this process owns the job until then."""

        async def again() -> None:
            for attempt in range(10_000):
                await asyncio.sleep(
                    min(0.2 * 2 ** min(attempt, 8), self.coordination.heartbeat * 2)
                )
                with contextlib.suppress(RedisError, OSError):
                    await self.coordination.scripts[name](args=args)
                    self._ending.discard(job_id)
                    return

        self._ending.add(job_id)
        task = asyncio.create_task(again(), name=f"redis-later-{name}")
        self._later.add(task)
        task.add_done_callback(self._later.discard)
