"""The peer's files as ComfyUI's other types: MASK, LATENT, VIDEO and AUDIO.

Each is made the way ComfyUI's own loaders make it from a file, so that a result from the
peer behaves as if it had been loaded here: a mask is LoadImage's (1 - alpha), a latent
LoadLatent's (a SaveLatent file), a video VideoFromFile's (a file on this disk), audio
LoadAudio's (ComfyUI's decoder, through PyAV). The peer's bytes are read here without
trust: a `.latent` file is parsed with its sizes checked, never unpickled.
"""

from __future__ import annotations

import io
import json
import math
import posixpath
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["KINDS", "kind_of", "to_audio", "to_latent", "to_masks", "to_video"]

KINDS = {
    ".latent": "latent",
    ".mp4": "video",
    ".webm": "video",
    ".mov": "video",
    ".mkv": "video",
    ".flac": "audio",
    ".wav": "audio",
    ".mp3": "audio",
    ".ogg": "audio",
    ".opus": "audio",
}
"""A file's suffix → the output it feeds; images are the IMAGE output's."""
MAX_LATENT_BYTES = 1024 * 1024 * 1024
_DTYPES = {"F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2)}


def kind_of(filename: str) -> str | None:
    return KINDS.get(posixpath.splitext(filename)[1].lower())


def to_masks(images: Sequence[tuple[str, bytes]]) -> Any:
    """One mask per image, as LoadImage makes it: 1 - alpha, or zeros without alpha."""
    import numpy as np
    import torch
    from PIL import Image

    masks = []
    for _, data in images:
        with Image.open(io.BytesIO(data)) as opened:
            if "A" in opened.getbands():
                alpha = np.asarray(opened.getchannel("A"), dtype=np.float32) / 255.0
                masks.append(1.0 - torch.from_numpy(alpha))
            else:
                masks.append(torch.zeros((opened.height, opened.width), dtype=torch.float32))
    if not masks:
        return torch.zeros((0, 64, 64), dtype=torch.float32)
    return torch.stack(masks)


def to_latent(files: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """LoadLatent's LATENT from SaveLatent files, their batches joined in order."""
    import torch

    parts = []
    for label, data in files:
        tensors = _read_safetensors(label, data)
        if "latent_tensor" not in tensors:
            raise ValueError(f"{label}: not a SaveLatent file (it has no 'latent_tensor')")
        scale = 1.0 if "latent_format_version_0" in tensors else 1.0 / 0.18215
        parts.append(tensors["latent_tensor"].float() * scale)
    shapes = {tuple(p.shape[1:]) for p in parts}
    if len(shapes) > 1:
        raise ValueError(f"the latents differ in size ({sorted(shapes)}): pick one output_node")
    return {"samples": torch.cat(parts)}


def _read_safetensors(label: str, data: bytes) -> dict[str, Any]:
    """The tensors of a safetensors file, every size checked against the bytes there are."""
    import torch

    if len(data) < 8 or len(data) > MAX_LATENT_BYTES:
        raise ValueError(f"{label}: not a latent file ComfyUI can read")
    (size,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + size]) if size <= 1024 * 1024 else None
    except ValueError:
        header = None
    if not isinstance(header, dict):
        raise ValueError(f"{label}: not a latent file ComfyUI can read (bad header)")
    body = data[8 + size :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        tensors[name] = _tensor(label, name, entry, body, torch)
    return tensors


def _tensor(label: str, name: str, entry: Any, body: bytes, torch: Any) -> Any:
    dtype, width = _DTYPES.get(str(entry.get("dtype")) if isinstance(entry, dict) else "", ("", 0))
    shape, span = entry.get("shape"), entry.get("data_offsets")
    if not dtype or not _ints(shape) or not _ints(span) or len(span) != 2:
        raise ValueError(f"{label}: tensor {name!r} is not one ComfyUI writes")
    start, end = span
    if not 0 <= start <= end <= len(body) or end - start != math.prod(shape) * width:
        raise ValueError(f"{label}: tensor {name!r} does not fit the file")
    if start == end:  # SaveLatent marks its format with an empty tensor
        return torch.empty(shape, dtype=getattr(torch, dtype))
    flat = torch.frombuffer(bytearray(body[start:end]), dtype=getattr(torch, dtype))
    return flat.reshape(shape)


def _ints(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and v >= 0 for v in value)


def to_video(path: Path) -> Any:
    """ComfyUI's VIDEO of a file on this disk (it is read when used, so it must stay)."""
    from comfy_api.latest import InputImpl

    return InputImpl.VideoFromFile(str(path))


def to_audio(path: Path) -> dict[str, Any]:
    """LoadAudio's AUDIO: `{"waveform": 1×C×T float32, "sample_rate": …}`."""
    from comfy_extras.nodes_audio import load

    waveform, sample_rate = load(str(path))
    return {"waveform": waveform.unsqueeze(0), "sample_rate": sample_rate}
