"""The fake peer's tiny image model: what each node class computes, in pure Python.

Images are RGB buffers (masks are gray ones) transformed with whole-row byte operations,
so outputs depend on the inputs (prompt, seed, colour, uploaded pixels) while staying
fast at any size. A generation chain yields a solid colour hashed from everything that
would change a real sample.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._files import FileStore
from ._latent import LatentFileError, read_latent
from ._media import FLAC, MP4, latent_file
from ._pixels import center_crop, color, crop, gray, jpeg_size, resize
from ._png import Image, PNGError, read_png

__all__ = [
    "Context",
    "NodeFailure",
    "describe",
    "model_file",
    "progress_steps",
    "run_node",
    "time_weight",
]

_INVERT = bytes(255 - i for i in range(256))
Batch = list[Image]
Outputs = tuple[Any, ...]
UI = dict[str, Any]
_MODEL_INPUTS = {
    "CheckpointLoaderSimple": "ckpt_name",
    "LoraLoader": "lora_name",
    "UpscaleModelLoader": "model_name",
}
_WEIGHTS = {
    "KSampler": 8.0,
    "KSamplerAdvanced": 8.0,
    "ImageUpscaleWithModel": 4.0,
    "ImageBlur": 4.0,
    "VAEDecode": 1.0,
    "VAEEncode": 1.0,
}


class NodeFailure(Exception):
    """A node raised while running: becomes `execution_error` with this type and message."""

    def __init__(self, exception_type: str, message: str):
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message


@dataclass
class Context:
    """What node functions may read from the peer and the prompt."""

    models: Mapping[str, list[str]]
    files: FileStore
    prompt: Mapping[str, Any] = field(default_factory=dict)
    extra_pnginfo: Mapping[str, Any] | None = None


def run_node(
    class_type: str, inputs: Mapping[str, Any], context: Context
) -> tuple[Outputs, UI | None]:
    """The outputs of one node as a tuple like RETURN_TYPES, and its UI dict if it has one."""
    saver = _SAVERS.get(class_type)
    if saver is not None:
        return (), saver(inputs, context)
    function = _NODES.get(class_type)
    if function is None:
        return (_digest(class_type, inputs),) * 8, None
    return function(inputs, context), None


def model_file(class_type: str, inputs: Mapping[str, Any]) -> str | None:
    """The model file a loader node reads (a checkpoint, a LoRA, an upscale model)."""
    name = inputs.get(_MODEL_INPUTS.get(class_type, ""))
    return name if isinstance(name, str) else None


def progress_steps(class_type: str, inputs: Mapping[str, Any]) -> int:
    """How many ProgressBar updates a node sends: samplers per step, upscaling per tile."""
    if class_type == "KSampler":
        return int(inputs.get("steps", 0))
    if class_type == "KSamplerAdvanced":
        steps = int(inputs.get("steps", 0))
        return max(
            min(int(inputs.get("end_at_step", steps)), steps) - int(inputs["start_at_step"]), 0
        )
    if class_type == "ImageUpscaleWithModel":
        tiles = sum(math.ceil(m.height / 480) * math.ceil(m.width / 480) for m in inputs["image"])
        return max(tiles, 1)
    return 0


def time_weight(class_type: str) -> float:
    """How much of a prompt's time a node takes: loaders and savers next to nothing."""
    return _WEIGHTS.get(class_type, 0.0)


def describe(value: Any) -> Any:
    """execution.py's format_value: plain values as they are, the rest as a string."""
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    if isinstance(value, list) and value and isinstance(value[0], Image):
        first = value[0]
        return f"tensor of shape [{len(value)}, {first.height}, {first.width}, 3]"
    return str(value)


# -- helpers ---------------------------------------------------------------------------


def _digest(*parts: Any) -> bytes:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()


