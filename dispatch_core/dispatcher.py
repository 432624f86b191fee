"""The Dispatcher: routes each job to a server, runs it there, and hands back its outputs.

One `aiohttp.ClientSession` serves every peer; each peer has one WebSocket (see `peer`).
Each server has a FIFO lane that never holds more than its `max_in_flight` jobs; a route
with several servers (a pool) sends a job to the lane that will start it soonest.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import logging
import random
import statistics
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from ._job import JobRun
from ._lanes import Lane, acquire
from ._peer_http import shown_url
from ._retry import backoff, counts_against_server, is_transient
from ._watch import ProgressCallback, error_from_history
from .cache import ResultCache
from .config import Config
from .errors import (
    BadResponse,
    DispatcherClosed,
    DispatchError,
    DispatchTimeout,
    NotFound,
    PromptLost,
    RoutingError,
    WorkflowError,
)
from .inventory import Inventory
from .job import JobHandle, JobSpec
from .journal import Journal
from .peer import PeerClient
from .result import DispatchResult
from .workflow import WorkflowBuilder

__all__ = ["Dispatcher", "ServerStatus"]

_UPLOAD_SUBFOLDER = "dispatch"
_INVENTORY_WAIT = 5.0
"""Longest a pool job waits for the servers' inventories before going on without them."""
_INVENTORY_RETRY = 30.0
"""Seconds before the inventory of a server that could not be read is asked again."""
_STATUS_DEADLINE = 10.0
"""Longest a status round waits for any server, whatever `timeouts.request` says."""
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerStatus:
    """A snapshot of one server, for a status line or a panel."""

    name: str
    url: str
    enabled: bool
    online: bool
    latency_ms: float | None = None
    queue_depth: int | None = None
    in_flight: int = 0
    vram_free: int | None = None
    vram_total: int | None = None
    comfyui_version: str | None = None
    error: str | None = None
    failures: int = 0
    """Consecutive failures seen by jobs; a success resets it."""
    circuit_open: bool = False
    """Too many failures in a row: new jobs avoid this server until a probe succeeds."""
    seconds_per_job: float | None = None
    """Measured on recent jobs (a moving average)."""
    calibrated_seconds: float | None = None
    """Measured by `calibrate`, before any job."""
    loaded_models: tuple[str, ...] = ()
    """The model files of the last job that used any: what the GPU likely holds."""
    dropped_frames: int = 0
    """WebSocket frames from this server that could not be read, since we connected."""


