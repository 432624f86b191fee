"""`/dispatch/jobs`: every job's record, and its output files streamed inert."""

from __future__ import annotations

from aiohttp import web

from ..service import DispatchService
from ._problems import whole, whole_text
from ._serve_file import stream_output

__all__ = ["cancel_job", "get_job", "get_job_file", "get_jobs"]


async def get_jobs(request: web.Request, service: DispatchService) -> web.Response:
    limit = whole(request, "limit", 50, maximum=1000)
    return web.json_response([r.to_dict() for r in service.jobs.activity.recent(limit)])


async def get_job(request: web.Request, service: DispatchService) -> web.Response:
    return web.json_response((await service.jobs.find(request.match_info["id"])).to_dict())


async def cancel_job(request: web.Request, service: DispatchService) -> web.Response:
    """Stop a queued or running job, interrupting its prompt on the peer; a 409 once ended."""
    record = await service.jobs.cancel(request.match_info["id"])
    return web.json_response(record.to_dict())


async def get_job_file(request: web.Request, service: DispatchService) -> web.StreamResponse:
    index = whole_text(request.match_info["index"], "index", maximum=100_000)
    opened, filename = await service.jobs.open_file(request.match_info["id"], index)
    return await stream_output(request, opened, filename)