def _sniff(data: bytes, name: str) -> Image:
    """Formats PIL opens but this codec does not decode: a solid image of the right size."""
    size = None
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        size = struct.unpack("<HH", data[6:10])
    elif data[:2] == b"\xff\xd8":
        size = jpeg_size(data)
    if not size or not all(size):
        raise NodeFailure("PIL.UnidentifiedImageError", f"cannot identify image file {name!r}")
    r, g, b = hashlib.sha256(data).digest()[:3]
    return Image.solid(size[0], size[1], (r, g, b))


# -- nodes -----------------------------------------------------------------------------


def _empty_image(i: Mapping[str, Any], _: Context) -> Outputs:
    image = Image.solid(int(i["width"]), int(i["height"]), color(int(i.get("color", 0))))
    return ([image] * int(i.get("batch_size", 1)),)


def _invert(i: Mapping[str, Any], _: Context) -> Outputs:
    return ([Image(m.width, m.height, m.pixels.translate(_INVERT)) for m in i["image"]],)


def _read_input(name: str, context: Context) -> tuple[Image, bytes | None]:
    data = context.files.read_input(name)
    if data is None:
        raise NodeFailure("FileNotFoundError", f"[Errno 2] No such file or directory: {name!r}")
    try:
        return read_png(data)
    except PNGError:
        return _sniff(data, name), None


def _load_image(i: Mapping[str, Any], context: Context) -> Outputs:
    image, alpha = _read_input(str(i["image"]), context)
    if alpha is None:  # LoadImage's mask without alpha: zeros(64, 64)
        mask = Image.solid(64, 64, (0, 0, 0))
    else:  # 1 - alpha
        mask = gray(image.width, image.height, alpha.translate(_INVERT))
    return ([image], [mask])


def _load_image_mask(i: Mapping[str, Any], context: Context) -> Outputs:
    image, alpha = _read_input(str(i["image"]), context)
    channel = str(i["channel"])
    if channel == "alpha":
        if alpha is None:
            return ([Image.solid(64, 64, (0, 0, 0))],)
        return ([gray(image.width, image.height, alpha.translate(_INVERT))],)
    plane = image.pixels[["red", "green", "blue"].index(channel) :: 3]
    return ([gray(image.width, image.height, plane)],)


def _image_to_mask(i: Mapping[str, Any], _: Context) -> Outputs:
    channel = ["red", "green", "blue", "alpha"].index(i["channel"])
    if channel == 3:  # IMAGE tensors have three channels
        raise NodeFailure("IndexError", "index 3 is out of bounds for dimension 3 with size 3\n")
    return ([gray(m.width, m.height, m.pixels[channel::3]) for m in i["image"]],)


def _solid_mask(i: Mapping[str, Any], _: Context) -> Outputs:
    value = max(0, min(255, round(float(i.get("value", 1.0)) * 255)))
    return ([Image.solid(int(i["width"]), int(i["height"]), (value, value, value))],)


def _checkpoint(i: Mapping[str, Any], _: Context) -> Outputs:
    name = i["ckpt_name"]
    return ({"model": name}, {"clip": name}, {"vae": name})


def _lora(i: Mapping[str, Any], _: Context) -> Outputs:
    lora = [i["lora_name"], i.get("strength_model"), i.get("strength_clip")]
    return ({**i["model"], "lora": lora}, {**i["clip"], "lora": lora})


def _upscale_model(i: Mapping[str, Any], context: Context) -> Outputs:
    name = str(i["model_name"])
    if name not in context.models.get("upscale_models", []):
        raise NodeFailure(
            "FileNotFoundError",
            f"Model in folder 'upscale_models' with filename '{name}' not found.\n",
        )
    found = re.search(r"(\d+)x|x(\d+)", name.lower())
    scale = int(found.group(1) or found.group(2)) if found else 4
    return ({"upscale_model": name, "scale": scale},)


def _upscale(i: Mapping[str, Any], _: Context) -> Outputs:
    scale = int(i["upscale_model"]["scale"])
    return ([resize(m, m.width * scale, m.height * scale) for m in i["image"]],)


def _encode(i: Mapping[str, Any], _: Context) -> Outputs:
    return ([[i["text"], i["clip"]]],)


