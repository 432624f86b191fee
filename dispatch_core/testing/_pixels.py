"""The pixel operations the fake peer's nodes are built from, on whole rows of bytes."""

from __future__ import annotations

import operator
import struct

from ._png import Image

__all__ = ["center_crop", "color", "crop", "gray", "jpeg_size", "resize"]


def color(value: int) -> tuple[int, int, int]:
    return ((value >> 16) & 255, (value >> 8) & 255, value & 255)


def gray(width: int, height: int, plane: bytes) -> Image:
    out = bytearray(len(plane) * 3)
    for i in range(3):
        out[i::3] = plane
    return Image(width, height, bytes(out))


def resize(image: Image, width: int, height: int) -> Image:
    """Nearest-neighbour resize: one C-level gather per distinct source row."""
    if (width, height) == (image.width, image.height):
        return image
    if width <= 0 or height <= 0 or image.width <= 0 or image.height <= 0:
        raise ValueError(f"cannot resize a {image.width}x{image.height} image to {width}x{height}")
    columns = [(x * image.width // width) * 3 + c for x in range(width) for c in range(3)]
    gather = operator.itemgetter(*columns)
    done: dict[bytes, bytes] = {}
    rows = []
    for y in range(height):
        source = image.row(y * image.height // height)
        row = done.get(source)
        if row is None:
            row = done[source] = bytes(gather(source))
        rows.append(row)
    return Image(width, height, b"".join(rows))


def crop(image: Image, x: int, y: int, width: int, height: int) -> Image:
    """Like a tensor slice: clamped to the image, never an error."""
    x, y = max(min(x, image.width), 0), max(min(y, image.height), 0)
    width, height = min(width, image.width - x), min(height, image.height - y)
    rows = [image.row(r)[x * 3 : (x + width) * 3] for r in range(y, y + height)]
    return Image(width, height, b"".join(rows))


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    offset = 2
    while offset + 9 <= len(data) and data[offset] == 0xFF:
        marker, length = data[offset + 1], struct.unpack(">H", data[offset + 2 : offset + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return width, height
        offset += 2 + length
    return None


def center_crop(m: Image, aspect: float) -> Image:
    old = m.width / m.height
    x = round((m.width - m.width * (aspect / old)) / 2) if old > aspect else 0
    y = round((m.height - m.height * (old / aspect)) / 2) if old < aspect else 0
    return crop(m, x, y, m.width - 2 * x, m.height - 2 * y)
