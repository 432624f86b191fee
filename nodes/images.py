"""Between image files and ComfyUI's IMAGE: float32 tensors, B×H×W×C, RGB, 0..1."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import Any

MAX_PIXELS = 128 * 1024 * 1024
"""Larger images are refused before they are decoded: a peer's mistake, or a PNG bomb."""
MAX_BATCH_PIXELS = 2 * MAX_PIXELS
"""All images of one answer together (about 3 GB as float32): many small files of huge
dimensions are refused as one large one is."""


class ImageSizeMismatch(ValueError):
    """Images of different sizes cannot share one batch."""


def to_batch(images: Sequence[tuple[str, bytes]]) -> Any:
    """One tensor of every image, in order; `images` pairs a label with each file's bytes.

    Decoded the way ComfyUI's LoadImage does (EXIF orientation, 16-bit scaled, RGB), so a
    picture comes back as it would from a file loaded locally. No image: an empty batch.
    """
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    _check_total(images)
    frames = []
    for label, data in images:
        try:
            with _open(data) as opened:
                picture = ImageOps.exif_transpose(opened) or opened
                if picture.mode == "I":
                    picture = picture.point(lambda value: value * (1 / 255))
                frames.append((label, np.asarray(picture.convert("RGB"), dtype=np.float32)))
        except (_TooLarge, Image.DecompressionBombError) as error:
            raise ValueError(f"{label}: too large, refused ({error})") from None
        except Exception as error:  # PIL raises many kinds for a broken file
            raise ValueError(f"{label}: not an image ComfyUI can read ({error})") from None
    if not frames:
        return torch.zeros((0, 64, 64, 3), dtype=torch.float32)
    sizes: dict[tuple[int, int], list[str]] = {}
    for label, array in frames:
        sizes.setdefault((array.shape[1], array.shape[0]), []).append(label)
    if len(sizes) > 1:
        listing = "; ".join(f"{w}×{h}: {', '.join(labels)}" for (w, h), labels in sizes.items())
        raise ImageSizeMismatch(
            f"the images differ in size, so they cannot form one batch ({listing}); "
            "pick one output node with 'output_node', or resize them on the peer"
        )
    return torch.from_numpy(np.stack([array for _, array in frames]) / 255.0).float()


class _TooLarge(ValueError):
    pass


def _open(data: bytes) -> Any:
    """An image opened lazily (nothing decoded yet), refused over MAX_PIXELS."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked here
        opened = Image.open(io.BytesIO(data))
    if opened.width * opened.height > MAX_PIXELS:
        opened.close()
        raise _TooLarge(f"{opened.width}×{opened.height} pixels is more than 128 MP")
    return opened


def _check_total(images: Sequence[tuple[str, bytes]]) -> None:
    """Refuse before decoding any image when all of them together are too many pixels."""
    from PIL import Image

    total = 0
    for label, data in images:
        try:
            with _open(data) as opened:
                total += opened.width * opened.height
        except (_TooLarge, Image.DecompressionBombError) as error:
            raise ValueError(f"{label}: too large, refused ({error})") from None
        except Exception:
            continue  # not an image: the decoding pass names it
    if total > MAX_BATCH_PIXELS:
        raise ValueError(
            f"{len(images)} images of {total / 2**20:.0f} MP together are more than "
            f"{MAX_BATCH_PIXELS // 2**20} MP: refused before decoding; pick one output "
            "node with 'output_node', or make smaller images on the peer"
        )


def to_png(image: Any) -> bytes:
    """One H×W×C image of a batch, as PNG bytes for an upload."""
    import numpy as np
    from PIL import Image

    array = np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
