"""`GET /dispatch/metrics`: the service's metrics in Prometheus's text format.

Behind the same Host and site checks as every route (and the gateway's token): a scraper
on another machine sends the token like any client. Without prometheus-client (optional
inside ComfyUI) it answers 503 saying what to install, so a scraper's alert names it.
"""

from __future__ import annotations

from aiohttp import web

from ..service import DispatchService
from ..service._metrics import INSTALL_HINT
from ._problems import error

__all__ = ["get_metrics"]


async def get_metrics(request: web.Request, service: DispatchService) -> web.Response:
    if service.metrics is None:
        return error(503, INSTALL_HINT, "metrics")
    body, content_type = service.metrics.exposition()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type  # with its version parameter
    return response
