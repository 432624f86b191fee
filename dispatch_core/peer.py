"""A client for one ComfyUI server: its HTTP API and ONE WebSocket shared by all its prompts.

Completion comes from the WebSocket (`executing` with `node: null`). While the socket is
down, each open prompt is polled through `/history/{id}`; after every (re)connect every
open prompt is checked again, because a socket reconnected under the same `clientId` can
silently stop receiving (REFERENCE.md §3.1). A prompt found in neither `/history` nor
`/queue` was lost by a restarted peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from ._watch import ProgressCallback, PromptWatch
from .config import ServerConfig, Timeouts
from .errors import (
    BadResponse,
    DispatcherClosed,
    NodeError,
    PeerUnreachable,
    PromptLost,
    PromptRejected,
)

__all__ = ["PeerClient", "QueueState"]

_MAX_JSON_BYTES = 64 * 1024 * 1024
_RECONNECT_MAX_DELAY = 5.0


@dataclass(frozen=True)
class QueueState:
    """The peer's queue: prompt ids running, and pending in the order they will run."""

    running: tuple[str, ...]
    pending: tuple[str, ...]

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self.running or prompt_id in self.pending


class PeerClient:
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
        self.name = server.name
        self.url = server.url
        self.client_id = client_id or f"dispatch-{uuid.uuid4().hex}"
        self.timeouts = timeouts or Timeouts()
        self.recheck_interval = recheck_interval
        self.max_download_bytes = max_download_bytes
        self.queue_remaining: int | None = None
        """The peer's own queue length, from its latest `status` frame."""
        self._session = session
        self._headers = dict(server.headers)
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
        watch = PromptWatch(self.name, prompt_id, node_count=len(prompt), on_progress=on_progress)
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
        node_errors = _node_errors(answer.get("node_errors"))
        if node_errors:
            # ComfyUI dropped the failing outputs and queued the rest: take it back.
            await self.cancel(prompt_id)
            self._watches.pop(prompt_id, None)
            raise PromptRejected(
                "the peer dropped outputs that failed validation",
                server=self.name,
                prompt_id=prompt_id,
                error_type="prompt_outputs_failed_validation",
                node_errors=node_errors,
            )
        return prompt_id

    async def attach(
        self, prompt_id: str, *, node_count: int = 0, on_progress: ProgressCallback | None = None
    ) -> None:
        """Watch a prompt submitted earlier, by another client: its frames do not come to
        our socket, so it is followed through `/queue` and `/history` at the poll interval."""
        await self.start()
        watch = PromptWatch(self.name, prompt_id, node_count=node_count, on_progress=on_progress)
        watch.polled = True
        self._watches[prompt_id] = watch
        self._recheck_now.set()

    async def _post_prompt(self, body: Mapping[str, Any], prompt_id: str) -> dict[str, Any]:
        try:
            async with self._request("POST", "/prompt", json=body) as response:
                if response.status == 400:
                    raise _rejected(self.name, prompt_id, await self._json(response))
                self._check_status(response, "POST /prompt")
                return await self._json(response)
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
                with contextlib.suppress(PeerUnreachable, BadResponse):
                    await self._recheck(quiet)

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
            items = [i for i in answer.get(key) or () if isinstance(i, list) and len(i) > 1]
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
        """Download one output file, streamed, refusing anything over the size limit."""
        params = {"filename": filename, "subfolder": subfolder, "type": type}
        async with self._request("GET", "/view", params=params) as response:
            if response.status == 404:
                raise BadResponse(
                    f"the peer has no file {filename!r} (subfolder {subfolder!r}, type {type})",
                    server=self.name,
                    status=404,
                )
            self._check_status(response, "GET /view")
            return await self._read_limited(response, self.max_download_bytes, "GET /view")

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
            answer = await self._json(response)
        if not isinstance(answer, Mapping) or not isinstance(answer.get("name"), str):
            raise BadResponse("POST /upload/image answered without a name", server=self.name)
        return {k: str(answer.get(k, "")) for k in ("name", "subfolder", "type")}

    async def get_json(self, path: str) -> Any:
        async with self._request("GET", path) as response:
            self._check_status(response, f"GET {path}")
            return await self._json(response)

    async def post(self, path: str, body: Mapping[str, Any]) -> None:
        async with self._request("POST", path, json=body) as response:
            self._check_status(response, f"POST {path}")

    @contextlib.asynccontextmanager
    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._session.closed:
            raise DispatcherClosed(
                f"{method} {path}: the client session is closed; "
                "read outputs before closing the dispatcher",
                server=self.name,
            )
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeouts.request, sock_read=self.timeouts.request
        )
        try:
            async with self._session.request(
                method, self.url + path, headers=self._headers, timeout=timeout, **kwargs
            ) as response:
                yield response
        except TimeoutError as error:
            raise PeerUnreachable(
                f"{method} {path} to {self.url}: no answer within {self.timeouts.request:g} s",
                server=self.name,
            ) from error
        except (aiohttp.ClientConnectionError, OSError) as error:
            raise PeerUnreachable(
                f"{method} {path} to {self.url} failed: {_describe(error)}", server=self.name
            ) from error

    def _check_status(self, response: aiohttp.ClientResponse, what: str) -> None:
        if response.status >= 400:
            raise BadResponse(
                f"{what} answered HTTP {response.status} {response.reason or ''}".rstrip(),
                server=self.name,
                status=response.status,
            )

    async def _json(self, response: aiohttp.ClientResponse) -> Any:
        what = f"{response.method} {response.url.path}"
        raw = await self._read_limited(response, _MAX_JSON_BYTES, what)
        try:
            return json.loads(raw) if raw else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            snippet = raw[:80].decode("utf-8", "replace").replace("\n", " ")
            raise BadResponse(
                f"{what} answered something that is not JSON: {snippet!r}",
                server=self.name,
                status=response.status,
            ) from None

    async def _read_limited(self, response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
        declared = response.content_length
        if declared is not None and declared > limit:
            raise BadResponse(
                f"{what}: {declared} bytes is over the {limit} byte limit", server=self.name
            )
        try:
            if declared is not None:
                body = await response.read()  # one buffer: the length is known and allowed
            else:
                body = await self._read_unsized(response, limit, what)
        except aiohttp.ClientPayloadError as error:
            raise BadResponse(f"{what}: body cut short: {error}", server=self.name) from None
        if declared is not None and len(body) != declared:
            raise BadResponse(
                f"{what}: body truncated at {len(body)} of {declared} bytes", server=self.name
            )
        return body

    async def _read_unsized(self, response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
        body = bytearray()
        async for chunk in response.content.iter_chunked(1 << 20):
            body += chunk
            if len(body) > limit:
                raise BadResponse(f"{what}: over the {limit} byte limit", server=self.name)
        return bytes(body)

    # -- WebSocket ----------------------------------------------------------------------

    async def _ws_loop(self) -> None:
        delay = 0.05
        url = self.url.replace("http", "ws", 1) + "/ws"
        while not self._closed:
            try:
                async with self._session.ws_connect(
                    url,
                    params={"clientId": self.client_id},
                    headers=self._headers,
                    heartbeat=30.0,
                    timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                ) as ws:
                    self._ws_up.set()
                    self._first_attempt.set()
                    delay = 0.05
                    self._recheck_everything()
                    async for message in ws:
                        if message.type == aiohttp.WSMsgType.TEXT:
                            self._on_text(message.data)
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            finally:
                self._ws_up.clear()
                self._first_attempt.set()
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, _RECONNECT_MAX_DELAY)

    def _recheck_everything(self) -> None:
        """After a (re)connect, frames may have been missed: check every open prompt."""
        for watch in self._watches.values():
            watch.last_frame_at = float("-inf")
        self._recheck_now.set()

    def _on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
            kind, data = message["type"], message["data"]
        except (ValueError, KeyError, TypeError):
            return  # not ComfyUI's protocol: ignore rather than drop the socket
        if not isinstance(data, Mapping):
            return
        if kind == "status":
            with contextlib.suppress(KeyError, TypeError, ValueError):
                self.queue_remaining = int(data["status"]["exec_info"]["queue_remaining"])
            return
        watch = self._watches.get(str(data.get("prompt_id")))
        if watch is not None:
            watch.on_frame(kind, data)


def _rejected(server: str, prompt_id: str, answer: Any) -> PromptRejected:
    error = answer.get("error") if isinstance(answer, Mapping) else None
    if not isinstance(error, Mapping):
        error = {"message": str(error or answer)}
    message = str(error.get("message") or "the peer refused the prompt")
    details = error.get("details")
    if details and error.get("type") != "prompt_outputs_failed_validation":
        message = f"{message.rstrip('.')}: {details}"
    return PromptRejected(
        message,
        server=server,
        prompt_id=prompt_id,
        error_type=str(error.get("type") or "") or None,
        node_errors=_node_errors(
            answer.get("node_errors") if isinstance(answer, Mapping) else None
        ),
    )


def _node_errors(raw: Any) -> tuple[NodeError, ...]:
    if not isinstance(raw, Mapping):
        return ()
    found = []
    for node_id, info in raw.items():
        info = info if isinstance(info, Mapping) else {}
        errors = tuple(dict(e) for e in info.get("errors") or () if isinstance(e, Mapping))
        found.append(NodeError(str(node_id), str(info.get("class_type", "?")), errors))
    return tuple(found)


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.split(" [")[0] if "Cannot connect" in text else text
