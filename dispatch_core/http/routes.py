"""`/dispatch/routes`: which servers each route (a kind of workflow) sends its jobs to."""

from __future__ import annotations

from aiohttp import web

from ..service import DispatchService
from ._problems import optional_object, read_object
from .config import answer_edit

__all__ = ["delete_route", "get_routes", "put_route"]


async def get_routes(request: web.Request, service: DispatchService) -> web.Response:
    routes = {name: list(names) for name, names in service.config.routes.items()}
    return web.json_response({"routes": routes, "warnings": service.config_view()["warnings"]})


async def put_route(request: web.Request, service: DispatchService) -> web.Response:
    body = await read_object(request)
    change = service.edits.put_route(request.match_info["route"], body.get("servers"))
    return await answer_edit(request, service, change, body)


async def delete_route(request: web.Request, service: DispatchService) -> web.Response:
    change = service.edits.delete_route(request.match_info["route"])
    return await answer_edit(request, service, change, await optional_object(request))
