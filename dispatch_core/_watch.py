"""What we know about one prompt on a peer, fed by WebSocket frames or by `/history`, and
the peer's own words when it refuses or fails a prompt.

ComfyUI's last frame for a prompt is `executing` with `node: null`; `execution_error` and
`execution_interrupted` come just before it and `execution_success` never follows them.
A history entry says the same once the prompt is done, so both paths end in `finish()`.

Frames and history entries come from a peer that may be hostile: every field is checked for
its type before use, and every text that becomes an error goes through `clean` (the peer
client's `scrub`: bounded, with the server's secrets masked).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from ._previews import Preview
from .errors import ExecutionFailed, Interrupted, NodeError, PeerError, PromptRejected
from .result import Progress

ProgressCallback = Callable[[Progress], Awaitable[None] | None]
FrameCallback = Callable[[str, Any], None]
"""Told every frame of one prompt as the peer sent it: `(type, data)` for a JSON frame
(data already known to be a mapping, from a peer that may be hostile), `("binary", bytes)`
for a binary one (a preview). For relays that pass a peer's events on (the gateway)."""
_log = logging.getLogger(__name__.rpartition(".")[0] + ".peer")


class Clean(Protocol):
    """A peer's text made fit for an error: bounded to `limit`, secrets masked."""

    def __call__(self, text: str, limit: int = ..., /) -> str: ...


_MAX_TRACEBACK_LINES = 100
_MAX_RELAYED_TEXT = 1024 * 1024
"""A relayed frame's texts are cut past this (a frame is at most 8 MiB anyway)."""
PREVIEW_INTERVAL = 0.5
"""Seconds between two previews handed on for one prompt; those between are dropped, so
a peer sampling fast does not flood a slow link to the browser (two per second is what a
person watching can follow)."""


