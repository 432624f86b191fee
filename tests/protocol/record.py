"""Record the ComfyUI transcripts in this folder again, from a real ComfyUI.

`tests/test_fake_conformance.py` replays these transcripts against FakePeer: when ComfyUI
changes, record them anew and see whether the fake still answers the same way.

    python tests/protocol/record.py --url http://127.0.0.1:8188 --out /tmp/transcripts
    DISPATCH_PROTOCOL_DIR=/tmp/transcripts python -m pytest tests/test_fake_conformance.py

then copy the new files here (and fix the fake where the tests say it differs). Each file
is one scenario, in the shapes the README beside this file describes. Record against a
ComfyUI started for this: with an input folder holding only ComfyUI's `example.png` (the
`/object_info/LoadImage` answer lists that folder) and nothing else queued. Two scenarios
need more:

- `run_progress_model` runs a tiny upscale model, `tiny-compact-x2.safetensors`, which
  must be among the server's upscale models; `--write-upscale-model FOLDER` writes one
  (random weights, 8 kB, no torch needed). Without it the scenario is skipped.
- `peer_restart` restarts the server in the middle: give `--restart-command` (a shell
  command that returns once the server was stopped and started again, or is starting).
  Without it the scenario is skipped.

Paths of the ComfyUI checkout in tracebacks are rewritten to `/opt/ComfyUI`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import secrets
import struct
import sys
import time
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

Frame = dict[str, Any]
Prompt = dict[str, Any]

UPSCALE_MODEL = "tiny-compact-x2.safetensors"
_HEAD_BYTES = 16
"""How much of a binary body or frame is kept, in hex."""
_KEPT_HEADERS = ("Content-Disposition", "Content-Type", "Content-Length")
_SETTLE = 0.3
"""Seconds between the socket's first `status` frame and the first request."""
_TIMEOUT = 300.0
"""At most this long for any one prompt, on the slowest CPU."""


# -- one scenario: a socket, its frames and every exchange ------------------------------


class Scenario:
    """A client under `rec-<name>`: its WebSocket read throughout, its requests recorded."""

    def __init__(self, http: aiohttp.ClientSession, url: str, name: str):
        self.http, self.url, self.name = http, url, name
        self.client_id = f"rec-{name}"
        self.exchanges: list[dict[str, Any]] = []
        self.frames: list[Frame] = []
        self._arrived = asyncio.Condition()
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._opened = 0.0

    async def __aenter__(self) -> Scenario:
        self._socket = await self.http.ws_connect(
            f"{self.url}/ws", params={"clientId": self.client_id}, max_msg_size=0
        )
        self._opened = time.monotonic()
        self._reader = asyncio.create_task(self._read())
        await self.until(lambda m: m["type"] == "status")
        await asyncio.sleep(_SETTLE)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._reader is not None:
            await self._reader

    async def _read(self) -> None:
        assert self._socket is not None
        async for message in self._socket:
            seconds = round(time.monotonic() - self._opened, 4)
            if message.type == aiohttp.WSMsgType.TEXT:
                frame = {"t": seconds, "kind": "text", "message": json.loads(message.data)}
            elif message.type == aiohttp.WSMsgType.BINARY:
                data = bytes(message.data)
                event = struct.unpack(">I", data[:4])[0] if len(data) >= 4 else None
                frame = {"t": seconds, "kind": "binary", "len": len(data), "event_type": event}
                frame["head_hex"] = data[:_HEAD_BYTES].hex()
                frame.update(_preview_fields(event, data))
            else:
                continue
            async with self._arrived:
                self.frames.append(frame)
                self._arrived.notify_all()

    async def until(self, wanted: Callable[[Frame], bool], timeout: float = _TIMEOUT) -> None:
        """Until a text frame's message is `wanted`: one already seen counts."""

        def seen() -> bool:
            return any(f["kind"] == "text" and wanted(f["message"]) for f in self.frames)

        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(seen), timeout)

    async def executing(self, node: str | None, prompt_id: str) -> None:
        """Until ComfyUI runs `node` of the prompt; None: until the prompt is over."""
        await self.until(
            lambda m: (
                m["type"] == "executing"
                and m["data"].get("node", "-") == node
                and m["data"].get("prompt_id") == prompt_id
            )
        )

    async def announce(self, flags: dict[str, Any]) -> None:
        """Send the `feature_flags` frame a frontend sends first; wait for the answer."""
        assert self._socket is not None
        await self._socket.send_json({"type": "feature_flags", "data": flags})
        await self.until(lambda m: m["type"] == "feature_flags")

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        data: Any = None,
    ) -> Any:
        """One request, recorded as the transcripts keep it: method, path, JSON body."""
        request: dict[str, Any] = {"method": method, "path": path}
        kwargs: dict[str, Any] = {"params": params, "data": data}
        if json_body is not None:
            request["json"] = kwargs["json"] = json_body
        async with self.http.request(method, self.url + path, **kwargs) as response:
            raw = await response.read()
            exchange = {"request": request, "status": response.status}
            exchange["headers"] = {k: v for k, v in response.headers.items() if k in _KEPT_HEADERS}
            body: Any = raw
            kind = response.headers.get("Content-Type", "")
            if kind.startswith("application/json"):
                body = exchange["json"] = json.loads(raw)
            elif kind.startswith("text/"):
                body = exchange["text"] = raw.decode()
            else:
                exchange["bytes_len"] = len(raw)
                exchange["head_hex"] = raw[:_HEAD_BYTES].hex()
        self.exchanges.append(exchange)
        return body

    async def submit(self, prompt: Prompt) -> str:
        """POST /prompt under this client; the prompt id ComfyUI gave it."""
        body = {"prompt": prompt, "client_id": self.client_id}
        answer = await self.call("POST", "/prompt", json_body=body)
        if not isinstance(answer, dict) or "prompt_id" not in answer:
            raise SystemExit(f"{self.name}: ComfyUI refused a prompt it should take: {answer}")
        return str(answer["prompt_id"])

    async def run(self, prompt: Prompt) -> str:
        """Submit a prompt and wait until it is over; its id."""
        prompt_id = await self.submit(prompt)
        await self.executing(None, prompt_id)
        return prompt_id

    def transcript(self) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "comfyui": self.url,
            "client_id": self.client_id,
            "http": self.exchanges,
            "ws": self.frames,
        }


