"""`/dispatch/config` and `/dispatch/settings`: the whole config, and its settings."""

from __future__ import annotations

from aiohttp import web

from ..service import DispatchService, Edit
from ._problems import Problem, expected_version, read_object, without

__all__ = ["answer_edit", "get_config", "put_config", "put_settings"]


def config_answer(view: dict[str, object]) -> web.Response:
    return web.json_response(view, headers={"ETag": f'"{view["version"]}"'})


async def answer_edit(
    request: web.Request, service: DispatchService, change: Edit, body: object = None
) -> web.Response:
    """Apply a config edit made on the version the caller read; answer the new config."""
    version = expected_version(request, body)
    return config_answer(await service.edit_config(change, expected_version=version))


async def get_config(request: web.Request, service: DispatchService) -> web.Response:
    return config_answer(service.config_view())


async def put_config(request: web.Request, service: DispatchService) -> web.Response:
    """The whole config: `{"config": {...}, "version": ...}`, or the config itself."""
    body = await read_object(request)
    new = body["config"] if "config" in body else without(body, "version")
    if not isinstance(new, dict):
        raise Problem(400, "'config' must be an object", "config")
    unknown = sorted(set(body) - {"config", "version"})
    if "config" in body and unknown:
        raise Problem(400, f"unknown field {unknown[0]!r} beside 'config'", unknown[0])
    return await answer_edit(request, service, service.edits.replace(new), body)


async def put_settings(request: web.Request, service: DispatchService) -> web.Response:
    body = await read_object(request)
    change = service.edits.merge_settings(without(body, "version"))
    return await answer_edit(request, service, change, body)
