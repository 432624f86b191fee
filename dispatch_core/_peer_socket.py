"""The one WebSocket a client shares among its prompts, and the watchdog that covers for it.

Frames go to the `PromptWatch` of their prompt. The socket can go down, or, reconnected
under the same `clientId`, silently stop receiving; so the watchdog hands every prompt
it has heard nothing of lately to `_recheck`, which the client answers from the peer's
queue and history.

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
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from ._json import JSONLimitError, loads_bounded
from ._peer_http import PeerHTTP
from ._previews import FEATURE_FLAGS, read_preview
from ._watch import PromptWatch
from .config import ServerConfig, Timeouts
from .errors import BadResponse, PeerUnreachable

__all__ = ["PeerSocket"]

_RECONNECT_MAX_DELAY = 5.0
_MAX_FRAME_BYTES = 8 * 1024 * 1024
"""Larger than any text frame ComfyUI sends, and than its previews (`--preview-size`
512 by default: tens of kB)."""
# Logged under the client's module, whose name users already filter on.
_log = logging.getLogger(__name__.rpartition(".")[0] + ".peer")


class PeerSocket(PeerHTTP):
    """The WebSocket side of one peer, and the prompts it follows; `PeerClient` builds on it.

    Owns its two background tasks, the socket loop and the watchdog: `start` creates them,
    `close` cancels them and fails every prompt still followed.
    """

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
        self._running: str | None = None
        """The prompt the peer runs now, by its frames: ComfyUI runs one at a time, and its
        binary previews name no prompt, so they belong to this one."""
        self._ws_up = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self._ws_task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._recheck_now = asyncio.Event()
        self._closed = False

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
        """Settle prompts the socket has been quiet about; the client asks the peer."""
        raise NotImplementedError

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
            await ws.send_json(FEATURE_FLAGS)  # only a first frame counts (ComfyUI's server)
            self._ws_up.set()
            self._first_attempt.set()
            self._recheck_everything()
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    heard = self._take_frame(message.data) or heard
                elif message.type == aiohttp.WSMsgType.BINARY:
                    heard = self._take_binary(message.data) or heard
                elif message.type == aiohttp.WSMsgType.ERROR:
                    self._dropped()  # too large or not WebSocket: aiohttp closes it
        return heard

    def _recheck_everything(self) -> None:
        """After a (re)connect, frames may have been missed: check every open prompt."""
        for watch in self._watches.values():
            watch.last_frame_at = float("-inf")
            watch.gap = True
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
            self._dropped()
        return used

    def _dropped(self) -> None:
        """A frame could not be read: it may have been any open prompt's output."""
        self.dropped_frames += 1
        for watch in self._watches.values():
            watch.gap = True

    def _take_binary(self, data: bytes) -> bool:
        """A preview goes to its prompt's watch, for its progress and, raw, to its relay (a
        node's progress text too); other binary frames are not ours."""
        preview = read_preview(data)
        prompt_id = (preview.prompt_id if preview is not None else None) or self._running
        watch = self._watches.get(prompt_id or "")
        if watch is not None and watch.relay is not None:
            watch.on_binary(data)
        if preview is None:
            return False
        if watch is not None:
            watch.on_preview(preview)
        return True

    def _follow_running(self, kind: str, data: Mapping[str, Any]) -> None:
        prompt_id = data.get("prompt_id")
        if kind in ("execution_start", "executing") and isinstance(prompt_id, str):
            self._running = None if data.get("node", "") is None else prompt_id

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
        self._follow_running(kind, data)
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
