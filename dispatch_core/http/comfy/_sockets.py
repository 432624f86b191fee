"""The gateway's `/ws`: ComfyUI's WebSocket, fed by every peer of the farm.

A client connects as it would to ComfyUI (`/ws?clientId=…`) and hears, as ComfyUI says
it: `status` first (with its `sid`), a `feature_flags` answer to a first `feature_flags`
frame, then its prompts' frames as the peers sent them, under its own prompt ids.

Sending never waits, as ComfyUI's `send_sync`: each socket has an outbox and a writer that
keeps the frames' order. An outbox that a slow client lets fill up drops what comes next
(counted), so that no client can hold memory or the relay of the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

__all__ = ["FEATURES", "Sockets"]

FEATURES = {"supports_preview_metadata": False, "max_upload_size": 64 * 1024 * 1024}
"""What the gateway says of itself: previews come as ComfyUI's legacy frames (type 1)."""
_OUTBOX = 2000
"""Frames held for one slow client before the next ones are dropped."""
_MAX_CLIENT_ID = 128


class _Client:
    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self.outbox: asyncio.Queue[str | bytes] = asyncio.Queue(_OUTBOX)
        self.dropped = 0

    def put(self, frame: str | bytes) -> None:
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            self.dropped += 1

    async def write_forever(self) -> None:
        while True:
            frame = await self.outbox.get()
            if self.ws.closed:
                return
            try:
                if isinstance(frame, bytes):
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                return


class Sockets:
    """Every `/ws` the gateway has open, by client id."""

    def __init__(self, queue_remaining: Callable[[], int]):
        self.queue_remaining = queue_remaining
        """The farm's prompts not yet finished: what every `status` frame tells."""
        self._clients: dict[str, _Client] = {}

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """ComfyUI's `websocket_handler`: a reused client id takes over the old socket."""
        sid = request.query.get("clientId", "")[:_MAX_CLIENT_ID] or uuid.uuid4().hex
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
        await ws.prepare(request)
        client = _Client(ws)
        self._clients[sid] = client
        writer = asyncio.create_task(client.write_forever(), name=f"comfy-ws:{sid}")
        try:
            self.send("status", {"status": self._queue_info(), "sid": sid}, sid)
            await self._read(ws, sid)
        finally:
            if self._clients.get(sid) is client:
                del self._clients[sid]
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    async def _read(self, ws: web.WebSocketResponse, sid: str) -> None:
        """Only a first `feature_flags` frame means anything, as in ComfyUI."""
        first = True
        async for message in ws:
            if not first or message.type != WSMsgType.TEXT:
                continue
            first = False
            with contextlib.suppress(ValueError, AttributeError):
                if json.loads(message.data).get("type") == "feature_flags":
                    self.send("feature_flags", dict(FEATURES), sid)

    def _queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.queue_remaining()}}

    def send(self, kind: str, data: Any, sid: str | None) -> None:
        """A JSON frame to one client, or to every socket when `sid` is None."""
        self._put(json.dumps({"type": kind, "data": data}), sid)

    def send_bytes(self, frame: bytes, sid: str | None) -> None:
        self._put(frame, sid)

    def status(self) -> None:
        """The farm's queue length, to every socket (ComfyUI's `queue_updated`)."""
        self.send("status", {"status": self._queue_info()}, None)

    def _put(self, frame: str | bytes, sid: str | None) -> None:
        if sid is None:
            targets = list(self._clients.values())
        else:
            client = self._clients.get(sid)
            targets = [client] if client is not None else []
        for client in targets:
            client.put(frame)

    async def close(self) -> None:
        sockets = [client.ws for client in self._clients.values()]
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
