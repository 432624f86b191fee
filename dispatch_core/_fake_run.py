"""One prompt's run on the fake peer, sending ComfyUI's frames in ComfyUI's order.

It reaches into FakePeer's private state on purpose: the two are one fake, split in two
modules only to keep each readable.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._fake_nodes import Context, NodeFailure, run_node

if TYPE_CHECKING:
    from .testing import FakePeer


class Interrupted(Exception):
    """Raised inside a run when the peer's interrupt flag is seen."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class PromptRun:
    """One prompt's run, emitting ComfyUI's frames in ComfyUI's order."""

    def __init__(self, peer: FakePeer, item: list[Any]):
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
        self.current_inputs: dict[str, Any] = {}
        self.deadline = 0.0

    def send(self, kind: str, data: dict[str, Any], *, progress: bool = False) -> None:
        """Execution frames go to the prompt's client; progress ones to all when it has none."""
        if self.client_id is not None:
            self.peer._send(self.client_id, kind, data)
        elif progress:
            self.peer._send(None, kind, data)

    def message(self, kind: str, data: dict[str, Any]) -> None:
        data = {"prompt_id": self.prompt_id, **data, "timestamp": _now_ms()}
        self.messages.append([kind, data])
        self.send(kind, data)

    def order(self) -> list[str]:
        """The needed nodes, dependencies first, ties broken by the prompt's own order."""
        needed: set[str] = set()
        stack = list(self.outputs_to_run)
        while stack:
            node_id = stack.pop()
            if node_id not in needed:
                needed.add(node_id)
                stack += self.sources(node_id)
        order: list[str] = []
        while len(order) < len(needed):
            ready = next(
                n
                for n in self.prompt
                if n in needed and n not in order and all(s in order for s in self.sources(n))
            )
            order.append(ready)
        return order

    def sources(self, node_id: str) -> list[str]:
        inputs = self.prompt[node_id]["inputs"].values()
        return [str(v[0]) for v in inputs if isinstance(v, list) and len(v) == 2]

    def signatures(self, order: list[str]) -> dict[str, str]:
        signatures: dict[str, str] = {}
        for node_id in order:
            node = self.prompt[node_id]
            inputs = {
                k: signatures[str(v[0])] + f":{v[1]}" if isinstance(v, list) and len(v) == 2 else v
                for k, v in node["inputs"].items()
            }
            signatures[node_id] = json.dumps(
                [node["class_type"], inputs], sort_keys=True, default=str
            )
        return signatures

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
        self.send(
            "progress_state",
            {"prompt_id": self.prompt_id, "nodes": dict(self.states)},
            progress=True,
        )

    async def run(self) -> None:
        self.peer._interrupt = False
        self.message("execution_start", {})
        order = self.order()
        signatures = self.signatures(order)
        cached = [n for n in order if self.peer._cache.get(n, ("",))[0] == signatures[n]]
        self.message("execution_cached", {"nodes": cached})
        values: dict[str, tuple[Any, ...]] = {}
        to_run = [n for n in order if n not in cached]
        node_seconds = self.peer.job_seconds / max(len(to_run), 1)
        outcome = "execution_success"
        failure: dict[str, Any] = {}
        for node_id in order:
            if node_id in cached:
                self.replay_cached(node_id, values)
                continue
            try:
                await self.run_node(node_id, values, node_seconds)
            except Interrupted:
                outcome, failure = "execution_interrupted", self.interrupted(node_id)
                break
            except NodeFailure as error:
                outcome, failure = "execution_error", self.error(node_id, values, error)
                break
            self.peer._cache[node_id] = (signatures[node_id], values[node_id], self.ui.get(node_id))
        self.finish(outcome, failure)

    def replay_cached(self, node_id: str, values: dict[str, tuple[Any, ...]]) -> None:
        _, outputs, ui = self.peer._cache[node_id]
        values[node_id] = outputs
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
            self.state(node_id, 1, 1, "finished")

    async def sleep(self, seconds: float) -> None:
        """Sleep toward a running deadline, so timer overshoots do not add up over a prompt."""
        loop = asyncio.get_running_loop()
        self.deadline = self.deadline or loop.time()
        self.deadline += seconds
        await asyncio.sleep(max(self.deadline - loop.time(), 0))

    async def run_node(
        self, node_id: str, values: dict[str, tuple[Any, ...]], seconds: float
    ) -> None:
        node = self.prompt[node_id]
        class_type = node["class_type"]
        self.state(node_id, 0.0, 1.0, "running")
        self.send(
            "executing", {"node": node_id, "display_node": node_id, "prompt_id": self.prompt_id}
        )
        if self.peer._interrupt:
            raise Interrupted
        inputs = {
            k: values[str(v[0])][v[1]] if isinstance(v, list) and len(v) == 2 else v
            for k, v in node["inputs"].items()
        }
        self.current_inputs = inputs
        steps = _progress_steps(class_type, inputs)
        for step in range(1, steps + 1):
            await self.sleep(seconds / steps)
            if self.peer._interrupt:
                raise Interrupted
            self.state(node_id, float(step), float(steps), "running")
            self.send(
                "progress",
                {"value": step, "max": steps, "prompt_id": self.prompt_id, "node": node_id},
                progress=True,
            )
        if not steps and seconds:
            await self.sleep(seconds)  # like most nodes, no interrupt check inside
        if class_type in self.peer.fail_nodes:
            raise NodeFailure("RuntimeError", self.peer.fail_nodes[class_type])
        values[node_id] = self.compute(node_id, class_type, inputs)
        self.executed.append(node_id)
        self.state(node_id, 1.0, 1.0, "finished")

    def compute(self, node_id: str, class_type: str, inputs: dict[str, Any]) -> tuple[Any, ...]:
        if class_type in ("SaveImage", "SaveAnimatedWEBP"):
            ui = self.peer.files.save(
                "output", str(inputs.get("filename_prefix") or "ComfyUI"), inputs["images"]
            )
        elif class_type == "PreviewImage":
            ui = self.peer.files.save("temp", self.peer.files.temp_prefix, inputs["images"])
        else:
            context = Context(self.peer.models, self.peer.files.read_input)
            return run_node(class_type, inputs, context)
        self.ui[node_id] = ui
        self.send(
            "executed",
            {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": self.prompt_id},
        )
        return ()

    def interrupted(self, node_id: str) -> dict[str, Any]:
        node_type = self.prompt[node_id]["class_type"]
        return {"node_id": node_id, "node_type": node_type, "executed": list(self.executed)}

    def error(
        self, node_id: str, values: dict[str, tuple[Any, ...]], error: NodeFailure
    ) -> dict[str, Any]:
        node = self.prompt[node_id]
        current = {k: [repr(v)[:200]] for k, v in self.current_inputs.items()}
        return {
            "node_id": node_id,
            "node_type": node["class_type"],
            "executed": list(self.executed),
            "exception_message": error.message,
            "exception_type": error.exception_type,
            "traceback": [f'  File "fake_peer.py", in {node["class_type"]}\n'],
            "current_inputs": current,
            "current_outputs": list(self.prompt),
        }

    def finish(self, outcome: str, failure: dict[str, Any]) -> None:
        self.message(outcome, failure)
        success = outcome == "execution_success"
        self.peer._history[self.prompt_id] = {
            "prompt": self.item,
            "outputs": self.ui if success else {},
            "status": {
                "status_str": "success" if success else "error",
                "completed": success,
                "messages": self.messages,
            },
            "meta": {
                n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n}
                for n in (self.ui if success else {})
            },
        }
        self.peer._running = None
        self.peer._broadcast_status()
        self.send("executing", {"node": None, "prompt_id": self.prompt_id})


def _progress_steps(class_type: str, inputs: Mapping[str, Any]) -> int:
    """Nodes that drive a ProgressBar: samplers per step, model upscaling once."""
    if class_type.startswith("KSampler"):
        return int(inputs.get("steps", 0))
    return 1 if class_type == "ImageUpscaleWithModel" else 0
