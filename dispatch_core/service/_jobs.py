"""The service's jobs: run through the dispatcher, recorded for the panels and routes.

Every job, whoever asked for it (a node, `POST /dispatch/run`, a fan-out), gets a record
before it starts; the record follows it to its end and is kept on disk (see `_activity`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from .._dispatcher import Dispatcher
from .._peer_http import Download
from .._watch import FrameCallback, ProgressCallback
from ..config import Config
from ..errors import Conflict, DispatchError, NotFound, QueueUnreachable, RoutingError
from ..job import JobHandle, JobSpec
from ..result import DispatchResult, Progress
from ..templates import Template, suggest_parameters
from ._activity import Activity, JobRecord
from ._templates import Templates

__all__ = ["Jobs", "fan_out_seeds"]


class Jobs:
    """Runs jobs through the dispatcher, keeps their records and handles."""

    def __init__(
        self,
        ready: Callable[[], Awaitable[Dispatcher]],
        config: Callable[[], Config],
        templates: Templates,
        activity: Activity,
        webhook_for: Callable[[str, str | None], dict[str, Any] | None] = lambda r, w: None,
    ):
        self._ready = ready
        self._config = config
        self._templates = templates
        self.activity = activity
        self._webhook_for = webhook_for
        """(route, the job's own URL) → the record's webhook; refuses a URL out of bounds."""
        self._handles: dict[str, JobHandle] = {}
        """Job id → handle, while the job runs: what `cancel` stops."""

    def spec(
        self,
        route: str,
        *,
        template: str | Template | None = None,
        workflow: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> JobSpec:
        """The JobSpec of a job asked by name: its template loaded (a bare workflow gets the
        parameters `suggest_parameters` finds), a repeat served from the cache when on."""
        if isinstance(template, str):
            template = self._templates.load(template)
        if template is None:
            if workflow is None:
                raise RoutingError("name a template or send a workflow", field="template")
            template = Template("workflow", workflow, suggest_parameters(workflow))
        return JobSpec(route, template=template, cache=True, **fields)

    async def submit(
        self,
        spec: JobSpec,
        *,
        on_progress: ProgressCallback | None = None,
        key: str | None = None,
        on_frame: FrameCallback | None = None,
    ) -> tuple[JobRecord, JobHandle]:
        """Start a job; its record follows it. A bad value is refused here, not later.

        `key` names the API key that asked for it, for its record, logs and metrics;
        `on_frame` hears its prompt's frames as the peer sent them (the ComfyUI API's relay)."""
        dispatcher = await self._ready()
        webhook = self._webhook_for(spec.route, spec.webhook)

        async def progress(report: Progress) -> None:
            self.activity.running(record, report.server, report.prompt_id)
            if on_progress is not None:
                answer = on_progress(report)
                if inspect.isawaitable(answer):
                    await answer

        job_id = f"j{uuid.uuid4().hex[:16]}"
        handle = dispatcher.submit(spec, on_progress=progress, on_frame=on_frame, job_id=job_id)
        if dispatcher.coordination is not None:
            # Answered for only once it is in the shared queue: a 202 given before could
            # be lost with this process. A queue that cannot be reached fails it here.
            await dispatcher.coordination.queued(job_id, handle.task)
            ended = handle.task.done() and not handle.task.cancelled()
            failure = handle.task.exception() if ended else None
            if isinstance(failure, QueueUnreachable):
                raise failure
        # The job's task starts at the next await, so the record exists before it reports.
        record = self.activity.start(
            spec.label, spec.route, spec.server, key=key, webhook=webhook, job_id=job_id
        )
        self._handles[record.id] = handle
        handle.when_done(lambda: self._ended(record, handle))
        return record, handle

    async def run(
        self, spec: JobSpec, *, on_progress: ProgressCallback | None = None
    ) -> DispatchResult:
        """Run a job and wait for it; cancelling the wait cancels the job."""
        _, handle = await self.submit(spec, on_progress=on_progress)
        try:
            return await handle.result()
        except asyncio.CancelledError:
            handle.cancel()
            raise

    async def cancel(self, job_id: str, *, grace: float = 10.0) -> JobRecord:
        """Stop a queued or running job (its prompt interrupted on the peer); its record,
        cancelled once the job has let go (at most `grace` seconds later)."""
        record = await self.find(job_id)
        handle = self._handles.get(job_id)
        shared = (await self._ready()).coordination
        if handle is None and shared is not None and not record.terminal:
            await shared.cancel(job_id)  # it waits or runs in another process
            return self.record(job_id)
        if handle is None:
            raise Conflict(f"job {job_id} has ended already ({record.state})", field="id")
        handle.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await handle.wait()
        return record

    async def fan_out(
        self,
        servers: Sequence[str],
        spec: JobSpec,
        *,
        seed: int | None = None,
        partial: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> list[DispatchResult | DispatchError]:
        """`spec` on every server at once, server *i* with `seed + i`; results in server
        order. Without `partial`, the first failure cancels the others and is raised."""
        if not servers:
            raise RoutingError("fan-out needs at least one server")
        if seed is not None and (spec.template is None or "seed" not in spec.template.parameters):
            raise RoutingError(
                f"template {spec.label!r} has no 'seed' parameter to vary per server; "
                "add one (NODE.INPUT of the sampler's seed) or leave the seed out"
            )
        seeds = fan_out_seeds(seed, servers)
        specs = [
            dataclasses.replace(
                spec,
                route="fan-out",
                server=server,
                values=dict(spec.values or {}) | ({"seed": seeds[server]} if seeds else {}),
            )
            for server in servers
        ]
        return await self.run_many(specs, partial=partial, on_progress=on_progress)

    async def run_many(
        self,
        specs: Sequence[JobSpec],
        *,
        partial: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> list[DispatchResult | DispatchError]:
        """Run jobs at once; results in order. Without `partial`, the first failure cancels
        the others and is raised; with it, a job's DispatchError takes its place."""
        runs = [self.run(spec, on_progress=on_progress) for spec in specs]
        if partial:
            found = await asyncio.gather(*runs, return_exceptions=True)
            for item in found:
                if not isinstance(item, (DispatchResult, DispatchError)):
                    raise item  # not a peer's failure: a bug or a cancellation
            return [item for item in found if isinstance(item, (DispatchResult, DispatchError))]
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(run) for run in runs]
        except BaseExceptionGroup as failures:
            raise failures.exceptions[0] from None
        return [task.result() for task in tasks]

    def _ended(self, record: JobRecord, handle: JobHandle) -> None:
        self._handles.pop(record.id, None)
        failure = handle.failure()
        if failure is None:
            self.activity.finished(record, handle.done_result())
        else:
            self.activity.failed(record, failure)

    def record(self, job_id: str) -> JobRecord:
        record = self.activity.get(job_id)
        if record is None:
            raise NotFound(f"no job {job_id[:100]!r}", field="id")
        return record

    async def find(self, job_id: str) -> JobRecord:
        """A job's record: kept here, or, with a shared queue, the queue's (a job of
        another process, or one older than the list kept here)."""
        record = self.activity.get(job_id)
        wanted = record is None and self.activity.shared
        shared = (await self._ready()).coordination if wanted else None
        found = await shared.record(job_id) if shared is not None else None
        if found is not None:
            return JobRecord.from_dict(found)
        return self.record(job_id)

    async def open_file(
        self, job_id: str, index: int
    ) -> tuple[AbstractAsyncContextManager[Download], str]:
        """An output file of a job, to stream from the server that made it, and its name.

        Only that server is asked, under the name it gave: the file is that server's own.
        """
        record = await self.find(job_id)
        if not 0 <= index < len(record.files):
            raise NotFound(f"job {job_id} has {len(record.files)} files", field="index")
        output = record.files[index]
        if output.server not in self._config().servers:
            raise NotFound(
                f"server {output.server!r}, which made this file, is no longer configured",
                field="server",
            )
        peer = (await self._ready()).peer(output.server)
        return peer.open_view(output.filename, output.subfolder, output.type), output.filename

    async def open_output(
        self, server: str, filename: str, subfolder: str, kind: str
    ) -> AbstractAsyncContextManager[Download]:
        """A file a configured server made (`/view` of the ComfyUI API), to stream from it:
        what that server's own `/view` would serve, asked of that server only."""
        if server not in self._config().servers:
            raise NotFound(f"no server {server[:100]!r} is configured", field="subfolder")
        return (await self._ready()).peer(server).open_view(filename, subfolder, kind)


def fan_out_seeds(seed: int | None, servers: Sequence[str]) -> dict[str, int]:
    """Server *i* of a fan-out gets `seed + i`, wrapped at 2^64 as ComfyUI's seeds are."""
    if seed is None:
        return {}
    return {server: (seed + index) % 2**64 for index, server in enumerate(servers)}
