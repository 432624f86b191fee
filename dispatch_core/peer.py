"""A client for one ComfyUI server: its HTTP API and ONE WebSocket shared by all its prompts.

Completion comes from the WebSocket (`executing` with `node: null`). While the socket is
down, each open prompt is polled through `/history/{id}`; after every (re)connect every
open prompt is checked again, because a socket reconnected under the same `clientId` can
silently stop receiving (REFERENCE.md §3.1). A prompt found in neither `/history` nor
`/queue` was lost by a restarted peer.

The peer may be hostile (see `_peer_http`): a frame that cannot be read is dropped and
counted, never a reason to lose the socket, and no frame handler's failure ends the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from ._json import JSONLimitError, loads_bounded
from ._peer_http import PeerHTTP
from ._watch import ProgressCallback, PromptWatch, node_errors, rejected
from .config import ServerConfig, Timeouts
from .errors import (
    BadResponse,
    PeerUnreachable,
    PromptLost,
    PromptRejected,
)

__all__ = ["PeerClient", "QueueState"]

_RECONNECT_MAX_DELAY = 5.0
_MAX_FRAME_BYTES = 8 * 1024 * 1024
"""Larger than any text frame ComfyUI sends; binary previews are not read."""
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueueState:
    """The peer's queue: prompt ids running, and pending in the order they will run."""

    running: tuple[str, ...]
    pending: tuple[str, ...]

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self.running or prompt_id in self.pending


