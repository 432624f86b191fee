"""Values crossing a remote group's edge: ComfyUI's tensors to files for the peer, and back.

A peer is a stock ComfyUI, so a value crosses as what its own nodes read and write: an
image as a PNG (LoadImage), a mask as a grey PNG (LoadImageMask, red channel), a latent
as SaveLatent's `.latent` file (LoadLatent), and a plain value inlined. On the way back
the same, read from the files and texts of the peer's history, decoded as ComfyUI's own
loaders decode them, so that a value is the same whether the group ran here or there.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from typing import Any

from .images import to_batch, to_png

MAX_LATENT_BYTES = 1024 * 1024 * 1024
"""A latent larger than this (a peer's mistake, or worse) is refused before it is read."""


class Upload:
    """A file for the peer's input folder, named by its content: a retry reuses it."""

    def __init__(self, data: bytes, suffix: str):
        self.data = data
        self.filename = f"dispatch_{hashlib.sha256(data).hexdigest()[:20]}{suffix}"


def image_uploads(images: Any) -> list[Upload]:
    """One PNG per image of an IMAGE batch (B×H×W×C)."""
    return [Upload(to_png(images[index]), ".png") for index in range(images.shape[0])]


def mask_upload(mask: Any) -> Upload:
    """A MASK (H×W, or a batch of one) as a grey PNG; LoadImageMask's red channel reads it."""
    import numpy as np
    from PIL import Image

    if mask.dim() == 3:
        if mask.shape[0] != 1:
            raise ValueError(
                f"a batch of {mask.shape[0]} masks cannot cross to a remote group, only one"
            )
        mask = mask[0]
    array = np.clip(255.0 * mask.cpu().numpy(), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="PNG", compress_level=1)
    return Upload(buffer.getvalue(), ".png")


def latent_upload(latent: Any) -> Upload:
    """A LATENT as SaveLatent writes it, which LoadLatent reads back unscaled."""
    import safetensors.torch
    import torch

    tensors = {
        "latent_tensor": latent["samples"].contiguous(),
        "latent_format_version_0": torch.tensor([]),
    }
    return Upload(safetensors.torch.save(tensors), ".latent")


def images_from(files: Sequence[tuple[str, bytes]]) -> Any:
    """An IMAGE batch from PNGs, decoded as LoadImage decodes them."""
    return to_batch(files)


def mask_from(files: Sequence[tuple[str, bytes]]) -> Any:
    """A MASK batch from the grey PNGs MaskToImage made: one channel of each."""
    return to_batch(files)[:, :, :, 0]


def latent_from(label: str, data: bytes) -> dict[str, Any]:
    """A LATENT from a `.latent` file, as LoadLatent reads it (safetensors, never pickle)."""
    import safetensors.torch

    if len(data) > MAX_LATENT_BYTES:
        raise ValueError(f"{label}: a latent of {len(data)} bytes is too large, refused")
    try:
        tensors = safetensors.torch.load(data)
        samples = tensors["latent_tensor"].float()
    except Exception as error:  # safetensors raises its own kinds for a broken file
        raise ValueError(f"{label}: not a latent file ComfyUI can read ({error})") from None
    if "latent_format_version_0" not in tensors:
        samples = samples * (1.0 / 0.18215)  # LoadLatent's rule for files of old ComfyUI
    return {"samples": samples}


def latents_joined(latents: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several servers' latents as one batch, in their order."""
    import torch

    if len(latents) == 1:
        return latents[0]
    return {"samples": torch.cat([latent["samples"] for latent in latents])}


def value_from(text: str, type_: str) -> Any:
    """A plain value from PreviewAny's text (`str()` of numbers and booleans)."""
    if type_ == "INT":
        return int(text)
    if type_ == "FLOAT":
        return float(text)
    if type_ == "BOOLEAN":
        if text not in ("True", "False"):
            raise ValueError(f"{text[:40]!r} is not a BOOLEAN")
        return text == "True"
    return text
