"""`POST /prompt` and `GET /prompt`: queue a prompt on the farm, as ComfyUI takes one."""

from __future__ import annotations

from aiohttp import web

from .._problems import Problem, read_object
from ._farm import ROUTE_KEY, Farm
from ._shapes import ComfyRefusal

__all__ = ["get_prompt", "post_prompt", "route_of"]

ROUTE_HEADER = "X-Dispatch-Route"


async def post_prompt(request: web.Request, farm: Farm) -> web.Response:
    """`{"prompt_id", "number", "node_errors"}`, or ComfyUI's 400 shape."""
    try:
        body = await read_object(request)
    except Problem as bad:
        raise ComfyRefusal(
            "invalid_json", bad.message, field=bad.field or "body", status=bad.status
        ) from None
    answer = await farm.queue_prompt(body, farm.check_route(route_of(request, body)))
    return web.json_response(answer)


def route_of(request: web.Request, body: dict[str, object]) -> str:
    """The route: `extra_data.dispatch_route`, else the header, else `?route=`, else auto."""
    extra = body.get("extra_data")
    named = extra.get(ROUTE_KEY) if isinstance(extra, dict) else None
    named = named or request.headers.get(ROUTE_HEADER) or request.query.get("route") or "auto"
    if not isinstance(named, str) or len(named) > 64:
        raise ComfyRefusal("invalid_prompt", "the route must be a route's name", field="route")
    return named


async def get_prompt(request: web.Request, farm: Farm) -> web.Response:
    return web.json_response({"exec_info": {"queue_remaining": len(farm.active)}})
