"""Stand-in for `comfy_extras.nodes_audio.load` (0.3.64: PyAV decodes the file). Decoding
FLAC needs PyAV, which the tests do without: this reads the FLAC stream header only (its
sample rate, channels and sample count) and answers silence of that shape, which is what
the fake peer's FLAC holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

loaded: list[str] = []
"""Every path given to `load`."""


def load(filepath: str) -> tuple[Any, int]:
    import torch

    data = Path(filepath).read_bytes()
    if data[:4] != b"fLaC" or data[8:12] == b"":
        raise ValueError("No audio stream found in the file.")
    info = int.from_bytes(data[18:26], "big")  # STREAMINFO: rate 20 bits, channels 3, ...
    rate, channels, samples = info >> 44, ((info >> 41) & 7) + 1, info & (2**36 - 1)
    loaded.append(filepath)
    return torch.zeros((channels, samples)), rate
