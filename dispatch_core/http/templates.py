"""`/dispatch/templates`: saved workflows with named parameters."""

from __future__ import annotations

from aiohttp import web

from ..service import DispatchService
from ._problems import Problem, expected_version, optional_object, read_object

__all__ = ["delete_template", "get_template", "list_templates", "rename_template", "save"]

_MAX_DESCRIPTION = 10_000


async def list_templates(request: web.Request, service: DispatchService) -> web.Response:
    return web.json_response(service.templates.list())


async def get_template(request: web.Request, service: DispatchService) -> web.Response:
    template = service.templates.load(request.match_info["name"])
    return web.json_response(template.summary() | template.to_dict())


async def save(request: web.Request, service: DispatchService) -> web.Response:
    """`{"workflow", "parameters"?, "description"?, "overwrite"?}`; a version with
    `overwrite` refuses to replace a template changed since it was read."""
    body = await read_object(request)
    workflow = body.get("workflow", body.get("output"))
    if workflow is None:
        raise Problem(400, "send the API-format workflow as 'workflow'", "workflow")
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > _MAX_DESCRIPTION:
        message = f"'description' must be text of at most {_MAX_DESCRIPTION:,} characters"
        raise Problem(400, message, "description")
    overwrite = body.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise Problem(400, "'overwrite' must be true or false", "overwrite")
    template = service.templates.save(
        request.match_info["name"],
        workflow,
        parameters=body.get("parameters"),
        description=description,
        overwrite=overwrite,
        expected_version=expected_version(request, body),
    )
    return web.json_response(template.summary(), status=200 if overwrite else 201)


async def rename_template(request: web.Request, service: DispatchService) -> web.Response:
    body = await read_object(request)
    version = expected_version(request, body)
    renamed = service.templates.rename(
        request.match_info["name"], body.get("name"), expected_version=version
    )
    return web.json_response(renamed.summary())


async def delete_template(request: web.Request, service: DispatchService) -> web.Response:
    name = request.match_info["name"]
    version = expected_version(request, await optional_object(request))
    service.templates.delete(name, expected_version=version)
    return web.json_response({"deleted": name})
