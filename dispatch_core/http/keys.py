"""`/dispatch/keys`: the standalone gateway's named API keys, listed, made and revoked.

Only the gateway has keys (ComfyUI's routes take none): elsewhere these answer 404. A key
cannot manage keys (the gateway answers 403 first): only its token, its panel session, or
anyone on loopback when it has no token. A new key is in the answer to its POST and
nowhere else, ever.
"""

from __future__ import annotations

from aiohttp import web

from ..service import DispatchService
from ..service._keys import ApiKeys, parse_rate
from ._problems import Problem, read_object

__all__ = ["create_key", "list_keys", "revoke_key"]


def _keys(service: DispatchService) -> ApiKeys:
    if service.keys is None:
        raise Problem(404, "API keys belong to the standalone gateway (serve)", "keys")
    return service.keys


async def list_keys(request: web.Request, service: DispatchService) -> web.Response:
    return web.json_response(_keys(service).list())


async def create_key(request: web.Request, service: DispatchService) -> web.Response:
    keys = _keys(service)
    body = await read_object(request)
    unknown = sorted(set(body) - {"name", "rate"})
    if unknown:
        raise Problem(400, f"unknown field {unknown[0]!r}", unknown[0])
    name, rate = body.get("name"), body.get("rate")
    if not isinstance(name, str):
        raise Problem(400, "give the key a 'name'", "name")
    if rate is not None and not isinstance(rate, (str, int)):
        raise Problem(400, "'rate' is N or N/min requests", "rate")
    key = keys.create(name, parse_rate(rate))
    answer = {"name": name, "key": key, "note": "shown once: it is stored hashed"}
    return web.json_response(answer, status=201)


async def revoke_key(request: web.Request, service: DispatchService) -> web.Response:
    _keys(service).revoke(request.match_info["name"])
    return web.json_response({"revoked": request.match_info["name"]})
