"""One prompt's run on the fake peer, sending ComfyUI's frames in ComfyUI's order.

It reaches into FakePeer's private state on purpose: the two are one fake, split in two
modules only to keep each readable. What it reaches for is the protocol RunHost, so that
this module need not import the peer that imports it.

The cache is ComfyUI's classic one: outputs are kept by a signature of the node and
everything upstream, and only what the current prompt uses survives its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ._custom import CustomNode
from ._files import FileStore
from ._nodes import (
    Context,
    NodeFailure,
    describe,
    model_file,
    progress_steps,
    run_node,
    time_weight,
)
from ._preview import SAMPLERS, legacy_frame, metadata_frame
from ._ws import SocketHub

__all__ = ["MAX_HISTORY", "PromptRun", "RunHost"]

_T = TypeVar("_T")
_SENSITIVE = ("auth_token_comfy_org", "api_key_comfy_org")
MAX_HISTORY = 10000


class Interrupted(Exception):
    """Raised inside a run where ComfyUI checks its interrupt flag."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


class RunHost(Protocol):
    """What a run reads and changes of the peer it runs on (FakePeer)."""

    models: dict[str, list[str]]
    fail_nodes: dict[str, str]
    custom_nodes: dict[str, CustomNode]
    files: FileStore
    prompt_seconds: Callable[[dict[str, Any]], float] | None
    preview_method: str
    _hub: SocketHub
    _retimed: asyncio.Event
    _interrupt: bool
    _cache: dict[str, tuple[tuple[Any, ...], dict[str, Any] | None]]
    _history: dict[str, dict[str, Any]]
    _running: list[Any] | None

    @property
    def job_seconds(self) -> float: ...

    def _info(self) -> dict[str, Any]: ...

    def _broadcast_status(self) -> None: ...

    def _load_model(self, name: str) -> float: ...


