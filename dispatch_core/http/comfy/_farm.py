"""The farm as one ComfyUI: its prompts queued, running and done, by the client's ids.

Each prompt a client posts becomes one job of the service (the same JobSpec, records,
journal and routing as `POST /dispatch/run`, so the panel lists it too), with a relay
that passes its peer's frames to the client's socket. The farm keeps what ComfyUI keeps
and the engine does not: the client's prompt id and number, its prompt and `extra_data`
for `/queue`, and, once the job has ended, its `/history` entry (in memory, the last
1,000: a page's prompt carries its whole workflow, so ComfyUI's 10,000 could hold GBs).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import DispatchError, ExecutionFailed, Interrupted, PromptRejected
from ...job import JobHandle, JobSpec, JobState
from ...service import DispatchService, JobRecord
from ...workflow import WorkflowBuilder
from ._farm_info import FarmInfo
from ._inputs import Inputs
from ._relay import PromptRelay, marked_outputs
from ._shapes import ComfyRefusal, check_prompt, checked_id, output_nodes
from ._sockets import Sockets

__all__ = ["ROUTE_KEY", "Farm"]

ROUTE_KEY = "dispatch_route"
"""The `extra_data` key that names a prompt's route (else a header, a query, or `auto`)."""
_MAX_HISTORY = 1000
_PRIVATE_EXTRA = ("client_id", ROUTE_KEY)


