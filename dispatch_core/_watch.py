"""What we know about one prompt on a peer, fed by WebSocket frames or by `/history`.

ComfyUI's last frame for a prompt is `executing` with `node: null`; `execution_error` and
`execution_interrupted` come just before it and `execution_success` never follows them.
A history entry says the same once the prompt is done, so both paths end in `finish()`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .errors import ExecutionFailed, Interrupted, PeerError
from .result import Progress

ProgressCallback = Callable[[Progress], Awaitable[None] | None]


class PromptWatch:
    """The state of one submitted prompt, resolved once by `finish` or `fail`."""

    def __init__(
        self,
        server: str,
        prompt_id: str,
        *,
        node_count: int = 0,
        on_progress: ProgressCallback | None = None,
    ):
        self.server = server
        self.prompt_id = prompt_id
        self.node_count = node_count
        self.on_progress = on_progress
        self.started_at: float | None = None
        self.last_frame_at = time.monotonic()
        self.cached_nodes: set[str] = set()
        self.finished_nodes: set[str] = set()
        self.outputs: dict[str, Any] = {}
        self.error: PeerError | None = None
        self.polled = False
        """Followed by polling only: a prompt another client submitted."""
        self.done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._progress_tasks: set[asyncio.Task[None]] = set()

    @property
    def nodes_total(self) -> int:
        return max(self.node_count - len(self.cached_nodes), 0)

    def on_frame(self, kind: str, data: Mapping[str, Any]) -> None:
        """Take one JSON frame already known to be about this prompt."""
        self.last_frame_at = time.monotonic()
        if kind == "execution_start":
            self.started_at = time.time()
            self._report(None, 0, max(self.nodes_total, 1))  # it runs: say so before any node
        elif kind == "execution_cached":
            self.cached_nodes.update(str(n) for n in data.get("nodes") or ())
        elif kind == "executed" and data.get("node") is not None:
            self.outputs[str(data["node"])] = data.get("output") or {}
        elif kind == "progress":
            self._report(data.get("node"), data.get("value", 0), data.get("max", 1))
        elif kind == "progress_state":
            self._on_progress_state(data.get("nodes") or {})
        elif kind == "execution_error":
            self.error = execution_error(self.server, data)
        elif kind == "execution_interrupted":
            self.error = interrupted(self.server, data)
        elif kind == "executing" and data.get("node") is None:
            self.finish({"outputs": self.outputs, "from": "websocket"})

    def _on_progress_state(self, nodes: Mapping[str, Any]) -> None:
        finished = {
            str(k)
            for k, v in nodes.items()
            if isinstance(v, Mapping) and v.get("state") == "finished"
        }
        if finished - self.finished_nodes:
            self.finished_nodes |= finished
            self._report(None, len(self.finished_nodes), max(self.nodes_total, 1))

    def _report(self, node: Any, value: Any, maximum: Any) -> None:
        if self.on_progress is None:
            return
        progress = Progress(
            server=self.server,
            prompt_id=self.prompt_id,
            node=None if node is None else str(node),
            value=float(value),
            max=float(maximum),
            nodes_done=len(self.finished_nodes),
            nodes_total=self.nodes_total,
        )
        outcome = self.on_progress(progress)
        if asyncio.iscoroutine(outcome):
            task = asyncio.ensure_future(outcome)
            self._progress_tasks.add(task)
            task.add_done_callback(self._progress_tasks.discard)

    def finish(self, entry: Mapping[str, Any]) -> None:
        """Resolve from a final frame or a history entry; the first resolution wins."""
        if self.done.done():
            return
        if self.error is None:
            self.error = error_from_history(self.server, self.prompt_id, entry)
        if self.error is not None:
            self.done.set_exception(self.error)
            self.done.exception()  # mark retrieved: the waiter may already be gone
        else:
            self.done.set_result(dict(entry))

    def fail(self, error: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(error)
            self.done.exception()

    async def drain_progress(self) -> None:
        """Let async progress callbacks finish before the result is handed back."""
        if self._progress_tasks:
            await asyncio.gather(*self._progress_tasks, return_exceptions=True)


def execution_error(server: str, data: Mapping[str, Any]) -> ExecutionFailed:
    return ExecutionFailed(
        server=server,
        prompt_id=_str_or_none(data.get("prompt_id")),
        node_id=_str_or_none(data.get("node_id")),
        node_type=_str_or_none(data.get("node_type")),
        exception_type=str(data.get("exception_type") or "Error"),
        exception_message=str(data.get("exception_message") or ""),
        traceback=tuple(str(line) for line in data.get("traceback") or ()),
    )


def interrupted(server: str, data: Mapping[str, Any]) -> Interrupted:
    node = _str_or_none(data.get("node_id"))
    where = f" at node {node} ({data.get('node_type')})" if node else ""
    return Interrupted(
        f"the prompt was interrupted on the peer{where}",
        server=server,
        prompt_id=_str_or_none(data.get("prompt_id")),
        node_id=node,
    )


def error_from_history(server: str, prompt_id: str, entry: Mapping[str, Any]) -> PeerError | None:
    """The error a finished history entry records, or None when it succeeded."""
    status = entry.get("status")
    if not isinstance(status, Mapping) or status.get("status_str") != "error":
        return None
    for message in status.get("messages") or ():
        if not isinstance(message, (list, tuple)) or len(message) != 2:
            continue
        kind, data = message
        if kind == "execution_error" and isinstance(data, Mapping):
            return execution_error(server, {"prompt_id": prompt_id, **data})
        if kind == "execution_interrupted" and isinstance(data, Mapping):
            return interrupted(server, {"prompt_id": prompt_id, **data})
    return ExecutionFailed(
        server=server,
        prompt_id=prompt_id,
        node_id=None,
        node_type=None,
        exception_type="Error",
        exception_message="the peer reports the prompt failed but gave no reason",
    )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
