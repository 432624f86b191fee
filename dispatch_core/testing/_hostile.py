"""HostilePeer: a FakePeer that can also misbehave the way a compromised or wrong server does,
and BannerServer: a TCP port that does not speak HTTP at all.

Every misbehaviour is keyed by path (the `/api` prefix removed; a key ending in `*` stands
for every path that starts with the rest), so that one route can turn hostile while the rest
of the peer still runs prompts like ComfyUI:

    async with HostilePeer() as peer:
        peer.echo_headers["/system_stats"] = (200, "text")   # our headers, back in a body
        peer.redirects["/view"] = "http://127.0.0.1:9/internal"
        peer.drips["/prompt"] = 2.0                           # one byte every 2 s
        peer.nested["/queue"] = 100_000                       # [[[[...]]]]
        peer.on_connect.append("[" * 100_000)                 # a WebSocket frame
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any, TypeVar

from aiohttp import web

from ._peer import FakePeer
from ._routes import Handler

__all__ = ["BannerServer", "HostilePeer"]

T = TypeVar("T")
SSH_BANNER = b"SSH-2.0-OpenSSH_9.6 secret-banner\r\n"


class HostilePeer(FakePeer):
    """A FakePeer whose routes can echo, redirect, drip, nest, and serve hostile files."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.echo_headers: dict[str, tuple[int, str]] = {}
        """Path → (status, form): answer the request's headers, as `text`, `html`, or `json`
        (an object that puts them in every text field ComfyUI's answers have)."""
        self.redirects: dict[str, tuple[int, str]] = {}
        """Path → (status, URL): answer a redirect there."""
        self.drips: dict[str, float] = {}
        """Path → seconds: answer a valid-looking JSON body, one byte every that many seconds."""
        self.nested: dict[str, int] = {}
        """Path → depth: answer a JSON array nested that deep."""
        self.raw: dict[str, tuple[int, str, bytes]] = {}
        """Path → (status, content type, body): answer exactly that."""
        self.view_files: dict[str, tuple[str, bytes]] = {}
        """`/view` filename → (content type, body): served as given, whatever the type."""
        self.stream_views = False
        """Serve `view_files` without a Content-Length, in chunks, so only reading tells."""
        self.extra_outputs: dict[str, Any] = {}
        """Node id → outputs, added to every history entry (hostile file names, say)."""
        self.on_connect: list[str] = []
        """Text frames sent, as is, to the next socket that opens, right after its status."""
        self.sockets_opened = 0
        """WebSocket connections accepted so far."""
        self._socket_opened = asyncio.Event()

    def send_frames(self, *texts: str) -> None:
        """Text frames sent as is to every open socket, after what it was sent before."""
        for text in texts:
            self._hub.send_raw(text)

    async def opened_sockets(self, count: int) -> None:
        """Wait until `count` WebSocket connections in all have been accepted."""
        while self.sockets_opened < count:
            self._socket_opened.clear()
            await self._socket_opened.wait()

    def _greeting(self, sid: str) -> list[tuple[str | None, Any]]:
        self.sockets_opened += 1
        self._socket_opened.set()
        frames = super()._greeting(sid)
        frames += [(None, text) for text in self.on_connect]
        self.on_connect = []
        return frames

    @web.middleware
    async def _faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path[4:] if request.path.startswith("/api/") else request.path
        hostile = await self._hostile(request, path)
        if hostile is not None:
            self.requests.append((request.method, path))
            return hostile
        response = await super()._faults(request, handler)
        if path.startswith("/history/") and self.extra_outputs:
            return _with_outputs(response, self.extra_outputs)
        return response

    async def _hostile(self, request: web.Request, path: str) -> web.StreamResponse | None:
        if (echo := _match(self.echo_headers, path)) is not None:
            return _echo(request, *echo)
        if (redirect := _match(self.redirects, path)) is not None:
            return web.Response(status=redirect[0], headers={"Location": redirect[1]})
        if (seconds := _match(self.drips, path)) is not None:
            return await _drip(request, seconds)
        if (depth := _match(self.nested, path)) is not None:
            return web.Response(text="[" * depth + "]" * depth, content_type="application/json")
        if (answer := _match(self.raw, path)) is not None:
            status, content_type, body = answer
            return web.Response(status=status, body=body, headers={"Content-Type": content_type})
        if path == "/view" and request.query.get("filename") in self.view_files:
            content_type, body = self.view_files[request.query["filename"]]
            return await _serve_file(request, content_type, body, chunked=self.stream_views)
        return None


def _match(table: Mapping[str, T], path: str) -> T | None:
    """The entry for `path`: its own, or that of a key ending in `*` it starts with."""
    if path in table:
        return table[path]
    for key, value in table.items():
        if key.endswith("*") and path.startswith(key[:-1]):
            return value
    return None


def _echo(request: web.Request, status: int, form: str) -> web.Response:
    text = "\n".join(f"{name}: {value}" for name, value in request.headers.items())
    if form == "json":
        answer = {
            "error": {"type": "echo", "message": text, "details": text},
            "node_errors": {},
            "system": {"comfyui_version": text},
            "devices": [{"name": text}],
            "exec_info": {"queue_remaining": 0},
        }
        return web.json_response(answer, status=status)
    if form == "html":
        return web.Response(status=status, text=f"<pre>{text}</pre>", content_type="text/html")
    return web.Response(status=status, text=text)


async def _drip(request: web.Request, seconds: float) -> web.StreamResponse:
    body = json.dumps({"system": {"comfyui_version": "x" * 200}, "devices": []}).encode()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):
        for byte in body:
            await response.write(bytes([byte]))
            await asyncio.sleep(seconds)
    return response


async def _serve_file(
    request: web.Request, content_type: str, body: bytes, *, chunked: bool
) -> web.StreamResponse:
    if not chunked:
        return web.Response(body=body, headers={"Content-Type": content_type})
    response = web.StreamResponse(headers={"Content-Type": content_type})
    response.enable_chunked_encoding()
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):
        for start in range(0, len(body), 1 << 16):
            await response.write(body[start : start + (1 << 16)])
        await response.write_eof()
    return response


def _with_outputs(response: web.StreamResponse, extra: Mapping[str, Any]) -> web.StreamResponse:
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return response
    answer = json.loads(response.body)
    for entry in answer.values():
        entry.setdefault("outputs", {}).update(extra)
    return web.json_response(answer)


class BannerServer:
    """A loopback TCP port that writes `banner` to each connection and never speaks HTTP
    (an SSH port, say); with `close`, it hangs up once it has read the request."""

    def __init__(self, banner: bytes = SSH_BANNER, *, close: bool = False):
        self.banner = banner
        self.close = close
        self.connections = 0
        """Connections accepted so far."""
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> BannerServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            writer.write(self.banner)
            await writer.drain()
            # Read the request before a hang-up too: closing on unread bytes sends a reset,
            # and the client would see that instead of what was written.
            while await reader.read(1 << 16) and not self.close:
                pass
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