class PeerClient(PeerHTTP):
    """Talks to one ComfyUI server. Use as `async with`; the session is the caller's."""

    def __init__(
        self,
        server: ServerConfig,
        session: aiohttp.ClientSession,
        *,
        timeouts: Timeouts | None = None,
        client_id: str | None = None,
        recheck_interval: float = 5.0,
        max_download_bytes: int = 1024 * 1024 * 1024,
    ):
        super().__init__(server, session, timeouts=timeouts, max_download_bytes=max_download_bytes)
        self.client_id = client_id or f"dispatch-{uuid.uuid4().hex}"
        self.recheck_interval = recheck_interval
        self.max_frame_bytes = _MAX_FRAME_BYTES
        """A larger WebSocket frame is refused (aiohttp then closes the socket; we reconnect)."""
        self.queue_remaining: int | None = None
        """The peer's own queue length, from its latest `status` frame."""
        self.dropped_frames = 0
        """WebSocket frames dropped: not JSON, out of bounds, not ComfyUI's shape, too large,
        or their handler failed."""
        self._watches: dict[str, PromptWatch] = {}
        self._ws_up = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self._ws_task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._recheck_now = asyncio.Event()
        self._closed = False

    async def __aenter__(self) -> PeerClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """Whether the WebSocket is up right now."""
        return self._ws_up.is_set()

    async def start(self) -> None:
        """Open the WebSocket in the background; wait at most one request timeout for it."""
        if self._ws_task is None:
            self._ws_task = asyncio.create_task(self._ws_loop(), name=f"ws:{self.name}")
            self._watchdog = asyncio.create_task(self._watch_over(), name=f"watch:{self.name}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timeouts.request):
                await self._first_attempt.wait()

    async def close(self) -> None:
        """Stop the WebSocket and fail every prompt still watched. Idempotent."""
        self._closed = True
        tasks = [t for t in (self._ws_task, self._watchdog) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._ws_task = self._watchdog = None
        for watch in self._watches.values():
            watch.fail(PeerUnreachable("the client was closed", server=self.name))

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
    ) -> str:
        """Queue a prompt under an id we mint, so frames that beat the answer are not lost."""
        await self.start()
        prompt_id = prompt_id or str(uuid.uuid4())
        watch = PromptWatch(
            self.name, prompt_id, node_count=len(prompt), on_progress=on_progress, clean=self.scrub
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
            if entry.get("from") == "websocket":
                # The history lists cached outputs too; if it cannot be had, the outputs the
                # frames announced are the result: running the prompt again would be worse.
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

    async def _watch_over(self) -> None:
        """Check quiet prompts in one batch per round: one `/queue`, then `/history` per
        prompt the queue no longer holds. While the socket is down every prompt is quiet."""
        while True:
            polling = not self.connected or any(w.polled for w in self._watches.values())
            interval = self.timeouts.poll_interval if polling else self.recheck_interval
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._recheck_now.wait()
            self._recheck_now.clear()
            quiet_since = time.monotonic() - interval
            quiet = [
                w
                for w in self._watches.values()
                if not w.done.done()
                and (not self.connected or w.polled or w.last_frame_at <= quiet_since)
            ]
            if quiet:
                await self._recheck_quietly(quiet)

    async def _recheck_quietly(self, watches: list[PromptWatch]) -> None:
        """A round of checks whose failure waits for the next round; nothing a peer answers
        may end the watchdog, or its prompts would wait for ever."""
        try:
            await self._recheck(watches)
        except (PeerUnreachable, BadResponse):
            pass
        except Exception as error:
            _log.warning("server %r: checking prompts failed (%s)", self.name, type(error).__name__)

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

    # -- WebSocket ----------------------------------------------------------------------

    async def _ws_loop(self) -> None:
        """Keep one socket up until closed. No frame and no failure ends this loop: a peer
        that breaks the socket is reconnected to, after a back-off while it sends nothing
        we can read."""
        delay = 0.05
        if self._session.closed:
            self._first_attempt.set()
            return
        async with _no_redirects(self._session) as session:
            while not self._closed and not self._session.closed:
                heard = False
                try:
                    heard = await self._ws_once(session)
                except (aiohttp.ClientError, OSError, TimeoutError):
                    pass
                except Exception as error:  # a bug of ours: say so, keep the peer followed
                    _log.warning(
                        "server %r: WebSocket failed (%s)", self.name, type(error).__name__
                    )
                finally:
                    self._ws_up.clear()
                    self._first_attempt.set()
                delay = 0.05 if heard else min(delay * 2, _RECONNECT_MAX_DELAY)
                await asyncio.sleep(delay * (0.5 + random.random()))

    async def _ws_once(self, session: aiohttp.ClientSession) -> bool:
        """One socket, until it closes; whether any frame on it could be read."""
        url = self.url.replace("http", "ws", 1) + "/ws"
        async with asyncio.timeout(self.timeouts.request):
            ws = await session.ws_connect(
                url,
                params={"clientId": self.client_id},
                headers=self._headers,
                heartbeat=30.0,
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                max_msg_size=self.max_frame_bytes,
            )
        heard = False
        async with ws:
            self._ws_up.set()
            self._first_attempt.set()
            self._recheck_everything()
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    heard = self._take_frame(message.data) or heard
                elif message.type == aiohttp.WSMsgType.ERROR:
                    self.dropped_frames += 1  # too large or not WebSocket: aiohttp closes it
        return heard

    def _recheck_everything(self) -> None:
        """After a (re)connect, frames may have been missed: check every open prompt."""
        for watch in self._watches.values():
            watch.last_frame_at = float("-inf")
        self._recheck_now.set()

    def _take_frame(self, text: str) -> bool:
        """Hand one text frame on; whether it was used. A frame whose handler fails (a shape
        deep inside it, a progress callback's bug) is dropped, and the socket kept."""
        try:
            used = self._on_text(text)
        except Exception as error:
            _log.warning(
                "server %r: dropped a WebSocket frame (%s)", self.name, type(error).__name__
            )
            used = False
        if not used:
            self.dropped_frames += 1
        return used

    def _on_text(self, text: str) -> bool:
        try:
            message = loads_bounded(text)
            kind, data = message["type"], message["data"]
        except (JSONLimitError, KeyError, TypeError, IndexError):
            return False  # not ComfyUI's protocol
        if not isinstance(kind, str) or not isinstance(data, Mapping):
            return False
        if kind == "status":
            with contextlib.suppress(KeyError, TypeError, ValueError):
                self.queue_remaining = int(data["status"]["exec_info"]["queue_remaining"])
            return True
        watch = self._watches.get(str(data.get("prompt_id")))
        if watch is not None:
            watch.on_frame(kind, data)
        return True


@contextlib.asynccontextmanager
async def _no_redirects(shared: aiohttp.ClientSession) -> AsyncIterator[aiohttp.ClientSession]:
    """The caller's connections, in a session that refuses redirects: `ws_connect` has no
    `allow_redirects`, and a redirect would carry our headers to a URL the peer chose."""
    trace = aiohttp.TraceConfig()
    trace.on_request_redirect.append(_refuse_redirect)
    async with aiohttp.ClientSession(
        connector=shared.connector, connector_owner=False, trace_configs=[trace]
    ) as session:
        yield session


async def _refuse_redirect(
    _: aiohttp.ClientSession, __: Any, params: aiohttp.TraceRequestRedirectParams
) -> None:
    params.response.close()
    raise aiohttp.ClientConnectionError("the peer answered a redirect; redirects are not followed")
