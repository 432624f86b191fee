"""`python -m dispatch_core serve`: the `/dispatch/*` routes and the panel, without ComfyUI.

For a gateway in front of GPU servers: apps post jobs to `/dispatch/run`, people manage
servers in the panel at `/dispatch/ui/`. Events reach the panel over `/dispatch/ws`, in
ComfyUI's `{"type", "data"}` shape, so the same panel code serves both.

Bound to anything but loopback, it requires a token (`--token` or `DISPATCH_TOKEN`), sent
as `Authorization: Bearer …` or `?token=…`; requests that change state from another
origin are refused, as ComfyUI refuses them.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ._files import private_folder, write_atomically
from .routes import add_routes, cross_origin
from .service import DispatchService

__all__ = ["create_app", "default_folder", "serve"]

_COMFYUI_DEFAULT = "http://127.0.0.1:8188"
_PANEL = Path(__file__).resolve().parent.parent / "web"
_MAX_BODY = 64 * 1024 * 1024
"""Large enough for a workflow with an embedded image, small enough to refuse a mistake."""
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def default_folder() -> Path:
    """`$XDG_CONFIG_HOME/comfyui-dispatch`, else `~/.config/comfyui-dispatch`."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "comfyui-dispatch"


class _EventHub:
    """The panels' WebSockets; `notify` may be called from any code on the loop."""

    def __init__(self) -> None:
        self.sockets: set[web.WebSocketResponse] = set()

    def notify(self, event: str, data: dict[str, Any]) -> None:
        message = json.dumps({"type": event, "data": data})
        for socket in list(self.sockets):
            if not socket.closed:
                task = asyncio.ensure_future(socket.send_str(message))
                task.add_done_callback(_ignore_result)

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(heartbeat=30)
        await socket.prepare(request)
        self.sockets.add(socket)
        try:
            async for _ in socket:
                pass  # the panel only listens
        finally:
            self.sockets.discard(socket)
        return socket

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in list(self.sockets)), return_exceptions=True)


def _ignore_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # a panel that went away: nothing to do


def create_app(service: DispatchService, *, token: str | None = None) -> web.Application:
    """The standalone app: routes, panel and events, guarded by origin and token."""
    hub = _EventHub()
    service.notify = hub.notify
    app = web.Application(client_max_size=_MAX_BODY, middlewares=[_guard(token)])
    routes = web.RouteTableDef()
    add_routes(routes, service)
    app.add_routes(routes)
    app.router.add_get("/dispatch/ws", hub.handler)
    app.router.add_get("/", _redirect_to_panel)
    app.router.add_get("/dispatch/ui", _redirect_to_panel)
    app.router.add_get("/dispatch/ui/", _panel_page)
    if _PANEL.is_dir():
        app.router.add_static("/dispatch/ui/", _PANEL)

    async def close(app: web.Application) -> None:
        await hub.close()
        await service.close()

    app.on_shutdown.append(close)
    return app


async def _redirect_to_panel(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/dispatch/ui/")


async def _panel_page(request: web.Request) -> web.StreamResponse:
    page = _PANEL / "standalone.html"
    if not page.is_file():
        return web.Response(
            status=500,
            text=f"the panel's files are not in {_PANEL}: run from a source checkout "
            "(pip install -e .)",
        )
    return web.FileResponse(page)


def _guard(token: str | None) -> Any:
    @web.middleware
    async def guard(request: web.Request, handler: _Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith("/dispatch/") and not path.startswith("/dispatch/ui"):
            if path == "/dispatch/ws" and cross_origin(request):  # the routes check the rest
                return web.json_response(
                    {"error": "cross-origin request refused", "field": "Origin"}, status=403
                )
            if token is not None and not _has_token(request, token):
                message = "this server needs its token: Authorization: Bearer <token>"
                return web.json_response({"error": message, "field": "token"}, status=401)
        return await handler(request)

    return guard


def _has_token(request: web.Request, token: str) -> bool:
    sent = request.query.get("token", "")
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        sent = header.removeprefix("Bearer ").strip()
    return hmac.compare_digest(sent.encode(), token.encode())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _first_config(folder: Path) -> str:
    """Write a config on first start: the local ComfyUI if one answers, else no server."""
    path = folder / "config.json"
    servers: dict[str, Any] = {}
    routes: dict[str, Any] = {}
    try:
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(f"{_COMFYUI_DEFAULT}/system_stats") as response:
                if response.status == 200 and "system" in await response.json():
                    servers, routes = {"local": _COMFYUI_DEFAULT}, {"default": "local"}
    except (aiohttp.ClientError, TimeoutError, ValueError):
        pass
    text = json.dumps({"servers": servers, "routes": routes}, indent=2) + "\n"
    await asyncio.to_thread(write_atomically, path, text.encode())
    if servers:
        return f"created {path} with the ComfyUI at {_COMFYUI_DEFAULT}"
    return f"created {path} with no server: add one in the panel"


async def serve(
    *,
    config: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8190,
    token: str | None = None,
    status_every: float = 5.0,
    comfyui: Path | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run until cancelled (Ctrl-C)."""
    if token is None and not _is_loopback(host):
        raise SystemExit(
            f"error: serving on {host} opens the dispatcher to the network: give it a token "
            "with --token or DISPATCH_TOKEN, or bind to 127.0.0.1"
        )
    folder = config.parent if config is not None else default_folder()
    if config is None:  # our own folder: owner-only, as the config in it holds tokens
        private_folder(folder)
        if not (folder / "config.json").exists():
            print(await _first_config(folder), file=sys.stderr)
    service = DispatchService(
        folder, config_path=config, status_interval=status_every, comfyui=comfyui
    )
    if service.config_error:
        print(f"warning: {service.config_error}", file=sys.stderr)
    app = create_app(service, token=token)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        url = f"http://{host}:{bound[1]}/dispatch/ui/"
        message = f"ComfyUI-Dispatch panel on {url} (config: {service.config_path})"
        (ready or (lambda text: print(text, file=sys.stderr, flush=True)))(message)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
