"""ComfyUI's own API on the standalone gateway: existing ComfyUI clients drive the farm.

    add_comfy_routes(app, service, folder=service.folder / "comfyui", policy=policy)

A client that speaks to ComfyUI (its `script_examples`, comfy-api-simplified, ComfyUI's
page) speaks to the gateway unchanged: each prompt becomes a job of the service, routed
like any other (the route from `extra_data.dispatch_route`, the `X-Dispatch-Route`
header or `?route=`, else `auto`: every enabled server able to run it), and the peer's
frames come back on the client's `/ws` under the client's prompt id. Every path answers
also under `/api`, as ComfyUI's do. Refusals come in ComfyUI's shape (`_shapes`) and
name their field; the standalone app's guard (Host, site, token) covers every path here.

| route | resource |
|---|---|
| `POST /prompt`, `GET /prompt` | prompt |
| `GET /ws?clientId=` | the farm's events (`_sockets`) |
| `GET/POST /queue`, `POST /interrupt`, `GET/POST /history`, `GET /history/{id}` | queue |
| `GET /view`, `POST /upload/image`, `POST /upload/mask` | files |
| `GET /object_info[/{class}]`, `/system_stats`, `/embeddings`, `/models`, `/features` | info |
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from ...errors import DispatchError, NotFound
from ...service import DispatchService
from .._problems import Problem
from . import files, info, page, prompt, queue
from ._farm import Farm
from ._shapes import ComfyRefusal
from ._user import UserFolder

__all__ = ["Farm", "add_comfy_routes"]

Handler = Callable[[web.Request, Farm], Awaitable[web.StreamResponse]]
_Plain = Callable[[web.Request], Awaitable[web.StreamResponse]]
_log = logging.getLogger("dispatch_core.http.comfy")

TABLE: list[tuple[str, str, Handler]] = [
    ("POST", "/prompt", prompt.post_prompt),
    ("GET", "/prompt", prompt.get_prompt),
    ("GET", "/queue", queue.get_queue),
    ("POST", "/queue", queue.post_queue),
    ("POST", "/interrupt", queue.post_interrupt),
    ("GET", "/history", queue.get_history),
    ("GET", "/history/{prompt_id}", queue.get_history_entry),
    ("POST", "/history", queue.post_history),
    ("GET", "/view", files.view),
    ("POST", "/upload/image", files.upload_image),
    ("POST", "/upload/mask", files.upload_mask),
    ("GET", "/object_info", info.object_info),
    ("GET", "/object_info/{node_class}", info.object_info_node),
    ("GET", "/system_stats", info.system_stats),
    ("GET", "/embeddings", info.embeddings),
    ("GET", "/models", info.models),
    ("GET", "/models/{folder}", info.models),
    ("GET", "/features", info.features),
]


def add_comfy_routes(
    app: web.Application,
    service: DispatchService,
    *,
    folder: Path,
    extension: Path | None = None,
    index: _Plain | None = None,
) -> Farm:
    """Mount ComfyUI's API for `service`'s farm on `app`, and ComfyUI's page when its
    frontend is installed (`page`; `extension`: the panel's scripts, its sidebar tab);
    uploads and the page's user live in `folder`. Without the page, `/` is `index`.
    Mount it last: the page's files answer every path left. The app's own middleware
    guards it all (see `standalone`)."""
    farm = Farm(service, folder)
    frontend = page.frontend_folder()
    routes = list(TABLE)
    extra = (
        page.page_routes(farm, UserFolder(folder / "user"), frontend, extension) if frontend else []
    )
    for prefix in ("", "/api"):
        for method, path, handler in routes:
            app.router.add_route(method, prefix + path, _answering(handler, farm))
        for method, path, plain in extra:
            if prefix + path != "/api/":
                app.router.add_route(method, prefix + path, _answering_plain(plain))
        app.router.add_get(prefix + "/ws", farm.sockets.handle)
    if frontend is None:
        if index is not None:
            app.router.add_get("/", index)
    else:
        farm.page = True
        app.router.add_get("/internal/folder_paths", _answering_plain(_no_folders))
        if extension is not None:
            app.router.add_static(f"/extensions/{page.EXTENSION}", extension)
        app.router.add_static("/", frontend)

    async def close(app: web.Application) -> None:
        await farm.close()

    app.on_shutdown.append(close)
    return farm


async def _no_folders(_: web.Request) -> web.Response:
    return web.json_response({})  # the peers' folders are theirs, never shown here


def _answering_plain(handler: _Plain) -> _Plain:
    """A page's handler, its refusals in ComfyUI's shape."""

    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ComfyRefusal as refusal:
            return refusal.response()

    return answer


def _answering(
    handler: Handler, farm: Farm
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request, farm)
        except web.HTTPException:
            raise
        except ComfyRefusal as refusal:
            return refusal.response()
        except Problem as problem:
            made = ComfyRefusal(
                "invalid_request",
                problem.message,
                field=problem.field or "body",
                status=problem.status,
            )
            return made.response()
        except NotFound as missing:
            return ComfyRefusal(
                "not_found", str(missing), field=missing.field or "", status=404
            ).response()
        except DispatchError as failure:  # a peer's failure: the gateway's 502
            if getattr(failure, "status", None) == 404:  # the peer has no such file
                return ComfyRefusal(
                    "not_found", str(failure), field="filename", status=404
                ).response()
            return ComfyRefusal("peer_failed", str(failure), field="server", status=502).response()
        except Exception:
            _log.exception("ComfyUI API: %s %s failed", request.method, request.path)
            return ComfyRefusal(
                "internal", "internal error; see the gateway's log", status=500
            ).response()

    return answer
