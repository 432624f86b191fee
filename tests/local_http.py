"""Serving an aiohttp app on a loopback port for a test."""

from __future__ import annotations

from aiohttp import web

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
