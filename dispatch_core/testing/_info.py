"""What the fake peer says about itself: object_info with its model lists, system stats."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from .._inventory import model_folder
from .._workflow_checks import shipped_object_info

__all__ = ["FEATURES", "MAX_UPLOAD", "MODEL_FOLDERS", "object_info", "system_stats"]

MAX_UPLOAD = 100 * 1024 * 1024  # ComfyUI's default --max-upload-size
FEATURES = {"supports_preview_metadata": True, "max_upload_size": MAX_UPLOAD}
# The model folders a real /models lists.
MODEL_FOLDERS = (
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
)
_GIB = 1024**3
_AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".mp4", ".webm")


def object_info(models: Mapping[str, list[str]], input_files: list[str]) -> dict[str, Any]:
    """The shipped object_info with the peer's model lists and input files in the combos."""
    info = copy.deepcopy(shipped_object_info())
    for node in info.values():
        for section in (node.get("input") or {}).values():
            if isinstance(section, dict):
                for name, config in section.items():
                    _fill(name, config, models, input_files)
    return info


def _fill(name: str, config: Any, models: Mapping[str, list[str]], input_files: list[str]) -> None:
    if not isinstance(config, list) or not config:
        return
    folder = model_folder(name)
    options = config[1] if len(config) > 1 and isinstance(config[1], dict) else {}
    if options.get("image_upload"):
        config[0] = list(input_files)
    elif options.get("audio_upload"):  # LoadAudio lists audio (and video) files
        config[0] = [n for n in input_files if n.lower().endswith(_AUDIO_SUFFIXES)]
    elif folder and isinstance(config[0], list):
        config[0] = sorted(models.get(folder, []))
    elif folder and config[0] == "COMBO":
        options["options"] = sorted(models.get(folder, []))


def system_stats(port: int, flags: Sequence[str] = ()) -> dict[str, Any]:
    """The shape of a real /system_stats, for a CPU-only peer with 8 GiB of fake VRAM,
    started with `flags` besides its port."""
    system = {
        "os": "posix",
        "ram_total": 16 * _GIB,
        "ram_free": 12 * _GIB,
        "comfyui_version": "0.3.64",
        "required_frontend_version": "1.27.10",
        "installed_templates_version": "0.1.95",
        "required_templates_version": "0.1.95",
        "python_version": "3.11.7 (fake)",
        "pytorch_version": "fake",
        "embedded_python": False,
        "argv": ["main.py", "--fake", "--port", str(port), *flags],
    }
    device = {
        "name": "fake",
        "type": "cpu",
        "index": None,
        "vram_total": 8 * _GIB,
        "vram_free": 7 * _GIB,
        "torch_vram_total": 8 * _GIB,
        "torch_vram_free": 7 * _GIB,
    }
    return {"system": system, "devices": [device]}
