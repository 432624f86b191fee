"""`POST /dispatch/run`: start a job; its record answers at `/dispatch/jobs/{id}`."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from ..errors import NotFound
from ..service import DispatchService
from ._gateway_keys import current_key
from ._problems import Problem, read_object

__all__ = ["run_job"]

_FIELDS: dict[str, type | tuple[type, ...]] = {
    "template": str,
    "workflow": dict,
    "values": dict,
    "server": str,
    "timeout": (int, float),
    "output_node": str,
    "webhook": str,
}
"""What the body takes besides `route`, and the JSON type of each."""
_MAX_TIMEOUT = 7 * 86400.0
"""A week: longer than any job, short enough to refuse a mistake."""


async def run_job(request: web.Request, service: DispatchService) -> web.Response:
    body = await read_object(request)
    route, job = _route(body), _job(body)
    try:  # a route or server the body names but the config lacks is a bad field here
        service.config.servers_for(route, server=job.get("server"))
    except NotFound as unknown:
        raise Problem(400, str(unknown), unknown.field) from None
    key = current_key.get(None)  # the gateway's API key that asked, if one did
    record, _ = await service.jobs.submit(service.jobs.spec(route, **job), key=key)
    return web.json_response({"id": record.id, "url": f"/dispatch/jobs/{record.id}"}, status=202)


def _route(body: dict[str, Any]) -> str:
    route = body.get("route")
    if not isinstance(route, str) or not route:
        raise Problem(400, "name the 'route' (the workflow type) to run it on", "route")
    return route


def _job(body: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - set(_FIELDS) - {"route"})
    if unknown:
        raise Problem(400, f"unknown field {unknown[0]!r}", unknown[0])
    job: dict[str, Any] = {}
    for key, kinds in _FIELDS.items():
        value = body.get(key)
        if value is not None:
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise Problem(400, f"'{key}' has the wrong type", key)
            job[key] = value
    timeout = job.get("timeout")
    if timeout is not None and not (0 < timeout <= _MAX_TIMEOUT and math.isfinite(timeout)):
        raise Problem(400, "'timeout' is seconds, more than 0 and at most a week", "timeout")
    if ("template" in job) == ("workflow" in job):
        raise Problem(400, "send either a 'template' name or a 'workflow'", "template")
    return job
