"""Serving an aiohttp app on a loopback port for a test."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from dispatch_core.http import add_routes
from dispatch_core.service import DispatchService


async def start(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve `app` on a free loopback port; the runner (to clean up) and the base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def serve_routes(service: DispatchService) -> tuple[web.AppRunner, str]:
    """The `/dispatch/*` routes of `service` alone, as an app of their own."""
    routes = web.RouteTableDef()
    add_routes(routes, service)
    app = web.Application()
    app.add_routes(routes)
    return await start(app)


async def call_json(
    session: aiohttp.ClientSession, method: str, url: str | URL, body: Any = None
) -> tuple[int, Any]:
    """One request with a JSON body; the status and the JSON answer (or the raw bytes of an
    answer that is not JSON, such as aiohttp's own plain-text 400s)."""
    data = None if body is None else json.dumps(body)
    async with session.request(method, url, data=data) as response:
        raw = await response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw
