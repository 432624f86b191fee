"""`python -m dispatch_core serve`: the `/dispatch/*` routes and the panel, without ComfyUI.

For a gateway in front of GPU servers: apps post jobs to `/dispatch/run`, people manage
servers in the panel at `/dispatch/ui/`. Events reach the panel over `/dispatch/ws`, in
ComfyUI's `{"type", "data"}` shape, so the same panel code serves both.

Bound to anything but loopback, it requires a token (`--token` or `DISPATCH_TOKEN`), sent
as `Authorization: Bearer …`, or once to `POST /dispatch/session`, which answers with an
HttpOnly cookie for the panel, its images and its events: the token never travels in a
URL, where logs and histories would keep it. Every request must name this machine in its
Host and come from this origin (see `_guard`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from .._files import private_folder, write_atomically
from ..service import DispatchService
from ..service._keys import ApiKeys
from . import add_routes
from ._gateway_keys import authorize
from ._guard import HostPolicy, refusal
from .comfy import add_comfy_routes
from .comfy.page import frontend_folder
from .metrics import get_metrics

__all__ = ["create_app", "default_folder", "panel_folder", "serve"]

_COMFYUI_DEFAULT = "http://127.0.0.1:8188"
_PANEL_PLACES = (
    Path(__file__).resolve().parents[1] / "web",  # installed: the wheel carries it here
    Path(__file__).resolve().parents[2] / "web",  # a checkout: ComfyUI's WEB_DIRECTORY
)
"""Where the panel's files may be, first match wins; in git they live in `web/` only."""
_MAX_BODY = 64 * 1024 * 1024
"""Large enough for a workflow with an embedded image, small enough to refuse a mistake."""
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SESSION_COOKIE = "dispatch_session"


def panel_folder() -> Path | None:
    """The folder holding the panel's page and scripts, or None if neither place has it."""
    for place in _PANEL_PLACES:
        if (place / "standalone.html").is_file() and (place / "panel.js").is_file():
            return place
    return None


def _no_panel() -> str:
    places = " nor in ".join(str(p) for p in _PANEL_PLACES)
    return (
        f"the panel's files (standalone.html, panel.js) are neither in {places}: "
        "reinstall the package (pip install --force-reinstall comfyui-dispatch) or run "
        "from a complete checkout"
    )


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


def create_app(
    service: DispatchService, *, token: str | None = None, policy: HostPolicy | None = None
) -> web.Application:
    """The standalone app: routes, panel and events, guarded by Host, origin and token."""
    policy = policy or HostPolicy()
    token = _checked_token(token)
    hub = _EventHub()
    if service.keys is None:
        service.keys = ApiKeys(service.folder / "keys.json")
    guard = _guard(token, policy, service.keys)
    app = web.Application(client_max_size=_MAX_BODY, middlewares=[guard])
    routes = web.RouteTableDef()
    add_routes(routes, service, policy=policy)
    app.add_routes(routes)
    for route in routes:  # as ComfyUI serves them too: ComfyUI's page calls them so
        if isinstance(route, web.RouteDef):
            app.router.add_route(route.method, "/api" + route.path, route.handler)
    app.router.add_get("/dispatch/ws", hub.handler)
    app.router.add_get("/metrics", _metrics(service))  # where scrapers look by default
    app.router.add_post("/dispatch/session", _session(token))
    app.router.add_get("/dispatch/ui", _redirect_to_panel)
    panel = panel_folder()
    app.router.add_get("/dispatch/ui/", _panel_page(panel))
    if panel is not None:
        app.router.add_static("/dispatch/ui/", panel)
    farm = add_comfy_routes(  # ComfyUI's own API, and its page at / when installed: last
        app, service, folder=service.folder / "comfyui", extension=panel, index=_redirect_to_panel
    )

    def notify(event: str, data: dict[str, Any]) -> None:
        hub.notify(event, data)
        if farm.page:  # its sidebar tab hears them on ComfyUI's socket, as inside ComfyUI
            farm.sockets.send(event, data, None)

    service.notify = notify

    async def close(app: web.Application) -> None:
        await hub.close()
        await service.close()

    app.on_shutdown.append(close)
    return app


def _metrics(service: DispatchService) -> _Handler:
    async def metrics(request: web.Request) -> web.StreamResponse:
        return await get_metrics(request, service)

    return metrics


async def _redirect_to_panel(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/dispatch/ui/")


def _panel_page(panel: Path | None) -> _Handler:
    async def page(request: web.Request) -> web.StreamResponse:
        if panel is None:  # `serve` refuses to start so; an app built by hand may be
            return web.Response(status=500, text=_no_panel())
        return web.FileResponse(panel / "standalone.html")

    return page


def _checked_token(token: str | None) -> str | None:
    """A blank token would let every request pass: refused, never taken as no token."""
    if token is not None and not token.strip():
        raise SystemExit(
            "error: the token is empty (--token '' or DISPATCH_TOKEN=): give a real one, "
            "such as the output of: python -c 'import secrets; print(secrets.token_urlsafe())'"
        )
    return token.strip() if token is not None else None


def _guard(token: str | None, policy: HostPolicy, keys: ApiKeys | None = None) -> Any:
    @web.middleware
    async def guard(request: web.Request, handler: _Handler) -> web.StreamResponse:
        refused = refusal(request, policy)  # every path: the panel's page and files too
        if refused is not None:
            body = {"error": refused.message, "field": refused.field}
            return web.json_response(body, status=refused.status)
        path = request.path
        guarded = path != "/" and not path.startswith("/dispatch/ui")  # pages hold no data
        if guarded and path != "/dispatch/session":
            token_ok = token is None or _has_token(request, token)
            denied = authorize(request, keys, token_ok=token_ok, unauthorized=_unauthorized)
            if denied is not None:
                return denied
        return await handler(request)

    return guard


def _unauthorized(request: web.Request) -> web.Response:
    message = "this server needs its token: Authorization: Bearer <token>"
    if "token" in request.query:
        message = "a token in a URL is not accepted (URLs are logged): " + message
    return web.json_response({"error": message, "field": "token"}, status=401)


def _has_token(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return hmac.compare_digest(header.removeprefix("Bearer ").strip().encode(), token.encode())
    if header.startswith("Basic "):  # ComfyUI clients behind a proxy: any user, the token
        return hmac.compare_digest(_basic_password(header).encode(), token.encode())
    cookie = request.cookies.get(_SESSION_COOKIE, "")
    return hmac.compare_digest(cookie.encode(), _session_value(token).encode())


def _basic_password(header: str) -> str:
    try:
        decoded = base64.b64decode(header.removeprefix("Basic ").strip(), validate=True)
    except ValueError:
        return ""
    return decoded.decode("utf-8", "replace").partition(":")[2]


def _session_value(token: str) -> str:
    """What the cookie holds: derived from the token, so the cookie never holds the token."""
    return hmac.new(token.encode(), b"comfyui-dispatch session", hashlib.sha256).hexdigest()


def _session(token: str | None) -> _Handler:
    async def session(request: web.Request) -> web.StreamResponse:
        """Trade the token (as a Bearer header) for the panel's cookie."""
        if token is not None and not _has_token(request, token):
            return _unauthorized(request)
        response = web.json_response({"session": token is not None})
        if token is not None:
            response.set_cookie(
                _SESSION_COOKIE,
                _session_value(token),
                path="/",  # the panel, and ComfyUI's page with its /api calls
                httponly=True,
                samesite="Strict",
                secure=request.secure,
            )
        return response

    return session


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
    allow_hosts: tuple[str, ...] = (),
    webhooks_internal: bool = False,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until cancelled or until `stop` is set; then stop the workers, end the jobs'
    watchers and close the journal before returning."""
    if panel_folder() is None:  # never announce a panel that would answer 500
        raise SystemExit(f"error: {_no_panel()}")
    token = _checked_token(token)
    policy = HostPolicy.for_listen(host, allow_hosts)
    if token is None and not policy.loopback_only:
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
        folder,
        config_path=config,
        status_interval=status_every,
        comfyui=comfyui,
        webhooks_internal=webhooks_internal,
    )
    if service.config_error:
        print(f"warning: {service.config_error}", file=sys.stderr)
    app = create_app(service, token=token, policy=policy)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        if service.config.queue.backend != "local":
            await service.ready()  # a shared queue's jobs are taken by processes that run
        bound = runner.addresses[0]
        url = f"http://{host}:{bound[1]}/dispatch/ui/"
        message = f"ComfyUI-Dispatch panel on {url} (config: {service.config_path})"
        if frontend_folder() is not None:
            message += f"; ComfyUI's page on http://{host}:{bound[1]}/"
        (ready or (lambda text: print(text, file=sys.stderr, flush=True)))(message)
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
