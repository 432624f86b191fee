"""`/view`, `/upload/image` and `/upload/mask`: files, from the peer that made them or
from the gateway's own folder, always served inert (`_serve_file`)."""

from __future__ import annotations

import asyncio
import json

from aiohttp import BodyPartReader, web

from .._serve_file import content_type_for, stream_output
from ._farm import Farm
from ._inputs import check_segments
from ._relay import SERVER_MARK
from ._shapes import ComfyRefusal

__all__ = ["upload_image", "upload_mask", "view"]

_TYPES = ("output", "input", "temp")
_INERT = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_MAX_UPLOAD = 64 * 1024 * 1024
"""An upload's bytes: the gateway's `max_upload_size` (ComfyUI's default is 100 MiB)."""
_MAX_FIELD = 4096
_MAX_PARTS = 16


async def view(request: web.Request, farm: Farm) -> web.StreamResponse:
    """A file named as the history or an `executed` frame named it: `@server/…` in its
    subfolder streams it from that server; any other, from the gateway's uploads."""
    filename = request.query.get("filename", "")
    kind = request.query.get("type", "output")
    for annotated in _TYPES:
        if filename.endswith(f" [{annotated}]"):
            filename, kind = filename.removesuffix(f" [{annotated}]"), annotated
    if kind not in _TYPES:
        raise ComfyRefusal("invalid_type", "'type' is output, input or temp", field="type")
    subfolder = request.query.get("subfolder", "")
    if len(check_segments(filename, "filename", required=True)) != 1:
        raise ComfyRefusal("invalid_filename", "give folders as 'subfolder'", field="filename")
    if subfolder.startswith(SERVER_MARK):
        server, _, rest = subfolder.removeprefix(SERVER_MARK).partition("/")
        check_segments(rest, "subfolder")
        opened = await farm.service.jobs.open_output(server, filename, rest, kind)
        return await stream_output(request, opened, filename)
    path = farm.inputs.place(filename, subfolder, kind)
    if not await asyncio.to_thread(lambda: path.is_file() and not path.is_symlink()):
        raise web.HTTPNotFound()
    content_type, inline = content_type_for(filename)
    headers = dict(_INERT, **{"Content-Type": content_type})
    if not inline:
        headers["Content-Disposition"] = "attachment"
    return web.FileResponse(path, headers=headers)


async def upload_image(request: web.Request, farm: Farm) -> web.Response:
    """Kept by the gateway; sent to the peer that runs a prompt naming it."""
    return await _save(farm, *await _form(request))


async def upload_mask(request: web.Request, farm: Farm) -> web.Response:
    """Kept as sent: the gateway does not paint the mask into the original (ComfyUI does,
    and needs an image library for it); a mask editor's upload carries its own alpha."""
    fields, data, filename = await _form(request)
    try:
        json.loads(fields.get("original_ref", "{}"))
    except ValueError:
        raise ComfyRefusal(
            "invalid_request", "'original_ref' is not JSON", field="original_ref"
        ) from None
    return await _save(farm, fields, data, filename)


async def _save(farm: Farm, fields: dict[str, str], data: bytes, filename: str) -> web.Response:
    answer = await farm.inputs.save(
        data,
        filename,
        fields.get("subfolder", ""),
        fields.get("type", "input") or "input",
        overwrite=fields.get("overwrite", "") in ("true", "1"),
    )
    return web.json_response(answer)


async def _form(request: web.Request) -> tuple[dict[str, str], bytes, str]:
    """The upload's text fields, and its file's bytes and name (ComfyUI's `image` part)."""
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError):
        raise ComfyRefusal(
            "invalid_request", "send multipart/form-data", field="body", status=400
        ) from None
    fields: dict[str, str] = {}
    data, filename = b"", ""
    for _ in range(_MAX_PARTS):
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.name == "image" and part.filename:
            data, filename = await _bounded(part, _MAX_UPLOAD, "image"), part.filename
        elif part.name in ("subfolder", "type", "overwrite", "original_ref"):
            text = await _bounded(part, _MAX_FIELD, part.name)
            fields[part.name] = text.decode("utf-8", "replace")
    if not filename:
        raise ComfyRefusal("invalid_request", "the form has no 'image' file", field="image")
    return fields, data, filename


async def _bounded(part: BodyPartReader, limit: int, field: str) -> bytes:
    """A part read whole, refused (413) past `limit`: a stream is not bounded by the
    app's body limit."""
    data = bytearray()
    while chunk := await part.read_chunk():
        data += chunk
        if len(data) > limit:
            raise ComfyRefusal(
                "too_large", f"'{field}' is over {limit} bytes", field=field, status=413
            )
    return bytes(data)
