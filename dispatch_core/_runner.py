"""How one job runs on the servers it may use: a slot, its uploads and prompt, its result.

A job takes a slot on one of its servers (in turn, or where the plan that counts model
loads puts it, see `_scheduler`), submits its prompt under an id we mint, and frees the
slot the moment the peer is done. A failure that may pass fails over to another server of
the pool, or backs off and tries again; a prompt the peer forgot is submitted again. With
a journal, a request sent before attaches to its prompt instead of running again. A job
cancelled meanwhile takes its prompt back from the peer, and keeps its slot until the peer
lets go.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import time
import uuid
from collections.abc import Sequence

from ._job import JobRun
from ._journal import Journals
from ._lanes import Lane
from ._peer import PeerClient
from ._residency import Booking
from ._retry import backoff, counts_against_server, is_transient
from ._servers import Servers
from ._watch import error_from_history
from .errors import DispatchError, PromptLost
from .result import DispatchResult

__all__ = ["Runner"]

_UPLOAD_SUBFOLDER = "dispatch"
_NONE_FAILED: frozenset[str] = frozenset()


class Runner:
    """Runs jobs on the servers' lanes; counts what happened."""

    def __init__(self, servers: Servers, journal: Journals | None):
        self.servers = servers
        self.journal = journal
        self.affinity = True
        """Plan where jobs that need models run, counting loads; off, the least busy wins."""
        self.counts: collections.Counter[str] = collections.Counter()
        """How many prompts were submitted, completed, resubmitted after a loss, failed over
        to another server, or retried after a back-off."""
        self._cleanups: set[asyncio.Task[None]] = set()

    @property
    def switch_seconds(self) -> float | None:
        """Seconds a model load is assumed to take on a server until one is measured there
        (None: 1.1 warm jobs there)."""
        return self.servers.scheduler.switch_seconds

    @switch_seconds.setter
    def switch_seconds(self, seconds: float | None) -> None:
        self.servers.scheduler.switch_seconds = seconds

    async def close(self, grace: float) -> None:
        """Give each cancelled prompt `grace` seconds to be taken back, then stop waiting."""
        if self._cleanups:
            await asyncio.wait(self._cleanups, timeout=grace)
            for task in list(self._cleanups):
                task.cancel()
            await asyncio.gather(*self._cleanups, return_exceptions=True)

    async def health_check(self, server: str) -> bool:
        """Whether the server answers `/system_stats` within the request timeout."""
        try:
            await self.servers.peer(server).system_stats()
        except DispatchError:
            return False
        return True

    async def execute(self, run: JobRun, lanes: Sequence[Lane]) -> DispatchResult:
        """Fail over to another server of the pool, or wait for the only one to come back."""
        failed_here = _NONE_FAILED  # no set of its own, and no closure, while all is well
        for attempt in itertools.count():
            usable = await self._usable(lanes)
            candidates = _untried(usable, failed_here)
            try:
                return await self.run_on(run, candidates)
            except DispatchError as error:
                if not is_transient(error):
                    raise
                run.last_error = error
                if isinstance(error, PromptLost):
                    self.counts["resubmitted"] += 1  # once per loss, wherever it lands
                    continue
                culprit = self.servers.lanes.get(error.server or "")
                if culprit is not None and counts_against_server(error):
                    culprit.record_failure(time.monotonic())
                    failed_here |= {culprit.name}
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

    async def _usable(self, lanes: Sequence[Lane]) -> Sequence[Lane]:
        """Lanes whose breaker is closed, plus tripped ones whose cooldown is over and that
        answer a light probe; all of them when none qualifies, so that the job waits."""
        now = time.monotonic()
        for lane in lanes:
            if lane.tripped and lane.retry_at <= now:
                if await self.health_check(lane.name):
                    lane.record_success()
                else:
                    lane.record_failure(time.monotonic())
        if not any(lane.tripped for lane in lanes):
            return lanes  # the usual case: no list kept per waiting job
        return [lane for lane in lanes if not lane.tripped] or list(lanes)

    async def run_on(
        self,
        run: JobRun,
        lanes: Sequence[Lane],
        *,
        attach_to: str | None = None,
        send_as: str | None = None,
    ) -> DispatchResult:
        """Run the job on one of `lanes`; with `attach_to`, wait for that prompt instead.
        `send_as`: the prompt id to send it under, when a shared queue chose (and recorded)
        one as the job was taken; else a new one."""
        for lane in lanes:
            remaining = self.servers.peer(lane.name).queue_remaining or 0
            lane.external_queue = max(remaining - lane.in_flight, 0)
        names = " or ".join(repr(lane.name) for lane in lanes)
        run.waiting_for = f"a free slot on server {names}"
        run.queued_on = lanes
        models = run.needs.model_files
        lane, booking = await self.servers.scheduler.acquire(
            lanes, models, planned=self.affinity, nodes=len(run.builder.view()), order=run.arrival
        )
        run.reason = _reason(run, lane, lanes, models, booking.held)
        if booking.loads and booking.held:
            self.counts["model_switches"] += 1
        prompt_id = attach_to or send_as or str(uuid.uuid4())
        return await self._run_in_slot(run, lane, booking, prompt_id, attach=bool(attach_to))

    async def _run_in_slot(
        self, run: JobRun, lane: Lane, booking: Booking, prompt_id: str, *, attach: bool
    ) -> DispatchResult:
        """The job's prompt (sent, or with `attach` waited for) on the slot it was granted,
        the slot freed once the peer is done. Apart from `run_on`: its closures make
        cells, which a job waiting for its slot (thousands may) would otherwise keep for
        the garbage collector to walk."""
        peer = self.servers.peer(lane.name)
        began = time.monotonic()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                lane.release()

        def finished() -> None:
            run.executed = time.time()
            seconds = time.monotonic() - began
            scheduler = self.servers.scheduler
            lane.residency.finish(booking, seconds, lambda f: scheduler.load_cost(lane, f))
            lane.record_success()
            release()  # the peer is free: the next job need not wait for our history fetch

        try:
            run.started(lane.name, prompt_id)
            if run.on_start is not None:
                await run.on_start(lane.name, prompt_id)
            if attach:
                await peer.attach(prompt_id, on_progress=run.on_progress)
            else:
                run.waiting_for = f"server {lane.name!r} to accept the uploads and the prompt"
                prompt = await run.prompt_for(peer, _UPLOAD_SUBFOLDER)
                await peer.submit(
                    prompt,
                    prompt_id=prompt_id,
                    on_progress=run.on_progress,
                    on_frame=run.on_frame,
                    extra_data=run.spec.extra_data,
                )
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
            lane.residency.drop(booking)  # not done: it shows nothing of the server's speed
            release()
        self.counts["completed"] += 1
        return run.result(peer, prompt_id, entry)

    async def from_journal(self, run: JobRun, lanes: Sequence[Lane]) -> DispatchResult | None:
        """The result of the same request sent before, if its prompt is still known."""
        if self.journal is None:
            return None
        key = run.request_key
        entry = await self.journal.find(key)
        lane = self.servers.lanes.get(entry.server) if entry is not None else None
        if entry is None or lane is None or lane not in lanes:
            return None
        result = await self.attach(run, lane, entry.prompt_id)
        if result is None:
            await self.journal.forget(key)
        return result

    async def attach(self, run: JobRun, lane: Lane, prompt_id: str) -> DispatchResult | None:
        """The result of a prompt sent before, waited for if it still runs; None if the
        peer has lost it, failed it, or cannot tell (then it is run again: at least once)."""
        peer = self.servers.peer(lane.name)
        try:
            where = await peer.locate(prompt_id)
            history = await peer.history(prompt_id) if where == "done" else None
        except DispatchError:
            return None
        failed = history is not None and error_from_history(
            peer.name, prompt_id, history, peer.scrub
        )
        if where is None or failed:
            return None
        self.counts["attached"] += 1
        if history is not None:
            return run.result(peer, prompt_id, history)
        return await self.run_on(run, [lane], attach_to=prompt_id)

    # -- helpers ------------------------------------------------------------------------

    def _take_back_later(self, lane: Lane, peer: PeerClient, prompt_id: str) -> None:
        """Cancel a prompt we stopped waiting for, then free its slot once the peer drops it.

        ComfyUI interrupts only between nodes, so the prompt may run on for a while; holding
        the slot until then keeps the peer at its `max_in_flight`.
        """

        async def take_back() -> None:
            try:
                with contextlib.suppress(DispatchError):
                    await peer.cancel(prompt_id)
                    async with asyncio.timeout(self.servers.config.timeouts.job):
                        while await peer.locate(prompt_id) in ("pending", "running"):  # noqa: ASYNC110 - polls the peer
                            await asyncio.sleep(self.servers.config.timeouts.poll_interval)
            except TimeoutError:
                pass
            finally:
                lane.release()

        task = asyncio.create_task(take_back(), name=f"take-back:{prompt_id}")
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)


def _untried(lanes: Sequence[Lane], failed: frozenset[str]) -> Sequence[Lane]:
    """The lanes that have not failed this job, or all of them if every one has."""
    if not failed:
        return lanes
    return [lane for lane in lanes if lane.name not in failed] or lanes


def _reason(
    run: JobRun, lane: Lane, lanes: Sequence[Lane], models: frozenset[str], held: frozenset[str]
) -> str:
    if run.spec.server is not None:
        return f"the job named server {lane.name!r}"
    if len(lanes) == 1:
        return f"route {run.spec.route!r} goes to {lane.name!r}"
    if models and models <= held:
        return f"{lane.name!r} had {', '.join(sorted(models))} loaded already"
    if models and held:
        loading = ", ".join(sorted(models))
        return f"{lane.name!r} was free, and loading {loading} there finishes the queue soonest"
    return f"{lane.name!r} was the first free of {len(lanes)} servers able to run it"
