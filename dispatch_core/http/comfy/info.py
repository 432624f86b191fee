"""What the farm can run and has: `/object_info`, `/system_stats`, `/embeddings`,
`/models`, `/features`, as ComfyUI answers them, over every enabled server."""

from __future__ import annotations

import re

from aiohttp import web

from ._farm import Farm
from ._shapes import ComfyRefusal
from ._sockets import FEATURES

__all__ = ["embeddings", "features", "models", "object_info", "object_info_node", "system_stats"]

_NAME = re.compile(r"^[A-Za-z0-9_.+ -]{1,200}$")


async def object_info(request: web.Request, farm: Farm) -> web.Response:
    return web.json_response(await farm.info.object_info())


async def object_info_node(request: web.Request, farm: Farm) -> web.Response:
    """`{class: info}`, or `{}` for a class no server has (a 200, as ComfyUI)."""
    node_class = request.match_info["node_class"]
    info = await farm.info.object_info(fresh=False)
    return web.json_response({node_class: info[node_class]} if node_class in info else {})


async def system_stats(request: web.Request, farm: Farm) -> web.Response:
    return web.json_response(await farm.info.system_stats())


async def embeddings(request: web.Request, farm: Farm) -> web.Response:
    return web.json_response(await farm.info.embeddings())


async def models(request: web.Request, farm: Farm) -> web.Response:
    folder = request.match_info.get("folder")
    if folder is not None and (not _NAME.match(folder) or ".." in folder):
        raise ComfyRefusal("invalid_request", "not a model folder's name", field="folder")
    return web.json_response(await farm.info.models(folder))


async def features(request: web.Request, farm: Farm) -> web.Response:
    return web.json_response(dict(FEATURES))
