"""The `/dispatch/*` HTTP routes, on ComfyUI's server or on the standalone one.

    add_routes(PromptServer.instance.routes, service)    # inside ComfyUI
    add_routes(routes := web.RouteTableDef(), service)   # standalone

Every answer is JSON. A bad request gets a 4xx with `{"error": message, "field": key}`
naming what to fix; a peer's failure a 502 with the peer's message. Header values are
never sent back, only masked. The routes only ever contact configured servers.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ._guard import HostPolicy, refusal
from ._json import JSONLimitError, loads_bounded
from ._serve_file import stream_output
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

__all__ = ["add_routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_log = logging.getLogger(__name__)
_MAX_TIMEOUT = 7 * 86400.0
"""A week: longer than any job, short enough to refuse a mistake."""

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


def add_routes(
    routes: web.RouteTableDef, service: DispatchService, *, policy: HostPolicy | None = None
) -> None:
    """Register every `/dispatch/*` route on `routes`, served by `service`.

    `policy` says which Host names the server answers (see `_guard`); without one, only
    loopback names, as for a server bound to loopback.
    """
    policy = policy or HostPolicy()

    def route(method: str, path: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            async def answer(request: web.Request) -> web.StreamResponse:
                # ComfyUI checks origins only on loopback and never the Host: a page on
                # another site must never add a server that would receive our workflows.
                refused = refusal(request, policy)
                if refused is not None:
                    return _error(refused.status, refused.message, refused.field)
                try:
                    return await handler(request)
                except _Problem as problem:
                    return _error(problem.status, problem.message, problem.field, **problem.extra)
                except DispatchError as error:
                    return _from_dispatch_error(error)
                except Exception:  # a bug: say so without details, keep them in the log
                    _log.exception("ComfyUI-Dispatch: %s %s failed", request.method, path)
                    return _error(500, "internal error in ComfyUI-Dispatch; see its log")

            routes.route(method, path)(answer)
            return handler

        return register

    def config_answer(view: dict[str, Any] | None = None) -> web.Response:
        view = view or service.config_view()
        return web.json_response(view, headers={"ETag": f'"{view["version"]}"'})

    async def edit(
        request: web.Request,
        change: Callable[[dict[str, Any]], None],
        body: dict[str, Any] | None = None,
    ) -> web.Response:
        expected = _expected_version(request, body)
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
        new = body["config"] if "config" in body else _without(body, "version")
        if not isinstance(new, dict):
            raise _Problem(400, "'config' must be an object", "config")
        if "config" in body and set(body) - {"config", "version"}:
            unknown = sorted(set(body) - {"config", "version"})[0]
            raise _Problem(400, f"unknown field {unknown!r} beside 'config'", unknown)

        def replace(data: dict[str, Any]) -> None:
            data.clear()
            data.update(new)

        return await edit(request, replace, body)

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

        return await edit(request, merge, body)

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
        server = _without(body, "version")

        def add(data: dict[str, Any]) -> None:
            data["servers"][name] = server

        answer = await edit(request, add, body)
        answer.set_status(201)
        return answer

    @route("PUT", "/dispatch/servers/{name}")
    async def update_server(request: web.Request) -> web.Response:
        name = server_named(request)
        body = await _object(request)
        changes = _without(body, "version", "name")
        new_name = body.get("name", name)
        if not isinstance(new_name, str) or not new_name.strip():
            raise _Problem(400, "a server name must be text", "name")
        if new_name != name and new_name in service.config.servers:
            raise _Problem(409, f"a server named {new_name!r} exists already", "name")

        def update(data: dict[str, Any]) -> None:
            server = data["servers"].pop(name)
            server["headers"] = _headers_after(server, changes, name)
            server.update(_without(changes, "headers"))
            data["servers"][new_name] = server
            for route_name, names in data["routes"].items():
                names = [names] if isinstance(names, str) else names
                data["routes"][route_name] = [new_name if n == name else n for n in names]

        return await edit(request, update, body)

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

        return await edit(request, remove, await _optional_object(request))

    @route("POST", "/dispatch/servers/{name}/{switch:enable|disable}")
    async def switch_server(request: web.Request) -> web.Response:
        name = server_named(request)
        enabled = request.match_info["switch"] == "enable"

        def change(data: dict[str, Any]) -> None:
            data["servers"][name]["enabled"] = enabled

        return await edit(request, change, await _optional_object(request))

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
        if (
            not isinstance(servers, list)
            or not servers
            or not all(isinstance(s, str) for s in servers)
        ):
            raise _Problem(400, "'servers' must name one server or a list of them", "servers")

        def put(data: dict[str, Any]) -> None:
            data["routes"][name] = servers

        return await edit(request, put, body)

    @route("DELETE", "/dispatch/routes/{route}")
    async def delete_route(request: web.Request) -> web.Response:
        name = request.match_info["route"]
        if name not in service.config.routes:
            raise _Problem(404, f"no route {name!r}", "route")

        def delete(data: dict[str, Any]) -> None:
            del data["routes"][name]

        return await edit(request, delete, await _optional_object(request))

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

    def template_version(request: web.Request, name: str, body: Any = None) -> None:
        """A template's version is its fingerprint: an edit made on an older read is refused."""
        expected = _expected_version(request, body)
        current = service.templates.fingerprint(name)
        if expected is not None and expected != current:
            raise _Problem(
                409,
                f"template {name!r} changed since you read it; reload it and try again",
                "version",
                current_version=current,
            )

    @route("PUT", "/dispatch/templates/{name}")
    async def save_template(request: web.Request) -> web.Response:
        name = check_name(request.match_info["name"])
        body = await _object(request)
        workflow = body.get("workflow", body.get("output"))
        if workflow is None:
            raise _Problem(400, "send the API-format workflow as 'workflow'", "workflow")
        description = body.get("description", "")
        if not isinstance(description, str) or len(description) > 10_000:
            raise _Problem(
                400, "'description' must be text of at most 10,000 characters", "description"
            )
        overwrite = body.get("overwrite", False)
        if not isinstance(overwrite, bool):
            raise _Problem(400, "'overwrite' must be true or false", "overwrite")
        if not overwrite and name in service.templates.names():
            raise _Problem(409, f"a template named {name!r} exists already", "name")
        template_version(request, name, body)
        template = service.templates.save(
            name, workflow, parameters=body.get("parameters"), description=description
        )
        service.notify_templates()
        return web.json_response(template.summary(), status=201 if not overwrite else 200)

    @route("POST", "/dispatch/templates/{name}/rename")
    async def rename_template(request: web.Request) -> web.Response:
        name = template_named(request)
        body = await _object(request)
        template_version(request, name, body)
        new = check_name(body.get("name"))
        if new != name and new in service.templates.names():
            raise _Problem(409, f"a template named {new!r} exists already", "name")
        template = service.templates.rename(name, new)
        service.notify_templates()
        return web.json_response(template.summary())

    @route("DELETE", "/dispatch/templates/{name}")
    async def delete_template(request: web.Request) -> web.Response:
        name = template_named(request)
        template_version(request, name, await _optional_object(request))
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
                if not isinstance(body[key], kinds) or isinstance(body[key], bool):
                    raise _Problem(400, f"'{key}' has the wrong type", key)
                job[key] = body[key]
        timeout = job.get("timeout")
        if timeout is not None and not (0 < timeout <= _MAX_TIMEOUT and math.isfinite(timeout)):
            raise _Problem(400, "'timeout' is seconds, more than 0 and at most a week", "timeout")
        unknown = set(body) - set(_RUN_FIELDS) - {"route"}
        if unknown:
            raise _Problem(400, f"unknown field {sorted(unknown)[0]!r}", sorted(unknown)[0])
        if ("template" in job) == ("workflow" in job):
            raise _Problem(400, "send either a 'template' name or a 'workflow'", "template")
        if "server" in job and job["server"] not in service.config.servers:
            known = ", ".join(service.config.servers) or "none configured"
            raise _Problem(400, f"unknown server {job['server']!r} (servers: {known})", "server")
        if "server" not in job and route_name not in service.config.routes:
            known = ", ".join(service.config.routes) or "none configured"
            raise _Problem(400, f"unknown route {route_name!r} (routes: {known})", "route")
        record = service.submit(route_name, **job)
        return web.json_response(
            {"id": record.id, "url": f"/dispatch/jobs/{record.id}"}, status=202
        )

    @route("GET", "/dispatch/jobs")
    async def get_jobs(request: web.Request) -> web.Response:
        limit = _whole(request, "limit", 50, maximum=1000)
        return web.json_response([r.to_dict() for r in service.activity.recent(limit)])

    @route("GET", "/dispatch/jobs/{id}")
    async def get_job(request: web.Request) -> web.Response:
        job_id = request.match_info["id"]
        record = service.activity.get(job_id)
        if record is None:
            raise _Problem(404, f"no job {job_id[:100]!r}", "id")
        return web.json_response(record.to_dict())

    @route("GET", "/dispatch/jobs/{id}/files/{index}")
    async def get_job_file(request: web.Request) -> web.StreamResponse:
        index = _whole_text(request.match_info["index"], "index", maximum=100_000)
        job_id = request.match_info["id"]
        record = service.activity.get(job_id)
        if record is None:
            raise _Problem(404, f"no job {job_id[:100]!r}", "id")
        if index >= len(record.files):
            raise _Problem(404, f"job {job_id} has {len(record.files)} files", "index")
        opened, filename = await service.open_file(job_id, index)
        return await stream_output(request, opened, filename)


