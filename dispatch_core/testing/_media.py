"""Latents, videos and audio as the fake peer's save nodes write them, in real formats.

SaveLatent writes a safetensors file as ComfyUI's does (`latent_tensor`, and the empty
`latent_format_version_0` that marks its scale); SaveVideo writes an MP4 and SaveAudio a
FLAC, each the same small file whatever the input, recorded from ComfyUI 0.3.64 (a
4-frame 64×48 video of CreateVideo + SaveVideo; 400 samples of silence, 8 kHz mono, its
padding block removed). Their history entries have ComfyUI's keys: `latents`, `images`
with `animated: [true]`, `audio`.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping
from typing import Any

__all__ = ["FLAC", "MP4", "latent_file"]

MP4 = base64.b64decode(
    "AAAAIGZ0eXBpc29tAAACAGlzb21pc28yYXZjMW1wNDEAAAAIZnJlZQAAAvhtZGF0AAACnwYF//+b3EXpvebZSLeW"
    "LNgg2SPu73gyNjQgLSBjb3JlIDE2NSAtIEguMjY0L01QRUctNCBBVkMgY29kZWMgLSBDb3B5bGVmdCAyMDAzLTIw"
    "MjUgLSBodHRwOi8vd3d3LnZpZGVvbGFuLm9yZy94MjY0Lmh0bWwgLSBvcHRpb25zOiBjYWJhYz0xIHJlZj0zIGRl"
    "YmxvY2s9MTowOjAgYW5hbHlzZT0weDM6MHgxMTMgbWU9aGV4IHN1Ym1lPTcgcHN5PTEgcHN5X3JkPTEuMDA6MC4w"
    "MCBtaXhlZF9yZWY9MSBtZV9yYW5nZT0xNiBjaHJvbWFfbWU9MSB0cmVsbGlzPTEgOHg4ZGN0PTEgY3FtPTAgZGVh"
    "ZHpvbmU9MjEsMTEgZmFzdF9wc2tpcD0xIGNocm9tYV9xcF9vZmZzZXQ9LTIgdGhyZWFkcz0xIGxvb2thaGVhZF90"
    "aHJlYWRzPTEgc2xpY2VkX3RocmVhZHM9MCBucj0wIGRlY2ltYXRlPTEgaW50ZXJsYWNlZD0wIGJsdXJheV9jb21w"
    "YXQ9MCBjb25zdHJhaW5lZF9pbnRyYT0wIGJmcmFtZXM9MyBiX3B5cmFtaWQ9MiBiX2FkYXB0PTEgYl9iaWFzPTAg"
    "ZGlyZWN0PTEgd2VpZ2h0Yj0xIG9wZW5fZ29wPTAgd2VpZ2h0cD0yIGtleWludD0yNTAga2V5aW50X21pbj04IHNj"
    "ZW5lY3V0PTQwIGludHJhX3JlZnJlc2g9MCByY19sb29rYWhlYWQ9NDAgcmM9Y3JmIG1idHJlZT0xIGNyZj0yMy4w"
    "IHFjb21wPTAuNjAgcXBtaW49MCBxcG1heD02OSBxcHN0ZXA9NCBpcF9yYXRpbz0xLjQwIGFxPTE6MS4wMACAAAAA"
    "I2WIhAAQ//7mwPmWTh+N/w6+6O9bSLlJeKSOrCiJeV3ezaIdAAAACkGaI2xDv/6p06AAAAAIQZ5BeId/CvkAAAAI"
    "AZ5iakO/CvgAAAaibW9vdgAAAGxtdmhkAAAAAAAAAAAAAAAAAAAD6AAAAfQAAQAAAQAAAAAAAAAAAAAAAAEAAAAA"
    "AAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAgAAAnt0cmFr"
    "AAAAXHRraGQAAAADAAAAAAAAAAAAAAABAAAAAAAAAfQAAAAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAAB"
    "AAAAAAAAAAAAAAAAAABAAAAAAEAAAAAwAAAAAAAkZWR0cwAAABxlbHN0AAAAAAAAAAEAAAH0AAAQAAABAAAAAAHz"
    "bWRpYQAAACBtZGhkAAAAAAAAAAAAAAAAAABAAAAAKABVxAAAAAAALWhkbHIAAAAAAAAAAHZpZGUAAAAAAAAAAAAA"
    "AABWaWRlb0hhbmRsZXIAAAABnm1pbmYAAAAUdm1oZAAAAAEAAAAAAAAAAAAAACRkaW5mAAAAHGRyZWYAAAAAAAAA"
    "AQAAAAx1cmwgAAAAAQAAAV5zdGJsAAAArnN0c2QAAAAAAAAAAQAAAJ5hdmMxAAAAAAAAAAEAAAAAAAAAAAAAAAAA"
    "AAAAAEAAMABIAAAASAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGP//AAAANGF2Y0MB"
    "ZAAK/+EAF2dkAAqs2UR6EAAAAwAQAAADAQDxIllgAQAGaOvjyyLA/fj4AAAAABRidHJ0AAAAAAAALwAAAAAAAAAA"
    "GHN0dHMAAAAAAAAAAQAAAAQAAAgAAAAAFHN0c3MAAAAAAAAAAQAAAAEAAAAoY3R0cwAAAAAAAAADAAAAAQAAEAAA"
    "AAABAAAgAAAAAAIAAAgAAAAAHHN0c2MAAAAAAAAAAQAAAAEAAAAEAAAAAQAAACRzdHN6AAAAAAAAAAAAAAAEAAAC"
    "ygAAAA4AAAAMAAAADAAAABRzdGNvAAAAAAAAAAEAAAAwAAADs3VkdGEAAAOrbWV0YQAAAAAAAAAhaGRscgAAAAAA"
    "AAAAbWR0YQAAAAAAAAAAAAAAAAAAAAAta2V5cwAAAAAAAAACAAAADm1kdGFwcm9tcHQAAAAPbWR0YWVuY29kZXIA"
    "AANRaWxzdAAAAyQAAAABAAADHGRhdGEAAAABAAAAAHsiMSI6IHsiY2xhc3NfdHlwZSI6ICJFbXB0eUltYWdlIiwg"
    "ImlucHV0cyI6IHsid2lkdGgiOiA2NCwgImhlaWdodCI6IDQ4LCAiYmF0Y2hfc2l6ZSI6IDQsICJjb2xvciI6IDMz"
    "Njg2MDF9fSwgIjIiOiB7ImNsYXNzX3R5cGUiOiAiQ3JlYXRlVmlkZW8iLCAiaW5wdXRzIjogeyJpbWFnZXMiOiBb"
    "IjEiLCAwXSwgImZwcyI6IDguMH19LCAiMyI6IHsiY2xhc3NfdHlwZSI6ICJTYXZlVmlkZW8iLCAiaW5wdXRzIjog"
    "eyJ2aWRlbyI6IFsiMiIsIDBdLCAiZmlsZW5hbWVfcHJlZml4IjogInZpZGVvL0NvbWZ5VUkiLCAiZm9ybWF0Ijog"
    "ImF1dG8iLCAiY29kZWMiOiAiYXV0byJ9fSwgIjQiOiB7ImNsYXNzX3R5cGUiOiAiRW1wdHlMYXRlbnRJbWFnZSIs"
    "ICJpbnB1dHMiOiB7IndpZHRoIjogNjQsICJoZWlnaHQiOiA2NCwgImJhdGNoX3NpemUiOiAyfX0sICI1IjogeyJj"
    "bGFzc190eXBlIjogIlNhdmVMYXRlbnQiLCAiaW5wdXRzIjogeyJzYW1wbGVzIjogWyI0IiwgMF0sICJmaWxlbmFt"
    "ZV9wcmVmaXgiOiAibGF0ZW50cy9Db21meVVJIn19LCAiNiI6IHsiY2xhc3NfdHlwZSI6ICJMb2FkQXVkaW8iLCAi"
    "aW5wdXRzIjogeyJhdWRpbyI6ICJ0b25lLndhdiJ9LCAiaXNfY2hhbmdlZCI6IFsiYTBiMGM4NWJlY2IxZTcyN2M3"
    "YzI4ZTY1ZGUwMzg5M2I0ZDBhYWVhNDgzYjBiODk5NTUyOGM2ODIyOGVlNDUwMyJdfSwgIjciOiB7ImNsYXNzX3R5"
    "cGUiOiAiU2F2ZUF1ZGlvIiwgImlucHV0cyI6IHsiYXVkaW8iOiBbIjYiLCAwXSwgImZpbGVuYW1lX3ByZWZpeCI6"
    "ICJhdWRpby9Db21meVVJIn19fQAAACUAAAACAAAAHWRhdGEAAAABAAAAAExhdmY2Mi4xMi4xMDI="
)
"""What ComfyUI 0.3.64's SaveVideo wrote for CreateVideo of 4 frames, 64×48, 8 fps."""

FLAC = base64.b64decode(
    "ZkxhQwAAACICQAJAAAANAAANAfQA8AAAAZBrQxvy2nyTErPlwh5n9lkbhAAALg0AAABMYXZmNjIuMTIuMTAyAQAA"
    "ABUAAABlbmNvZGVyPUxhdmY2Mi4xMi4xMDL/+HQIAAGPJAAAAH1f"
)
"""A FLAC of 400 samples of silence (8 kHz, mono), as PyAV writes it."""


def latent_file(latent: Mapping[str, Any]) -> bytes:
    """A SaveLatent file for a fake latent (`width`, `height`, `batch`): zeros, 4 channels."""
    shape = [int(latent["batch"]), 4, int(latent["height"]) // 8, int(latent["width"]) // 8]
    size = 4 * shape[0] * shape[1] * shape[2] * shape[3]
    header: dict[str, Any] = {
        "__metadata__": {"format": "pt"},
        "latent_format_version_0": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
        "latent_tensor": {"dtype": "F32", "shape": shape, "data_offsets": [0, size]},
    }
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + bytes(size)
