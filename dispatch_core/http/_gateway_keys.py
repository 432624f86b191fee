"""The gateway's check of named API keys, beside its token (see `service._keys`).

A request may carry the gateway's token (or its panel session) or a named key, both as
`Authorization: Bearer …`. A key of ours passes within its rate, its name then in
`current_key` while the request is handled, for the job's record, log lines and metrics;
over its rate it gets 429 with `Retry-After`; a key we do not have (revoked, mistyped) gets
401 even on a gateway without a token, so that a client learns its key is dead. Keys run
jobs and read; managing keys takes the token.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable

from aiohttp import web

from ..service._keys import ApiKeys, retry_after

__all__ = ["KEY_PREFIX", "authorize", "current_key"]

KEY_PREFIX = "dk_"
_log = logging.getLogger("dispatch_core.http")
current_key: contextvars.ContextVar[str | None] = contextvars.ContextVar("dispatch_key")
"""The name of the key of the request being handled (a middleware and its handler share
the task), None without one; set at every request, as requests share a connection's task."""


def authorize(
    request: web.Request,
    keys: ApiKeys | None,
    *,
    token_ok: bool,
    unauthorized: Callable[[web.Request], web.Response],
) -> web.Response | None:
    """None to let the request through; else the refusal. `token_ok`: it carries the
    gateway's token or session, or the gateway has no token."""
    current_key.set(None)
    presented = _bearer(request)
    name = keys.identify(presented) if keys is not None and presented else None
    if name is None:
        if presented.startswith(KEY_PREFIX):
            _log.warning("refused an unknown or revoked API key on %s", request.path)
            return _refusal(401, "this API key is unknown or revoked", "key")
        return None if token_ok else unauthorized(request)
    return _keyed(request, keys, name)


def _keyed(request: web.Request, keys: ApiKeys | None, name: str) -> web.Response | None:
    fields = {"dispatch": {"key": name, "path": request.path}}
    if request.path == "/dispatch/keys" or request.path.startswith("/dispatch/keys/"):
        return _refusal(403, "an API key cannot manage keys: use the gateway's token", "key")
    wait = keys.admit(name) if keys is not None else None
    if wait is not None:
        _log.warning("key %r is over its rate", name, extra=fields)
        refusal = _refusal(429, f"key {name!r} is over its rate; retry later", "key")
        refusal.headers["Retry-After"] = retry_after(wait)
        return refusal
    current_key.set(name)
    return None


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    return header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""


def _refusal(status: int, message: str, field: str) -> web.Response:
    return web.json_response({"error": message, "field": field}, status=status)
