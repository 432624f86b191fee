"""One prompt's frames, from the peer that runs it to the client that sent it.

The engine submits the prompt under a prompt id of its own (one per try, per peer); the
client knows the id it posted. Every frame is passed on under the client's id, and every
file an `executed` frame names is marked with the server that made it (its `subfolder`
becomes `@server/…`), so that `/view` asks that server and no other: two peers both write
`ComfyUI_00001_.png`.

The end is held back: ComfyUI's client reads `/history/{id}` as soon as it hears
`executing` with `node: null`, and the gateway has the entry only once the job has its
result. So the peer's final frames wait for the job's end, and come then in ComfyUI's
order: `execution_success` (or `_error`, `_interrupted`), `status`, `executing` null.
A job answered without frames (the journal, a failure before the peer) gets them made.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

from ._sockets import Sockets

__all__ = ["SERVER_MARK", "PromptRelay", "marked_outputs"]

SERVER_MARK = "@"
"""Before a server's name in an output's subfolder: `@gpu-a/…` was made by server gpu-a."""
TERMINAL = frozenset({"execution_success", "execution_error", "execution_interrupted"})
_TO_ALL_WITHOUT_CLIENT = frozenset({"progress", "progress_state", "execution_interrupted"})
"""What ComfyUI sends every socket when the prompt has no client id (the rest: nobody)."""
_HISTORY_KINDS = frozenset({"execution_start", "execution_cached"} | TERMINAL)
_PREVIEW_WITH_METADATA = 4


class PromptRelay:
    """Passes one prompt's frames on, and tells its end."""

    def __init__(self, sockets: Sockets, prompt_id: str, client_id: str | None):
        self.sockets = sockets
        self.prompt_id = prompt_id
        self.client_id = client_id
        self.server: Callable[[], str | None] = lambda: None
        """The server running the prompt now (the job's handle knows; set by the farm)."""
        self.messages: list[list[Any]] = []
        """For the history entry's `status.messages`, under the client's id."""
        self.executed: set[str] = set()
        self.final: tuple[str, dict[str, Any]] | None = None

    def on_frame(self, kind: str, data: Any) -> None:
        """The engine's FrameCallback: one frame of the prompt, as the peer sent it."""
        if kind == "binary":
            self._binary(data)
            return
        data = self._renamed(kind, data)
        if kind in _HISTORY_KINDS:
            self.messages.append([kind, data])
        if kind in TERMINAL:
            self.final = (kind, data)  # told at the job's end
        elif kind == "executing" and data.get("node") is None:
            pass  # the end: told once the history entry exists
        else:
            if kind == "executed" and data.get("node") is not None:
                self.executed.add(str(data["node"]))
            self.send(kind, data)

    def send(self, kind: str, data: Any) -> None:
        if self.client_id is not None:
            self.sockets.send(kind, data, self.client_id)
        elif kind in _TO_ALL_WITHOUT_CLIENT:
            self.sockets.send(kind, data, None)

    def _binary(self, frame: Any) -> None:
        if not isinstance(frame, (bytes, bytearray)) or len(frame) < 8:
            return
        frame = bytes(frame)
        if struct.unpack(">I", frame[:4])[0] == _PREVIEW_WITH_METADATA:
            frame = self._remetadata(frame)
        self.sockets.send_bytes(frame, self.client_id)

    def _remetadata(self, frame: bytes) -> bytes:
        """A type-4 preview names its prompt inside: the client's id goes there."""
        (length,) = struct.unpack(">I", frame[4:8])
        try:
            meta = json.loads(frame[8 : 8 + length])
            meta["prompt_id"] = self.prompt_id
        except (ValueError, TypeError):
            return frame
        text = json.dumps(meta).encode()
        return frame[:4] + struct.pack(">I", len(text)) + text + frame[8 + length :]

    def _renamed(self, kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(data)
        if "prompt_id" in out:
            out["prompt_id"] = self.prompt_id
        if kind == "progress_state" and isinstance(out.get("nodes"), Mapping):
            out["nodes"] = {
                k: {**v, "prompt_id": self.prompt_id} if isinstance(v, Mapping) else v
                for k, v in out["nodes"].items()
            }
        if kind == "executed" and isinstance(out.get("output"), Mapping):
            out["output"] = marked_output(out["output"], self.server())
        return out

    def end(self, final: tuple[str, dict[str, Any]], outputs: Mapping[str, Any]) -> None:
        """The job has ended: its outputs not yet shown, its final frame, the farm's queue
        length, then `executing` null, as ComfyUI ends a prompt."""
        if final[0] == "execution_success":
            for node_id, output in outputs.items():
                if node_id not in self.executed:  # a cached or journaled answer
                    frame = {"node": node_id, "display_node": node_id, "output": output}
                    self.send("executed", {**frame, "prompt_id": self.prompt_id})
        kind, data = self.final or final
        if self.final is None:
            self.messages.append([kind, data])
        self.send(kind, data)
        self.sockets.status()
        self.send("executing", {"node": None, "prompt_id": self.prompt_id})

    def made(self, kind: str, **data: Any) -> tuple[str, dict[str, Any]]:
        """A final frame of the gateway's making, in ComfyUI's shape."""
        return kind, {"prompt_id": self.prompt_id, **data, "timestamp": int(time.time() * 1000)}


def marked_output(output: Mapping[str, Any], server: str | None) -> dict[str, Any]:
    """A node's UI output with each file's subfolder marked with the server that made it."""
    out: dict[str, Any] = {}
    for key, items in output.items():
        if isinstance(items, list):
            out[key] = [_marked(item, server) for item in items]
        else:
            out[key] = items
    return out


def _marked(item: Any, server: str | None) -> Any:
    if not isinstance(item, Mapping) or not isinstance(item.get("filename"), str) or not server:
        return item
    subfolder = str(item.get("subfolder") or "")
    marked = f"{SERVER_MARK}{server}" + (f"/{subfolder}" if subfolder else "")
    return {**item, "subfolder": marked}


def marked_outputs(outputs: Mapping[str, Any], server: str | None) -> dict[str, Any]:
    return {
        str(node): marked_output(output, server) if isinstance(output, Mapping) else output
        for node, output in outputs.items()
    }
