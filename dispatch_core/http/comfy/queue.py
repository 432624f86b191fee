"""`/queue`, `/interrupt` and `/history`: the farm's prompts as one ComfyUI's."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .._problems import optional_object, whole
from ._farm import Farm
from ._shapes import ComfyRefusal, checked_id

__all__ = [
    "get_history",
    "get_history_entry",
    "get_queue",
    "post_history",
    "post_interrupt",
    "post_queue",
]


async def get_queue(request: web.Request, farm: Farm) -> web.Response:
    return web.json_response(farm.queue())


async def post_queue(request: web.Request, farm: Farm) -> web.Response:
    """`{"clear": true}` or `{"delete": [ids]}`: pending prompts only, as in ComfyUI."""
    body = await optional_object(request) or {}
    if body.get("clear") is True:
        await farm.cancel(list(farm.active), running=False)
    await farm.cancel(_ids(body.get("delete")), running=False)
    return web.Response()


async def post_interrupt(request: web.Request, farm: Farm) -> web.Response:
    """`{"prompt_id": id}` stops that prompt if it runs; without one, every running prompt
    of the farm stops (ComfyUI's global interrupt, for one GPU, stops the one running)."""
    body = await optional_object(request) or {}
    given = body.get("prompt_id")
    targets = [checked_id(given, "prompt_id")] if given is not None else list(farm.active)
    await farm.cancel(targets, running=True)
    return web.Response()


async def get_history(request: web.Request, farm: Farm) -> web.Response:
    """`?max_items=N` the last N; `offset` counts from the oldest, as ComfyUI's."""
    entries = list(farm.history.items())
    offset = whole(request, "offset", 0, maximum=10**9)
    if "max_items" in request.query:
        count = whole(request, "max_items", 0, maximum=10**9)
        start = offset if "offset" in request.query else max(len(entries) - count, 0)
        entries = entries[start : start + count]
    else:
        entries = entries[offset:]
    return web.json_response(dict(entries))


async def get_history_entry(request: web.Request, farm: Farm) -> web.Response:
    """`{id: entry}`, or `{}` for a prompt unknown or not finished (a 200, as ComfyUI)."""
    prompt_id = checked_id(request.match_info["prompt_id"], "prompt_id")
    entry = farm.entry(prompt_id)
    return web.json_response({prompt_id: entry} if entry is not None else {})


async def post_history(request: web.Request, farm: Farm) -> web.Response:
    body = await optional_object(request) or {}
    if body.get("clear") is True:
        farm.history.clear()
    for prompt_id in _ids(body.get("delete")):
        farm.history.pop(prompt_id, None)
    return web.Response()


def _ids(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 10_000:
        raise ComfyRefusal(
            "invalid_request", "'delete' must be a list of prompt ids", field="delete"
        )
    return [checked_id(v, "delete") for v in value]
