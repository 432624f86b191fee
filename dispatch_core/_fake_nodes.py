"""The fake peer's tiny image model: what each node class computes, in pure Python.

Images are solid or simply transformed RGB buffers, so outputs depend on the inputs
(prompt, seed, colour, uploaded pixels) while staying fast at any size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._png import Image, PNGError, decode_png

_INVERT = bytes(255 - i for i in range(256))
Batch = list[Image]


class NodeFailure(Exception):
    """A node raised while running: becomes `execution_error` with this type and message."""

    def __init__(self, exception_type: str, message: str):
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message


@dataclass
class Context:
    """What node functions may read from the peer."""

    models: Mapping[str, list[str]]
    read_input: Callable[[str], bytes | None]


def _color(value: int) -> tuple[int, int, int]:
    return ((value >> 16) & 255, (value >> 8) & 255, value & 255)


def _digest(*parts: Any) -> bytes:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()


def run_node(class_type: str, inputs: Mapping[str, Any], context: Context) -> tuple[Any, ...]:
    """The outputs of one node, as a tuple like ComfyUI's RETURN_TYPES."""
    function = _NODES.get(class_type)
    if function is not None:
        return function(inputs, context)
    return (_digest(class_type, inputs),)


def _empty_image(i: Mapping[str, Any], _: Context) -> tuple[Any, ...]:
    image = Image.solid(int(i["width"]), int(i["height"]), _color(int(i.get("color", 0))))
    return ([image] * int(i.get("batch_size", 1)),)


def _invert(i: Mapping[str, Any], _: Context) -> tuple[Any, ...]:
    return ([Image(m.width, m.height, m.pixels.translate(_INVERT)) for m in i["image"]],)


def _load_image(i: Mapping[str, Any], context: Context) -> tuple[Any, ...]:
    name = str(i["image"])
    data = context.read_input(name)
    if data is None:
        raise NodeFailure("FileNotFoundError", f"Invalid image file: {name}")
    try:
        image = decode_png(data)
    except PNGError as error:  # what PIL's Image.open raises on such a file
        raise NodeFailure(
            "UnidentifiedImageError", f"cannot identify image file {name!r}: {error}"
        ) from None
    return ([image], [image])


def _image_to_mask(i: Mapping[str, Any], _: Context) -> tuple[Any, ...]:
    channel = ["red", "green", "blue", "alpha"].index(i["channel"])
    if channel == 3:
        raise NodeFailure("IndexError", "index 3 is out of bounds for dimension 3 with size 3\n")
    masks = []
    for m in i["image"]:
        gray = m.pixels[channel::3]
        masks.append(Image(m.width, m.height, bytes(b for v in gray for b in (v, v, v))))
    return (masks,)


def _solid_mask(i: Mapping[str, Any], _: Context) -> tuple[Any, ...]:
    value = round(float(i.get("value", 1.0)) * 255)
    return ([Image.solid(int(i["width"]), int(i["height"]), (value, value, value))],)


def _checkpoint(i: Mapping[str, Any], _: Context) -> tuple[Any, ...]:
    name = i["ckpt_name"]
    return ({"model": name}, {"clip": name}, {"vae": name})


def _lora(i: Mapping[str, Any], _: Context) -> tuple[Any, ...]:
    lora = [i["lora_name"], i.get("strength_model"), i.get("strength_clip")]
    return ({**i["model"], "lora": lora}, {**i["clip"], "lora": lora})


def _upscale_model(i: Mapping[str, Any], context: Context) -> tuple[Any, ...]:
    name = i["model_name"]
    if name not in context.models.get("upscale_models", []):
        raise NodeFailure(
            "FileNotFoundError",
            f"Model in folder 'upscale_models' with filename '{name}' not found.\n",
        )
    return ({"upscale_model": name},)


def _encode(i: Mapping[str, Any], _: Context) -> tuple[Any, ...]:
    return ([[i["text"], i["clip"]]],)


def _empty_latent(i: Mapping[str, Any], _: Context) -> tuple[Any, ...]:
    return (
        {
            "width": int(i["width"]),
            "height": int(i["height"]),
            "batch": int(i.get("batch_size", 1)),
            "seed": None,
        },
    )


def _sample(i: Mapping[str, Any], _: Context) -> tuple[Any, ...]:
    latent = dict(i["latent_image"])
    seed = i.get("seed", i.get("noise_seed"))
    keys = ("steps", "cfg", "sampler_name", "scheduler", "denoise")
    latent["seed"] = _digest(
        seed, i["positive"], i["negative"], i["model"], latent.get("seed"), [i.get(k) for k in keys]
    ).hex()
    return (latent,)


def _decode(i: Mapping[str, Any], _: Context) -> tuple[Any, ...]:
    latent = i["samples"]
    images = []
    for index in range(latent["batch"]):
        r, g, b = _digest(latent["seed"], i["vae"], index)[:3]
        images.append(Image.solid(latent["width"], latent["height"], (r, g, b)))
    return (images,)


def _vae_encode(i: Mapping[str, Any], _: Context) -> tuple[Any, ...]:
    first = i["pixels"][0]
    seed = _digest(first.width, first.height, hashlib.sha256(first.pixels).hexdigest()).hex()
    return (
        {"width": first.width, "height": first.height, "batch": len(i["pixels"]), "seed": seed},
    )


def _passthrough(i: Mapping[str, Any], _: Context) -> tuple[Any, ...]:
    return (i["image"],)


def _batch(i: Mapping[str, Any], _: Context) -> tuple[Any, ...]:
    return (list(i["image1"]) + list(i["image2"]),)


def _repeat(i: Mapping[str, Any], _: Context) -> tuple[Any, ...]:
    return (list(i["image"]) * int(i["amount"]),)


_NODES: dict[str, Callable[[Mapping[str, Any], Context], tuple[Any, ...]]] = {
    "EmptyImage": _empty_image,
    "ImageInvert": _invert,
    "LoadImage": _load_image,
    "LoadImageMask": _load_image,
    "ImageToMask": _image_to_mask,
    "MaskToImage": lambda i, _: (i["mask"],),
    "SolidMask": _solid_mask,
    "CheckpointLoaderSimple": _checkpoint,
    "LoraLoader": _lora,
    "UpscaleModelLoader": _upscale_model,
    "ImageUpscaleWithModel": _passthrough,
    "CLIPTextEncode": _encode,
    "EmptyLatentImage": _empty_latent,
    "KSampler": _sample,
    "KSamplerAdvanced": _sample,
    "VAEDecode": _decode,
    "VAEEncode": _vae_encode,
    "ImageBlur": _passthrough,
    "ImageScale": _passthrough,
    "ImageScaleBy": _passthrough,
    "ImageCrop": _passthrough,
    "ImageBatch": _batch,
    "RepeatImageBatch": _repeat,
}