class Dispatcher:
    """Runs ComfyUI workflows on the configured servers. Use as `async with Dispatcher(cfg)`."""

    def __init__(
        self,
        config: Config | Mapping[str, Any],
        *,
        session: aiohttp.ClientSession | None = None,
        journal: Journal | None = None,
    ):
        """`config` is a Config, or a plain mapping checked as a config file is."""
        if not isinstance(config, Config):
            config = Config.from_dict(config)
        self.config = config
        self.journal = journal
        """Optional: where submitted requests are recorded, so a repeat attaches to them."""
        self.cache: ResultCache[DispatchResult] = ResultCache(
            config.cache.max_entries,
            fuzzy=config.cache.fuzzy,
            max_distance=config.cache.max_distance,
        )
        self._session = session
        self._owns_session = session is None
        self._lanes = {name: Lane(server) for name, server in config.servers.items()}
        self._peers: dict[str, PeerClient] = {}
        self.inventories: dict[str, Inventory] = {}
        """Server → what it can run, from its /object_info (see `refresh_inventory`)."""
        self.affinity = True
        """Prefer the server that holds a job's models already; off, the least busy wins."""
        self.switch_seconds = 3.0
        """What loading other models is assumed to cost a GPU: a job waits up to about
        this long for a busy server that holds its models, rather than use a free one."""
        self.inventory_max_age = 300.0
        """Seconds before a server's inventory is read again, when a pool job needs it."""
        self._inventory_reads: dict[str, asyncio.Task[None]] = {}
        self._inventory_failed: dict[str, float] = {}
        """Server → when reading its inventory last failed: not tried again for a while."""
        self._retired: list[PeerClient] = []
        """Clients of servers whose URL changed, kept until the jobs on them are done."""
        self._jobs: set[asyncio.Task[Any]] = set()
        self._cleanups: set[asyncio.Task[None]] = set()
        self._closed = False
        self.counts: collections.Counter[str] = collections.Counter()
        """How many prompts were submitted, completed, resubmitted after a loss, failed over
        to another server, or retried after a back-off."""

    async def __aenter__(self) -> Dispatcher:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Fail waiting jobs with DispatcherClosed, close every socket. Idempotent."""
        self._closed = True
        for task in list(self._jobs):
            task.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)
        if self._cleanups:
            # Give each cancellation time to reach its peer, then stop waiting for it.
            await asyncio.wait(self._cleanups, timeout=self.config.timeouts.request)
            for task in list(self._cleanups):
                task.cancel()
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        for task in self._inventory_reads.values():
            task.cancel()
        await asyncio.gather(*self._inventory_reads.values(), return_exceptions=True)
        await asyncio.gather(*(peer.close() for peer in [*self._peers.values(), *self._retired]))
        self._peers.clear()
        self._retired.clear()
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

    def submit(self, spec: JobSpec, *, on_progress: ProgressCallback | None = None) -> JobHandle:
        """Start a job beside the caller; its handle tells its state, result, and cancels.

        The workflow and its values are checked here: a mistake raises now, not later.
        """
        run = JobRun(spec, on_progress)
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
        for name, server in config.servers.items():
            lane = self._lanes.get(name)
            if lane is None:
                self._lanes[name] = Lane(server)
                continue
            moved = (lane.server.url, dict(lane.server.headers)) != (
                server.url,
                dict(server.headers),
            )
            lane.server = server
            if moved:
                await self._retire(name, lane)
            lane.grant_free_slots()
        for name in [n for n in self._lanes if n not in config.servers]:
            await self._retire(name, self._lanes.pop(name))

    async def _retire(self, name: str, lane: Lane) -> None:
        """Forget what we knew of a server that moved or left; close its client when idle."""
        self.inventories.pop(name, None)
        lane.loaded, lane.calibrated, lane.seconds_per_job = frozenset(), None, None
        peer = self._peers.pop(name, None)
        if peer is None:
            return
        if lane.in_flight:
            self._retired.append(peer)
        else:
            await peer.close()

    async def refresh_inventory(self, server: str | None = None) -> dict[str, Inventory]:
        """Read what each server (or one) can run: node classes and model lists.

        Jobs that ask at once share one read per server; a server that cannot be read is
        left out (and its jobs judged by the peer itself).
        """
        names = [server] if server is not None else list(self._lanes)
        reads = [asyncio.shield(self._inventory_read(name)) for name in names]
        found = await asyncio.gather(*reads, return_exceptions=True)
        for failure in found:
            if isinstance(failure, BaseException) and not isinstance(failure, DispatchError):
                raise failure
        return {n: self.inventories[n] for n in names if n in self.inventories}

    def _inventory_read(self, name: str) -> asyncio.Task[None]:
        task = self._inventory_reads.get(name)
        if task is None or task.done():
            task = asyncio.create_task(self._read_inventory(name), name=f"inventory:{name}")
            task.add_done_callback(_retrieve)  # a failure is recorded, not an error to log
            self._inventory_reads[name] = task
        return task

    async def _read_inventory(self, name: str) -> None:
        try:
            info = await self.peer(name).object_info()
        except DispatchError:
            self._inventory_failed[name] = time.time()
            raise
        try:
            self.inventories[name] = Inventory.from_object_info(info)
        except (AttributeError, TypeError, ValueError):  # a hostile shape deep inside
            self._inventory_failed[name] = time.time()
            raise BadResponse(
                "GET /object_info answered node specs of the wrong shape", server=name
            ) from None
        self._inventory_failed.pop(name, None)

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
            builder = WorkflowBuilder(workflow or _calibration_workflow())
            with contextlib.suppress(WorkflowError):  # a workflow without a seed is run as is
                builder.randomize_seed()
            began = time.monotonic()
            await self.run(JobSpec("calibration", builder, server=server))
            if index >= warm_up:
                timings.append(time.monotonic() - began)
        seconds = statistics.median(timings)
        self._lanes[server].calibrated = seconds
        return seconds

    def set_calibration(self, server: str, seconds: float | None) -> None:
        """A calibration measured before (saved by the caller), for a new dispatcher."""
        if server in self._lanes:
            self._lanes[server].calibrated = seconds

    def in_flight(self) -> dict[str, int]:
        return {name: lane.in_flight for name, lane in self._lanes.items()}

    def peer(self, server: str) -> PeerClient:
        """The client of one configured server (created on first use)."""
        if self._closed or self._session is None:
            raise DispatcherClosed("the dispatcher is not open: use `async with Dispatcher(...)`")
        if server not in self._lanes:
            raise NotFound(
                f"unknown server {server!r} (known: {self._known_servers()})", field="server"
            )
        if server not in self._peers:
            self._peers[server] = PeerClient(
                self.config.servers[server], self._session, timeouts=self.config.timeouts
            )
        return self._peers[server]

    async def health_check(self, server: str) -> bool:
        """Whether the server answers `/system_stats` within the request timeout."""
        try:
            await self.peer(server).system_stats()
        except DispatchError:
            return False
        return True

    async def status(self) -> dict[str, ServerStatus]:
        """Every server's state, asked of all of them at once, within one deadline (see
        `server_status`): one slow or hostile server cannot hold up or fail the round."""
        names = list(self._lanes)
        found = await asyncio.gather(*(self.server_status(name) for name in names))
        return dict(zip(names, found, strict=True))

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
        lanes = [self._lanes[name] for name in self.servers_for(spec.route, server=spec.server)]
        cache_key = spec.cache_key or (run.request_key if spec.cache else None)
        hit = self._cache_lookup(spec.route, cache_key)
        if hit is not None:
            return hit
        timeout = spec.timeout if spec.timeout is not None else self.config.timeouts.job
        try:
            async with asyncio.timeout(timeout):
                if len(lanes) > 1:
                    lanes = await self._able(run, lanes)
                result = await self._from_journal(run, lanes)
                if result is None:
                    result = await self._execute_with_retries(run, lanes)
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

    async def _execute_with_retries(self, run: JobRun, lanes: Sequence[Lane]) -> DispatchResult:
        """Fail over to another server of the pool, or wait for the only one to come back."""
        failed_here: set[str] = set()
        for attempt in itertools.count():
            usable = await self._usable(lanes)
            candidates = [lane for lane in usable if lane.name not in failed_here] or usable
            try:
                return await self._execute(run, candidates)
            except DispatchError as error:
                if not is_transient(error):
                    raise
                run.last_error = error
                if isinstance(error, PromptLost):
                    self.counts["resubmitted"] += 1  # once per loss, wherever it lands
                    continue
                culprit = self._lanes.get(error.server or "")
                if culprit is not None and counts_against_server(error):
                    culprit.record_failure(time.monotonic())
                    failed_here.add(culprit.name)
                # Fail over at once while the pool has a server this job has not seen fail;
                # back off when it has none, or when the failure was elsewhere (a chained
                # input's server).
                if culprit in lanes and not failed_here.issuperset(x.name for x in lanes):
                    self.counts["failed_over"] += 1
                    continue
                self.counts["retried"] += 1
                run.waiting_for = f"server {error.server!r} to come back"
                await asyncio.sleep(backoff(attempt))
        raise AssertionError("unreachable")

    async def _usable(self, lanes: Sequence[Lane]) -> list[Lane]:
        """Lanes whose breaker is closed, plus tripped ones whose cooldown is over and that
        answer a light probe; all of them when none qualifies, so that the job waits."""
        now = time.monotonic()
        for lane in lanes:
            if lane.tripped and lane.retry_at <= now:
                if await self.health_check(lane.name):
                    lane.record_success()
                else:
                    lane.record_failure(time.monotonic())
        return [lane for lane in lanes if not lane.tripped] or list(lanes)

    async def _execute(
        self, run: JobRun, lanes: Sequence[Lane], *, attach_to: str | None = None
    ) -> DispatchResult:
        """Run the job on one of `lanes`; with `attach_to`, wait for that prompt instead."""
        for lane in lanes:
            remaining = self.peer(lane.name).queue_remaining or 0
            lane.external_queue = max(remaining - lane.in_flight, 0)
        names = " or ".join(repr(lane.name) for lane in lanes)
        run.waiting_for = f"a free slot on server {names}"
        run.queued_on = lanes
        models = run.needs.model_files
        switch_cost = self.switch_seconds if self.affinity else 0.0
        lane = await acquire(lanes, models, switch_cost)
        run.reason = _reason(run, lane, lanes, models)
        if models and lane.loaded and not models <= lane.loaded:
            self.counts["model_switches"] += 1
        if models:
            lane.loaded = models
        peer = self.peer(lane.name)
        began = time.monotonic()
        prompt_id = attach_to or str(uuid.uuid4())
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                lane.release()

        def finished() -> None:
            lane.record_duration(time.monotonic() - began)
            lane.record_success()
            release()  # the peer is free: the next job need not wait for our history fetch

        try:
            run.started(lane.name, prompt_id)
            if attach_to is not None:
                await peer.attach(prompt_id, on_progress=run.on_progress)
            else:
                run.waiting_for = f"server {lane.name!r} to accept the uploads and the prompt"
                prompt = await run.prompt_for(peer, _UPLOAD_SUBFOLDER)
                await peer.submit(prompt, prompt_id=prompt_id, on_progress=run.on_progress)
                self.counts["submitted"] += 1
                if self.journal is not None:
                    await self.journal.record(run.request_key, lane.name, prompt_id)
            run.waiting_for = f"server {lane.name!r} to finish prompt {prompt_id}"
            entry = await peer.wait(prompt_id, on_finished=finished)
        except asyncio.CancelledError:
            if not released:
                # The slot stays taken until the peer has let go of the prompt.
                released = True
                self._take_back_later(lane, peer, prompt_id)
            raise
        finally:
            release()
        self.counts["completed"] += 1
        return run.result(peer, prompt_id, entry)

    async def _able(self, run: JobRun, lanes: list[Lane]) -> list[Lane]:
        """The lanes whose servers have every node class and model file the job names.

        A server whose inventory cannot be read counts as able: the peer itself will say.
        """
        now = time.time()
        stale = [
            lane.name
            for lane in lanes
            if (
                lane.name not in self.inventories
                or now - self.inventories[lane.name].fetched_at > self.inventory_max_age
            )
            and now - self._inventory_failed.get(lane.name, 0.0) > _INVENTORY_RETRY
        ]
        if stale:
            # A hung server must not hold every pool job up: past a few seconds, judge it
            # unknown (able) while its read goes on for the next jobs.
            run.waiting_for = f"the inventory of {', '.join(stale)}"
            reads = [self._inventory_read(name) for name in stale]  # wait never cancels them
            await asyncio.wait(reads, timeout=min(_INVENTORY_WAIT, self.config.timeouts.request))
        lacking = {}
        for lane in lanes:
            inventory = self.inventories.get(lane.name)
            missing = inventory.missing(run.needs) if inventory is not None else []
            if missing:
                lacking[lane.name] = missing
        able = [lane for lane in lanes if lane.name not in lacking]
        if not able:
            where = "; ".join(f"{name} lacks {', '.join(m)}" for name, m in lacking.items())
            raise RoutingError(
                f"no server of route {run.spec.route!r} can run this workflow: {where}"
            )
        return able

    async def _from_journal(self, run: JobRun, lanes: Sequence[Lane]) -> DispatchResult | None:
        """The result of the same request sent before, if its prompt is still known."""
        if self.journal is None:
            return None
        key = run.request_key
        entry = await self.journal.find(key)
        lane = self._lanes.get(entry.server) if entry is not None else None
        if entry is None or lane is None or lane not in lanes:
            return None
        peer = self.peer(lane.name)
        try:
            where = await peer.locate(entry.prompt_id)
            history = await peer.history(entry.prompt_id) if where == "done" else None
        except DispatchError:
            return None  # cannot tell: run it again (at least once, never lost)
        failed = history is not None and error_from_history(
            peer.name, entry.prompt_id, history, peer.scrub
        )
        if where is None or failed:
            await self.journal.forget(key)
            return None
        self.counts["attached"] += 1
        if history is not None:
            return run.result(peer, entry.prompt_id, history)
        return await self._execute(run, [lane], attach_to=entry.prompt_id)

    # -- helpers ------------------------------------------------------------------------

    def _cache_lookup(self, route: str, key: str | None) -> DispatchResult | None:
        if key is None or not self.config.cache.enabled:
            return None
        hit = self.cache.get(route, key)
        if hit is None:
            return None
        return dataclasses.replace(hit.value, cached=True)

    def _take_back_later(self, lane: Lane, peer: PeerClient, prompt_id: str) -> None:
        """Cancel a prompt we stopped waiting for, then free its slot once the peer drops it.

        ComfyUI interrupts only between nodes, so the prompt may run on for a while; holding
        the slot until then keeps the peer at its `max_in_flight`.
        """

        async def take_back() -> None:
            try:
                with contextlib.suppress(DispatchError):
                    await peer.cancel(prompt_id)
                    async with asyncio.timeout(self.config.timeouts.job):
                        while await peer.locate(prompt_id) in ("pending", "running"):  # noqa: ASYNC110 - polls the peer
                            await asyncio.sleep(self.config.timeouts.poll_interval)
            except TimeoutError:
                pass
            finally:
                lane.release()

        task = asyncio.create_task(take_back(), name=f"take-back:{prompt_id}")
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def server_status(self, name: str) -> ServerStatus:
        """One server's state, asked now: reachable, latency, queue, VRAM, version.

        Never raises for what the server does: one that answers late (past
        `timeouts.request`, at most 10 s), wrongly or with hostile bytes is shown offline,
        with a reason in our words.
        """
        lane = self._lanes.get(name)
        if lane is None:
            raise NotFound(
                f"unknown server {name!r} (known: {self._known_servers()})", field="server"
            )
        peer = self.peer(name)
        base = ServerStatus(
            name=name,
            url=shown_url(lane.server.url),
            enabled=lane.server.enabled,
            online=False,
            in_flight=lane.in_flight,
            failures=lane.failures,
            circuit_open=lane.tripped,
            seconds_per_job=_rounded(lane.seconds_per_job),
            calibrated_seconds=_rounded(lane.calibrated),
            loaded_models=tuple(sorted(lane.loaded)),
            dropped_frames=peer.dropped_frames,
        )
        deadline = min(self.config.timeouts.request, _STATUS_DEADLINE)
        try:
            async with asyncio.timeout(deadline):
                return await _probe(peer, base)
        except DispatchError as error:
            return dataclasses.replace(base, error=str(error))
        except TimeoutError:
            return dataclasses.replace(base, error=f"no answer within {deadline:g} s")
        except Exception as error:  # whatever a hostile answer breaks: never the whole round
            _log.warning("server %r: status failed (%s)", name, type(error).__name__)
            reason = f"its answer could not be read ({type(error).__name__})"
            return dataclasses.replace(base, error=reason)

    def _known_servers(self) -> str:
        return ", ".join(sorted(self._lanes)) or "none configured"


async def _probe(peer: PeerClient, base: ServerStatus) -> ServerStatus:
    """`base` filled from the server's `/system_stats` and `/prompt`, each field checked."""
    began = time.monotonic()
    stats = await peer.system_stats()
    latency = (time.monotonic() - began) * 1000
    queue = await peer.get_json("/prompt")
    devices = stats.get("devices")
    device = devices[0] if isinstance(devices, list) and devices else {}
    device = device if isinstance(device, Mapping) else {}
    system = stats.get("system")
    version = system.get("comfyui_version") if isinstance(system, Mapping) else None
    exec_info = queue.get("exec_info") if isinstance(queue, Mapping) else None
    remaining = exec_info.get("queue_remaining") if isinstance(exec_info, Mapping) else None
    return dataclasses.replace(
        base,
        online=True,
        latency_ms=round(latency, 1),
        queue_depth=_int_or_none(remaining),
        vram_free=_int_or_none(device.get("vram_free")),
        vram_total=_int_or_none(device.get("vram_total")),
        comfyui_version=peer.scrub(str(version), 100) if version is not None else None,
    )


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def _calibration_workflow() -> dict[str, Any]:
    """Image work every ComfyUI has, no model needed: blur and invert a 1024² batch."""
    color = random.randrange(0x1000000)
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 1024, "height": 1024, "batch_size": 2, "color": color},
        },
        "2": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["1", 0], "blur_radius": 9, "sigma": 3.0},
        },
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }


def _reason(run: JobRun, lane: Lane, lanes: Sequence[Lane], models: frozenset[str]) -> str:
    if run.spec.server is not None:
        return f"the job named server {lane.name!r}"
    if len(lanes) == 1:
        return f"route {run.spec.route!r} goes to {lane.name!r}"
    if models and models <= lane.loaded:
        return f"{lane.name!r} had {', '.join(sorted(models))} loaded already"
    return f"{lane.name!r} was the first free of {len(lanes)} servers able to run it"


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
