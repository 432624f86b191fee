"""`/dispatch/servers`: add, change, switch, probe and free the configured servers."""

from __future__ import annotations

from aiohttp import web

from ..service import DispatchService
from ._problems import optional_object, read_object, without
from .config import answer_edit

__all__ = [
    "add_server",
    "calibrate_server",
    "free_server",
    "get_inventory",
    "get_servers",
    "get_status",
    "remove_server",
    "switch_server",
    "test_server",
    "update_server",
]


def _name(request: web.Request, service: DispatchService) -> str:
    """The server the path names; a 404 when there is none."""
    name = request.match_info["name"]
    service.monitor.known(name)
    return name


async def get_servers(request: web.Request, service: DispatchService) -> web.Response:
    servers = service.config_view()["config"]["servers"]
    return web.json_response([{"name": name, **s} for name, s in servers.items()])


async def add_server(request: web.Request, service: DispatchService) -> web.Response:
    body = await read_object(request)
    change = service.edits.add_server(body.get("name"), without(body, "name", "version"))
    answer = await answer_edit(request, service, change, body)
    answer.set_status(201)
    return answer


async def update_server(request: web.Request, service: DispatchService) -> web.Response:
    body = await read_object(request)
    change = service.edits.update_server(request.match_info["name"], without(body, "version"))
    return await answer_edit(request, service, change, body)


async def remove_server(request: web.Request, service: DispatchService) -> web.Response:
    change = service.edits.remove_server(request.match_info["name"])
    return await answer_edit(request, service, change, await optional_object(request))


async def switch_server(request: web.Request, service: DispatchService) -> web.Response:
    enabled = request.match_info["switch"] == "enable"
    change = service.edits.set_enabled(request.match_info["name"], enabled)
    return await answer_edit(request, service, change, await optional_object(request))


async def test_server(request: web.Request, service: DispatchService) -> web.Response:
    return web.json_response(await service.monitor.test(_name(request, service)))


async def calibrate_server(request: web.Request, service: DispatchService) -> web.Response:
    name = _name(request, service)
    seconds = await service.monitor.calibrate(name)
    return web.json_response({"server": name, "calibrated_seconds": round(seconds, 4)})


async def free_server(request: web.Request, service: DispatchService) -> web.Response:
    name = _name(request, service)
    await service.monitor.free(name)
    return web.json_response({"freed": name})


async def get_status(request: web.Request, service: DispatchService) -> web.Response:
    refresh = request.query.get("refresh") in ("1", "true")
    servers = await service.monitor.status(refresh=refresh)
    return web.json_response({"servers": servers, "queue": service.queue_view()})


async def get_inventory(request: web.Request, service: DispatchService) -> web.Response:
    refresh = request.query.get("refresh") in ("1", "true")
    return web.json_response(await service.monitor.inventory(refresh=refresh))
