"""API-format workflows the tests send to fake peers."""

from __future__ import annotations

from typing import Any


def invert(
    color: int = 0xFF0000, *, width: int = 16, height: int = 8, batch: int = 1
) -> dict[str, Any]:
    """EmptyImage → ImageInvert → SaveImage: the pixels are 0xFFFFFF - color."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "_meta": {"title": "Canvas"},
            "inputs": {"width": width, "height": height, "batch_size": batch, "color": color},
        },
        "2": {
            "class_type": "ImageInvert",
            "_meta": {"title": "Invert"},
            "inputs": {"image": ["1", 0]},
        },
        "3": {
            "class_type": "SaveImage",
            "_meta": {"title": "Save"},
            "inputs": {"images": ["2", 0], "filename_prefix": "test"},
        },
    }


def load_invert() -> dict[str, Any]:
    """LoadImage → ImageInvert → SaveImage: for uploads and chaining."""
    return {
        "1": {
            "class_type": "LoadImage",
            "_meta": {"title": "Input"},
            "inputs": {"image": "none.png"},
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "edit"}},
    }


def txt2img(text: str = "a red jacket", seed: int = 1, steps: int = 4) -> dict[str, Any]:
    """The classic SD chain; the fake peer hashes prompt and seed into the pixels."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "6": {
            "class_type": "CLIPTextEncode",
            "_meta": {"title": "Positive Prompt"},
            "inputs": {"text": text, "clip": ["4", 1]},
        },
        "7": {
            "class_type": "CLIPTextEncode",
            "_meta": {"title": "Negative Prompt"},
            "inputs": {"text": "blurry", "clip": ["4", 1]},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "gen"}},
    }


def fails_at_runtime() -> dict[str, Any]:
    """ImageToMask asks for the alpha of an RGB image: IndexError on the peer."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "alpha"}},
        "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
        "4": {
            "class_type": "SaveImage",
            "inputs": {"images": ["3", 0], "filename_prefix": "never"},
        },
    }
