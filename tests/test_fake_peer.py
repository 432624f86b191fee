"""FakePeer's own behaviour, through a raw aiohttp client: runs, cache, files, validation,
errors, interrupts, the queue, restarts and fault injection. The conformance test holds it
to the recorded transcripts; this one covers what they do not show."""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from dispatch_core.testing import FakePeer
from dispatch_core.testing._png import Image, PNGError, decode_png, encode_png, read_png

import workflows

pytestmark = pytest.mark.timeout(10)
MODELS = {"checkpoints": ["sd15.safetensors"], "upscale_models": ["2x-fake.pth"]}
Frame = dict[str, Any]


@pytest.fixture
async def peer() -> AsyncIterator[FakePeer]:
    async with FakePeer(models=MODELS) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Listener:
    """A WebSocket client that keeps every frame and lets a test await the one it needs."""

    def __init__(self, http: aiohttp.ClientSession, peer: FakePeer, client_id: str):
        self.http, self.peer, self.client_id = http, peer, client_id
        self.frames: list[Frame] = []
        self._arrived = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def __aenter__(self) -> Listener:
        url = f"{self.peer.url}/ws"
        self.ws = await self.http.ws_connect(url, params={"clientId": self.client_id})
        self._reader = asyncio.create_task(self._read())
        await self.until(lambda f: f["type"] == "status")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.ws is not None and self._reader is not None
        await self.ws.close()
        await self._reader

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            async with self._arrived:
                self.frames.append(json.loads(message.data))
                self._arrived.notify_all()

    async def until(self, wanted: Callable[[Frame], bool], since: int = 0) -> Frame:
        """The first frame (from index `since`) that `wanted` accepts, once it has come."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: any(map(wanted, self.frames[since:])))
        return next(f for f in self.frames[since:] if wanted(f))

    async def done(self, prompt_id: str) -> list[Frame]:
        """The frames up to this prompt's `executing` null (ComfyUI's completion signal)."""
        last = await self.until(lambda f: is_done(f, prompt_id))
        return self.frames[: self.frames.index(last) + 1]


def is_done(frame: Frame, prompt_id: str) -> bool:
    data = frame["data"]
    return (
        frame["type"] == "executing"
        and data.get("node", 0) is None
        and (data.get("prompt_id") == prompt_id)
    )


def kinds(frames: list[Frame]) -> list[str]:
    """Frame types, with the node of `executing` and the count of `status`."""
    names = []
    for frame in frames:
        data = frame["data"]
        if frame["type"] == "executing":
            names.append(f"executing({data['node']})")
        elif frame["type"] == "status":
            names.append(f"status({data['status']['exec_info']['queue_remaining']})")
        else:
            names.append(frame["type"])
    return names


async def post_prompt(
    http: aiohttp.ClientSession, peer: FakePeer, prompt: dict[str, Any], **extra: Any
) -> tuple[int, Any]:
    async with http.post(peer.url + "/prompt", json={"prompt": prompt, **extra}) as response:
        return response.status, await response.json()


async def submit(
    http: aiohttp.ClientSession, peer: FakePeer, prompt: dict[str, Any], **extra: Any
) -> str:
    status, body = await post_prompt(http, peer, prompt, **extra)
    assert status == 200, body
    return str(body["prompt_id"])


async def get(http: aiohttp.ClientSession, url: str, **params: Any) -> Any:
    async with http.get(url, params=params) as response:
        assert response.status == 200
        return await response.json()


async def post(http: aiohttp.ClientSession, url: str, body: Any = None) -> int:
    async with http.post(url, json=body) as response:
        return response.status


async def history(http: aiohttp.ClientSession, peer: FakePeer, prompt_id: str) -> Any:
    await peer.idle()
    return (await get(http, f"{peer.url}/history/{prompt_id}"))[prompt_id]


async def view(http: aiohttp.ClientSession, peer: FakePeer, image: dict[str, str]) -> bytes:
    async with http.get(peer.url + "/view", params=image) as response:
        assert response.status == 200, image
        return await response.read()


async def upload(
    http: aiohttp.ClientSession, peer: FakePeer, data: bytes, name: str, **fields: str
) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=name)
    for key, value in fields.items():
        form.add_field(key, value)
    async with http.post(peer.url + "/upload/image", data=form) as response:
        body = await response.json() if response.status == 200 else await response.text()
        return response.status, body


# -- a run, frame by frame ----------------------------------------------------------------


async def test_a_run_sends_comfyuis_frames_and_writes_real_pngs(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    async with Listener(http, peer, "me") as socket:
        prompt_id = await submit(
            http, peer, workflows.invert(0x203040, width=5, height=3, batch=2), client_id="me"
        )
        frames = await socket.done(prompt_id)
    assert kinds(frames) == [
        "status(0)",
        "status(1)",
        "status(1)",
        "execution_start",
        "execution_cached",
        "progress_state",
        "executing(1)",
        "progress_state",
        "progress_state",
        "executing(2)",
        "progress_state",
        "progress_state",
        "executing(3)",
        "executed",
        "progress_state",
        "execution_success",
        "status(0)",
        "executing(None)",
    ]
    assert frames[0]["data"]["sid"] == "me"
    final_state = frames[-4]["data"]["nodes"]
    assert {n: s["state"] for n, s in final_state.items()} == dict.fromkeys("123", "finished")
    start = frames[3]["data"]
    assert abs(start["timestamp"] - time.time() * 1000) < 60_000  # milliseconds
    entry = await history(http, peer, prompt_id)
    assert entry["prompt"][1:] == [
        prompt_id,
        workflows.invert(0x203040, width=5, height=3, batch=2),
        {"client_id": "me"},
        ["3"],
    ]
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == [
        "execution_start",
        "execution_cached",
        "execution_success",
    ]
    images = entry["outputs"]["3"]["images"]
    assert images == [
        {"filename": "test_00001_.png", "subfolder": "", "type": "output"},
        {"filename": "test_00002_.png", "subfolder": "", "type": "output"},
    ]
    assert entry["meta"]["3"] == {
        "node_id": "3",
        "display_node": "3",
        "parent_node": None,
        "real_node_id": "3",
    }
    png = await view(http, peer, images[1])
    assert decode_png(png) == Image.solid(5, 3, (0xDF, 0xCF, 0xBF))
    assert b"tEXtprompt" in png  # SaveImage keeps the prompt in the PNG


async def test_a_cached_rerun_resends_the_old_files_and_writes_nothing(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    async with Listener(http, peer, "me") as socket:
        first = await submit(http, peer, workflows.invert(), client_id="me")
        await socket.done(first)
        mark = len(socket.frames)
        second = await submit(http, peer, workflows.invert(), client_id="me")
        frames = (await socket.done(second))[mark:]
    assert kinds(frames) == [
        "status(1)",
        "status(1)",
        "execution_start",
        "execution_cached",
        "executed",
        "progress_state",
        "execution_success",
        "status(0)",
        "executing(None)",
    ]
    assert frames[3]["data"]["nodes"] == ["1", "2", "3"]
    old, new = await history(http, peer, first), await history(http, peer, second)
    assert new["outputs"] == old["outputs"] == {"3": frames[4]["data"]["output"]}
    async with http.get(peer.url + "/view", params={"filename": "test_00002_.png"}) as response:
        assert response.status == 404  # nothing new was written

    renamed = workflows.invert()
    renamed["3"]["inputs"]["filename_prefix"] = "other"
    async with Listener(http, peer, "me") as socket:
        third = await submit(http, peer, renamed, client_id="me")
        frames = await socket.done(third)
    cached = next(f for f in frames if f["type"] == "execution_cached")
    assert cached["data"]["nodes"] == ["1", "2"]
    assert [f["data"]["node"] for f in frames if f["type"] == "executing"] == ["3", None]
    assert (await history(http, peer, third))["outputs"]["3"]["images"][0]["filename"] == (
        "other_00001_.png"
    )

    assert await post(http, peer.url + "/free", {"free_memory": True}) == 200
    async with Listener(http, peer, "me") as socket:
        fourth = await submit(http, peer, renamed, client_id="me")
        frames = await socket.done(fourth)
    assert next(f for f in frames if f["type"] == "execution_cached")["data"]["nodes"] == []


async def test_a_prompt_without_client_id_broadcasts_only_progress(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    async with Listener(http, peer, "observer") as socket:
        prompt_id = await submit(http, peer, workflows.txt2img(steps=3))
        await socket.until(
            lambda f: (
                f is not socket.frames[0]
                and f["type"] == "status"
                and f["data"]["status"]["exec_info"] == {"queue_remaining": 0}
            )
        )
    seen = {f["type"] for f in socket.frames}
    assert seen == {"status", "progress_state", "progress"}
    progress = [f["data"] for f in socket.frames if f["type"] == "progress"]
    assert progress == [
        {"value": step, "max": 3, "prompt_id": prompt_id, "node": "3"} for step in (1, 2, 3)
    ]


async def test_a_reconnecting_client_is_told_the_running_node(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    peer.job_seconds = 60
    async with Listener(http, peer, "me") as socket:
        prompt_id = await submit(http, peer, slow_blur(), client_id="me")
        await socket.until(lambda f: f["type"] == "executing" and f["data"]["node"] == "2")
    async with Listener(http, peer, "me") as again:
        reported = await again.until(lambda f: f["type"] == "executing")
    assert reported["data"] == {"node": "2"}  # no prompt_id in this one
    peer.job_seconds = 0
    assert (await history(http, peer, prompt_id))["status"]["completed"] is True


async def test_feature_flags_answer_only_a_first_frame(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(peer.url + "/api/ws", params={"clientId": "x"}) as ws:
        first = await ws.receive_json()
        await ws.send_str("not json")  # ignored, and does not count as the first frame
        await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        flags = await ws.receive_json()
    assert first == {
        "type": "status",
        "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "x"},
    }
    assert flags == {
        "type": "feature_flags",
        "data": {"supports_preview_metadata": True, "max_upload_size": 104857600},
    }


# -- the image model --------------------------------------------------------------------


async def test_generation_depends_on_prompt_seed_and_checkpoint(
    http: aiohttp.ClientSession,
) -> None:
    models = {"checkpoints": ["sd15.safetensors", "xl.safetensors"]}
    async with FakePeer(models=models) as peer:
        pixels = []
        for text, seed, ckpt in [
            ("a", 1, "sd15.safetensors"),
            ("a", 2, "sd15.safetensors"),
            ("b", 1, "sd15.safetensors"),
            ("a", 1, "xl.safetensors"),
            ("a", 1, "sd15.safetensors"),
        ]:
            prompt = workflows.txt2img(text, seed)
            prompt["4"]["inputs"]["ckpt_name"] = ckpt
            entry = await history(http, peer, await submit(http, peer, prompt))
            image = decode_png(await view(http, peer, entry["outputs"]["9"]["images"][0]))
            assert (image.width, image.height) == (64, 64)
            pixels.append(image.pixels)
    assert len(set(pixels[:4])) == 4 and pixels[0] == pixels[4]


def graph(*nodes: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """A prompt with nodes numbered from 1."""
    return {str(i): {"class_type": c, "inputs": n} for i, (c, n) in enumerate(nodes, 1)}


async def run_image(http: aiohttp.ClientSession, peer: FakePeer, prompt: dict[str, Any]) -> Any:
    entry = await history(http, peer, await submit(http, peer, prompt))
    assert entry["status"]["status_str"] == "success", entry["status"]
    (output,) = entry["outputs"].values()
    return [decode_png(await view(http, peer, i)) for i in output["images"]], output


CANVAS = ("EmptyImage", {"width": 8, "height": 4, "batch_size": 1, "color": 0x102030})


async def test_image_nodes_compute_what_their_inputs_imply(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    save = ("SaveImage", {"images": ["2", 0], "filename_prefix": "%width%x%height%/img"})
    scale = ("ImageScale", {"image": ["1", 0], "upscale_method": "nearest-exact"})
    (scaled,), output = await run_image(
        http,
        peer,
        graph(CANVAS, (scale[0], {**scale[1], "width": 0, "height": 8, "crop": "disabled"}), save),
    )
    assert (scaled.width, scaled.height) == (16, 8) and output["images"][0]["subfolder"] == "16x8"
    crop = ("ImageCrop", {"image": ["1", 0], "width": 3, "height": 2, "x": 6, "y": 3})
    (cropped,), _ = await run_image(http, peer, graph(CANVAS, crop, save))
    assert (cropped.width, cropped.height) == (2, 1)  # clamped to the image, like a slice
    upscale = graph(
        CANVAS,
        ("UpscaleModelLoader", {"model_name": "2x-fake.pth"}),
        ("ImageUpscaleWithModel", {"upscale_model": ["2", 0], "image": ["1", 0]}),
        ("PreviewImage", {"images": ["3", 0]}),
    )
    (upscaled,), output = await run_image(http, peer, upscale)
    assert upscaled == Image.solid(16, 8, (0x10, 0x20, 0x30))
    preview = output["images"][0]
    assert preview["type"] == "temp" and preview["filename"].startswith("ComfyUI_temp_")
    assert preview["filename"].endswith("_00001_.png") and len(preview["filename"]) == 29
    other = ("EmptyImage", {"width": 2, "height": 2, "batch_size": 2, "color": 0xFFFFFF})
    batch = ("ImageBatch", {"image1": ["1", 0], "image2": ["2", 0]})
    saved, _ = await run_image(
        http,
        peer,
        graph(CANVAS, other, batch, ("SaveImage", {"images": ["3", 0], "filename_prefix": "b"})),
    )
    assert saved[1:] == [Image.solid(8, 4, (255, 255, 255))] * 2  # resized to the first
    mask = graph(
        ("SolidMask", {"value": 0.5, "width": 3, "height": 2}),
        ("MaskToImage", {"mask": ["1", 0]}),
        ("SaveImage", {"images": ["2", 0], "filename_prefix": "m"}),
    )
    assert (await run_image(http, peer, mask))[0] == [Image.solid(3, 2, (128, 128, 128))]
    green = graph(
        CANVAS,
        ("ImageToMask", {"image": ["1", 0], "channel": "green"}),
        ("MaskToImage", {"mask": ["2", 0]}),
        ("SaveImage", {"images": ["3", 0], "filename_prefix": "g"}),
    )
    assert (await run_image(http, peer, green))[0] == [Image.solid(8, 4, (0x20, 0x20, 0x20))]


async def test_a_large_image_stays_fast(peer: FakePeer, http: aiohttp.ClientSession) -> None:
    started = time.perf_counter()
    big = workflows.invert(0x336699, width=1024, height=1024)
    (image,), _ = await run_image(http, peer, big)
    assert image == Image.solid(1024, 1024, (0xCC, 0x99, 0x66))
    assert time.perf_counter() - started < 5


# -- files ------------------------------------------------------------------------------


async def test_view_checks_paths_as_comfyui_does(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    entry = await history(http, peer, await submit(http, peer, workflows.invert(width=2, height=2)))
    image = entry["outputs"]["3"]["images"][0]
    async with http.get(peer.url + "/view", params={"filename": image["filename"]}) as response:
        assert response.headers["Content-Type"] == "image/png"  # type defaults to output
        assert response.headers["Content-Disposition"] == f'filename="{image["filename"]}"'
    annotated = {"filename": image["filename"] + " [output]", "type": "temp"}
    inner_directory = {"filename": "ignored/" + image["filename"]}  # basename only
    for params, status in [
        (annotated, 200),
        (inner_directory, 200),
        ({"filename": "../x.png"}, 400),
        ({"filename": "/etc/passwd"}, 400),
        ({"filename": ""}, 400),
        ({"filename": image["filename"], "type": "nope"}, 400),
        ({"filename": image["filename"], "subfolder": "../.."}, 403),
        ({"filename": "missing.png"}, 404),
        ({}, 404),
    ]:
        async with http.get(peer.url + "/view", params=params) as response:
            assert response.status == status, params


async def test_uploads_follow_comfyuis_naming(peer: FakePeer, http: aiohttp.ClientSession) -> None:
    one = encode_png(Image.solid(2, 2, (1, 2, 3)))
    two = encode_png(Image.solid(2, 2, (4, 5, 6)))
    assert await upload(http, peer, one, "up.png") == (
        200,
        {"name": "up.png", "subfolder": "", "type": "input"},
    )
    assert (await upload(http, peer, one, "up.png"))[1]["name"] == "up.png"  # same content
    assert (await upload(http, peer, two, "up.png"))[1]["name"] == "up (1).png"
    assert (await upload(http, peer, two, "up.png"))[1]["name"] == "up (1).png"
    assert (await upload(http, peer, two, "up.png", overwrite="true"))[1]["name"] == "up.png"
    answer = await upload(http, peer, one, "up.png", subfolder="dispatch/", type="temp")
    assert answer == (200, {"name": "up.png", "subfolder": "dispatch/", "type": "temp"})
    assert (await upload(http, peer, one, "../evil.png"))[1]["name"] == "..%2Fevil.png"
    assert (await upload(http, peer, one, "x.png", subfolder="../out"))[0] == 400
    assert await upload(http, peer, one, "x.png", type="nope") == (
        500,
        "500 Internal Server Error\n\nServer got itself in trouble",
    )
    async with http.post(peer.url + "/upload/image", json={"image": "x"}) as response:
        assert response.status == 400  # not multipart
    assert len(peer.uploads) == 7
    listed = await get(http, peer.url + "/object_info/LoadImage")
    names = listed["LoadImage"]["input"]["required"]["image"][0]
    assert names == ["..%2Fevil.png", "example.png", "up (1).png", "up.png"]  # top level only


async def test_load_image_reads_uploads_by_annotated_name(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    pixels = encode_png(Image.solid(3, 2, (10, 20, 30)))
    await upload(http, peer, pixels, "in.png", subfolder="d")
    await upload(http, peer, pixels, "t.png", type="temp")
    for name in ("d/in.png", "t.png [temp]"):
        prompt = workflows.load_invert()
        prompt["1"]["inputs"]["image"] = name
        (image,), _ = await run_image(http, peer, prompt)
        assert image == Image.solid(3, 2, (245, 235, 225)), name
    status, body = await post_prompt(http, peer, workflows.load_invert())
    assert status == 400
    assert body["node_errors"]["1"]["errors"] == [
        {
            "type": "custom_validation_failed",
            "message": "Custom validation failed for node",
            "details": "image - Invalid image file: none.png",
            "extra_info": {"input_name": "image"},
        }
    ]


async def test_a_reupload_under_the_same_name_is_not_served_from_cache(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    prompt = workflows.load_invert()
    prompt["1"]["inputs"]["image"] = "in.png"
    for color in ((0, 0, 0), (255, 255, 255)):
        await upload(http, peer, encode_png(Image.solid(1, 1, color)), "in.png", overwrite="1")
        (image,), _ = await run_image(http, peer, prompt)
        assert image.pixels == bytes(255 - c for c in color)


# -- validation -------------------------------------------------------------------------


def edited(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    prompt = workflows.invert()
    change(prompt)
    return prompt


def node_error(body: Any, node_id: str) -> dict[str, Any]:
    errors = body["node_errors"][node_id]["errors"]
    assert len(errors) == 1, errors
    return dict(errors[0])


VALUE_ERRORS = [
    (
        lambda p: p["1"]["inputs"].update(width="abc"),
        "1",
        {
            "type": "invalid_input_type",
            "message": "Failed to convert an input value to a INT value",
            "details": "width, abc, invalid literal for int() with base 10: 'abc'",
            "extra_info": {
                "input_name": "width",
                "input_config": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
                "received_value": "abc",
                "exception_message": "invalid literal for int() with base 10: 'abc'",
            },
        },
    ),
    (
        lambda p: p["1"]["inputs"].update(width=0),
        "1",
        {
            "type": "value_smaller_than_min",
            "message": "Value 0 smaller than min of 1",
            "details": "width",
            "extra_info": {
                "input_name": "width",
                "input_config": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
                "received_value": 0,
            },
        },
    ),
    (
        lambda p: p["1"]["inputs"].update(width=999999),
        "1",
        {
            "type": "value_bigger_than_max",
            "message": "Value 999999 bigger than max of 16384",
            "details": "width",
            "extra_info": {
                "input_name": "width",
                "input_config": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
                "received_value": 999999,
            },
        },
    ),
    (
        lambda p: p["3"]["inputs"].pop("filename_prefix"),
        "3",
        {
            "type": "required_input_missing",
            "message": "Required input is missing",
            "details": "filename_prefix",
            "extra_info": {"input_name": "filename_prefix"},
        },
    ),
    (
        lambda p: p["2"]["inputs"].update(image=["1", 0, 1]),
        "2",
        {
            "type": "bad_linked_input",
            "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
            "details": "image",
            "extra_info": {
                "input_name": "image",
                "input_config": ["IMAGE", {}],
                "received_value": ["1", 0, 1],
            },
        },
    ),
]


@pytest.mark.parametrize(("change", "node_id", "expected"), VALUE_ERRORS)
async def test_each_bad_value_is_refused_as_comfyui_refuses_it(
    change: Callable[[dict[str, Any]], object],
    node_id: str,
    expected: dict[str, Any],
    peer: FakePeer,
    http: aiohttp.ClientSession,
) -> None:
    status, body = await post_prompt(http, peer, edited(change))
    assert status == 400
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert node_error(body, node_id) == expected
    assert body["node_errors"][node_id]["dependent_outputs"] == ["3"]
    own = f"{expected['message']}: {expected['details']}" if node_id == "3" else ""
    assert body["error"]["details"] == own  # only the output's own errors are listed


async def test_graph_errors_are_refused_as_comfyui_refuses_them(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    unknown = edited(lambda p: p["2"].update(class_type="NoSuchNode"))
    assert (await post_prompt(http, peer, unknown)) == (
        400,
        {
            "error": {
                "type": "invalid_prompt",
                "message": "Cannot execute because node NoSuchNode does not exist.",
                "details": "Node ID '#2'",
                "extra_info": {},
            },
            "node_errors": {},
        },
    )
    classless = edited(lambda p: p["2"].pop("class_type"))
    _, body = await post_prompt(http, peer, classless)
    assert body["error"]["message"].endswith("missing the class_type property.")
    no_outputs = {"1": workflows.invert()["1"]}
    assert (await post_prompt(http, peer, no_outputs))[1]["error"]["type"] == "prompt_no_outputs"
    async with http.post(peer.url + "/prompt", json={"client_id": "x"}) as response:
        assert response.status == 400 and (await response.json())["error"]["type"] == "no_prompt"
    async with http.post(peer.url + "/prompt", data=b"{not json") as response:
        assert response.status == 500 and response.content_type == "text/plain"
        assert await response.text() == "500 Internal Server Error\n\nServer got itself in trouble"

    inner = node_error(
        (await post_prompt(http, peer, edited(lambda p: p["2"]["inputs"].update(image=["99", 0]))))[
            1
        ],
        "2",
    )
    assert inner["type"] == "exception_during_inner_validation" and inner["details"] == "'99'"
    assert inner["extra_info"]["input_name"] == "images"  # named by the node linking to it
    assert inner["extra_info"]["linked_node"] == ["2", 0]
    assert inner["extra_info"]["exception_type"] == "KeyError"
    direct = edited(lambda p: p["3"]["inputs"].update(images=["99", 0]))
    _, body = await post_prompt(http, peer, direct)
    assert node_error(body, "3")["type"] == "exception_during_validation"
    assert body["error"]["details"] == "Exception when validating node: '99'"

    mismatch = workflows.txt2img()
    mismatch["9"]["inputs"]["images"] = ["4", 0]
    _, body = await post_prompt(http, peer, mismatch)
    assert node_error(body, "9")["extra_info"]["received_type"] == "MODEL"
    sampler = workflows.txt2img()
    sampler["3"]["inputs"]["sampler_name"] = "nope"
    listed = node_error((await post_prompt(http, peer, sampler))[1], "3")
    assert listed["details"] == "sampler_name: 'nope' not in (list of length 42)"
    assert listed["extra_info"]["input_config"] is None  # more than 20 options
    checkpoint = workflows.txt2img()
    checkpoint["4"]["inputs"]["ckpt_name"] = "missing.safetensors"
    listed = node_error((await post_prompt(http, peer, checkpoint))[1], "4")
    assert listed["details"] == "ckpt_name: 'missing.safetensors' not in ['sd15.safetensors']"


async def test_values_are_converted_in_place_and_numbers_keep_counting(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    await post_prompt(http, peer, edited(lambda p: p["1"]["inputs"].update(width="abc")))
    status, body = await post_prompt(
        http, peer, edited(lambda p: p["1"]["inputs"].update(width="4"))
    )
    assert status == 200 and body["number"] == 1  # the refused prompt took number 0
    entry = await history(http, peer, body["prompt_id"])
    assert entry["prompt"][2]["1"]["inputs"]["width"] == 4
    status, body = await post_prompt(http, peer, workflows.invert(), number=-5.5, prompt_id="mine")
    assert (status, body["number"], body["prompt_id"]) == (200, -5.5, "mine")


async def test_partial_targets_and_extra_data(peer: FakePeer, http: aiohttp.ClientSession) -> None:
    prompt = workflows.invert()
    prompt["4"] = {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}
    extra = {"extra_pnginfo": {"workflow": {"nodes": []}}, "api_key_comfy_org": "secret"}
    prompt_id = await submit(
        http, peer, prompt, partial_execution_targets=["3"], extra_data=extra, client_id="me"
    )
    entry = await history(http, peer, prompt_id)
    assert entry["prompt"][4] == ["3"] and list(entry["outputs"]) == ["3"]
    assert entry["prompt"][3] == {"extra_pnginfo": extra["extra_pnginfo"], "client_id": "me"}
    png = await view(http, peer, entry["outputs"]["3"]["images"][0])
    assert b'tEXtworkflow\x00{"nodes": []}' in png  # SaveImage writes extra_pnginfo keys


async def test_an_ok_answer_can_carry_node_errors_and_runs_the_valid_outputs(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    prompt = workflows.invert()
    prompt["1"]["inputs"]["width"] = 999999  # breaks output 3
    prompt["4"] = {
        "class_type": "EmptyImage",
        "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": -1},
    }
    prompt["5"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["4", 0], "filename_prefix": "b"},
    }
    prompt["6"] = {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}  # also via 1
    prompt["7"] = {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}}  # links an output
    prompt["8"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["9", 0], "filename_prefix": "c"},
    }
    prompt["9"] = {
        "class_type": "EmptyImage",
        "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 0},
    }
    status, body = await post_prompt(http, peer, prompt)
    assert status == 200, body
    errors = body["node_errors"]
    assert errors["1"]["errors"][0]["type"] == "value_bigger_than_max"
    assert errors["4"]["errors"][0]["type"] == "value_smaller_than_min"
    # ComfyUI's quirk: dependent_outputs grows with every output that fails after the error
    assert errors["1"]["dependent_outputs"] == ["3", "5", "6", "7"]
    assert errors["4"]["dependent_outputs"] == ["5", "6", "7"]
    linked_output = errors["7"]["errors"][0]  # PreviewImage has no outputs to link to
    assert (linked_output["type"], linked_output["details"]) == (
        "exception_during_validation",
        "tuple index out of range",
    )
    entry = await history(http, peer, body["prompt_id"])
    assert entry["prompt"][4] == ["8"] and list(entry["outputs"]) == ["8"]


async def test_a_missing_upscale_model_is_accepted_then_fails_at_run_time(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    prompt = graph(
        CANVAS,
        ("UpscaleModelLoader", {"model_name": "missing.pth"}),  # a V3 COMBO: not checked
        ("ImageUpscaleWithModel", {"upscale_model": ["2", 0], "image": ["1", 0]}),
        ("SaveImage", {"images": ["3", 0], "filename_prefix": "up"}),
    )
    entry = await history(http, peer, await submit(http, peer, prompt))
    error = entry["status"]["messages"][-1]
    assert error[0] == "execution_error" and error[1]["exception_type"] == "FileNotFoundError"
    assert error[1]["exception_message"] == (
        "Model in folder 'upscale_models' with filename 'missing.pth' not found.\n"
    )
    info = await get(http, peer.url + "/object_info/UpscaleModelLoader")
    assert info["UpscaleModelLoader"]["input"]["required"]["model_name"][1]["options"] == [
        "2x-fake.pth"
    ]
    assert await get(http, peer.url + "/object_info/NoSuchNode") == {}


# -- failures and interrupts ------------------------------------------------------------


async def test_a_node_that_raises_ends_the_run_with_execution_error(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    async with Listener(http, peer, "me") as socket:
        prompt_id = await submit(http, peer, workflows.fails_at_runtime(), client_id="me")
        frames = await socket.done(prompt_id)
    assert kinds(frames)[-7:] == [
        "executing(1)",
        "progress_state",
        "progress_state",
        "executing(2)",
        "execution_error",
        "status(0)",
        "executing(None)",
    ]
    assert "execution_success" not in kinds(frames)
    error = frames[-3]["data"]
    assert set(error) == {
        "prompt_id",
        "node_id",
        "node_type",
        "executed",
        "exception_message",
        "exception_type",
        "traceback",
        "current_inputs",
        "current_outputs",
        "timestamp",
    }
    assert (error["node_id"], error["node_type"], error["executed"]) == ("2", "ImageToMask", ["1"])
    assert error["exception_type"] == "IndexError"
    assert error["exception_message"] == "index 3 is out of bounds for dimension 3 with size 3\n"
    assert error["current_inputs"]["channel"] == ["alpha"]
    assert all(isinstance(line, str) for line in error["traceback"])
    assert frames[-5]["data"]["nodes"]["2"]["state"] == "running"  # never finished
    entry = await history(http, peer, prompt_id)
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    assert entry["outputs"] == {} and entry["status"]["messages"][-1] == ["execution_error", error]

    peer.fail_nodes = {"ImageInvert": "out of memory"}
    entry = await history(http, peer, await submit(http, peer, workflows.invert()))
    failed = entry["status"]["messages"][-1][1]
    assert (failed["exception_type"], failed["exception_message"]) == (
        "RuntimeError",
        "out of memory",
    )


async def test_an_interrupt_stops_a_sampler_at_its_next_step(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    peer.job_seconds = 60
    async with Listener(http, peer, "me") as socket:
        prompt_id = await submit(http, peer, workflows.txt2img(steps=1000), client_id="me")
        await socket.until(lambda f: f["type"] == "progress")
        assert await post(http, peer.url + "/interrupt", {"prompt_id": "another"}) == 200
        assert await post(http, peer.url + "/interrupt", {"prompt_id": prompt_id}) == 200
        frames = await socket.done(prompt_id)
    assert kinds(frames)[-3:] == ["execution_interrupted", "status(0)", "executing(None)"]
    stopped = frames[-3]["data"]
    assert set(stopped) == {"prompt_id", "node_id", "node_type", "executed", "timestamp"}
    assert (stopped["node_id"], stopped["node_type"]) == ("3", "KSampler")
    steps = [f["data"]["value"] for f in frames if f["type"] == "progress"]
    assert steps[-1] < 1000
    entry = await history(http, peer, prompt_id)
    assert (entry["status"]["status_str"], entry["status"]["completed"], entry["outputs"]) == (
        "error",
        False,
        {},
    )


async def test_an_interrupt_waits_for_the_node_boundary_and_is_broadcast_without_client(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    assert await post(http, peer.url + "/interrupt") == 200  # while idle: harmless
    peer.job_seconds = 60
    async with Listener(http, peer, "observer") as socket:
        prompt_id = await submit(http, peer, slow_blur())
        await socket.until(lambda f: f["type"] == "progress_state" and "2" in f["data"]["nodes"])
        async with http.post(peer.url + "/interrupt", data=b"not json") as response:
            assert response.status == 200  # unreadable body: a global interrupt
        peer.job_seconds = 0  # the blur ends; ComfyUI checks before the next node
        stopped = await socket.until(lambda f: f["type"] == "execution_interrupted")
    assert (stopped["data"]["node_id"], stopped["data"]["executed"]) == ("3", ["1", "2"])
    assert (await history(http, peer, prompt_id))["status"]["status_str"] == "error"


# -- the queue --------------------------------------------------------------------------


async def test_the_queue_runs_by_number_deletes_and_clears(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    peer.job_seconds = 60
    async with Listener(http, peer, "me") as socket:
        running = await submit(http, peer, slow_blur(), client_id="me")
        await socket.until(lambda f: f["type"] == "execution_start")
        late = await submit(http, peer, workflows.invert(1), number=10)
        early = await submit(http, peer, workflows.invert(2), number=-0.5)
        front = await submit(http, peer, workflows.invert(3), front=True)
        doomed = await submit(http, peer, workflows.invert(4), number=5)
        assert peer.max_concurrent_seen == 5
        queue = await get(http, peer.url + "/queue")
        assert [item[1] for item in queue["queue_running"]] == [running]
        pending = queue["queue_pending"]
        assert sorted(pending)[0][:2] == [-1, front]  # front: minus the counter
        assert len(pending[0]) == 5 and pending[0][4] == ["3"]
        assert await get(http, peer.url + "/prompt") == {"exec_info": {"queue_remaining": 5}}
        mark = len(socket.frames)
        assert await post(http, peer.url + "/queue", {"delete": [doomed, running]}) == 200
        deleted = await socket.until(lambda f: f["type"] == "status", since=mark)
        assert deleted["data"]["status"]["exec_info"]["queue_remaining"] == 4
        peer.job_seconds = 0
        await peer.idle()
    assert list(await get(http, peer.url + "/history")) == [running, front, early, late]
    assert await get(http, f"{peer.url}/history/{doomed}") == {}

    peer.job_seconds = 60
    await submit(http, peer, slow_blur())
    cleared = await submit(http, peer, workflows.invert(5))
    assert await post(http, peer.url + "/queue", {"clear": True}) == 200
    assert (await get(http, peer.url + "/queue"))["queue_pending"] == []
    peer.job_seconds = 0
    await peer.idle()
    assert await get(http, f"{peer.url}/history/{cleared}") == {}
    async with http.post(peer.url + "/queue", data=b"{") as response:
        assert response.status == 500


async def test_history_pages_and_forgets(peer: FakePeer, http: aiohttp.ClientSession) -> None:
    ids = [await submit(http, peer, workflows.invert(color)) for color in range(4)]
    await peer.idle()

    async def page(**params: Any) -> list[str]:
        return list(await get(http, peer.url + "/history", **params))

    assert await page() == ids
    assert await page(max_items=2) == ids[2:]
    assert await page(max_items=1, offset=1) == ids[1:2]
    assert await page(offset=3) == ids[3:]
    assert await page(max_items=0) == []
    assert await post(http, peer.url + "/history", {"delete": [ids[0]]}) == 200
    assert await page() == ids[1:]
    assert await post(http, peer.url + "/history", {"clear": True}) == 200
    assert await page() == []


async def test_restart_forgets_queue_history_cache_and_temp_files(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    preview = graph(CANVAS, ("PreviewImage", {"images": ["1", 0]}))
    kept = await history(http, peer, await submit(http, peer, workflows.invert()))
    temp = await history(http, peer, await submit(http, peer, preview))
    peer.job_seconds = 60
    lost = [await submit(http, peer, slow_blur()) for _ in range(2)]
    port = peer.port
    await peer.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(http, peer.url + "/queue")
    await peer.start()
    assert peer.port == port
    queue = await get(http, peer.url + "/queue")  # a stop keeps the work
    assert {item[1] for item in queue["queue_running"] + queue["queue_pending"]} == set(lost)
    await peer.restart()
    assert peer.port == port
    assert await get(http, peer.url + "/queue") == {"queue_running": [], "queue_pending": []}
    for prompt_id in lost:
        assert await get(http, f"{peer.url}/history/{prompt_id}") == {}
    assert await view(http, peer, kept["outputs"]["3"]["images"][0])  # outputs stay on disk
    async with http.get(peer.url + "/view", params=temp["outputs"]["2"]["images"][0]) as response:
        assert response.status == 404  # ComfyUI empties temp when it starts
    peer.job_seconds = 0
    _, body = await post_prompt(http, peer, workflows.invert())
    assert body["number"] == 0  # the counter lives in memory too
    assert peer.prompts_received[:2] + peer.prompts_received[-1:] == [
        kept["prompt"][1],
        temp["prompt"][1],
        body["prompt_id"],
    ]


# -- fault injection --------------------------------------------------------------------


async def test_http_faults_can_be_injected(peer: FakePeer, http: aiohttp.ClientSession) -> None:
    peer.fail_http = {"/queue": 503}
    async with http.get(peer.url + "/api/queue") as response:
        assert response.status == 503 and (await response.text()).startswith("<html>")
    peer.fail_http = {}
    peer.canned = {"/system_stats": (200, '{"system": ')}
    async with http.get(peer.url + "/system_stats") as response:
        assert await response.text() == '{"system": '
    peer.canned = {}
    peer.http_delay = 0.2
    started = time.perf_counter()
    await get(http, peer.url + "/features")
    assert time.perf_counter() - started >= 0.2
    peer.http_delay = 0
    peer.hang = True
    pending = asyncio.ensure_future(get(http, peer.url + "/queue"))
    done, _ = await asyncio.wait({pending}, timeout=0.1)
    assert not done
    peer.hang = False
    assert await pending == {"queue_running": [], "queue_pending": []}
    peer.cut_after_handling = {"/prompt"}
    with pytest.raises(aiohttp.ClientConnectionError):
        await post_prompt(http, peer, workflows.invert())
    assert len(peer.prompts_received) == 1  # carried out, answer lost
    assert ("GET", "/queue") in peer.requests and ("GET", "/features") in peer.requests


async def test_dropped_sockets_end_and_prompts_keep_running(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    peer.job_seconds = 60
    async with http.ws_connect(peer.url + "/ws", params={"clientId": "me"}) as ws:
        await ws.receive_json()
        prompt_id = await submit(http, peer, slow_blur(), client_id="me")
        await peer.drop_websockets()
        while (message := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
            pass
        assert message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    peer.job_seconds = 0
    assert (await history(http, peer, prompt_id))["status"]["status_str"] == "success"


async def test_a_silent_socket_stays_open_and_hears_nothing(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    async with Listener(http, peer, "me") as socket:
        peer.ws_silent = True
        unheard = await submit(http, peer, workflows.invert(), client_id="me")
        await peer.idle()
        peer.ws_silent = False
        heard = await submit(http, peer, workflows.invert(7), client_id="me")
        frames = await socket.done(heard)
    assert kinds(frames)[:2] == ["status(0)", "status(1)"]  # the first run sent nothing
    assert all(f["data"].get("prompt_id") != unheard for f in frames)


async def test_job_seconds_applies_at_once_and_prompt_seconds_overrides_it(
    http: aiohttp.ClientSession,
) -> None:
    def seconds(prompt: dict[str, Any]) -> float:
        return len(prompt) / 1000

    async with FakePeer(job_seconds=60, prompt_seconds=seconds, models=MODELS) as peer:
        assert peer.job_seconds == 60
        await history(http, peer, await submit(http, peer, workflows.invert()))
        peer.prompt_seconds = None
        async with Listener(http, peer, "me") as socket:
            prompt_id = await submit(http, peer, workflows.txt2img(steps=5000), client_id="me")
            await socket.until(lambda f: f["type"] == "progress")
            peer.job_seconds = 0  # the running prompt speeds up at once
            await socket.done(prompt_id)


async def test_introspection_endpoints(peer: FakePeer, http: aiohttp.ClientSession) -> None:
    stats = await get(http, peer.url + "/system_stats")
    assert stats["system"]["comfyui_version"] == "0.3.64"
    assert {"vram_total", "vram_free"} <= set(stats["devices"][0])
    checkpoints = await get(http, peer.url + "/api/object_info/CheckpointLoaderSimple")
    required = checkpoints["CheckpointLoaderSimple"]["input"]["required"]
    assert required["ckpt_name"][0] == ["sd15.safetensors"]
    everything = await get(http, peer.url + "/object_info")
    assert len(everything) == 33 and everything["SaveImage"]["output_node"] is True
    assert await get(http, peer.url + "/models/checkpoints") == ["sd15.safetensors"]
    assert "upscale_models" in await get(http, peer.url + "/models")
    assert await get(http, peer.url + "/embeddings") == []
    assert await get(http, peer.url + "/features") == {
        "supports_preview_metadata": True,
        "max_upload_size": 104857600,
    }


async def test_the_module_runs_a_peer_from_the_command_line() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatch_core.testing",
        "--port",
        "0",
        "--job-seconds",
        "0",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await process.stdout.readline()).decode()
        url = line.split()[4]
        async with aiohttp.ClientSession() as session:
            stats = await get(session, url + "/system_stats")
        assert stats["system"]["os"] == "posix"
    finally:
        process.send_signal(2)  # SIGINT: Ctrl-C
        assert await process.wait() == 0


# -- the PNG codec ----------------------------------------------------------------------


def _filtered(rows: list[bytes], bpp: int, kind: int) -> bytes:
    """The reference PNG filters, to build test files with every filter type."""
    out, previous = b"", bytes(len(rows[0]))
    for row in rows:
        line = bytearray()
        for i, value in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            p = a + b - c
            paeth = min((abs(p - a), 0, a), (abs(p - b), 1, b), (abs(p - c), 2, c))[2]
            predictor = [0, a, b, (a + b) // 2, paeth][kind]
            line.append((value - predictor) & 255)
        out += bytes([kind]) + bytes(line)
        previous = row
    return out


def _png(width: int, height: int, color_type: int, raw: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("kind", range(5))
@pytest.mark.parametrize(("color_type", "bpp"), [(0, 1), (2, 3), (4, 2), (6, 4)])
def test_png_decodes_every_filter_and_color_type(kind: int, color_type: int, bpp: int) -> None:
    width, height = 7, 5
    rows = [
        bytes((x * 37 + y * 91 + c * 53) % 256 for x in range(width) for c in range(bpp))
        for y in range(height)
    ]
    image, alpha = read_png(_png(width, height, color_type, _filtered(rows, bpp, kind)))
    pixels = b"".join(rows)
    color = pixels if bpp >= 3 else bytes(v for v in pixels[::bpp] for _ in range(3))
    if bpp == 4:
        color = bytes(b for i in range(0, len(pixels), 4) for b in pixels[i : i + 3])
    assert image == Image(width, height, color)
    assert alpha == (pixels[bpp - 1 :: bpp] if bpp in (2, 4) else None)


def test_png_round_trip_and_refusals() -> None:
    image = Image(3, 2, bytes(range(18)))
    assert decode_png(encode_png(image, text={"prompt": "{}"})) == image
    for data in (b"GIF89a", b"\x89PNG\r\n\x1a\n\x00\x00", encode_png(image)[:40]):
        with pytest.raises(PNGError):
            decode_png(data)
    interlaced = bytearray(_png(1, 1, 2, b"\x00\x00\x00\x00"))
    interlaced[28] = 1  # the IHDR interlace byte
    with pytest.raises(PNGError, match="non-interlaced"):
        decode_png(bytes(interlaced))


def slow_blur() -> dict[str, Any]:
    """EmptyImage → ImageBlur → PreviewImage: the blur takes the prompt's whole time."""
    return graph(
        ("EmptyImage", {"width": 4, "height": 4, "batch_size": 1, "color": 0x808080}),
        ("ImageBlur", {"image": ["1", 0], "blur_radius": 31, "sigma": 10.0}),
        ("PreviewImage", {"images": ["2", 0]}),
    )