def _preview_fields(event: int | None, data: bytes) -> dict[str, Any]:
    """What a preview frame says besides its picture: the image type (1) or the metadata
    JSON (4), and the picture's first bytes."""
    if event == 1 and len(data) >= 8:
        return {"image_type": struct.unpack(">I", data[4:8])[0], "image_head_hex": data[8:16].hex()}
    if event == 4 and len(data) >= 8:
        size = struct.unpack(">I", data[4:8])[0]
        metadata = json.loads(data[8 : 8 + size])
        return {"metadata": metadata, "image_head_hex": data[8 + size : 16 + size].hex()}
    return {}


# -- the prompts ----------------------------------------------------------------------


def invert(prefix: str, *, color: int = 0xFF0000, width: Any = 64) -> Prompt:
    """EmptyImage → ImageInvert → SaveImage, with titles, as the dispatcher sends them."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "_meta": {"title": "Canvas"},
            "inputs": {"width": width, "height": 48, "batch_size": 2, "color": color},
        },
        "2": {
            "class_type": "ImageInvert",
            "_meta": {"title": "Invert"},
            "inputs": {"image": ["1", 0]},
        },
        "3": {
            "class_type": "SaveImage",
            "_meta": {"title": "Save"},
            "inputs": {"images": ["2", 0], "filename_prefix": prefix},
        },
    }


def blur(size: int, batch: int) -> Prompt:
    """A slow prompt on the CPU: a large blur, its result only previewed."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": size, "height": size, "batch_size": batch, "color": 0x808080},
        },
        "2": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 10.0},
        },
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }


def upscale(model: str) -> Prompt:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 256, "height": 256, "batch_size": 1, "color": 0x336699},
        },
        "4": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model}},
        "5": {
            "class_type": "ImageUpscaleWithModel",
            "inputs": {"upscale_model": ["4", 0], "image": ["1", 0]},
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "up"}},
    }


