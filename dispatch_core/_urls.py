"""URLs of peer outputs: build a `/view` URL, and store one short and reversibly.

    >>> compress_url("http://10.0.0.1:8188/view?filename=ComfyUI_00001_.png&subfolder=&type=output")
    'v:10.0.0.1:8188|ComfyUI_00001_.png'
    >>> decompress_url("v:10.0.0.1:8188|ComfyUI_00001_.png")
    'http://10.0.0.1:8188/view?filename=ComfyUI_00001_.png&subfolder=&type=output'

Any other string still round-trips: it is stored deflated (`z:`) or as is (`r:`),
whichever is shorter.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = ["compress_url", "decompress_url", "view_url"]

_TYPES = {"output": "", "input": "i", "temp": "t"}
_NAMES = {letter: name for name, letter in _TYPES.items()}
_UTF8 = ("utf-8", "surrogatepass")  # a str from JSON may hold a lone surrogate: keep it


def view_url(base_url: str, output: Mapping[str, Any] | Any) -> str:
    """The `/view` URL of one output file, given as ComfyUI reports it or as an OutputFile."""

    def field(name: str, default: str = "") -> str:
        if isinstance(output, Mapping):
            return str(output.get(name) or default)
        return str(getattr(output, name, None) or default)

    query = urlencode(
        {
            "filename": field("filename"),
            "subfolder": field("subfolder"),
            "type": field("type", "output"),
        }
    )
    return f"{base_url.rstrip('/')}/view?{query}"


def compress_url(url: str) -> str:
    """A short string `decompress_url` turns back into exactly `url`."""
    candidates = ["r:" + url, "z:" + _deflate(url)]
    compact = _compact_view(url)
    if compact is not None:
        candidates.append(compact)
    return min(candidates, key=len)


def decompress_url(text: str) -> str:
    """The URL `compress_url` stored; ValueError if `text` is not one of its outputs."""
    prefix, _, body = text.partition(":")
    if prefix == "r":
        return body
    if prefix == "z":
        try:
            packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return zlib.decompress(packed, -15).decode(*_UTF8)
        except (binascii.Error, zlib.error, UnicodeDecodeError) as error:
            raise ValueError(f"not a compressed URL: {text[:40]!r}: {error}") from None
    if prefix in ("v", "vs"):
        return _expand_view(prefix, body)
    raise ValueError(f"not a compressed URL: {text[:40]!r}")


def _deflate(url: str) -> str:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = packer.compress(url.encode(*_UTF8)) + packer.flush()
    return base64.urlsafe_b64encode(packed).decode().rstrip("=")


def _compact_view(url: str) -> str | None:
    """`v[s]:host[:port]|filename[|subfolder[|type letter]]`, only if it expands back exactly."""
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[x": an unclosed IPv6 bracket, a netloc bad under NFKC
        return None
    if parts.path != "/view" or parts.scheme not in ("http", "https") or parts.fragment:
        return None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    kind = _TYPES.get(query.get("type", ""))
    if set(query) != {"filename", "subfolder", "type"} or kind is None:
        return None
    fields = [parts.netloc, query["filename"], query["subfolder"], kind]
    if any("|" in f for f in fields):
        return None
    while len(fields) > 2 and not fields[-1]:
        fields.pop()
    compact = ("vs:" if parts.scheme == "https" else "v:") + "|".join(fields)
    try:
        return compact if decompress_url(compact) == url else None
    except ValueError:  # a lone surrogate that view_url cannot quote
        return None


def _expand_view(prefix: str, body: str) -> str:
    netloc, filename, subfolder, kind = ([*body.split("|"), "", "", ""])[:4]
    if kind not in _NAMES:
        raise ValueError(f"not a compressed URL: unknown type letter {kind!r}")
    output = {"filename": filename, "subfolder": subfolder, "type": _NAMES[kind]}
    return view_url(("https://" if prefix == "vs" else "http://") + netloc, output)
