"""The `/dispatch/*` HTTP routes, on ComfyUI's server or on the standalone one.

    add_routes(PromptServer.instance.routes, service)    # inside ComfyUI
    add_routes(routes := web.RouteTableDef(), service)   # standalone

Every answer is JSON. A bad request gets a 4xx with `{"error": message, "field": key}`
naming what to fix; a peer's failure a 502 with the peer's message. Header values are
never sent back, only masked. The routes only ever contact configured servers.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from .errors import (
    ConfigConflict,
    ConfigError,
    DispatchError,
    InputError,
    TemplateError,
    WorkflowError,
)
from .service import MASK, DispatchService
from .templates import check_name
from .workers import WorkerError

__all__ = ["add_routes", "cross_origin"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

_RUN_FIELDS: dict[str, type | tuple[type, ...]] = {
    "template": str,
    "workflow": dict,
    "values": dict,
    "server": str,
    "timeout": (int, float),
    "output_node": str,
}
"""What `POST /dispatch/run` takes besides `route`, and the JSON type of each."""


class _Problem(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.field, self.extra = status, message, field, extra


def add_routes(routes: web.RouteTableDef, service: DispatchService) -> None:
    """Register every `/dispatch/*` route on `routes`, served by `service`."""

    def route(method: str, path: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            async def answer(request: web.Request) -> web.StreamResponse:
                if request.method not in _SAFE_METHODS and cross_origin(request):
                    # ComfyUI checks origins only on loopback; a page on another site must
                    # never add a server that would receive this machine's workflows.
                    return _error(403, "cross-origin request refused", "Origin")
                try:
                    return await handler(request)
                except _Problem as problem:
                    return _error(problem.status, problem.message, problem.field, **problem.extra)
                except DispatchError as error:
                    return _from_dispatch_error(error)

            routes.route(method, path)(answer)
            return handler

        return register

    def config_answer(view: dict[str, Any] | None = None) -> web.Response:
        view = view or service.config_view()
        return web.json_response(view, headers={"ETag": f'"{view["version"]}"'})

    async def edit(
        request: web.Request, change: Callable[[dict[str, Any]], None], version: Any = None
    ) -> web.Response:
        expected = _expected_version(request) or (version if isinstance(version, str) else None)
        view = await service.edit_config(change, expected_version=expected)
        return config_answer(view)

    def server_named(request: web.Request) -> str:
        name = request.match_info["name"]
        if name not in service.config.servers:
            known = ", ".join(service.config.servers) or "none configured"
            raise _Problem(404, f"no server {name!r} (servers: {known})", "name")
        return name

    # -- config -------------------------------------------------------------------------

    @route("GET", "/dispatch/config")
    async def get_config(request: web.Request) -> web.Response:
        return config_answer()

    @route("PUT", "/dispatch/config")
    async def put_config(request: web.Request) -> web.Response:
        body = await _object(request)
        new = body.get("config", body)
        if not isinstance(new, dict):
            raise _Problem(400, "'config' must be an object", "config")

        def replace(data: dict[str, Any]) -> None:
            data.clear()
            data.update(new)

        return await edit(request, replace, body.get("version"))

    @route("PUT", "/dispatch/settings")
    async def put_settings(request: web.Request) -> web.Response:
        body = await _object(request)
        unknown = set(body) - {"timeouts", "cache", "version"}
        if unknown:
            raise _Problem(400, "only 'timeouts' and 'cache' are settings", sorted(unknown)[0])

        def merge(data: dict[str, Any]) -> None:
            for section in ("timeouts", "cache"):
                if section in body:
                    if not isinstance(body[section], dict):
                        raise _Problem(400, f"'{section}' must be an object", section)
                    data[section].update(body[section])

        return await edit(request, merge)

    # -- servers ------------------------------------------------------------------------

    @route("GET", "/dispatch/servers")
    async def get_servers(request: web.Request) -> web.Response:
        servers = service.config_view()["config"]["servers"]
        return web.json_response([{"name": name, **s} for name, s in servers.items()])

    @route("POST", "/dispatch/servers")
    async def add_server(request: web.Request) -> web.Response:
        body = await _object(request)
        name = body.pop("name", None)
        if not isinstance(name, str) or not name.strip():
            raise _Problem(400, "give the server a name", "name")
        if name in service.config.servers:
            raise _Problem(409, f"a server named {name!r} exists already", "name")
        body.pop("version", None)

        def add(data: dict[str, Any]) -> None:
            data["servers"][name] = body

        answer = await edit(request, add)
        answer.set_status(201)
        return answer

    @route("PUT", "/dispatch/servers/{name}")
    async def update_server(request: web.Request) -> web.Response:
        name = server_named(request)
        body = await _object(request)
        body.pop("version", None)
        new_name = body.pop("name", name)
        if not isinstance(new_name, str) or not new_name.strip():
            raise _Problem(400, "a server name must be text", "name")
        if new_name != name and new_name in service.config.servers:
            raise _Problem(409, f"a server named {new_name!r} exists already", "name")

        def update(data: dict[str, Any]) -> None:
            server = data["servers"].pop(name)
            stored = server.get("headers") or {}
            server.update(body)
            if isinstance(body.get("headers"), dict):  # a masked value keeps what is stored
                server["headers"] = {
                    k: stored.get(k, v) if v == MASK else v for k, v in body["headers"].items()
                }
            data["servers"][new_name] = server
            for route_name, names in data["routes"].items():
                names = [names] if isinstance(names, str) else names
                data["routes"][route_name] = [new_name if n == name else n for n in names]

        return await edit(request, update)

    @route("DELETE", "/dispatch/servers/{name}")
    async def remove_server(request: web.Request) -> web.Response:
        name = server_named(request)
        only = [r for r, names in service.config.routes.items() if names == (name,)]
        if only:
            raise _Problem(
                409,
                f"route {', '.join(only)} sends every job to {name!r}: "
                "point it at another server or remove it first",
                "routes",
            )

        def remove(data: dict[str, Any]) -> None:
            del data["servers"][name]
            for route_name, names in data["routes"].items():
                names = [names] if isinstance(names, str) else names
                data["routes"][route_name] = [n for n in names if n != name]

        return await edit(request, remove)

    @route("POST", "/dispatch/servers/{name}/{switch:enable|disable}")
    async def switch_server(request: web.Request) -> web.Response:
        name = server_named(request)
        enabled = request.match_info["switch"] == "enable"

        def change(data: dict[str, Any]) -> None:
            data["servers"][name]["enabled"] = enabled

        return await edit(request, change)

    @route("POST", "/dispatch/servers/{name}/test")
    async def test_server(request: web.Request) -> web.Response:
        return web.json_response(await service.test_server(server_named(request)))

    @route("POST", "/dispatch/servers/{name}/calibrate")
    async def calibrate_server(request: web.Request) -> web.Response:
        name = server_named(request)
        seconds = await service.calibrate(name)
        return web.json_response({"server": name, "calibrated_seconds": round(seconds, 4)})

    @route("GET", "/dispatch/inventory")
    async def get_inventory(request: web.Request) -> web.Response:
        refresh = request.query.get("refresh") in ("1", "true")
        return web.json_response(await service.inventory(refresh=refresh))

    @route("POST", "/dispatch/servers/{name}/free")
    async def free_server(request: web.Request) -> web.Response:
        name = server_named(request)
        await service.free(name)
        return web.json_response({"freed": name})

    # -- routes -------------------------------------------------------------------------

    @route("GET", "/dispatch/routes")
    async def get_routes(request: web.Request) -> web.Response:
        routes_now = {name: list(names) for name, names in service.config.routes.items()}
        return web.json_response(
            {"routes": routes_now, "warnings": service.config_view()["warnings"]}
        )

    @route("PUT", "/dispatch/routes/{route}")
    async def put_route(request: web.Request) -> web.Response:
        name = request.match_info["route"]
        body = await _object(request)
        servers = body.get("servers")
        if isinstance(servers, str):
            servers = [servers]
        if not isinstance(servers, list) or not servers:
            raise _Problem(400, "'servers' must name one server or a list of them", "servers")

        def put(data: dict[str, Any]) -> None:
            data["routes"][name] = servers

        return await edit(request, put)

    @route("DELETE", "/dispatch/routes/{route}")
    async def delete_route(request: web.Request) -> web.Response:
        name = request.match_info["route"]
        if name not in service.config.routes:
            raise _Problem(404, f"no route {name!r}", "route")

        def delete(data: dict[str, Any]) -> None:
            del data["routes"][name]

        return await edit(request, delete)

    # -- templates ----------------------------------------------------------------------

    def template_named(request: web.Request, key: str = "name") -> str:
        name = check_name(request.match_info[key])
        if name not in service.templates.names():
            known = ", ".join(service.templates.names()) or "none saved"
            raise _Problem(404, f"no template {name!r} (templates: {known})", "name")
        return name

    @route("GET", "/dispatch/templates")
    async def list_templates(request: web.Request) -> web.Response:
        return web.json_response(service.templates.list())

    @route("GET", "/dispatch/templates/{name}")
    async def get_template(request: web.Request) -> web.Response:
        template = service.templates.load(template_named(request))
        return web.json_response(template.summary() | template.to_dict())

    @route("PUT", "/dispatch/templates/{name}")
    async def save_template(request: web.Request) -> web.Response:
        name = check_name(request.match_info["name"])
        body = await _object(request)
        workflow = body.get("workflow", body.get("output"))
        if workflow is None:
            raise _Problem(400, "send the API-format workflow as 'workflow'", "workflow")
        description = body.get("description", "")
        if not isinstance(description, str):
            raise _Problem(400, "'description' must be text", "description")
        overwrite = body.get("overwrite", False)
        if overwrite is not True and name in service.templates.names():
            raise _Problem(409, f"a template named {name!r} exists already", "name")
        template = service.templates.save(
            name, workflow, parameters=body.get("parameters"), description=description
        )
        service.notify_templates()
        return web.json_response(template.summary(), status=201 if not overwrite else 200)

    @route("POST", "/dispatch/templates/{name}/rename")
    async def rename_template(request: web.Request) -> web.Response:
        name = template_named(request)
        body = await _object(request)
        new = check_name(body.get("name"))
        if new != name and new in service.templates.names():
            raise _Problem(409, f"a template named {new!r} exists already", "name")
        template = service.templates.rename(name, new)
        service.notify_templates()
        return web.json_response(template.summary())

    @route("DELETE", "/dispatch/templates/{name}")
    async def delete_template(request: web.Request) -> web.Response:
        name = template_named(request)
        service.templates.delete(name)
        service.notify_templates()
        return web.json_response({"deleted": name})

    # -- managed workers ------------------------------------------------------------------

    @route("GET", "/dispatch/workers")
    async def list_workers(request: web.Request) -> web.Response:
        return web.json_response(service.worker_list())

    @route("POST", "/dispatch/workers")
    async def add_worker(request: web.Request) -> web.Response:
        body = await _object(request)
        name = body.pop("name", None)
        worker = await service.start_worker(name, body)
        return web.json_response(worker, status=201)

    @route("POST", "/dispatch/workers/{name}/{action:start|stop}")
    async def start_or_stop_worker(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if request.match_info["action"] == "start":
            return web.json_response(await service.start_worker(name))
        await service.stop_worker(name)
        return web.json_response({"stopped": name})

    @route("DELETE", "/dispatch/workers/{name}")
    async def remove_worker(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        await service.stop_worker(name, forget=True)
        return web.json_response({"removed": name})

    @route("GET", "/dispatch/workers/{name}/log")
    async def worker_log(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        text = await asyncio.to_thread(service.worker_log, name, _whole(request, "lines", 200))
        return web.json_response({"name": name, "log": text})

    # -- status and jobs ----------------------------------------------------------------

    @route("GET", "/dispatch/status")
    async def get_status(request: web.Request) -> web.Response:
        refresh = request.query.get("refresh") in ("1", "true")
        return web.json_response({"servers": await service.status(refresh=refresh)})

    @route("POST", "/dispatch/run")
    async def run_job(request: web.Request) -> web.Response:
        body = await _object(request)
        job: dict[str, Any] = {}
        route_name = body.get("route")
        if not isinstance(route_name, str) or not route_name:
            raise _Problem(400, "name the 'route' (the workflow type) to run it on", "route")
        for key, kinds in _RUN_FIELDS.items():
            if body.get(key) is not None:
                if not isinstance(body[key], kinds):
                    raise _Problem(400, f"'{key}' has the wrong type", key)
                job[key] = body[key]
        unknown = set(body) - set(_RUN_FIELDS) - {"route"}
        if unknown:
            raise _Problem(400, f"unknown field {sorted(unknown)[0]!r}", sorted(unknown)[0])
        if ("template" in job) == ("workflow" in job):
            raise _Problem(400, "send either a 'template' name or a 'workflow'", "template")
        if "server" not in job and route_name not in service.config.routes:
            known = ", ".join(service.config.routes) or "none configured"
            raise _Problem(400, f"unknown route {route_name!r} (routes: {known})", "route")
        record = service.submit(route_name, **job)
        return web.json_response(
            {"id": record.id, "url": f"/dispatch/jobs/{record.id}"}, status=202
        )

    @route("GET", "/dispatch/jobs")
    async def get_jobs(request: web.Request) -> web.Response:
        limit = _whole(request, "limit", 50)
        return web.json_response([r.to_dict() for r in service.activity.recent(limit)])

    @route("GET", "/dispatch/jobs/{id}")
    async def get_job(request: web.Request) -> web.Response:
        record = service.activity.get(request.match_info["id"])
        if record is None:
            raise _Problem(404, f"no recent job {request.match_info['id']!r}", "id")
        return web.json_response(record.to_dict())

    @route("GET", "/dispatch/jobs/{id}/files/{index}")
    async def get_job_file(request: web.Request) -> web.Response:
        try:
            index = int(request.match_info["index"])
        except ValueError:
            raise _Problem(400, "the file index must be a whole number", "index") from None
        data, filename = await service.file(request.match_info["id"], index)
        kind = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return web.Response(body=data, content_type=kind)


async def _object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _Problem(400, f"the body is not valid JSON: {error}", "body") from None
    if not isinstance(body, dict):
        raise _Problem(400, "the body must be a JSON object", "body")
    return body


def cross_origin(request: web.Request) -> bool:
    """A browser request from another site: its Origin names another host than it asked."""
    origin = request.headers.get("Origin")
    if not origin:
        return False  # not a browser, or a same-origin GET
    return urlsplit(origin).netloc.lower() != request.host.lower()


def _whole(request: web.Request, key: str, default: int) -> int:
    try:
        return int(request.query.get(key, str(default)))
    except ValueError:
        raise _Problem(400, f"'{key}' must be a whole number", key) from None


def _expected_version(request: web.Request) -> str | None:
    match = request.headers.get("If-Match")
    if match:
        return match.strip().strip('"')
    return None


def _error(status: int, message: str, field: str | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": message, "field": field} | extra
    return web.json_response(body, status=status)


def _from_dispatch_error(error: DispatchError) -> web.Response:
    if isinstance(error, ConfigConflict):
        return _error(409, str(error), "version", current_version=error.current_version)
    if isinstance(error, ConfigError):
        return _error(400, error.message, error.key)
    status = 404 if error.missing else 400
    if isinstance(error, TemplateError):
        return _error(status, str(error), error.node or "name")
    if isinstance(error, WorkflowError):
        return _error(status, str(error), error.node or "workflow")
    if isinstance(error, WorkerError):
        return _error(status, str(error), error.field or "worker")
    if isinstance(error, InputError):
        return _error(status, str(error))
    return _error(502, str(error), server=error.server)
