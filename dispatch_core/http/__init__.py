"""The `/dispatch/*` HTTP routes, on ComfyUI's server or on the standalone one.

    add_routes(PromptServer.instance.routes, service, policy=...)   # inside ComfyUI
    add_routes(routes := web.RouteTableDef(), service)               # standalone, tests

One module per resource, handlers at module level taking `(request, service)`; the whole
table is below. Every request first passes the Host and site checks of `_guard`; every
answer is JSON (job files aside), every refusal a 4xx naming the field (`_problems`).
The routes only ever contact configured servers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..errors import DispatchError
from ..service import DispatchService
from . import config, jobs, keys, metrics, routes, run, servers, templates, workers
from ._guard import HostPolicy, refusal
from ._problems import Problem, error, from_dispatch_error

__all__ = ["HostPolicy", "add_routes"]

Handler = Callable[[web.Request, DispatchService], Awaitable[web.StreamResponse]]
_log = logging.getLogger("dispatch_core.http")

TABLE: list[tuple[str, str, Handler]] = [
    ("GET", "/dispatch/config", config.get_config),
    ("PUT", "/dispatch/config", config.put_config),
    ("PUT", "/dispatch/settings", config.put_settings),
    ("GET", "/dispatch/servers", servers.get_servers),
    ("POST", "/dispatch/servers", servers.add_server),
    ("PUT", "/dispatch/servers/{name}", servers.update_server),
    ("DELETE", "/dispatch/servers/{name}", servers.remove_server),
    ("POST", "/dispatch/servers/{name}/{switch:enable|disable}", servers.switch_server),
    ("POST", "/dispatch/servers/{name}/test", servers.test_server),
    ("POST", "/dispatch/servers/{name}/calibrate", servers.calibrate_server),
    ("POST", "/dispatch/servers/{name}/free", servers.free_server),
    ("GET", "/dispatch/status", servers.get_status),
    ("GET", "/dispatch/inventory", servers.get_inventory),
    ("GET", "/dispatch/routes", routes.get_routes),
    ("PUT", "/dispatch/routes/{route}", routes.put_route),
    ("DELETE", "/dispatch/routes/{route}", routes.delete_route),
    ("GET", "/dispatch/templates", templates.list_templates),
    ("GET", "/dispatch/templates/{name}", templates.get_template),
    ("PUT", "/dispatch/templates/{name}", templates.save),
    ("POST", "/dispatch/templates/{name}/rename", templates.rename_template),
    ("DELETE", "/dispatch/templates/{name}", templates.delete_template),
    ("GET", "/dispatch/workers", workers.list_workers),
    ("POST", "/dispatch/workers", workers.add_worker),
    ("POST", "/dispatch/workers/per-gpu", workers.start_per_gpu),
    ("POST", "/dispatch/workers/{name}/{action:start|stop}", workers.start_or_stop),
    ("DELETE", "/dispatch/workers/{name}", workers.remove_worker),
    ("GET", "/dispatch/workers/{name}/log", workers.worker_log),
    ("GET", "/dispatch/gpus", workers.list_gpus),
    ("POST", "/dispatch/run", run.run_job),
    ("GET", "/dispatch/jobs", jobs.get_jobs),
    ("GET", "/dispatch/jobs/{id}", jobs.get_job),
    ("DELETE", "/dispatch/jobs/{id}", jobs.cancel_job),
    ("GET", "/dispatch/jobs/{id}/files/{index}", jobs.get_job_file),
    ("GET", "/dispatch/metrics", metrics.get_metrics),
    ("GET", "/dispatch/keys", keys.list_keys),
    ("POST", "/dispatch/keys", keys.create_key),
    ("DELETE", "/dispatch/keys/{name}", keys.revoke_key),
]


def add_routes(
    table: web.RouteTableDef, service: DispatchService, *, policy: HostPolicy | None = None
) -> None:
    """Register every `/dispatch/*` route on `table`, served by `service`.

    `policy` says which Host names the server answers; without one, loopback names only.
    """
    for method, path, handler in TABLE:
        table.route(method, path)(_guarded(handler, service, policy or HostPolicy()))


def _guarded(
    handler: Handler, service: DispatchService, policy: HostPolicy
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def answer(request: web.Request) -> web.StreamResponse:
        # ComfyUI checks origins only on loopback and never the Host: a page on another
        # site must never add a server that would receive this machine's workflows.
        refused = refusal(request, policy)
        if refused is not None:
            return error(refused.status, refused.message, refused.field)
        try:
            return await handler(request, service)
        except Problem as problem:
            return error(problem.status, problem.message, problem.field, **problem.extra)
        except DispatchError as failure:
            return from_dispatch_error(failure)
        except Exception:  # a bug: say so without details, keep them in the log
            _log.exception("ComfyUI-Dispatch: %s %s failed", request.method, request.path)
            return error(500, "internal error in ComfyUI-Dispatch; see its log")

    return answer
