"""A client for one ComfyUI server: its HTTP API and ONE WebSocket shared by all its prompts.

Completion comes from the WebSocket (`executing` with `node: null`). While the socket is
down, each open prompt is polled through `/history/{id}`; after every (re)connect every
open prompt is checked again, because a socket reconnected under the same `clientId` can
silently stop receiving (tests/protocol/REFERENCE.md §3.1). A prompt found in neither
`/history` nor `/queue` was lost by a restarted peer.

The client is built in layers: `_peer_http.PeerHTTP` bounds every request to a peer that
may be hostile, `_peer_socket.PeerSocket` keeps the socket and the watchdog, and
`PeerClient` adds the prompts' lifecycle and ComfyUI's HTTP routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from ._peer_socket import PeerSocket
from ._watch import FrameCallback, ProgressCallback, PromptWatch, node_errors, rejected
from .errors import (
    BadResponse,
    PeerUnreachable,
    PromptLost,
    PromptRejected,
)

__all__ = ["PeerClient", "QueueState"]


@dataclass(frozen=True)
class QueueState:
    """The peer's queue: prompt ids running, and pending in the order they will run."""

    running: tuple[str, ...]
    pending: tuple[str, ...]

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self.running or prompt_id in self.pending


class PeerClient(PeerSocket):
    """Talks to one ComfyUI server. Use as `async with`; the session is the caller's."""

    async def __aenter__(self) -> PeerClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- jobs ---------------------------------------------------------------------------

    async def run(
        self, prompt: Mapping[str, Any], *, on_progress: ProgressCallback | None = None
    ) -> dict[str, Any]:
        """Submit and wait; the history entry of the finished prompt."""
        prompt_id = await self.submit(prompt, on_progress=on_progress)
        return await self.wait(prompt_id)

    async def submit(
        self,
        prompt: Mapping[str, Any],
        *,
        prompt_id: str | None = None,
        on_progress: ProgressCallback | None = None,
        extra_data: Mapping[str, Any] | None = None,
        on_frame: FrameCallback | None = None,
    ) -> str:
        """Queue a prompt under an id we mint, so frames that beat the answer are not lost."""
        await self.start()
        prompt_id = prompt_id or str(uuid.uuid4())
        watch = PromptWatch(
            self.name,
            prompt_id,
            node_count=len(prompt),
            on_progress=on_progress,
            on_frame=on_frame,
            clean=self.scrub,
        )
        self._watches[prompt_id] = watch
        body = {
            "prompt": prompt,
            "client_id": self.client_id,
            "prompt_id": prompt_id,
            "extra_data": {**(extra_data or {}), "client_id": self.client_id},
        }
        try:
            answer = await self._post_prompt(body, prompt_id)
        except BaseException:
            self._watches.pop(prompt_id, None)
            raise
        failed = node_errors(answer.get("node_errors"), self.scrub)
        if failed:
            # ComfyUI dropped the failing outputs and queued the rest: take it back.
            await self.cancel(prompt_id)
            self._watches.pop(prompt_id, None)
            raise PromptRejected(
                "the peer dropped outputs that failed validation",
                server=self.name,
                prompt_id=prompt_id,
                error_type="prompt_outputs_failed_validation",
                node_errors=failed,
            )
        return prompt_id

    async def attach(
        self, prompt_id: str, *, node_count: int = 0, on_progress: ProgressCallback | None = None
    ) -> None:
        """Watch a prompt submitted earlier, by another client: its frames do not come to
        our socket, so it is followed through `/queue` and `/history` at the poll interval."""
        await self.start()
        watch = PromptWatch(
            self.name, prompt_id, node_count=node_count, on_progress=on_progress, clean=self.scrub
        )
        watch.polled = True
        self._watches[prompt_id] = watch
        self._recheck_now.set()

    async def _post_prompt(self, body: Mapping[str, Any], prompt_id: str) -> dict[str, Any]:
        try:
            async with self._request("POST", "/prompt", json=body) as response:
                if response.status == 400:
                    answer = await self._json(response, "POST /prompt")
                    raise rejected(self.name, prompt_id, answer, self.scrub)
                self._check_status(response, "POST /prompt")
                return await self._json(response, "POST /prompt")
        except PeerUnreachable as error:
            # The request may have reached the peer before the connection broke.
            try:
                known = await self.locate(prompt_id)
            except PeerUnreachable:
                raise error from None
            if known is not None:
                return {"prompt_id": prompt_id, "node_errors": {}}
            raise

    async def wait(
        self, prompt_id: str, *, on_finished: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """Wait for a submitted prompt; its history entry, or the peer's error.

        `on_finished` runs as soon as the peer reports the prompt over, before its history
        is fetched, so that a caller can hand the peer its next prompt without delay.
        """
        watch = self._watches.get(prompt_id)
        if watch is None:
            raise KeyError(f"prompt {prompt_id} was not submitted through this client")
        try:
            try:
                await asyncio.wait([watch.done])
            finally:
                if on_finished is not None and watch.done.done():
                    on_finished()
            entry = watch.done.result()
            if entry.get("from") == "websocket" and not entry.get("whole"):
                # The history lists cached outputs too; if it cannot be had, the outputs the
                # frames announced are the result: running the prompt again would be worse.
                # When the frames saw the whole run, they are the history: one request less.
                with contextlib.suppress(PeerUnreachable, BadResponse):
                    entry = await self.history(prompt_id) or entry
            return entry
        finally:
            await watch.drain_progress()
            self._watches.pop(prompt_id, None)

    async def locate(self, prompt_id: str) -> str | None:
        """`done`, `running`, `pending`, or None when the peer does not know the prompt."""
        if await self.history(prompt_id):
            return "done"
        queue = await self.queue()
        if prompt_id in queue.running:
            return "running"
        if prompt_id in queue.pending:
            return "pending"
        # It may have finished between the two questions.
        return "done" if await self.history(prompt_id) else None

    async def _recheck(self, watches: list[PromptWatch]) -> None:
        # The queue first: a prompt missing from it has either finished (its history entry
        # was written before it left the queue) or been lost.
        queue = await self.queue()
        now = time.monotonic()
        for watch in watches:
            if watch.prompt_id in queue:
                watch.last_frame_at = now
                continue
            entry = await self.history(watch.prompt_id)
            if entry is not None:
                watch.finish(entry)
            else:
                watch.fail(
                    PromptLost(
                        "the peer has this prompt in neither its queue nor its history "
                        "(it probably restarted)",
                        server=self.name,
                        prompt_id=watch.prompt_id,
                    )
                )

    async def cancel(self, prompt_id: str) -> None:
        """Remove the prompt if pending, interrupt it if running; harmless otherwise."""
        await self.post("/queue", {"delete": [prompt_id]})
        await self.interrupt(prompt_id)

    # -- HTTP API -----------------------------------------------------------------------

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The history entry, or None while pending/running or when unknown."""
        answer = await self.get_json(f"/history/{prompt_id}")
        entry = answer.get(prompt_id) if isinstance(answer, Mapping) else None
        return dict(entry) if isinstance(entry, Mapping) and entry else None

    async def queue(self) -> QueueState:
        answer = await self.get_json("/queue")
        if not isinstance(answer, Mapping):
            raise BadResponse("GET /queue did not answer an object", server=self.name)

        def ids(key: str) -> tuple[str, ...]:
            listed = answer.get(key)
            listed = listed if isinstance(listed, list) else []
            items = [i for i in listed if isinstance(i, list) and len(i) > 1]
            items.sort(key=lambda item: item[0] if isinstance(item[0], (int, float)) else 0)
            return tuple(str(item[1]) for item in items)

        return QueueState(running=ids("queue_running"), pending=ids("queue_pending"))

    async def system_stats(self) -> dict[str, Any]:
        return await self._get_object("/system_stats")

    async def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        path = "/object_info" if node_class is None else f"/object_info/{node_class}"
        return await self._get_object(path)

    async def _get_object(self, path: str) -> dict[str, Any]:
        answer = await self.get_json(path)
        if not isinstance(answer, Mapping):
            raise BadResponse(f"GET {path} did not answer a JSON object", server=self.name)
        return dict(answer)

    async def interrupt(self, prompt_id: str) -> None:
        """Interrupt the prompt only if it is the one running (ComfyUI ≥ 0.3.57)."""
        await self.post("/interrupt", {"prompt_id": prompt_id})

    async def free(self, *, unload_models: bool = True, free_memory: bool = True) -> None:
        await self.post("/free", {"unload_models": unload_models, "free_memory": free_memory})

    async def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        """Download one output file whole, refusing anything over the size limit; to pass a
        large file on without holding it, use `open_view`."""
        body = bytearray()
        async with self.open_view(filename, subfolder, type) as download:
            async for chunk in download.chunks():
                body += chunk
        return bytes(body)

    async def upload_image(
        self,
        data: bytes,
        filename: str,
        *,
        subfolder: str = "",
        type: str = "input",
        overwrite: bool = False,
    ) -> dict[str, str]:
        """Upload into the peer's input folder; the name to give LoadImage is in the answer."""
        form = aiohttp.FormData()
        form.add_field("image", data, filename=filename, content_type="image/png")
        form.add_field("type", type)
        form.add_field("subfolder", subfolder)
        form.add_field("overwrite", "true" if overwrite else "false")
        async with self._request("POST", "/upload/image", data=form) as response:
            self._check_status(response, "POST /upload/image")
            answer = await self._json(response, "POST /upload/image")
        if not isinstance(answer, Mapping) or not isinstance(answer.get("name"), str):
            raise BadResponse("POST /upload/image answered without a name", server=self.name)
        return {k: str(answer.get(k, "")) for k in ("name", "subfolder", "type")}
