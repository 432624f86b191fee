# ruff: noqa: F811 - the fixtures of test_node are imported, then named as arguments
"""The Remote Dispatch node's outputs beyond IMAGE: MASK, LATENT, VIDEO and AUDIO, from
what a template saves on the peer (SaveLatent, SaveVideo, SaveAudio), made only when the
graph uses them. Against fake peers whose files are real ones (see `testing/_media.py`)."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import struct
from typing import Any

import pytest
from test_node import ROOT, Comfy, comfy, host_modules, torch  # noqa: F401

from dispatch_core.testing._media import FLAC, MP4, latent_file

import workflows

ROUTE = {"route": "edit", "server": "(route's servers)"}


def media_template() -> dict[str, Any]:
    """An image, a video of it, a latent and a sound: one of each save node."""
    workflow = workflows.invert(0x102030, width=16, height=8)
    workflow["10"] = {"class_type": "CreateVideo", "inputs": {"images": ["2", 0], "fps": 8.0}}
    workflow["11"] = {
        "class_type": "SaveVideo",
        "inputs": {
            "video": ["10", 0],
            "filename_prefix": "video/clip",
            "format": "auto",
            "codec": "auto",
        },
    }
    workflow["12"] = {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 64, "height": 32, "batch_size": 2},
    }
    workflow["13"] = {
        "class_type": "SaveLatent",
        "inputs": {"samples": ["12", 0], "filename_prefix": "latents/ComfyUI"},
    }
    workflow["14"] = {"class_type": "LoadAudio", "inputs": {"audio": "tone.flac"}}
    workflow["15"] = {
        "class_type": "SaveAudio",
        "inputs": {"audio": ["14", 0], "filename_prefix": "audio/ComfyUI"},
    }
    return workflow


def graph_using(*slots: int) -> dict[str, Any]:
    """A prompt in which node 42 (the Remote Dispatch node) feeds these output slots."""
    return {
        "42": {"class_type": "RemoteDispatch", "inputs": {}},
        **{str(100 + s): {"class_type": "Any", "inputs": {"x": ["42", s]}} for s in slots},
    }


def views(comfy: Comfy) -> int:
    return comfy.peers["edit"].requests.count(("GET", "/view"))


async def test_latent_video_and_audio_come_back_as_comfyuis_types(comfy: Comfy) -> None:
    comfy.peers["edit"].files.upload("input", "", "tone.flac", FLAC, True)
    comfy.service.templates.save("media", media_template())
    await comfy.execute("RemoteDispatch", template="media", graph=graph_using(2, 3, 4, 5), **ROUTE)
    outputs = comfy.outputs
    assert outputs is not None and comfy.ui is not None
    assert tuple(outputs["images"].shape) == (1, 8, 16, 3)
    assert tuple(outputs["mask"].shape) == (1, 8, 16) and not outputs["mask"].any()  # no alpha
    samples = outputs["latent"]["samples"]
    assert samples.dtype == torch.float32 and tuple(samples.shape) == (2, 4, 4, 8)
    video = outputs["video"]
    assert await asyncio.to_thread(video.read) == MP4  # the peer's file, kept on this disk
    assert video.get_stream_source().endswith(".mp4")
    audio = outputs["audio"]
    assert tuple(audio["waveform"].shape) == (1, 1, 400) and audio["sample_rate"] == 8000
    (shown,) = comfy.ui["images"]  # the video previews in place, as SaveVideo's does
    assert shown["type"] == "temp" and shown["filename"].endswith(".mp4")
    assert comfy.ui["animated"] == (True,)


async def test_outputs_nothing_uses_are_neither_fetched_nor_made(comfy: Comfy) -> None:
    comfy.peers["edit"].files.upload("input", "", "tone.flac", FLAC, True)
    comfy.service.templates.save("media", media_template())
    await comfy.execute("RemoteDispatch", template="media", graph=graph_using(0), **ROUTE)
    assert comfy.outputs is not None
    assert [comfy.outputs[k] for k in ("mask", "latent", "video", "audio")] == [None] * 4
    assert views(comfy) == 1  # the image only


@pytest.mark.parametrize(
    ("slot", "saver"),
    [(3, "SaveLatent"), (4, r"SaveVideo \(or SaveWEBM\)"), (5, "SaveAudio")],
)
async def test_a_connected_output_the_template_does_not_make_says_so(
    comfy: Comfy, slot: int, saver: str
) -> None:
    comfy.service.templates.save("invert", workflows.invert())
    kind = ["latent", "video", "audio"][slot - 3]
    message = (
        f"the '{kind}' output is connected, but template 'invert' returned no {kind} file: "
        f"end the template with {saver}"
    )
    with pytest.raises(Exception, match=message):
        await comfy.execute("RemoteDispatch", template="invert", graph=graph_using(slot), **ROUTE)


def media_module() -> Any:
    """`nodes/media.py` alone: it imports nothing of the package."""
    spec = importlib.util.spec_from_file_location("dispatch_media", ROOT / "nodes" / "media.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_mask_is_one_minus_alpha_as_loadimage_makes_it() -> None:
    from PIL import Image

    picture = Image.new("RGBA", (3, 2), (10, 20, 30, 0))
    picture.putpixel((1, 0), (10, 20, 30, 255))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    mask = media_module().to_masks([("a", buffer.getvalue())])
    assert mask.tolist() == [[[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]]


def safetensors(header: Any, body: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


TENSOR = {"dtype": "F32", "shape": [1, 4, 1, 1], "data_offsets": [0, 16]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a latent file ComfyUI can read"),
        (struct.pack("<Q", 2**40), "bad header"),
        (safetensors(b"{not json"), "bad header"),
        (safetensors([1, 2]), "bad header"),
        (safetensors({"other": TENSOR}, bytes(16)), "no 'latent_tensor'"),
        (safetensors({"latent_tensor": TENSOR}, bytes(8)), "does not fit the file"),
        (
            safetensors({"latent_tensor": TENSOR | {"dtype": "I64"}}, bytes(16)),
            "not one ComfyUI writes",
        ),
        (
            safetensors({"latent_tensor": TENSOR | {"shape": [-1]}}, bytes(16)),
            "not one ComfyUI writes",
        ),
        (
            safetensors({"latent_tensor": TENSOR | {"data_offsets": [8, 4]}}, bytes(16)),
            "does not fit",
        ),
        (
            safetensors({"latent_tensor": TENSOR | {"shape": [2**40, 2**40]}}, bytes(16)),
            "does not fit",
        ),
    ],
)
def test_a_broken_latent_file_is_refused_by_name(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=f"peer.latent: .*{message}"):
        media_module().to_latent([("peer.latent", data)])


def test_a_latent_reads_as_loadlatent_reads_it() -> None:
    samples = media_module().to_latent([("a", latent_file({"batch": 2, "width": 16, "height": 8}))])
    assert tuple(samples["samples"].shape) == (2, 4, 1, 2)
