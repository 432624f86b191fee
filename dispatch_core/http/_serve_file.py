"""Serving a peer's output file to a browser, inert.

The file's name, bytes and content type come from a peer, and a peer may be hostile: an
`x.html` or `x.svg` served inline on our origin (ComfyUI's origin, inside ComfyUI) would
run its script with the whole API in reach. So the type is ours, chosen from the file's
suffix among raster images, video and audio; everything else is an attachment; every
answer says `nosniff` and carries a CSP that runs nothing. Bytes are streamed through,
never held whole, within the peer client's download limit.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol
from urllib.parse import quote

from aiohttp import web

__all__ = ["Download", "content_type_for", "stream_output"]

INLINE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".m4a": "audio/mp4",
}
"""What a browser may show in place: media it decodes, never markup or script."""
_INERT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "private, max-age=3600",
}
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9 _.()+-]")


class Download(Protocol):
    """An open download from a peer (see `PeerClient.open_view`)."""

    def chunks(self) -> AsyncIterator[bytes]: ...


def content_type_for(filename: str) -> tuple[str, bool]:
    """The type to serve `filename` as, and whether it may be shown inline."""
    suffix = posixpath.splitext(filename)[1].lower()
    if suffix in INLINE_TYPES:
        return INLINE_TYPES[suffix], True
    return "application/octet-stream", False


async def stream_output(
    request: web.Request,
    opened: AbstractAsyncContextManager[Download],
    filename: str,
) -> web.StreamResponse:
    """Stream an opened download to the browser with our own type and inert headers."""
    kind, inline = content_type_for(filename)
    async with opened as download:
        response = web.StreamResponse(headers=_INERT_HEADERS)
        response.content_type = kind
        response.headers["Content-Disposition"] = _disposition(filename, inline)
        await response.prepare(request)
        async for chunk in download.chunks():
            await response.write(chunk)
        await response.write_eof()
    return response


def _disposition(filename: str, inline: bool) -> str:
    """A Content-Disposition that no name can break out of (quotes, CR/LF, paths)."""
    base = posixpath.basename(filename.replace("\\", "/")) or "file"
    plain = _UNSAFE_NAME.sub("_", base)[:120] or "file"
    how = "inline" if inline else "attachment"
    return f"{how}; filename=\"{plain}\"; filename*=UTF-8''{quote(base[:120], safe='')}"
