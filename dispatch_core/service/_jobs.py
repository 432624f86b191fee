"""The service's jobs: run through the dispatcher, recorded for the panels and routes.

Every job, whoever asked for it (a node, `POST /dispatch/run`, a fan-out), gets a record
before it starts; the record follows it to its end and is kept on disk (see `_activity`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from .._peer_http import Download
from .._watch import ProgressCallback
from ..config import Config
from ..dispatcher import Dispatcher
from ..errors import DispatchError, NotFound, RoutingError
from ..result import DispatchResult, Progress
from ..templates import Template, suggest_parameters
from ..workflow import WorkflowBuilder
from ._activity import Activity, JobRecord
from ._support import Background
from ._templates import Templates

__all__ = ["Jobs", "fan_out_seeds"]


class Jobs:
    """Runs jobs and keeps their records."""

    def __init__(
        self,
        ready: Callable[[], Awaitable[Dispatcher]],
        config: Callable[[], Config],
        templates: Templates,
        activity: Activity,
        background: Background,
    ):
        self._ready = ready
        self._config = config
        self._templates = templates
        self.activity = activity
        self._background = background

    async def run(
        self,
        route: str,
        *,
        template: str | Template | None = None,
        workflow: Mapping[str, Any] | None = None,
        values: Mapping[str, Any] | None = None,
        server: str | None = None,
        timeout: float | None = None,
        output_node: str | None = None,
        on_progress: ProgressCallback | None = None,
        record: JobRecord | None = None,
    ) -> DispatchResult:
        """Run a saved template (or a workflow) with `values` set, and record the job."""
        try:
            dispatcher = await self._ready()
            chosen = self.template(template, workflow)
            builder = chosen.builder(values)
            _check_output_node(builder, output_node)
        except BaseException as error:
            if record is not None:
                self.activity.failed(record, error)
            raise
        if record is None:
            record = self.activity.start(chosen.name, route, server)

        async def progress(report: Progress) -> None:
            self.activity.running(record, report.server, report.prompt_id)
            if on_progress is not None:
                answer = on_progress(report)
                if inspect.isawaitable(answer):
                    await answer

        try:
            result = await dispatcher.run(
                route,
                builder,
                server=server,
                timeout=timeout,
                output_node=output_node,
                on_progress=progress,
            )
        except BaseException as error:
            self.activity.failed(record, error)
            raise
        self.activity.finished(record, result)
        return result

    def submit(self, route: str, **job: Any) -> JobRecord:
        """Start `run(route, **job)` in the background; its record tells how it goes."""
        chosen = self.template(job.get("template"), job.get("workflow"))
        builder = chosen.builder(job.get("values"))  # bad values are refused now, not later
        _check_output_node(builder, job.get("output_node"))
        record = self.activity.start(chosen.name, route, job.get("server"))

        async def background() -> None:
            with contextlib.suppress(Exception):  # the record holds the error
                await self.run(route, record=record, **(job | {"template": chosen}))

        self._background.start(background(), f"dispatch-{record.id}")
        return record

    async def fan_out(
        self,
        servers: Sequence[str],
        *,
        template: str | Template | None = None,
        workflow: Mapping[str, Any] | None = None,
        values: Mapping[str, Any] | None = None,
        seed: int | None = None,
        partial: bool = False,
        timeout: float | None = None,
        output_node: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> list[DispatchResult | DispatchError]:
        """The same job on every server at once, server *i* with `seed + i`; results in
        server order. Without `partial`, the first failure cancels the others and is raised.
        """
        if not servers:
            raise RoutingError("fan-out needs at least one server")
        chosen = self.template(template, workflow)
        if seed is not None and "seed" not in chosen.parameters:
            raise RoutingError(
                f"template {chosen.name!r} has no 'seed' parameter to vary per server; "
                "add one (NODE.INPUT of the sampler's seed) or leave the seed out"
            )
        seeds = fan_out_seeds(seed, servers)
        jobs = [
            {
                "template": chosen,
                "values": dict(values or {}) | ({"seed": seeds[server]} if seeds else {}),
                "server": server,
                "timeout": timeout,
                "output_node": output_node,
                "on_progress": on_progress,
            }
            for server in servers
        ]
        return await self.run_many("fan-out", jobs, partial=partial)

    async def run_many(
        self, route: str, jobs: Sequence[Mapping[str, Any]], *, partial: bool = False
    ) -> list[DispatchResult | DispatchError]:
        """Run jobs at once (each the keyword arguments of `run`); results in order.

        Without `partial`, the first failure cancels the others and is raised; with it, a
        job's DispatchError takes its place in the list.
        """
        runs = [self.run(route, **job) for job in jobs]
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

    def template(
        self, template: str | Template | None, workflow: Mapping[str, Any] | None = None
    ) -> Template:
        """A template by name (read from the folder), as given, or made of a bare workflow."""
        if isinstance(template, Template):
            return template
        if template is not None:
            return self._templates.load(template)
        if workflow is None:
            raise RoutingError("name a template or send a workflow")
        return Template("workflow", workflow, suggest_parameters(workflow))

    def record(self, job_id: str) -> JobRecord:
        record = self.activity.get(job_id)
        if record is None:
            raise NotFound(f"no job {job_id[:100]!r}", field="id")
        return record

    async def open_file(
        self, job_id: str, index: int
    ) -> tuple[AbstractAsyncContextManager[Download], str]:
        """An output file of a job, to stream from the server that made it, and its name.

        Only that server is asked, under the name it gave: the file is that server's own.
        """
        record = self.record(job_id)
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


def fan_out_seeds(seed: int | None, servers: Sequence[str]) -> dict[str, int]:
    """Server *i* of a fan-out gets `seed + i`, wrapped at 2^64 as ComfyUI's seeds are."""
    if seed is None:
        return {}
    return {server: (seed + index) % 2**64 for index, server in enumerate(servers)}


def _check_output_node(builder: WorkflowBuilder, output_node: str | None) -> None:
    """A named output node must exist, so a typo is refused before anything runs."""
    if output_node is not None:
        builder.resolve(output_node)
