"""The fake peer's WebSocket side: one outbox per client, so frames keep the order they were sent.

Like ComfyUI's `send_sync`, sending never waits: frames are queued and each socket's writer
sends them in order. Sockets are keyed by client id, with ComfyUI's quirk kept: when an old
socket closes it unregisters its id even if a newer socket reuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from ._info import FEATURES

__all__ = ["SocketHub"]


class _Client:
    def __init__(self, ws: web.WebSocketResponse, request: web.Request):
        self.ws = ws
        self.request = request
        self.outbox: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.flags: dict[str, Any] = {}
        """What its first frame announced (`supports_preview_metadata`, say)."""

    def put(self, kind: str, data: Any) -> None:
        self.outbox.put_nowait(json.dumps({"type": kind, "data": data}))

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


class SocketHub:
    """The `/ws` endpoint and every socket it has open."""

    def __init__(self, greeting: Callable[[str], list[tuple[str | None, Any]]]):
        self.greeting = greeting
        """Frames for a new socket: the status with its sid, maybe `executing` on reconnect;
        a kind of None sends its data as the frame's text, as is."""
        self.silent = False
        self._clients: dict[str, _Client] = {}

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        client = _Client(ws, request)
        self._clients[sid] = client
        writer = asyncio.create_task(client.write_forever(), name=f"fake-peer-ws:{sid}")
        try:
            for kind, data in self.greeting(sid):
                # Sent even when silent: the quirk is a socket that connects fine, then
                # hears nothing.
                if kind is None:
                    client.outbox.put_nowait(data)
                else:
                    client.put(kind, data)
            await self._read(ws, sid, client)
        finally:
            self._clients.pop(sid, None)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    async def _read(self, ws: web.WebSocketResponse, sid: str, client: _Client) -> None:
        """Only a first `feature_flags` frame means anything; the rest is ignored."""
        first = True
        async for message in ws:
            if not first or message.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(message.data)
                if data.get("type") == "feature_flags":
                    flags = data.get("data")
                    client.flags = dict(flags) if isinstance(flags, dict) else {}
                    self.send(sid, "feature_flags", dict(FEATURES))
                first = False
            except (ValueError, AttributeError):
                pass  # ComfyUI logs these and keeps waiting for a first valid frame

    def send(self, sid: str | None, kind: str, data: Any) -> None:
        """Queue a frame for one client (None: every socket)."""
        if self.silent:
            return
        if sid is None:
            targets = list(self._clients.values())
        else:
            target = self._clients.get(sid)
            targets = [target] if target is not None else []
        for client in targets:
            client.put(kind, data)

    def wants_metadata(self, sid: str | None) -> bool:
        """Whether previews for this client come as type 4 (main.py: hijack_progress)."""
        client = self._clients.get(sid) if sid is not None else None
        return client is not None and client.flags.get("supports_preview_metadata") is True

    def send_binary(self, sid: str | None, frame: bytes) -> None:
        """Queue a binary frame for one client (None: every socket)."""
        if self.silent:
            return
        targets = list(self._clients.values()) if sid is None else [self._clients.get(sid)]
        for client in targets:
            if client is not None:
                client.outbox.put_nowait(frame)

    def send_raw(self, text: str) -> None:
        """Queue a text frame as is, to every socket."""
        for client in self._clients.values():
            client.outbox.put_nowait(text)

    def drop(self) -> None:
        """Cut every socket's connection without a close frame, as a crash or a proxy would."""
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            transport = client.request.transport
            if transport is not None:
                transport.abort()
