"""A tiny PNG codec for the fake peer and the tests: 8-bit RGB/RGBA/gray, no Pillow."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


@dataclass(frozen=True)
class Image:
    """RGB pixels, row by row, three bytes a pixel."""

    width: int
    height: int
    pixels: bytes

    @classmethod
    def solid(cls, width: int, height: int, rgb: tuple[int, int, int]) -> Image:
        return cls(width, height, bytes(rgb) * (width * height))


class PNGError(ValueError):
    """The bytes are not a PNG this codec reads."""


def encode_png(image: Image) -> bytes:
    stride = image.width * 3
    raw = b"".join(
        b"\x00" + image.pixels[row * stride : (row + 1) * stride] for row in range(image.height)
    )
    header = struct.pack(">IIBBBBB", image.width, image.height, 8, 2, 0, 0, 0)
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


def decode_png(data: bytes) -> Image:
    """Decode to RGB (alpha dropped, gray widened)."""
    if not data.startswith(_SIGNATURE):
        raise PNGError("not a PNG: the signature is missing")
    width = height = color_type = 0
    idat = []
    offset = len(_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        if len(body) != length:
            raise PNGError("truncated PNG")
        if kind == b"IHDR":
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
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as error:
        raise PNGError(f"corrupt PNG data: {error}") from None
    channels = _CHANNELS[color_type]
    rows = _unfilter(raw, width, height, channels)
    return Image(width, height, _to_rgb(rows, channels))


def _unfilter(raw: bytes, width: int, height: int, bpp: int) -> bytes:
    stride = width * bpp
    if len(raw) < height * (stride + 1):
        raise PNGError("truncated PNG pixel data")
    previous = bytearray(stride)
    out = bytearray()
    for row in range(height):
        start = row * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 255
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                c = previous[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(a, previous[i], c)) & 255
        elif kind != 0:
            raise PNGError(f"unknown PNG filter {kind}")
        out += line
        previous = line
    return bytes(out)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _to_rgb(pixels: bytes, channels: int) -> bytes:
    if channels == 3:
        return pixels
    if channels == 4:
        out = bytearray(len(pixels) // 4 * 3)
        for i in range(3):
            out[i::3] = pixels[i::4]
        return bytes(out)
    gray = pixels[::channels]
    out = bytearray(len(gray) * 3)
    for i in range(3):
        out[i::3] = gray
    return bytes(out)


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)