def sample(checkpoint: str, seed: int) -> Prompt:
    """A real txt2img, small: KSampler's steps each send a preview when the server runs
    with `--preview-method` (latent2rgb is enough)."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": 3,
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
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }


# -- the scenarios, in the order they were first recorded ----------------------------------


async def run_success(s: Scenario) -> None:
    prompt_id = await s.run(invert(f"rec_{secrets.token_hex(3)}"))
    await s.call("GET", f"/history/{prompt_id}")
    history = await s.call("GET", f"/history/{prompt_id}")
    image = history[prompt_id]["outputs"]["3"]["images"][0]
    await s.call("GET", "/view", params=image)


async def run_cached(s: Scenario) -> None:
    for _ in range(2):
        prompt_id = await s.run(invert("rec_cached"))
        await s.call("GET", f"/history/{prompt_id}")


async def prompt_invalid(s: Scenario) -> None:
    bad_type = invert("probe", width="abc")
    no_class = invert("probe")
    no_class["2"]["class_type"] = "NoSuchNode"
    bad_link = invert("probe")
    bad_link["2"]["inputs"]["image"] = ["99", 0]
    no_output = {"1": invert("probe")["1"]}
    for prompt in (bad_type, no_class, bad_link, no_output):
        body = {"prompt": prompt, "client_id": s.client_id}
        await s.call("POST", "/prompt", json_body=body)
    await s.call("POST", "/prompt", data=b"{not json")
    too_big = invert("probe", width=999999)
    await s.call("POST", "/prompt", json_body={"prompt": too_big, "client_id": s.client_id})
    # a model file that is not there: some ComfyUI versions accept it, to fail when it runs
    body = {"prompt": upscale("missing.pth"), "client_id": s.client_id}
    answer = await s.call("POST", "/prompt", json_body=body)
    if "prompt_id" in answer:
        await s.executing(None, answer["prompt_id"])


async def run_progress_model(s: Scenario) -> None:
    prompt_id = await s.run(upscale(UPSCALE_MODEL))
    await s.call("GET", f"/history/{prompt_id}")


async def run_interrupted(s: Scenario) -> None:
    prompt_id = await s.submit(blur(2048, 4))
    await s.executing("2", prompt_id)
    await s.call("GET", "/queue")
    await s.call("POST", "/interrupt", json_body={"prompt_id": prompt_id})
    await s.executing(None, prompt_id)
    await s.call("GET", f"/history/{prompt_id}")


async def queue_busy(s: Scenario) -> None:
    first = await s.submit(blur(1024, 2))
    await s.executing("2", first)
    second = await s.submit(blur(1024, 3))
    third = await s.submit(blur(1024, 4))
    await s.call("GET", "/queue")
    await s.call("GET", "/prompt")
    await s.call("POST", "/queue", json_body={"delete": [third]})
    await s.call("GET", "/queue")
    await s.executing(None, second)
    for prompt_id in (first, second, third):
        await s.call("GET", f"/history/{prompt_id}")
    await s.call("GET", "/history", params={"max_items": "2"})  # kept as "/history"


async def misc_endpoints(s: Scenario) -> None:
    for path in ("/system_stats", "/object_info/EmptyImage", "/object_info/LoadImage"):
        await s.call("GET", path)
    await s.call("GET", "/object_info/SaveImage")
    await s.call("GET", "/features")
    await s.call("GET", "/history/00000000-0000-0000-0000-000000000000")
    await s.call("GET", "/view", params={"filename": "never_written.png"})
    await s.call("GET", "/view", params={"filename": "../outside.png"})
    await s.call("GET", "/api/queue")
    for name, subfolder in (("rec_upload.png", ""), ("rec_upload.png", "dispatch")):
        await s.call("POST", "/upload/image", data=_upload(name, subfolder))
    await s.call("POST", "/upload/image", data=_upload("../evil.png", ""))
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "dispatch/rec_upload.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": "rec_loaded"},
        },
    }
    prompt_id = await s.run(prompt)
    await s.call("GET", f"/history/{prompt_id}")
    await s.call("POST", "/free", json_body={"unload_models": True, "free_memory": True})


async def run_runtime_error(s: Scenario) -> None:
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "alpha"}},
        "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
        "4": {
            "class_type": "SaveImage",
            "inputs": {"images": ["3", 0], "filename_prefix": "never"},
        },
    }
    prompt_id = await s.run(prompt)
    await s.call("GET", f"/history/{prompt_id}")


async def run_previews(s: Scenario) -> None:
    """As a frontend asks: `supports_preview_metadata`, so previews come as type 4."""
    await s.announce({"supports_preview_metadata": True})
    await s.run(sample(CHECKPOINT[0], seed=random.randrange(2**32)))


async def run_previews_legacy(s: Scenario) -> None:
    """A client that sends no feature flags: previews come as type 1."""
    await s.run(sample(CHECKPOINT[0], seed=random.randrange(2**32)))


CHECKPOINT: list[str] = [""]
"""The checkpoint the preview scenarios sample with (`--checkpoint`)."""

SCENARIOS: dict[str, Callable[[Scenario], Awaitable[None]]] = {
    "run_success": run_success,
    "run_cached": run_cached,
    "prompt_invalid": prompt_invalid,
    "run_progress_model": run_progress_model,
    "run_interrupted": run_interrupted,
    "queue_busy": queue_busy,
    "misc_endpoints": misc_endpoints,
    "run_runtime_error": run_runtime_error,
    "run_previews": run_previews,
    "run_previews_legacy": run_previews_legacy,
}


def _upload(name: str, subfolder: str) -> aiohttp.FormData:
    """A 4×4 PNG; `overwrite` keeps its name when the same file is recorded again."""
    form = aiohttp.FormData()
    form.add_field("image", _png(4, 4, (9, 9, 9)), filename=name, content_type="image/png")
    form.add_field("subfolder", subfolder)
    form.add_field("overwrite", "true")
    return form


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# -- the restart, recorded without a socket: the server goes away ---------------------------


async def peer_restart(http: aiohttp.ClientSession, url: str, command: str) -> dict[str, Any]:
    """Two prompts queued, the server restarted: what it remembers afterwards."""

    async def get(path: str) -> Any:
        async with http.get(url + path) as response:
            return await response.json()

    submitted = []
    for batch in (4, 3):
        body = {"prompt": blur(2048, batch), "client_id": "restart"}
        async with http.post(url + "/prompt", json=body) as response:
            submitted.append(await response.json())
    queue = await get("/queue")
    deadline = time.monotonic() + 30
    while not queue["queue_running"] and time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # the worker thread picks the first one up
        queue = await get("/queue")
    restart = await asyncio.create_subprocess_shell(command)
    if await restart.wait() != 0:
        raise SystemExit(f"peer_restart: {command!r} exited with {restart.returncode}")
    await _wait_until_up(http, url)
    ids = [answer["prompt_id"] for answer in submitted]
    return {
        "before_kill": {"submit": submitted, "queue": queue},
        "after_restart": {
            "queue": await get("/queue"),
            "history": {i: await get(f"/history/{i}") for i in ids},
            "history_all_count": len(await get("/history")),
        },
    }


async def _wait_until_up(http: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + _TIMEOUT
    while time.monotonic() < deadline:
        try:
            async with http.get(url + "/system_stats") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(1)
    raise SystemExit(f"peer_restart: {url} did not answer again within {_TIMEOUT:.0f} s")


# -- the whole recording ----------------------------------------------------------------


async def record(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    url = args.url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=_TIMEOUT)
    done: dict[str, dict[str, Any]] = {}
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.get(url + "/system_stats") as response:
            version = (await response.json())["system"].get("comfyui_version")
        print(f"recording ComfyUI {version} at {url}", file=sys.stderr)
        skipped = await _skipped(http, url, args)
        async with Scenario(http, url, "warmup") as warmup:  # run_success finds 1 and 2 cached
            await warmup.run(invert("rec_warmup"))
        for name, scenario in SCENARIOS.items():
            if name in skipped or (args.scenario and name not in args.scenario):
                continue
            print(f"  {name}", file=sys.stderr)
            async with Scenario(http, url, name) as s:
                await scenario(s)
            done[name] = s.transcript()
        if "peer_restart" not in skipped and (not args.scenario or "peer_restart" in args.scenario):
            print("  peer_restart", file=sys.stderr)
            done["peer_restart"] = await peer_restart(http, url, args.restart_command)
    return done


async def _skipped(http: aiohttp.ClientSession, url: str, args: argparse.Namespace) -> set[str]:
    skipped = set()
    async with http.get(url + "/object_info/UpscaleModelLoader") as response:
        info = await response.json()
    models = info["UpscaleModelLoader"]["input"]["required"]["model_name"][0]
    if UPSCALE_MODEL not in models:
        print(
            f"skipping run_progress_model: no {UPSCALE_MODEL} among the upscale models "
            f"({', '.join(models) or 'none'}); --write-upscale-model FOLDER makes one",
            file=sys.stderr,
        )
        skipped.add("run_progress_model")
    async with http.get(url + "/object_info/CheckpointLoaderSimple") as response:
        info = await response.json()
    checkpoints = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    if args.checkpoint not in checkpoints:
        print(
            "skipping run_previews*: give --checkpoint NAME, one of the server's checkpoints "
            f"({', '.join(checkpoints) or 'none'}; tools/make_checkpoint.py makes one), and "
            "start the server with --preview-method latent2rgb",
            file=sys.stderr,
        )
        skipped |= {"run_previews", "run_previews_legacy"}
    CHECKPOINT[0] = args.checkpoint or ""
    if not args.restart_command:
        print("skipping peer_restart: give --restart-command", file=sys.stderr)
        skipped.add("peer_restart")
    return skipped


def save(transcripts: dict[str, dict[str, Any]], folder: Path) -> None:
    """One file per scenario, as the shipped ones are written; checkout paths hidden."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, transcript in transcripts.items():
        text = _hide_checkout(json.dumps(transcript, indent=1))
        (folder / f"{name}.json").write_text(text)
        print(folder / f"{name}.json")


