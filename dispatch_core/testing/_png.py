"""A tiny PNG codec for the fake peer and the tests: 8-bit gray/RGB/RGBA, no Pillow.

Decoding handles the five filter types of non-interlaced 8-bit images; encoding writes RGB
with filter 0 (plus optional tEXt chunks, as ComfyUI's SaveImage does). Filters that do
not depend on the reconstructed left byte run at C speed through `map`/`accumulate`, so a
1024×1024 image stays quick in pure Python.
"""

from __future__ import annotations

import operator
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate

__all__ = ["Image", "PNGError", "decode_png", "encode_png", "read_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
_LOW_BYTE = (255).__and__


@dataclass(frozen=True)
class Image:
    """RGB pixels, row by row, three bytes a pixel."""

    width: int
    height: int
    pixels: bytes

    @classmethod
    def solid(cls, width: int, height: int, rgb: tuple[int, int, int]) -> Image:
        return cls(width, height, bytes(rgb) * (width * height))

    def row(self, y: int) -> bytes:
        stride = self.width * 3
        return self.pixels[y * stride : (y + 1) * stride]


class PNGError(ValueError):
    """The bytes are not a PNG this codec reads."""


def encode_png(image: Image, *, text: Mapping[str, str] | None = None, level: int = 6) -> bytes:
    """An RGB PNG, filter 0 on every row; `text` becomes tEXt chunks (latin-1)."""
    stride = image.width * 3
    if len(image.pixels) != stride * image.height:
        raise ValueError("pixel data does not match the image size")
    raw = b"".join(
        b"\x00" + image.pixels[row * stride : (row + 1) * stride] for row in range(image.height)
    )
    header = struct.pack(">IIBBBBB", image.width, image.height, 8, 2, 0, 0, 0)
    chunks = [_chunk(b"IHDR", header)]
    for key, value in (text or {}).items():
        chunks.append(_chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1")))
    chunks += [_chunk(b"IDAT", zlib.compress(raw, level)), _chunk(b"IEND", b"")]
    return _SIGNATURE + b"".join(chunks)


def decode_png(data: bytes) -> Image:
    """Decode to RGB (alpha dropped, gray widened)."""
    return read_png(data)[0]


def read_png(data: bytes) -> tuple[Image, bytes | None]:
    """Decode to RGB and the alpha plane (None when the PNG has no alpha)."""
    if not data.startswith(_SIGNATURE):
        raise PNGError("not a PNG: the signature is missing")
    width, height, color_type, idat = _chunks(data)
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as error:
        raise PNGError(f"corrupt PNG data: {error}") from None
    channels = _CHANNELS[color_type]
    pixels = _unfilter(raw, width, height, channels)
    alpha = pixels[channels - 1 :: channels] if channels in (2, 4) else None
    return Image(width, height, _to_rgb(pixels, channels)), alpha


def _chunks(data: bytes) -> tuple[int, int, int, list[bytes]]:
    width = height = color_type = -1
    idat: list[bytes] = []
    offset = len(_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        if len(body) != length:
            raise PNGError("truncated PNG")
        if kind == b"IHDR":
            if length != 13:
                raise PNGError("bad IHDR chunk")
            width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or color_type not in _CHANNELS or interlace:
                raise PNGError("only 8-bit, non-interlaced gray, RGB and RGBA PNGs are read")
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        offset += 12 + length
    else:
        raise PNGError("truncated PNG: no IEND chunk")
    if width < 0:
        raise PNGError("PNG without an IHDR chunk")
    return width, height, color_type, idat


def _unfilter(raw: bytes, width: int, height: int, bpp: int) -> bytes:
    stride = width * bpp
    if len(raw) < height * (stride + 1):
        raise PNGError("truncated PNG pixel data")
    previous = bytes(stride)
    out = bytearray()
    for row in range(height):
        start = row * (stride + 1)
        line = _unfilter_line(raw[start], raw[start + 1 : start + 1 + stride], previous, bpp)
        out += line
        previous = line
    return bytes(out)


def _unfilter_line(kind: int, line: bytes, up: bytes, bpp: int) -> bytes:
    if kind == 0:
        return line
    if kind == 1:  # Sub: a running sum per channel
        out = bytearray(line)
        for c in range(bpp):
            out[c::bpp] = bytes(map(_LOW_BYTE, accumulate(line[c::bpp])))
        return bytes(out)
    if kind == 2:  # Up
        return bytes(map(_LOW_BYTE, map(operator.add, line, up)))
    if kind == 3:  # Average: needs the reconstructed left byte, so one byte at a time
        out = bytearray(line)
        for i in range(len(out)):
            left = out[i - bpp] if i >= bpp else 0
            out[i] = (out[i] + ((left + up[i]) >> 1)) & 255
        return bytes(out)
    if kind == 4:
        return _paeth_line(line, up, bpp)
    raise PNGError(f"unknown PNG filter {kind}")


def _paeth_line(line: bytes, up: bytes, bpp: int) -> bytes:
    out = bytearray(line)
    for i in range(len(out)):
        b = up[i]
        if i >= bpp:
            a, c = out[i - bpp], up[i - bpp]
        else:
            a = c = 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        if pa <= pb and pa <= pc:
            predictor = a
        elif pb <= pc:
            predictor = b
        else:
            predictor = c
        out[i] = (out[i] + predictor) & 255
    return bytes(out)


def _to_rgb(pixels: bytes, channels: int) -> bytes:
    if channels == 3:
        return pixels
    out = bytearray(len(pixels) // channels * 3)
    if channels == 4:
        for i in range(3):
            out[i::3] = pixels[i::4]
        return bytes(out)
    gray = pixels[::channels]
    for i in range(3):
        out[i::3] = gray
    return bytes(out)


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)
