"""Latent files as ComfyUI's SaveLatent writes them and LoadLatent reads them: safetensors.

The fake peer's latent is a small dict (size, batch, the seed its pixels are hashed from);
as a file it becomes a real safetensors file of ComfyUI's shape, zeros of
[batch, 4, height/8, width/8] float32 plus the `latent_format_version_0` marker, and the
fake's seed in the file's metadata, so that a latent carried from one fake peer to another
decodes to the same pixels there.
"""

from __future__ import annotations

import json
import struct
from typing import Any

__all__ = ["LatentFileError", "read_latent", "write_latent"]

_SEED_KEY = "fake_peer_seed"
_MAX_HEADER = 1024 * 1024


class LatentFileError(ValueError):
    """Not a latent file this fake can read."""


def write_latent(latent: dict[str, Any]) -> bytes:
    batch, width, height = int(latent["batch"]), int(latent["width"]), int(latent["height"])
    shape = [batch, 4, height // 8, width // 8]
    size = 4 * shape[0] * shape[1] * shape[2] * shape[3]
    header = {
        "__metadata__": {_SEED_KEY: str(latent.get("seed"))},
        "latent_format_version_0": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
        "latent_tensor": {"dtype": "F32", "shape": shape, "data_offsets": [0, size]},
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + bytes(size)


def read_latent(data: bytes) -> dict[str, Any]:
    """The fake's latent from a file; a file without the fake's seed gets one from its bytes."""
    if len(data) < 8:
        raise LatentFileError("shorter than a safetensors header")
    (length,) = struct.unpack("<Q", data[:8])
    if length > min(_MAX_HEADER, len(data) - 8):
        raise LatentFileError("header length out of range")
    try:
        header = json.loads(data[8 : 8 + length])
        shape = header["latent_tensor"]["shape"]
        batch, _, rows, columns = (int(n) for n in shape)
    except (ValueError, KeyError, TypeError) as error:
        raise LatentFileError(f"not a latent file: {error}") from None
    seed = (header.get("__metadata__") or {}).get(_SEED_KEY)
    if seed is None:
        import hashlib

        seed = hashlib.sha256(data).hexdigest()
    return {"width": columns * 8, "height": rows * 8, "batch": batch, "seed": seed}