def _hide_checkout(text: str) -> str:
    """Tracebacks name ComfyUI's files by absolute path: shown as under /opt/ComfyUI."""
    roots = set(re.findall(r'File \\"([^"\\]+?)/execution\.py\\"', text))
    for root in sorted(roots, key=len, reverse=True):
        text = text.replace(root + "/", "/opt/ComfyUI/")
    return text


# -- a tiny upscale model, for run_progress_model ------------------------------------------


def write_upscale_model(folder: Path) -> Path:
    """A RealESRGAN Compact (SRVGGNet) ×2 with 8 features and one conv, random weights,
    written as safetensors by hand: ComfyUI's loader (spandrel) takes it, and it runs in
    well under a second on a CPU."""
    features, convs, scale, channels = 8, 1, 2, 3
    rng = random.Random(0)
    shapes: dict[str, list[int]] = {"body.0.weight": [features, channels, 3, 3]}
    shapes["body.0.bias"] = [features]
    shapes["body.1.weight"] = [features]  # PReLU
    for i in range(convs):
        shapes[f"body.{2 * i + 2}.weight"] = [features, features, 3, 3]
        shapes[f"body.{2 * i + 2}.bias"] = [features]
        shapes[f"body.{2 * i + 3}.weight"] = [features]
    last = 2 * convs + 2
    shapes[f"body.{last}.weight"] = [channels * scale * scale, features, 3, 3]
    shapes[f"body.{last}.bias"] = [channels * scale * scale]
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    data = b""
    for name, shape in shapes.items():
        count = 1
        for size in shape:
            count *= size
        values = [rng.uniform(-0.05, 0.05) for _ in range(count)]
        blob = struct.pack(f"<{count}f", *values)
        header[name] = {
            "dtype": "F32",
            "shape": shape,
            "data_offsets": [len(data), len(data) + len(blob)],
        }
        data += blob
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / UPSCALE_MODEL
    path.write_bytes(struct.pack("<Q", len(head)) + head + data)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8188", help="the ComfyUI to record")
    parser.add_argument("--out", type=Path, help="folder for the transcripts")
    parser.add_argument(
        "--scenario", action="append", choices=[*SCENARIOS, "peer_restart"], help="only these"
    )
    parser.add_argument(
        "--restart-command",
        metavar="SHELL",
        help="restarts the server, for peer_restart (run with the shell)",
    )
    parser.add_argument(
        "--checkpoint", metavar="NAME", help="a checkpoint to sample with, for run_previews*"
    )
    parser.add_argument(
        "--write-upscale-model",
        type=Path,
        metavar="FOLDER",
        help=f"write {UPSCALE_MODEL} into FOLDER (an upscale_models folder) and exit",
    )
    args = parser.parse_args()
    if args.write_upscale_model:
        print(write_upscale_model(args.write_upscale_model))
        return 0
    if args.out is None:
        parser.error("--out FOLDER is needed (not this folder: compare before replacing)")
    save(asyncio.run(record(args)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
