"""The peer's preview pictures: ComfyUI's binary WebSocket frames, read without trust.

A sampler on the peer sends one per step when that ComfyUI runs with `--preview-method`
(its default, `none`, sends none). We announce `supports_preview_metadata` when the socket
opens, so ComfyUI 0.3.45 and later send type 4 (`PREVIEW_IMAGE_WITH_METADATA`: the prompt
and node named in JSON); older ones send type 1 (`PREVIEW_IMAGE`), which belongs to the
prompt the peer is running. Any other binary frame (type 3, a node's progress text) is
not ours to relay. See `tests/protocol/run_previews*.json` for both, as ComfyUI sends them.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from ._json import JSONLimitError, loads_bounded

__all__ = ["FEATURE_FLAGS", "Preview", "read_preview"]

FEATURE_FLAGS = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
"""The first frame we send: previews then come with the prompt they belong to."""
MAX_METADATA_BYTES = 4096
"""ComfyUI's metadata is ~170 bytes; more is not ComfyUI."""
_MAGIC = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n"}
_LEGACY_TYPES = {1: "image/jpeg", 2: "image/png"}


@dataclass(frozen=True)
class Preview:
    """One preview picture, with the prompt and node it belongs to when the peer said."""

    image: bytes
    mime: str
    prompt_id: str | None = None
    node: str | None = None


def read_preview(data: bytes) -> Preview | None:
    """The preview a binary frame holds; None for a frame that is not a well-formed one."""
    if len(data) < 8:
        return None
    event, word = struct.unpack(">II", data[:8])
    if event == 1:
        mime = _LEGACY_TYPES.get(word)
        return _checked(Preview(data[8:], mime)) if mime else None
    if event == 4 and word <= MAX_METADATA_BYTES:
        return _with_metadata(data[8 : 8 + word], data[8 + word :])
    return None


def _with_metadata(raw: bytes, image: bytes) -> Preview | None:
    try:
        metadata = loads_bounded(raw, max_depth=2)
    except JSONLimitError:
        return None
    if not isinstance(metadata, Mapping):
        return None
    mime, prompt_id, node = (metadata.get(k) for k in ("image_type", "prompt_id", "node_id"))
    if not isinstance(mime, str) or not isinstance(prompt_id, str):
        return None
    shown = metadata.get("display_node_id", node)
    return _checked(Preview(image, mime, prompt_id, shown if isinstance(shown, str) else None))


def _checked(preview: Preview) -> Preview | None:
    """Only a picture that starts as its type says: never any bytes the peer labels so."""
    magic = _MAGIC.get(preview.mime)
    return preview if magic is not None and preview.image.startswith(magic) else None