class PromptRun:
    """One prompt's run, emitting ComfyUI's frames in ComfyUI's order."""

    def __init__(self, peer: RunHost, item: list[Any]):
        self.peer = peer
        self.item = item
        self.prompt_id: str = item[1]
        self.prompt: dict[str, Any] = item[2]
        self.client_id: str | None = item[3].get("client_id")
        self.outputs_to_run: list[str] = item[4]
        self.messages: list[list[Any]] = []
        self.states: dict[str, dict[str, Any]] = {}
        self.executed: list[str] = []
        self.ui: dict[str, Any] = {}
        self.current_node: str | None = None
        self.current_inputs: dict[str, Any] = {}
        self.seconds = peer.prompt_seconds(self.prompt) if peer.prompt_seconds else None
        self.started = 0.0
        self.signature: dict[str, str] = {}

    # -- frames -------------------------------------------------------------------------

    def send(self, kind: str, data: dict[str, Any], *, broadcast: bool = False) -> None:
        """To the prompt's client; without one, only broadcast frames go out (to all)."""
        if self.client_id is not None or broadcast:
            self.peer._hub.send(self.client_id, kind, data)

    def message(self, kind: str, data: dict[str, Any], *, broadcast: bool = False) -> None:
        """PromptExecutor.add_message: kept for the history, timestamped, sent."""
        data = {"prompt_id": self.prompt_id, **data, "timestamp": _now_ms()}
        self.messages.append([kind, data])
        self.send(kind, data, broadcast=broadcast)

    def state(self, node_id: str, value: float, maximum: float, state: str) -> None:
        self.states[node_id] = {
            "value": value,
            "max": maximum,
            "state": state,
            "node_id": node_id,
            "prompt_id": self.prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }
        nodes = {k: dict(v) for k, v in self.states.items()}
        self.send("progress_state", {"prompt_id": self.prompt_id, "nodes": nodes}, broadcast=True)

    # -- graph --------------------------------------------------------------------------

    def sources(self, node_id: str) -> list[str]:
        return [v[0] for v in self.prompt[node_id]["inputs"].values() if _is_link(v)]

    def signatures(self) -> dict[str, str]:
        """A hash of each node's class, inputs and upstream signatures (and file contents)."""
        done: dict[str, str] = {}

        def sign(node_id: str, seen: frozenset[str]) -> str:
            if node_id in done:
                return done[node_id]
            node = self.prompt.get(node_id)
            if not isinstance(node, dict) or node_id in seen:
                return f"unresolvable:{node_id}"
            inputs = {
                k: ["link", sign(v[0], seen | {node_id}), v[1]] if _is_link(v) else v
                for k, v in (node.get("inputs") or {}).items()
            }
            parts = [node.get("class_type"), self.is_changed(node), inputs]
            text = json.dumps(parts, sort_keys=True, default=str)
            done[node_id] = hashlib.sha256(text.encode()).hexdigest()
            return done[node_id]

        return {node_id: sign(node_id, frozenset()) for node_id in self.prompt}

    def is_changed(self, node: dict[str, Any]) -> str | None:
        """LoadImage's IS_CHANGED: the file's hash, so a re-upload is not served from cache."""
        if node.get("class_type") not in ("LoadImage", "LoadImageMask"):
            return None
        data = self.peer.files.read_input(str((node.get("inputs") or {}).get("image")))
        return hashlib.sha256(data).hexdigest() if data is not None else None

    def is_output(self, node_id: str) -> bool:
        info = self.peer._info().get(self.prompt[node_id]["class_type"], {})
        return info.get("output_node") is True

    def order(self, cached: set[str]) -> list[str]:
        """ExecutionList: outputs and their uncached ancestors, picked as ComfyUI picks."""
        pending: dict[str, None] = {}
        for output in self.outputs_to_run:
            stack = [output]
            while stack:
                node_id = stack.pop()
                if node_id not in pending:
                    pending[node_id] = None
                    stack += [s for s in self.sources(node_id) if s not in cached]
        blockers = {n: {s for s in self.sources(n) if s not in cached} for n in pending}
        order: list[str] = []
        while pending:
            ready = [n for n in pending if not blockers[n] & pending.keys()]
            picked = self.pick(ready, pending, blockers)
            order.append(picked)
            del pending[picked]
        return order

    def pick(
        self, ready: list[str], pending: dict[str, None], blockers: dict[str, set[str]]
    ) -> str:
        """ux_friendly_pick_node: outputs first, then what unblocks an output soonest."""

        def blocked_by(node_id: str) -> list[str]:
            return [n for n in pending if node_id in blockers[n]]

        for depth in range(3):
            for node_id in ready:
                frontier = [node_id]
                for _ in range(depth):
                    frontier = [b for n in frontier for b in blocked_by(n)]
                if any(self.is_output(n) for n in frontier):
                    return node_id
        return ready[0]

    # -- running ------------------------------------------------------------------------

    async def run(self) -> None:
        peer = self.peer
        peer._interrupt = False
        self.started = asyncio.get_running_loop().time()
        self.message("execution_start", {})
        self.signature = self.signatures()
        used = set(self.signature.values())
        peer._cache = {k: v for k, v in peer._cache.items() if k in used}
        cached = [n for n in self.prompt if self.signature[n] in peer._cache]
        self.message("execution_cached", {"nodes": cached})
        order = self.order(set(cached))
        spans = self.spans([n for n in order if n not in cached])
        outcome, failure = "execution_success", {}
        for node_id in order:
            if self.signature[node_id] in peer._cache:  # a twin may have run meanwhile
                self.replay_cached(node_id)
                continue
            try:
                await self.execute(node_id, *spans[node_id])
            except Interrupted:
                outcome, failure = "execution_interrupted", self.interrupted(node_id)
                break
            except Exception as error:
                if not isinstance(error, NodeFailure):
                    error = NodeFailure(type(error).__qualname__, str(error))
                outcome, failure = "execution_error", self.error(node_id, error)
                break
        self.current_node = None
        self.message(outcome, failure, broadcast=outcome == "execution_interrupted")
        self.finish(outcome == "execution_success")

    def spans(self, fresh: list[str]) -> dict[str, tuple[float, float]]:
        """The share of the prompt's time each node to run takes: mostly the heavy nodes."""
        weights = [time_weight(self.prompt[n]["class_type"]) for n in fresh]
        if not sum(weights):
            weights = [1.0] * len(fresh)
        total, done, spans = sum(weights), 0.0, {}
        for node_id, weight in zip(fresh, weights, strict=True):
            spans[node_id] = (done / total, (done + weight) / total)
            done += weight
        return spans

    def replay_cached(self, node_id: str) -> None:
        """A staged node found in the cache: its old UI is sent again, nothing is written."""
        ui = self.peer._cache[self.signature[node_id]][1]
        if ui is not None:
            self.ui[node_id] = ui
        output = {"node": node_id, "display_node": node_id, "output": ui}
        self.send("executed", {**output, "prompt_id": self.prompt_id})
        self.state(node_id, 1, 1, "finished")

    def output_of(self, node_id: str) -> tuple[Any, ...]:
        """A node's outputs: from this run, or from the cache (cached nodes are not staged)."""
        return self.peer._cache[self.signature[node_id]][0]

    async def pause(self, fraction: float) -> None:
        """Wait until `fraction` of the prompt's time has passed; follows job_seconds live."""
        loop = asyncio.get_running_loop()
        while True:
            seconds = self.seconds if self.seconds is not None else self.peer.job_seconds
            delay = self.started + seconds * fraction - loop.time()
            if delay <= 0:
                return
            retimed = self.peer._retimed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await retimed.wait()

    async def load(self, class_type: str, inputs: dict[str, Any]) -> None:
        """A loader whose model is not held loads it first: the prompt takes that longer."""
        name = model_file(class_type, inputs)
        seconds = self.peer._load_model(name) if name is not None else 0.0
        if seconds > 0:
            await asyncio.sleep(seconds)
            self.started += seconds  # the rest of the prompt keeps its own time

    def check_interrupt(self) -> None:
        if self.peer._interrupt:
            self.peer._interrupt = False
            raise Interrupted

    async def execute(self, node_id: str, start: float, end: float) -> None:
        """One node: progress_state, executing, its time (and progress), executed, finished."""
        node = self.prompt[node_id]
        class_type = node["class_type"]
        self.state(node_id, 0.0, 1.0, "running")
        self.current_node = node_id
        frame = {"node": node_id, "display_node": node_id, "prompt_id": self.prompt_id}
        self.send("executing", frame)
        self.check_interrupt()  # nodes.before_node_execution
        links = node["inputs"].items()
        inputs = {k: self.output_of(v[0])[v[1]] if _is_link(v) else v for k, v in links}
        self.current_inputs = inputs
        await self.load(class_type, inputs)
        steps = _failing_as_node(progress_steps, class_type, inputs)
        for step in range(1, steps + 1):
            await self.pause(start + (end - start) * step / steps)
            self.check_interrupt()  # the ProgressBar hook checks too
            self.state(node_id, step, steps, "running")
            progress = {"value": step, "max": steps, "prompt_id": self.prompt_id, "node": node_id}
            self.step(progress, previews=class_type in SAMPLERS)
        await self.pause(end)  # most nodes never check for an interrupt
        custom = self.peer.custom_nodes.get(class_type)
        if custom is not None:
            outputs = await self.run_custom(node_id, custom, inputs)
        else:
            outputs = self.compute(node_id, class_type, inputs)
        self.peer._cache[self.signature[node_id]] = (outputs, self.ui.get(node_id))
        self.executed.append(node_id)
        done = self.states[node_id]["max"]
        self.state(node_id, done, done, "finished")

    async def run_custom(
        self, node_id: str, node: CustomNode, inputs: dict[str, Any]
    ) -> tuple[Any, ...]:
        try:
            outputs, ui = await node.run(inputs)
        except Exception as error:  # a pack's node raising: ComfyUI's execution_error
            raise NodeFailure(type(error).__name__, str(error)) from None
        if ui is not None:
            self.ui[node_id] = ui
            message = {"node": node_id, "display_node": node_id, "output": ui}
            self.send("executed", message | {"prompt_id": self.prompt_id})
        return outputs

    def step(self, progress: dict[str, Any], *, previews: bool) -> None:
        """A step's `progress`, and its preview when previews are on, in ComfyUI's order:
        type 4 before `progress` for a client that asked for metadata, type 1 after."""
        hub, client = self.peer._hub, self.client_id
        if not previews or self.peer.preview_method == "none":
            self.send("progress", progress, broadcast=True)
        elif hub.wants_metadata(client):
            hub.send_binary(client, metadata_frame(self.prompt_id, str(progress["node"])))
            self.send("progress", progress, broadcast=True)
        else:
            self.send("progress", progress, broadcast=True)
            hub.send_binary(client, legacy_frame())

    def compute(self, node_id: str, class_type: str, inputs: dict[str, Any]) -> tuple[Any, ...]:
        if class_type in self.peer.fail_nodes:
            raise NodeFailure("RuntimeError", self.peer.fail_nodes[class_type])
        context = Context(
            self.peer.models, self.peer.files, self.prompt, self.item[3].get("extra_pnginfo")
        )
        outputs, ui = _failing_as_node(run_node, class_type, inputs, context)
        if ui is not None:
            self.ui[node_id] = ui
            self.send(
                "executed",
                {
                    "node": node_id,
                    "display_node": node_id,
                    "output": ui,
                    "prompt_id": self.prompt_id,
                },
            )
        return outputs

    def interrupted(self, node_id: str) -> dict[str, Any]:
        node_type = self.prompt[node_id]["class_type"]
        return {"node_id": node_id, "node_type": node_type, "executed": list(self.executed)}

    def error(self, node_id: str, error: NodeFailure) -> dict[str, Any]:
        class_type = self.prompt[node_id]["class_type"]
        return {
            "node_id": node_id,
            "node_type": class_type,
            "executed": list(self.executed),
            "exception_message": error.message,
            "exception_type": error.exception_type,
            "traceback": [
                '  File "execution.py", in execute\n'
                "    output_data, output_ui, has_subgraph, has_pending_tasks = "
                "await get_output_data(...)\n",
                f'  File "fake_nodes.py", in {class_type}\n    raise {error.exception_type}\n',
            ],
            "current_inputs": {k: [describe(v)] for k, v in self.current_inputs.items()},
            "current_outputs": list(self.prompt),
        }

    def finish(self, success: bool) -> None:
        """task_done: the history entry and a status frame, then `executing` null, last."""
        peer = self.peer
        for key in _SENSITIVE:
            self.item[3].pop(key, None)
        if len(peer._history) > MAX_HISTORY:
            peer._history.pop(next(iter(peer._history)))
        peer._history[self.prompt_id] = {
            "prompt": self.item,
            "outputs": dict(self.ui),
            "status": {
                "status_str": "success" if success else "error",
                "completed": success,
                "messages": self.messages,
            },
            "meta": {n: _meta(n) for n in self.ui},
        }
        peer._running = None
        peer._broadcast_status()
        self.send("executing", {"node": None, "prompt_id": self.prompt_id})


def _failing_as_node(function: Callable[..., _T], *args: Any) -> _T:
    """Any exception a node raises is that node's failure, as in ComfyUI."""
    try:
        return function(*args)
    except NodeFailure:
        raise
    except Exception as error:
        raise NodeFailure(type(error).__qualname__, str(error)) from None


def _meta(node_id: str) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "display_node": node_id,
        "parent_node": None,
        "real_node_id": node_id,
    }