async def _object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object within `_json`'s bounds, or a 400 naming the place."""
    try:
        body = loads_bounded(await request.read())
    except web.HTTPRequestEntityTooLarge as error:
        raise _Problem(413, f"the body is too large: {error.text}", "body") from None
    except JSONLimitError as error:
        where = error.where or "body"
        raise _Problem(400, f"the body is not usable JSON: {error}", where) from None
    if not isinstance(body, dict):
        raise _Problem(400, "the body must be a JSON object", "body")
    return body


async def _optional_object(request: web.Request) -> dict[str, Any] | None:
    """The body of a request that may have none (DELETE, enable): None when empty."""
    return await _object(request) if await request.read() else None


def _whole(request: web.Request, key: str, default: int, *, maximum: int = 10_000) -> int:
    return _whole_text(request.query.get(key, str(default)), key, maximum=maximum)


def _whole_text(text: str, key: str, *, maximum: int) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 9 or int(text) > maximum:
        raise _Problem(400, f"'{key}' must be a whole number from 0 to {maximum}", key)
    return int(text)


def _expected_version(request: web.Request, body: Any = None) -> str | None:
    """The version the caller read: `If-Match`, else the body's `version`; checked for type."""
    match = request.headers.get("If-Match")
    if match:
        return match.strip().strip('"')
    version = body.get("version") if isinstance(body, dict) else None
    if version is not None and not isinstance(version, str):
        raise _Problem(400, "'version' must be the text the config was read with", "version")
    return version


def _without(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in keys}


def _headers_after(stored: dict[str, Any], changes: dict[str, Any], name: str) -> dict[str, Any]:
    """A server's headers after an edit. A masked value keeps what is stored, but only
    while the URL stays: the headers were meant for that host, not for a new one."""
    moved = "url" in changes and changes["url"] != stored.get("url")
    given = changes.get("headers")
    if given is None:
        return {} if moved else dict(stored.get("headers") or {})
    if not isinstance(given, dict):
        return given  # the config's own check names the mistake
    kept = stored.get("headers") or {}
    headers = {}
    for header, value in given.items():
        if value == MASK and (moved or header not in kept):
            why = "the URL changed" if moved else "no value is stored for it"
            message = f"{why}: send the header's value, not the mask"
            raise _Problem(400, message, f"servers.{name}.headers.{header}")
        headers[header] = kept[header] if value == MASK else value
    return headers


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
