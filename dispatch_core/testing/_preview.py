"""Sampler previews as ComfyUI sends them: binary WebSocket frames, not JSON.

A sampler's every step sends one when the server runs with `--preview-method` (ComfyUI's
default, `none`, sends none): type 4 (`PREVIEW_IMAGE_WITH_METADATA`: a big-endian length,
metadata JSON naming the prompt and node, then the JPEG) to a client whose first frame
announced `supports_preview_metadata`, else type 1 (`PREVIEW_IMAGE`: image type 1 = JPEG,
then the JPEG). Held to `tests/protocol/run_previews*.json`, recorded from ComfyUI 0.3.64.
"""

from __future__ import annotations

import base64
import json
import struct

__all__ = ["PREVIEW_JPEG", "SAMPLERS", "legacy_frame", "metadata_frame"]

SAMPLERS = frozenset({"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"})
"""The nodes whose steps send previews (latent_preview.prepare_callback)."""

PREVIEW_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAIBAQEBAQIBAQECAgICAgQDAgICAgUEBAMEBgUGBgYFBgYGBwkIBgcJ"
    "BwYGCAsICQoKCgoKBggLDAsKDAkKCgr/2wBDAQICAgICAgUDAwUKBwYHCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoK"
    "CgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgr/wAARCABAAEADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAA"
    "AAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAk"
    "M2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKT"
    "lJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QA"
    "HwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdh"
    "cRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hp"
    "anN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk"
    "5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDxuiiiv2w/IwooooAKKKKACiiigAooooAKKKKACiiigAooooAK"
    "KKKACiiigAooooAKKKKACiiigAooooAKKKKACiiigD//2Q=="
)
"""A 64×64 JFIF JPEG of one colour, quality 95, as PIL writes it (what ComfyUI's preview
encoder uses): the picture every fake preview shows."""


def metadata_frame(prompt_id: str, node_id: str) -> bytes:
    """Type 4, with the metadata keys in ComfyUI's order (server.send_image_with_metadata)."""
    metadata = {
        "node_id": node_id,
        "prompt_id": prompt_id,
        "display_node_id": node_id,
        "parent_node_id": None,
        "real_node_id": node_id,
        "image_type": "image/jpeg",
    }
    text = json.dumps(metadata).encode()
    return struct.pack(">II", 4, len(text)) + text + PREVIEW_JPEG


def legacy_frame() -> bytes:
    """Type 1: image type 1 (JPEG), then the picture (server.send_image)."""
    return struct.pack(">II", 1, 1) + PREVIEW_JPEG