def _empty_latent(i: Mapping[str, Any], _: Context) -> Outputs:
    width, height = int(i["width"]) // 8 * 8, int(i["height"]) // 8 * 8
    return ({"width": width, "height": height, "batch": int(i.get("batch_size", 1)), "seed": None},)


def _sample(i: Mapping[str, Any], _: Context) -> Outputs:
    latent = dict(i["latent_image"])
    seed = i.get("seed", i.get("noise_seed"))
    keys = ("steps", "cfg", "sampler_name", "scheduler", "denoise", "start_at_step", "end_at_step")
    latent["seed"] = _digest(
        seed, i["positive"], i["negative"], i["model"], latent.get("seed"), [i.get(k) for k in keys]
    ).hex()
    return (latent,)


def _decode(i: Mapping[str, Any], _: Context) -> Outputs:
    latent = i["samples"]
    images = []
    for index in range(latent["batch"]):
        r, g, b = _digest(latent["seed"], i["vae"], index)[:3]
        images.append(Image.solid(latent["width"], latent["height"], (r, g, b)))
    return (images,)


def _vae_encode(i: Mapping[str, Any], _: Context) -> Outputs:
    first = i["pixels"][0]
    seed = _digest([hashlib.sha256(m.pixels).hexdigest() for m in i["pixels"]]).hex()
    width, height = first.width // 8 * 8, first.height // 8 * 8
    return ({"width": width, "height": height, "batch": len(i["pixels"]), "seed": seed},)


def _image_scale(i: Mapping[str, Any], _: Context) -> Outputs:
    width, height = int(i["width"]), int(i["height"])
    if width == 0 and height == 0:
        return (i["image"],)
    out = []
    for m in i["image"]:
        w = width or max(1, round(m.width * height / m.height))
        h = height or max(1, round(m.height * width / m.width))
        if i.get("crop") == "center":
            m = center_crop(m, w / h)
        out.append(resize(m, w, h))
    return (out,)


def _scale_by(i: Mapping[str, Any], _: Context) -> Outputs:
    factor = float(i["scale_by"])
    return ([resize(m, round(m.width * factor), round(m.height * factor)) for m in i["image"]],)


def _crop(i: Mapping[str, Any], _: Context) -> Outputs:
    x, y = int(i["x"]), int(i["y"])
    return (
        [
            crop(m, min(x, m.width - 1), min(y, m.height - 1), int(i["width"]), int(i["height"]))
            for m in i["image"]
        ],
    )


def _batch(i: Mapping[str, Any], _: Context) -> Outputs:
    first = i["image1"][0]
    second = [resize(m, first.width, first.height) for m in i["image2"]]
    return (list(i["image1"]) + second,)


def _repeat(i: Mapping[str, Any], _: Context) -> Outputs:
    return (list(i["image"]) * int(i["amount"]),)


def _metadata(context: Context) -> dict[str, str]:
    """The PNG text chunks SaveImage writes: the prompt and each extra_pnginfo key."""
    text = {"prompt": json.dumps(context.prompt)}
    for key, value in (context.extra_pnginfo or {}).items():
        text[str(key)] = json.dumps(value)
    return text


def _save(i: Mapping[str, Any], context: Context) -> UI:
    return {"images": _write(context, "output", str(i.get("filename_prefix", "ComfyUI")), i)}


def _preview(i: Mapping[str, Any], context: Context) -> UI:
    return {"images": _write(context, "temp", context.files.temp_prefix, i)}


def _save_webp(i: Mapping[str, Any], context: Context) -> UI:
    """One .webp file per call in ComfyUI; here it holds the first frame as PNG bytes."""
    prefix = str(i.get("filename_prefix", "ComfyUI"))
    images = i["images"]
    try:
        saved = context.files.save("output", prefix, images[:1], extension="webp")
    except ValueError as error:
        raise NodeFailure("Exception", str(error)) from None
    return {"images": saved, "animated": [len(images) != 1]}