class PromptWatch:
    """The state of one submitted prompt, resolved once by `finish` or `fail`."""

    def __init__(
        self,
        server: str,
        prompt_id: str,
        *,
        node_count: int = 0,
        on_progress: ProgressCallback | None = None,
        on_frame: FrameCallback | None = None,
        clean: Clean,
    ):
        self.server = server
        self.clean = clean
        self.prompt_id = prompt_id
        self.node_count = node_count
        self.on_progress = on_progress
        self.relay = on_frame
        """Told every frame of this prompt (see `FrameCallback`)."""
        self.started_at: float | None = None
        self.last_frame_at = time.monotonic()
        self.cached_nodes: set[str] = set()
        self.finished_nodes: set[str] = set()
        self.outputs: dict[str, Any] = {}
        self.error: PeerError | None = None
        self.polled = False
        """Followed by polling only: a prompt another client submitted."""
        self.cached_seen: bool = False
        self.start_stamp: float | None = None
        """The peer's own `execution_start` timestamp, in seconds."""
        self.gap = False
        """A frame may have been missed (a reconnect, a dropped frame) while it was open."""
        self.done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._progress_tasks: set[asyncio.Task[None]] = set()
        self._step: tuple[Any, float, float] = (None, 0, 1)
        """The latest `progress`: (node, value, max), which a preview repeats."""
        self._previewed_at = float("-inf")
        self.previews_dropped = 0
        """Previews not handed on: closer than PREVIEW_INTERVAL to the one before."""

    @property
    def nodes_total(self) -> int:
        return max(self.node_count - len(self.cached_nodes), 0)

    def on_frame(self, kind: str, data: Mapping[str, Any]) -> None:
        """Take one JSON frame already known to be about this prompt."""
        self.last_frame_at = time.monotonic()
        if kind == "execution_start":
            self.started_at = time.time()
            stamp = data.get("timestamp")
            self.start_stamp = stamp / 1000 if isinstance(stamp, (int, float)) else None
            self._report(None, 0, max(self.nodes_total, 1))  # it runs: say so before any node
        elif kind == "execution_cached":
            self.cached_seen = True
            self.cached_nodes.update(str(n) for n in _list(data.get("nodes")))
        elif kind == "executed" and data.get("node") is not None:
            output = data.get("output")
            self.outputs[str(data["node"])] = output if isinstance(output, Mapping) else {}
        elif kind == "progress":
            value, maximum = _number(data.get("value"), 0), _number(data.get("max"), 1)
            self._step = (data.get("node"), value, maximum)
            self._report(*self._step)
        elif kind == "progress_state":
            nodes = data.get("nodes")
            self._on_progress_state(nodes if isinstance(nodes, Mapping) else {})
        elif kind == "execution_error":
            self.error = execution_error(self.server, data, self.clean)
        elif kind == "execution_interrupted":
            self.error = interrupted(self.server, data, self.clean)
        elif kind == "executing" and data.get("node") is None:
            self.finish(self._entry_from_frames())
        self._pass_on(kind, data)

    def _entry_from_frames(self) -> dict[str, Any]:
        """The history entry the frames make. `whole` when they hold every output: the run
        was seen from its start, nothing was cached (a cached node's outputs may not be
        announced again) and no frame can have been missed; else the caller asks `/history`.
        """
        whole = self.started_at is not None and self.cached_seen and not self.cached_nodes
        entry: dict[str, Any] = {
            "outputs": self.outputs,
            "from": "websocket",
            "whole": whole and not self.gap,
        }
        if self.start_stamp is not None:
            start = {"timestamp": self.start_stamp * 1000}
            entry["status"] = {"messages": [["execution_start", start]]}
        return entry

    def on_binary(self, data: bytes) -> None:
        """A binary frame sent while this prompt ran (ComfyUI's previews name no prompt)."""
        self.last_frame_at = time.monotonic()
        self._pass_on("binary", data)

    def _pass_on(self, kind: str, data: Any) -> None:
        """To the relay, if any, a copy with every text cleaned (a hostile peer may echo
        its own token); its failure is the relay's own and never the prompt's."""
        if self.relay is None:
            return
        try:
            if not isinstance(data, bytes):
                data = _cleaned(data, self._relay_clean)
            self.relay(kind, data)
        except Exception as error:
            _log.warning("server %r: a frame relay failed (%s)", self.server, type(error).__name__)

    def on_preview(self, preview: Preview) -> None:
        """A preview picture of this prompt: handed on with the latest step, throttled."""
        now = time.monotonic()
        self.last_frame_at = now
        if now - self._previewed_at < PREVIEW_INTERVAL:
            self.previews_dropped += 1
            return
        self._previewed_at = now
        node, value, maximum = self._step
        self._report(preview.node or node, value, maximum, preview)

    def _on_progress_state(self, nodes: Mapping[str, Any]) -> None:
        for node, state in nodes.items():  # comes before a step's preview (type 4)
            if isinstance(state, Mapping) and state.get("state") == "running":
                self._step = (node, _number(state.get("value"), 0), _number(state.get("max"), 1))
        finished = {
            str(k)
            for k, v in nodes.items()
            if isinstance(v, Mapping) and v.get("state") == "finished"
        }
        if finished - self.finished_nodes:
            self.finished_nodes |= finished
            self._report(None, len(self.finished_nodes), max(self.nodes_total, 1))

    def _report(
        self, node: Any, value: float, maximum: float, preview: Preview | None = None
    ) -> None:
        if self.on_progress is None:
            return
        progress = Progress(
            server=self.server,
            prompt_id=self.prompt_id,
            node=None if node is None else self.clean(str(node), 100),
            value=value,
            max=maximum,
            nodes_done=len(self.finished_nodes),
            nodes_total=self.nodes_total,
            preview=None if preview is None else preview.image,
            preview_type="" if preview is None else preview.mime,
        )
        outcome = self.on_progress(progress)
        if asyncio.iscoroutine(outcome):
            task = asyncio.ensure_future(outcome)
            self._progress_tasks.add(task)
            task.add_done_callback(self._progress_tasks.discard)

    def _relay_clean(self, text: str, limit: int = _MAX_RELAYED_TEXT) -> str:
        """`clean` for a relayed frame: secrets masked, its texts kept whole (bounded)."""
        return self.clean(text, limit)

    def finish(self, entry: Mapping[str, Any]) -> None:
        """Resolve from a final frame or a history entry; the first resolution wins."""
        if self.done.done():
            return
        if self.error is None:
            self.error = error_from_history(self.server, self.prompt_id, entry, self.clean)
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


