"""ComfyUI's own page on the gateway: the `comfyui-frontend-package` wheel, when installed.

    pip install 'comfyui-dispatch[frontend]'      # then open http://127.0.0.1:8190/

The page builds and queues workflows through the ComfyUI API of this package, so each one
runs on a GPU that has its models. What the page asks of its server beyond that (the user's
settings and files, its extensions, translations, model folders) the gateway answers from
its own folder (`_user`), never from a peer; the Dispatch panel is its sidebar tab, as
inside ComfyUI. `DISPATCH_FRONTEND=/path/to/static` serves another build of the page.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from ..._json import JSONLimitError, loads_bounded
from ._farm import Farm
from ._shapes import ComfyRefusal
from ._user import UserFolder

__all__ = ["EXTENSION", "frontend_folder", "page_routes"]

EXTENSION = "ComfyUI-Dispatch"
"""The name the panel's scripts are served under, as ComfyUI serves a custom node's."""
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def frontend_folder() -> Path | None:
    """The page's files: `DISPATCH_FRONTEND`, else the installed frontend package's."""
    given = os.environ.get("DISPATCH_FRONTEND")
    if given:
        folder = Path(given)
    else:
        spec = importlib.util.find_spec("comfyui_frontend_package")
        if spec is None or spec.origin is None:
            return None
        folder = Path(spec.origin).parent / "static"
    return folder if (folder / "index.html").is_file() else None


def page_routes(
    farm: Farm, user: UserFolder, frontend: Path, extension: Path | None
) -> list[tuple[str, str, _Handler]]:
    """The page's own routes (each also under `/api`), the static files aside."""

    async def index(_: web.Request) -> web.StreamResponse:
        response = web.FileResponse(frontend / "index.html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    scripts = _scripts(frontend, extension)  # read once: the files are the install's

    async def extensions(_: web.Request) -> web.Response:
        return web.json_response(scripts)

    async def experiment_models(_: web.Request) -> web.Response:
        folders = await farm.info.models()
        skip = ("configs", "custom_nodes")
        return web.json_response([{"name": f, "folders": []} for f in folders if f not in skip])

    return [
        ("GET", "/", index),
        ("GET", "/extensions", extensions),
        ("GET", "/experiment/models", experiment_models),
        ("GET", "/i18n", _empty_object),
        ("GET", "/workflow_templates", _empty_object),
        ("GET", "/users", _users),
        *_user_routes(user),
    ]


def _scripts(frontend: Path, extension: Path | None) -> list[str]:
    """The page's own extensions, then the panel's scripts, as ComfyUI lists them."""
    core = [f"/{p.relative_to(frontend).as_posix()}" for p in frontend.glob("extensions/**/*.js")]
    ours = []
    if extension is not None:
        ours = [
            f"/extensions/{EXTENSION}/{p.relative_to(extension).as_posix()}"
            for p in extension.glob("**/*.js")
        ]
    return sorted(core) + sorted(ours)


async def _empty_object(_: web.Request) -> web.Response:
    return web.json_response({})


async def _users(_: web.Request) -> web.Response:
    return web.json_response({"storage": "server", "migrated": True})


def _user_routes(user: UserFolder) -> list[tuple[str, str, _Handler]]:
    async def get_settings(_: web.Request) -> web.Response:
        return web.json_response(await user.settings())

    async def post_settings(request: web.Request) -> web.Response:
        body = await _json(request)
        if not isinstance(body, dict):
            raise ComfyRefusal("invalid_request", "the settings are an object", field="body")
        await user.update_settings(body)
        return web.Response()

    async def get_setting(request: web.Request) -> web.Response:
        return web.json_response((await user.settings()).get(request.match_info["id"]))

    async def post_setting(request: web.Request) -> web.Response:
        await user.update_settings({request.match_info["id"][:200]: await _json(request)})
        return web.Response()

    async def list_files(request: web.Request) -> web.Response:
        folder = request.query.get("dir", "")
        if not folder:
            raise ComfyRefusal("invalid_request", "dir is required", field="dir")
        found = await user.listing(folder, full=request.query.get("full_info") == "true")
        if found is None:
            raise web.HTTPNotFound()
        return web.json_response(found)

    async def get_file(request: web.Request) -> web.StreamResponse:
        data = await user.read(request.match_info["file"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="application/octet-stream", headers=_INERT)

    async def post_file(request: web.Request) -> web.Response:
        name = request.match_info["file"]
        written = await user.write(name, await request.read(), overwrite=_overwrite(request))
        if written is None:
            raise ComfyRefusal("exists", f"{name[:200]} exists", field="file", status=409)
        return web.json_response(written if request.query.get("full_info") == "true" else name)

    async def delete_file(request: web.Request) -> web.Response:
        if not await user.delete(request.match_info["file"]):
            raise web.HTTPNotFound()
        return web.Response(status=204)

    async def move_file(request: web.Request) -> web.Response:
        name, dest = request.match_info["file"], request.match_info["dest"]
        moved = await user.move(name, dest, overwrite=_overwrite(request))
        if moved is None:
            raise ComfyRefusal("exists", f"{dest[:200]} exists", field="dest", status=409)
        return web.json_response(moved if request.query.get("full_info") == "true" else dest)

    return [
        ("GET", "/settings", get_settings),
        ("POST", "/settings", post_settings),
        ("GET", "/settings/{id}", get_setting),
        ("POST", "/settings/{id}", post_setting),
        ("GET", "/userdata", list_files),
        ("GET", "/userdata/{file}", get_file),
        ("POST", "/userdata/{file}", post_file),
        ("DELETE", "/userdata/{file}", delete_file),
        ("POST", "/userdata/{file}/move/{dest}", move_file),
    ]


_INERT = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


async def _json(request: web.Request) -> Any:
    """A body as JSON within `_json`'s bounds (depth, size of numbers)."""
    try:
        return loads_bounded(await request.read())
    except JSONLimitError as bad:
        raise ComfyRefusal(
            "invalid_json", f"the body is not usable JSON: {bad}", field="body"
        ) from None


def _overwrite(request: web.Request) -> bool:
    return request.query.get("overwrite", "true") != "false"