@dataclass
class _Prompt:
    """One prompt the farm holds, as ComfyUI's queue item tells it."""

    number: float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]
    relay: PromptRelay
    job_id: str
    handle: JobHandle

    def item(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


class Farm:
    """Prompts, their relays and history; the farm's uploads, info and sockets."""

    def __init__(self, service: DispatchService, folder: Path):
        self.service = service
        self.inputs = Inputs(folder)
        self.info = FarmInfo(service, self.inputs.listing)
        self.sockets = Sockets(lambda: len(self.active))
        self.active: dict[str, _Prompt] = {}
        self.history: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._number = 0
        self._claimed: set[str] = set()
        self.page = False
        """Whether ComfyUI's page is served too (its frontend is installed)."""

    async def queue_prompt(self, body: dict[str, Any], route: str) -> dict[str, Any]:
        """ComfyUI's `POST /prompt`: checked, queued as a job; its id, number, node_errors."""
        prompt = check_prompt(body, await self._info_for_checks())
        prompt_id, client_id, extra = _ids_and_extra(body)
        if prompt_id in self.active or prompt_id in self._claimed:
            raise ComfyRefusal(
                "invalid_prompt", f"prompt {prompt_id} is queued already", field="prompt_id"
            )
        self._claimed.add(prompt_id)  # until it is active: a second post waits for nothing
        try:
            relay = PromptRelay(self.sockets, prompt_id, client_id)
            record, handle = await self._submit(route, prompt, extra, relay)
        finally:
            self._claimed.discard(prompt_id)
        info = self.info.cached()
        outputs = output_nodes(prompt, info) if info else list(prompt)
        item_extra = {**extra, "client_id": client_id}
        number = self._number_for(body)
        held = _Prompt(number, prompt_id, prompt, item_extra, outputs, relay, record.id, handle)
        self.active[prompt_id] = held
        handle.when_done(lambda: self._ended(held))
        self.sockets.status()
        return {"prompt_id": prompt_id, "number": number, "node_errors": {}}

    async def _submit(
        self, route: str, prompt: dict[str, Any], extra: dict[str, Any], relay: PromptRelay
    ) -> tuple[JobRecord, JobHandle]:
        """The prompt as a job of the service, its frames to `relay`."""
        spec = JobSpec(
            route,
            workflow=await self._with_uploads(prompt),
            extra_data={k: v for k, v in extra.items() if k not in _PRIVATE_EXTRA},
        )
        try:
            record, handle = await self.service.jobs.submit(spec, on_frame=relay.on_frame)
        except DispatchError as refused:
            raise ComfyRefusal(
                "invalid_prompt", str(refused), field=refused.field or "prompt"
            ) from None
        relay.server = lambda: handle.server  # no frame comes before the next await
        return record, handle

    def check_route(self, route: str) -> str:
        try:
            self.service.config.servers_for(route)
        except DispatchError as unknown:
            raise ComfyRefusal("invalid_prompt", str(unknown), field="route") from None
        return route

    async def _info_for_checks(self) -> dict[str, Any]:
        """The farm's object_info for the prompt's checks; none when no server answers."""
        try:
            return await self.info.object_info(fresh=False, uploads=False)
        except DispatchError:
            return {}

    def _number_for(self, body: dict[str, Any]) -> float:
        """ComfyUI's: the counter, `-counter` with `front`, or the number given."""
        given = body.get("number")
        if isinstance(given, (int, float)) and not isinstance(given, bool):
            return given
        self._number += 1
        return -self._number if body.get("front") is True else self._number

    async def _with_uploads(self, prompt: dict[str, Any]) -> WorkflowBuilder:
        """The prompt; each input naming a file uploaded here takes its bytes along, to be
        uploaded to the peer the job lands on."""
        builder = WorkflowBuilder(prompt)
        for node_id, node in prompt.items():
            for name, value in (node.get("inputs") or {}).items():
                if name in ("image", "mask", "video", "audio", "file") and isinstance(value, str):
                    found = await self.inputs.read(value)
                    if found is not None:
                        builder.set_image(node_id, found[0], input=name, filename=found[1])
        return builder

    def _ended(self, held: _Prompt) -> None:
        """The job ended: its history entry, then its last frames (see `PromptRelay`)."""
        self.active.pop(held.prompt_id, None)
        failure = held.handle.failure()
        if failure is None:
            result = held.handle.done_result()
            outputs = marked_outputs(result.outputs, result.server)
            final = held.relay.made("execution_success")
        else:
            outputs, final = {}, _final(held.relay, failure)
        held.relay.end(final, outputs)
        success = failure is None
        self.history[held.prompt_id] = {
            "prompt": held.item(),
            "outputs": outputs,
            "status": {
                "status_str": "success" if success else "error",
                "completed": success,
                "messages": held.relay.messages,
            },
            "meta": {n: _meta(n) for n in outputs},
        }
        while len(self.history) > _MAX_HISTORY:
            self.history.popitem(last=False)

    def queue(self) -> dict[str, list[list[Any]]]:
        """ComfyUI's `/queue`: prompts on a peer are running, the rest pending."""
        running: list[list[Any]] = []
        pending: list[list[Any]] = []
        for held in self.active.values():
            state = held.handle.status()
            (running if state is JobState.RUNNING else pending).append(held.item())
        return {"queue_running": running, "queue_pending": pending}

    async def cancel(self, prompt_ids: list[str], *, running: bool) -> None:
        """Stop prompts by id: pending ones (`/queue` delete), or running ones (interrupt)."""
        stops = []
        for prompt_id in prompt_ids:
            held = self.active.get(prompt_id)
            if held is not None and (held.handle.status() is JobState.RUNNING) == running:
                stops.append(self._stop(held.job_id))
        await asyncio.gather(*stops)

    async def _stop(self, job_id: str) -> None:
        with contextlib.suppress(DispatchError):  # it ended meanwhile
            await self.service.jobs.cancel(job_id)

    def entry(self, prompt_id: str) -> dict[str, Any] | None:
        return self.history.get(prompt_id)

    async def close(self) -> None:
        await self.sockets.close()


def _ids_and_extra(body: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """The prompt id (given or made), the client id, and `extra_data`, each checked."""
    prompt_id = checked_id(body.get("prompt_id") or str(uuid.uuid4()), "prompt_id")
    extra = body.get("extra_data") or {}
    if not isinstance(extra, dict):
        raise ComfyRefusal("invalid_prompt", "'extra_data' must be an object", field="extra_data")
    client_id = body.get("client_id") or extra.get("client_id")
    return prompt_id, checked_id(client_id, "client_id") if client_id is not None else None, extra


def _final(relay: PromptRelay, failure: BaseException) -> tuple[str, dict[str, Any]]:
    """The frame ComfyUI would have sent for this failure."""
    if isinstance(failure, (asyncio.CancelledError, Interrupted)):
        node = getattr(failure, "node_id", None)
        return relay.made("execution_interrupted", node_id=node, node_type=None, executed=[])
    node_id = node_type = None
    traceback: list[str] = []
    if isinstance(failure, ExecutionFailed):
        node_id, node_type, traceback = failure.node_id, failure.node_type, list(failure.traceback)
    elif isinstance(failure, PromptRejected) and failure.node_errors:
        node_id, node_type = failure.node_errors[0].node_id, failure.node_errors[0].class_type
    return relay.made(
        "execution_error",
        node_id=node_id,
        node_type=node_type,
        executed=[],
        exception_message=str(failure),
        exception_type=getattr(failure, "exception_type", None) or type(failure).__name__,
        traceback=traceback,
        current_inputs={},
        current_outputs=[],
    )


def _meta(node_id: str) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "display_node": node_id,
        "parent_node": None,
        "real_node_id": node_id,
    }