def execution_error(server: str, data: Mapping[str, Any], clean: Clean) -> ExecutionFailed:
    """The peer's own report of a node that raised: kept, since the user needs it, but
    every text of it cleaned, and the traceback cut to its last lines."""
    lines = _list(data.get("traceback"))[-_MAX_TRACEBACK_LINES:]
    return ExecutionFailed(
        server=server,
        prompt_id=_str_or_none(data.get("prompt_id"), clean),
        node_id=_str_or_none(data.get("node_id"), clean),
        node_type=_str_or_none(data.get("node_type"), clean),
        exception_type=clean(str(data.get("exception_type") or "Error"), 200),
        exception_message=clean(str(data.get("exception_message") or "")),
        traceback=tuple(clean(str(line)) for line in lines),
    )


def interrupted(server: str, data: Mapping[str, Any], clean: Clean) -> Interrupted:
    node = _str_or_none(data.get("node_id"), clean)
    where = f" at node {node} ({clean(str(data.get('node_type')), 200)})" if node else ""
    return Interrupted(
        f"the prompt was interrupted on the peer{where}",
        server=server,
        prompt_id=_str_or_none(data.get("prompt_id"), clean),
        node_id=node,
    )


def error_from_history(
    server: str, prompt_id: str, entry: Mapping[str, Any], clean: Clean
) -> PeerError | None:
    """The error a finished history entry records, or None when it succeeded."""
    status = entry.get("status")
    if not isinstance(status, Mapping) or status.get("status_str") != "error":
        return None
    for message in _list(status.get("messages")):
        if not isinstance(message, list) or len(message) != 2:
            continue
        kind, data = message
        if kind == "execution_error" and isinstance(data, Mapping):
            return execution_error(server, {**data, "prompt_id": prompt_id}, clean)
        if kind == "execution_interrupted" and isinstance(data, Mapping):
            return interrupted(server, {**data, "prompt_id": prompt_id}, clean)
    return ExecutionFailed(
        server=server,
        prompt_id=prompt_id,
        node_id=None,
        node_type=None,
        exception_type="Error",
        exception_message="the peer reports the prompt failed but gave no reason",
    )


def _str_or_none(value: Any, clean: Clean) -> str | None:
    return None if value is None else clean(str(value), 200)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _number(value: Any, default: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else default


def rejected(server: str, prompt_id: str, answer: Any, clean: Clean) -> PromptRejected:
    """ComfyUI's own words for a refused prompt, which the user needs: kept, but scrubbed."""
    error = answer.get("error") if isinstance(answer, Mapping) else None
    if isinstance(error, str):  # an older ComfyUI's {"error": "no prompt"}
        error = {"message": error}
    if not isinstance(error, Mapping):
        error = {"message": "POST /prompt answered HTTP 400 without ComfyUI's error object"}
    message = clean(str(error.get("message") or "the peer refused the prompt"))
    details = error.get("details")
    if details and error.get("type") != "prompt_outputs_failed_validation":
        message = f"{message.rstrip('.')}: {clean(str(details))}"
    return PromptRejected(
        message,
        server=server,
        prompt_id=prompt_id,
        error_type=clean(str(error.get("type") or ""), 100) or None,
        node_errors=node_errors(
            answer.get("node_errors") if isinstance(answer, Mapping) else None, clean
        ),
    )


def node_errors(raw: Any, clean: Clean) -> tuple[NodeError, ...]:
    """The `node_errors` of an answer to `POST /prompt`, every text in them cleaned."""
    if not isinstance(raw, Mapping):
        return ()
    found = []
    for node_id, info in raw.items():
        info = info if isinstance(info, Mapping) else {}
        listed = info.get("errors")
        errors = tuple(
            _cleaned(e, clean)
            for e in (listed if isinstance(listed, list) else ())
            if isinstance(e, Mapping)
        )
        class_type = clean(str(info.get("class_type", "?")), 200)
        found.append(NodeError(clean(str(node_id), 100), class_type, errors))
    return tuple(found)


def _cleaned(value: Any, clean: Clean) -> Any:
    """A copy of a peer's JSON with every string scrubbed (its depth is already bounded)."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, Mapping):
        return {clean(str(k), 200): _cleaned(v, clean) for k, v in value.items()}
    if isinstance(value, list):
        return [_cleaned(v, clean) for v in value]
    return value
