"""Requests read and answers made the same way by every handler.

A bad request gets a 4xx with `{"error": message, "field": key}` naming what to fix; a
peer's failure a 502 with the peer's message. Bodies are JSON objects within `_json`'s
bounds; query numbers are plain ASCII digits within a stated range.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .._json import JSONLimitError, loads_bounded
from ..errors import ConfigConflict, Conflict, DispatchError, InputError, NotFound

__all__ = [
    "Problem",
    "error",
    "expected_version",
    "from_dispatch_error",
    "optional_object",
    "read_object",
    "whole",
    "whole_text",
    "without",
]


class Problem(Exception):
    """Raised by a handler: answered as a 4xx naming the field."""

    def __init__(self, status: int, message: str, field: str | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.field, self.extra = status, message, field, extra


def error(status: int, message: str, field: str | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": message, "field": field} | extra
    return web.json_response(body, status=status)


def from_dispatch_error(failure: DispatchError) -> web.Response:
    """One answer per kind of error: the caller's 4xx, the peer's 502."""
    if isinstance(failure, ConfigConflict):
        return error(409, str(failure), "version", current_version=failure.current_version)
    if isinstance(failure, Conflict):
        return error(409, str(failure), failure.field)
    if isinstance(failure, NotFound):
        return error(404, str(failure), failure.field)
    if isinstance(failure, InputError):
        return error(400, str(failure), failure.field)
    return error(502, str(failure), server=failure.server)


async def read_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object within `_json`'s bounds, or a 4xx naming the place."""
    try:
        body = loads_bounded(await request.read())
    except web.HTTPRequestEntityTooLarge as too_large:
        raise Problem(413, f"the body is too large: {too_large.text}", "body") from None
    except JSONLimitError as bad:
        raise Problem(400, f"the body is not usable JSON: {bad}", bad.where or "body") from None
    if not isinstance(body, dict):
        raise Problem(400, "the body must be a JSON object", "body")
    return body


async def optional_object(request: web.Request) -> dict[str, Any] | None:
    """The body of a request that may have none (DELETE, enable): None when empty."""
    return await read_object(request) if await request.read() else None


def whole(request: web.Request, key: str, default: int, *, maximum: int = 10_000) -> int:
    return whole_text(request.query.get(key, str(default)), key, maximum=maximum)


def whole_text(text: str, key: str, *, maximum: int) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 9 or int(text) > maximum:
        raise Problem(400, f"'{key}' must be a whole number from 0 to {maximum}", key)
    return int(text)


def expected_version(request: web.Request, body: Any = None) -> str | None:
    """The version the caller read: `If-Match`, else the body's `version`; checked for type."""
    match = request.headers.get("If-Match")
    if match:
        return match.strip().strip('"')
    version = body.get("version") if isinstance(body, dict) else None
    if version is not None and not isinstance(version, str):
        raise Problem(400, "'version' must be the text the config was read with", "version")
    return version


def without(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in keys}
