"""`/dispatch/workers`: managed local ComfyUI workers, each a server once started;
`/dispatch/gpus`: the machine's GPUs, and one worker for each in one call."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..service import DispatchService
from ._problems import optional_object, read_object, whole, without

__all__ = [
    "add_worker",
    "list_gpus",
    "list_workers",
    "remove_worker",
    "start_or_stop",
    "start_per_gpu",
    "worker_log",
]


async def list_workers(request: web.Request, service: DispatchService) -> web.Response:
    return web.json_response(service.fleet.list())


async def add_worker(request: web.Request, service: DispatchService) -> web.Response:
    body = await read_object(request)
    worker = await service.fleet.start(body.get("name"), without(body, "name"))
    return web.json_response(worker, status=201)


async def start_or_stop(request: web.Request, service: DispatchService) -> web.Response:
    name = request.match_info["name"]
    if request.match_info["action"] == "start":
        return web.json_response(await service.fleet.start(name))
    await service.fleet.stop(name)
    return web.json_response({"stopped": name})


async def remove_worker(request: web.Request, service: DispatchService) -> web.Response:
    name = request.match_info["name"]
    await service.fleet.stop(name, forget=True)
    return web.json_response({"removed": name})


async def worker_log(request: web.Request, service: DispatchService) -> web.Response:
    name = request.match_info["name"]
    lines = whole(request, "lines", 200)
    text = await asyncio.to_thread(service.fleet.log, name, lines)
    return web.json_response({"name": name, "log": text})


async def list_gpus(request: web.Request, service: DispatchService) -> web.Response:
    return web.json_response(await service.fleet.gpus())


async def start_per_gpu(request: web.Request, service: DispatchService) -> web.Response:
    """`{"base_port"?, "args"?}` → one worker for every GPU no saved worker uses."""
    body = await optional_object(request) or {}
    return web.json_response(await service.fleet.start_per_gpu(body))