def _load_latent(i: Mapping[str, Any], context: Context) -> Outputs:
    name = str(i["latent"])
    data = context.files.read_input(name)
    if data is None:
        raise NodeFailure("FileNotFoundError", f"[Errno 2] No such file or directory: {name!r}")
    try:
        return (read_latent(data),)
    except LatentFileError as error:
        raise NodeFailure("SafetensorError", str(error)) from None


def _preview_any(i: Mapping[str, Any], _: Context) -> UI:
    """PreviewAny's text: a string as it is, numbers and booleans by str(), others as JSON."""
    source = i.get("source")
    if isinstance(source, str):
        return {"text": [source]}
    if isinstance(source, int | float | bool):
        return {"text": [str(source)]}
    return {"text": [json.dumps(describe(source))]}


def _write(context: Context, kind: str, prefix: str, i: Mapping[str, Any]) -> list[Any]:
    try:
        return context.files.save(kind, prefix, i["images"], text=_metadata(context))
    except ValueError as error:
        raise NodeFailure("Exception", str(error)) from None


def _save_file(prefix: str, extension: str, data: bytes, context: Context) -> dict[str, Any]:
    try:
        return context.files.save_file(prefix, extension, data)
    except ValueError as error:
        raise NodeFailure("Exception", str(error)) from None


def _save_latent(i: Mapping[str, Any], context: Context) -> UI:
    prefix = str(i.get("filename_prefix", "latents/ComfyUI"))
    return {"latents": [_save_file(prefix, "latent", latent_file(i["samples"]), context)]}


def _save_video(i: Mapping[str, Any], context: Context) -> UI:
    saved = _save_file(str(i.get("filename_prefix", "video/ComfyUI")), "mp4", MP4, context)
    return {"images": [saved], "animated": [True]}


def _save_audio(i: Mapping[str, Any], context: Context) -> UI:
    prefix = str(i.get("filename_prefix", "audio/ComfyUI"))
    return {"audio": [_save_file(prefix, "flac", FLAC, context)]}


def _load_audio(i: Mapping[str, Any], context: Context) -> Outputs:
    name = str(i["audio"])
    if context.files.read_input(name) is None:
        raise NodeFailure("FileNotFoundError", f"[Errno 2] No such file or directory: {name!r}")
    return ({"audio": name},)


_SAVERS: dict[str, Callable[[Mapping[str, Any], Context], UI]] = {
    "SaveImage": _save,
    "PreviewImage": _preview,
    "SaveAnimatedWEBP": _save_webp,
    "SaveLatent": _save_latent,
    "PreviewAny": _preview_any,
    "SaveVideo": _save_video,
    "SaveAudio": _save_audio,
}

_NODES: dict[str, Callable[[Mapping[str, Any], Context], Outputs]] = {
    "EmptyImage": _empty_image,
    "ImageInvert": _invert,
    "LoadImage": _load_image,
    "LoadImageMask": _load_image_mask,
    "LoadLatent": _load_latent,
    "ImageToMask": _image_to_mask,
    "MaskToImage": lambda i, _: (i["mask"],),
    "SolidMask": _solid_mask,
    "CheckpointLoaderSimple": _checkpoint,
    "LoraLoader": _lora,
    "UpscaleModelLoader": _upscale_model,
    "ImageUpscaleWithModel": _upscale,
    "CLIPTextEncode": _encode,
    "EmptyLatentImage": _empty_latent,
    "KSampler": _sample,
    "KSamplerAdvanced": _sample,
    "VAEDecode": _decode,
    "VAEEncode": _vae_encode,
    "ImageBlur": lambda i, _: (i["image"],),  # a blur keeps the size; solid images stay solid
    "ImageScale": _image_scale,
    "ImageScaleBy": _scale_by,
    "ImageCrop": _crop,
    "ImageBatch": _batch,
    "RepeatImageBatch": _repeat,
    "CreateVideo": lambda i, _: ({"frames": i["images"], "fps": i["fps"]},),
    "LoadAudio": _load_audio,
}
