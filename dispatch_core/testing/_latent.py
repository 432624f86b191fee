"""Latent files read back as LoadLatent reads them: safetensors (written by `_media`).

The fake peer's latent is a small dict (size, batch, the seed its pixels are hashed from);
read from a file, its size comes from the tensor's shape and its seed from the file's bytes
(or from `fake_peer_seed` in the file's metadata, when a test wrote one).
"""

from __future__ import annotations

import json
import struct
from typing import Any

__all__ = ["LatentFileError", "read_latent"]

_SEED_KEY = "fake_peer_seed"
_MAX_HEADER = 1024 * 1024


class LatentFileError(ValueError):
    """Not a latent file this fake can read."""


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
