"""The Dispatcher: routes each job to a server, runs it there, and hands back its outputs.

One `aiohttp.ClientSession` serves every peer; each peer has one WebSocket (see `_peer`).
Each server has a FIFO lane that never holds more than its `max_in_flight` jobs; a route
with several servers (a pool) sends a job to the lane that will start it soonest. With a
shared queue (`queue.backend` other than `local`, see `_backend`), jobs wait there instead,
and the lanes of every process sharing it hold `max_in_flight` together.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import aiohttp

from ._backend import Coordination, coordination_for
from ._cache import ResultCache
from ._inventories import Inventories
from ._inventory import Inventory
from ._job import JobRun
from ._journal import Journal, Journals
from ._lanes import Lane
from ._peer import PeerClient
from ._runner import Runner
from ._servers import Servers
from ._status import ServerStatus, calibration_workflow, server_status
from ._watch import FrameCallback, ProgressCallback
from .config import Config
from .errors import (
    DispatcherClosed,
    DispatchTimeout,
    RoutingError,
    WorkflowError,
)
from .job import JobHandle, JobSpec
from .result import DispatchResult
from .workflow import WorkflowBuilder

__all__ = ["Dispatcher", "ServerStatus"]

_UPLOAD_SUBFOLDER = "dispatch"


class Dispatcher:
    """Runs ComfyUI workflows on the configured servers. Use as `async with Dispatcher(cfg)`."""

    def __init__(
        self,
        config: Config | Mapping[str, Any],
        *,
        session: aiohttp.ClientSession | None = None,
        journal: Journal | None = None,
        coordination: Coordination | None = None,
    ):
        """`config` is a Config, or a plain mapping checked as a config file is; its
        `queue` setting picks the coordination, unless one is given."""
        if not isinstance(config, Config):
            config = Config.from_dict(config)
        self.config = config
        self.coordination = coordination or coordination_for(config.queue)
        """The shared queue this dispatcher takes part in; None for the local backend."""
        self.journal: Journals | None = journal
        """Optional: where submitted requests are recorded, so a repeat attaches to them."""
        self.cache: ResultCache[DispatchResult] = ResultCache(
            config.cache.max_entries,
            fuzzy=config.cache.fuzzy,
            max_distance=config.cache.max_distance,
        )
        self._session = session
        self._owns_session = session is None
        self.servers = Servers(config)
        """Each configured server's lane and client."""
        self._inventories = Inventories(self.servers)
        self._runner = Runner(self.servers, journal)
        self.counts = self._runner.counts
        """How many prompts were submitted, completed, resubmitted after a loss, failed over
        to another server, or retried after a back-off."""
        self._jobs: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def affinity(self) -> bool:
        """Plan where jobs that need models run, counting what each server holds and what a
        load costs it; off, each job takes the first free server (least busy)."""
        return self._runner.affinity

    @affinity.setter
    def affinity(self, on: bool) -> None:
        self._runner.affinity = on

    @property
    def switch_seconds(self) -> float | None:
        """Seconds a model load is assumed to take on a server until one has been measured
        there (a job's time beyond that server's warm median). None, the default: 1.1 warm
        jobs there (the ratio measured on ComfyUI), at most what its cold first job took
        beyond a warm one."""
        return self._runner.switch_seconds

    @switch_seconds.setter
    def switch_seconds(self, seconds: float | None) -> None:
        self._runner.switch_seconds = seconds

    async def __aenter__(self) -> Dispatcher:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        self.servers.session = self._session
        if self.coordination is not None:
            await self.coordination.open(self)
        return self

    @property
    def inventories(self) -> dict[str, Inventory]:
        """Server → what it can run, from its /object_info (see `refresh_inventory`)."""
        return self._inventories.found

    @property
    def inventory_max_age(self) -> float:
        """Seconds before a server's inventory is read again, when a pool job needs it."""
        return self._inventories.max_age

    @inventory_max_age.setter
    def inventory_max_age(self, seconds: float) -> None:
        self._inventories.max_age = seconds

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Fail waiting jobs with DispatcherClosed, close every socket. Idempotent."""
        self._closed = True
        if self.coordination is not None:
            await self.coordination.close()
        for task in list(self._jobs):
            task.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)
        await self._runner.close(grace=self.config.timeouts.request)
        await self._inventories.close()
        await self.servers.close()
        self.servers.session = None
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- public API ---------------------------------------------------------------------

    async def run(
        self,
        route: JobSpec | str,
        workflow: Mapping[str, Any] | WorkflowBuilder | None = None,
        values: Mapping[str, Any] | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        **options: Any,
    ) -> DispatchResult:
        """Run one job and return its outputs: a whole JobSpec, or the fields of one
        (`run("generate", workflow, {"6.text": "a cat"}, server=…, timeout=…)`)."""
        if isinstance(route, JobSpec):
            spec = route
        else:
            spec = JobSpec(route, workflow, values, **options)
        return await self._run(JobRun(spec, on_progress))

    def submit(
        self,
        spec: JobSpec,
        *,
        on_progress: ProgressCallback | None = None,
        on_frame: FrameCallback | None = None,
        job_id: str | None = None,
    ) -> JobHandle:
        """Start a job beside the caller; its handle tells its state, result, and cancels.

        The workflow and its values are checked here: a mistake raises now, not later.
        `on_frame` is told every frame of its prompt as the peer sent it (a relay's need).
        `job_id` names the job in a shared queue (the service's record id); one is minted
        if not given.
        """
        run = JobRun(spec, on_progress, on_frame=on_frame, job_id=job_id)
        run.handle = JobHandle(spec, asyncio.create_task(self._run(run), name=f"job:{spec.route}"))
        return run.handle

    async def run_parallel(
        self, jobs: Iterable[JobSpec | Mapping[str, Any]]
    ) -> list[DispatchResult | BaseException]:
        """Run jobs at once; each one's result or exception, in order (like allSettled)."""
        specs = [j if isinstance(j, JobSpec) else JobSpec(**j) for j in jobs]
        runs = [self._run(JobRun(spec)) for spec in specs]
        return list(await asyncio.gather(*runs, return_exceptions=True))

    def servers_for(self, route: str, *, server: str | None = None) -> tuple[str, ...]:
        """The enabled servers a job of `route` (or for `server`) may run on; the one place
        that decides it (see `Config.servers_for`)."""
        return self.config.servers_for(route, server=server)

    async def reconfigure(self, config: Config) -> None:
        """Take a new config without dropping a job: jobs in flight finish where they are.

        Servers added get a lane; servers removed or moved to another URL keep their client
        until their last job is done; a larger `max_in_flight` starts waiting jobs at once.
        """
        self.config = config
        await self.servers.reconfigure(config, forget=self._inventories.forget)

    async def refresh_inventory(self, server: str | None = None) -> dict[str, Inventory]:
        """Read what each server (or one) can run: node classes and model lists.

        Jobs that ask at once share one read per server; a server that cannot be read is
        left out (and its jobs judged by the peer itself).
        """
        return await self._inventories.refresh(server)

    async def calibrate(
        self, server: str, workflow: Mapping[str, Any] | None = None, *, runs: int = 3
    ) -> float:
        """Time a small workflow on `server` (median of `runs`, after one warm-up): its speed
        before any real job, used to weight a pool's choice; kept on the server's lane.

        Each run gets new seeds (or, for the default workflow, a new colour), so that
        neither ComfyUI's cache nor the journal answers in place of the GPU.
        """
        if runs < 1:
            raise ValueError("calibrate needs at least one run")
        warm_up = 1 if runs > 1 else 0  # the first run loads models: not the speed of a job
        timings = []
        for index in range(warm_up + runs):
            builder = WorkflowBuilder(workflow or calibration_workflow())
            with contextlib.suppress(WorkflowError):  # a workflow without a seed is run as is
                builder.randomize_seed()
            began = time.monotonic()
            await self.run(JobSpec("calibration", builder, server=server))
            if index >= warm_up:
                timings.append(time.monotonic() - began)
        seconds = statistics.median(timings)
        self.servers.lane(server).calibrated = seconds
        return seconds

    def set_calibration(self, server: str, seconds: float | None) -> None:
        """A calibration measured before (saved by the caller), for a new dispatcher."""
        if server in self.servers.lanes:
            self.servers.lanes[server].calibrated = seconds

    def in_flight(self) -> dict[str, int]:
        return self.servers.in_flight()

    def peer(self, server: str) -> PeerClient:
        """The client of one configured server (created on first use)."""
        if self._closed:
            raise DispatcherClosed("the dispatcher is not open: use `async with Dispatcher(...)`")
        return self.servers.peer(server)

    async def health_check(self, server: str) -> bool:
        """Whether the server answers `/system_stats` within the request timeout."""
        return await self._runner.health_check(server)

    async def status(self) -> dict[str, ServerStatus]:
        """Every server's state, asked of all of them at once, within one deadline (see
        `server_status`): one slow or hostile server cannot hold up or fail the round."""
        names = list(self.servers.lanes)
        found = dict(zip(names, await asyncio.gather(*map(self.server_status, names)), strict=True))
        if self.coordination is not None:  # the prompts of every process sharing the queue
            shared = await self.coordination.in_flight(names)
            found = {
                n: dataclasses.replace(s, in_flight=shared.get(n, s.in_flight))
                for n, s in found.items()
            }
        return found

    # -- one job ------------------------------------------------------------------------

    async def _run(self, run: JobRun) -> DispatchResult:
        task = asyncio.current_task()
        if task is not None:
            self._jobs.add(task)
        try:
            return await self._run_guarded(run)
        except asyncio.CancelledError:
            if self._closed and task is not None and task.cancelling():
                task.uncancel()
                raise DispatcherClosed("the dispatcher was closed while this job waited") from None
            raise
        finally:
            if task is not None:
                self._jobs.discard(task)

    async def _run_guarded(self, run: JobRun) -> DispatchResult:
        if self._closed or self._session is None:
            raise DispatcherClosed("the dispatcher is not open: use `async with Dispatcher(...)`")
        spec = run.spec
        lanes: Sequence[Lane] = list(map(self.servers.lane, self._allowed(spec)))  # no cell
        cache_key = spec.cache_key or (run.request_key if spec.cache else None)
        hit = self._cache_lookup(spec.route, cache_key)
        if hit is not None:
            return hit
        timeout = spec.timeout if spec.timeout is not None else self.config.timeouts.job
        try:
            async with asyncio.timeout(timeout):
                if len(lanes) > 1:
                    lanes = await self._inventories.able(run, lanes, self.config.timeouts.request)
                run.lanes = lanes
                result = await self._runner.from_journal(run, lanes)
                if result is None and self.coordination is not None:
                    result = await self.coordination.run(run)
                elif result is None:
                    result = await self._runner.execute(run, lanes)
        except DispatchTimeout:
            raise
        except TimeoutError:
            raise DispatchTimeout(
                f"no result within {timeout:g} s; it was waiting for {run.waiting_for}",
                server=run.server,
                prompt_id=run.prompt_id,
                waited_for=run.waiting_for,
            ) from None
        if cache_key is not None and self.config.cache.enabled:
            self.cache.put(spec.route, cache_key, result)
        return result

    def _allowed(self, spec: JobSpec) -> tuple[str, ...]:
        """The servers the job may run on: its route's or its server, less those it avoids."""
        names = self.servers_for(spec.route, server=spec.server)
        allowed = tuple(name for name in names if name not in spec.avoid)
        if not allowed:
            raise RoutingError(
                f"no server is left to run it: {', '.join(names)} must be avoided "
                "(the ComfyUI that sent the job); route it to another server"
            )
        return allowed

    def _cache_lookup(self, route: str, key: str | None) -> DispatchResult | None:
        if key is None or not self.config.cache.enabled:
            return None
        hit = self.cache.get(route, key)
        if hit is None:
            return None
        return dataclasses.replace(hit.value, cached=True)

    async def server_status(self, name: str) -> ServerStatus:
        """One server's state, asked now (see `_status`): never raises for what it does."""
        lane = self.servers.lane(name)
        return await server_status(lane, self.peer(name), self.config.timeouts.request)
