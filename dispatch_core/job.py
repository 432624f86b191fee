"""One vocabulary for a job: what is asked (`JobSpec`), where it stands (`JobState`), and
a handle on one that runs (`JobHandle`).

The node, the routes, the CLI and the library all build a `JobSpec`; the service and the
dispatcher take it as it is. `Dispatcher.submit(spec)` answers a `JobHandle`:

    handle = dispatcher.submit(JobSpec("generate", workflow, {"6.text": "a red jacket"}))
    handle.status()                  # JobState.QUEUED, RUNNING, then DONE/FAILED/CANCELLED
    result = await handle.result(timeout=60)
    handle.cancel()                  # interrupts its prompt on the peer
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .result import DispatchResult
    from .templates import Template
    from .workflow import WorkflowBuilder

__all__ = ["TERMINAL_STATES", "JobHandle", "JobSpec", "JobState"]


class JobState(enum.StrEnum):
    """Where a job stands; the last three are final."""

    QUEUED = "queued"
    """Accepted, waiting for a server's free slot (or for its inventory)."""
    RUNNING = "running"
    """Submitted to a peer, which queues or runs it."""
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


@dataclass(frozen=True)
class JobSpec:
    """One job as every caller describes it.

    Give a `workflow` (API format, or a WorkflowBuilder) or a loaded `template`. `values`
    set its inputs, all in one shape: a template's parameter names (`"prompt"`), paths
    `NODE.INPUT` (`"6.text"`, `"Positive Prompt.text"`), or a node id with an object of
    inputs (`{"6": {"text": …}}`); bytes set an image input, uploaded where the job lands.
    """

    route: str
    """The route (kind of workflow) whose servers may run it; ignored when `server` names
    one. `"auto"` routes are pools of every enabled server able to run the workflow."""
    workflow: Mapping[str, Any] | WorkflowBuilder | None = None
    values: Mapping[str, Any] | None = None
    template: Template | None = None
    server: str | None = None
    """Run on this server, whatever the route says."""
    timeout: float | None = None
    """Seconds from acceptance to outputs in hand; the config's `timeouts.job` if None."""
    output_node: str | None = None
    """Keep only this node's outputs (id, title or class)."""
    cache_key: str | None = None
    """Serve from the result cache under this key (a prompt, say), fuzzily if configured."""
    cache: bool = False
    """Serve a repeat of this very request (same workflow, values and images) from the
    result cache, when the config's cache is on."""
    name: str | None = None
    """What a job list calls it (a remote group's title, say); else the template's name."""
    webhook: str | None = None
    """A URL that receives the job's outcome when it ends, signed (the service sends it;
    the route's or the config's `webhooks` URL if None). The dispatcher alone ignores it."""
    extra_data: Mapping[str, Any] | None = None
    """ComfyUI's `extra_data` for the prompt (`extra_pnginfo`: what SaveImage writes into
    its PNGs); the client id is the dispatcher's own."""
    avoid: frozenset[str] = frozenset()
    """Servers of the route this job must not run on: the ComfyUI whose node sent it, which
    is busy running that node and would never start the job."""

    def __post_init__(self) -> None:
        if (self.workflow is None) == (self.template is None):
            raise TypeError("a JobSpec takes a workflow or a template, one of the two")

    @property
    def label(self) -> str:
        """What a job list shows: its name, the template's name, or "workflow"."""
        if self.name:
            return self.name
        return self.template.name if self.template is not None else "workflow"


class JobHandle:
    """A job that was submitted: its state, its result, a way to cancel it."""

    def __init__(self, spec: JobSpec, task: asyncio.Task[DispatchResult]):
        self.spec = spec
        self._task = task
        self._running = False
        self.server: str | None = None
        self.prompt_id: str | None = None

    def started(self, server: str, prompt_id: str) -> None:
        """Told by the dispatcher when the prompt reaches its peer."""
        self._running, self.server, self.prompt_id = True, server, prompt_id

    def status(self) -> JobState:
        if not self._task.done():
            return JobState.RUNNING if self._running else JobState.QUEUED
        if self._task.cancelled():
            return JobState.CANCELLED
        return JobState.FAILED if self._task.exception() is not None else JobState.DONE

    async def result(self, timeout: float | None = None) -> DispatchResult:
        """The outputs, or the job's error; waiting at most `timeout` seconds (the job
        goes on if the wait times out)."""
        async with asyncio.timeout(timeout):
            return await asyncio.shield(self._task)

    def cancel(self) -> None:
        """Stop the job; a prompt already on its peer is taken back or interrupted there."""
        self._task.cancel()

    def when_done(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the job has ended, however it ended."""
        self._task.add_done_callback(lambda _: callback())

    def failure(self) -> BaseException | None:
        """Why an ended job did not bring a result (CancelledError when cancelled)."""
        if self._task.cancelled():
            return asyncio.CancelledError()
        return self._task.exception()

    def done_result(self) -> DispatchResult:
        """The result of a job that ended well."""
        return self._task.result()

    async def wait(self) -> None:
        """Until the job has ended, however it ended."""
        await asyncio.wait([self._task])

    @property
    def task(self) -> asyncio.Task[DispatchResult]:
        """The task running the job (to wait on beside something else)."""
        return self._task

    def __repr__(self) -> str:
        return f"<JobHandle {self.spec.label} on {self.spec.route!r}: {self.status()}>"
