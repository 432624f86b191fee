"""ComfyUI's own API on the gateway: ComfyUI's clients, unchanged, drive two fake peers."""

from __future__ import annotations

import asyncio
import functools
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from local_http import start

from dispatch_core.http.standalone import create_app
from dispatch_core.service import DispatchService
from dispatch_core.testing import FakePeer
from dispatch_core.testing._png import decode_png

import workflows

_T = TypeVar("_T")
websocket = pytest.importorskip("websocket", reason="websocket-client is in the test extra")


class Farm:
    """Two fake peers behind a gateway on loopback."""

    def __init__(self, peers: list[FakePeer], base: str, service: DispatchService):
        self.peers, self.base, self.service = peers, base, service
        self.address = base.removeprefix("http://")


@pytest.fixture
async def farm(tmp_path: Path) -> AsyncIterator[Farm]:
    async with FakePeer(job_seconds=0.2) as a, FakePeer(job_seconds=0.2) as b:
        config = {"servers": {"a": a.url, "b": b.url}, "routes": {"gen": "a"}}
        (tmp_path / "config.json").write_text(json.dumps(config))
        service = DispatchService(tmp_path, status_interval=0)
        runner, base = await start(create_app(service))
        try:
            yield Farm([a, b], base, service)
        finally:
            await runner.cleanup()


# -- ComfyUI's script_examples/websockets_api_example.py, as it is written ---------------


def example_client(server_address: str, prompt: dict[str, Any]) -> dict[str, list[bytes]]:
    """The example's functions, word for word but for the names: one client, one prompt."""
    client_id = str(uuid.uuid4())

    def queue_prompt(prompt: dict[str, Any], prompt_id: str) -> None:
        p = {"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id}
        data = json.dumps(p).encode("utf-8")
        req = urllib.request.Request(f"http://{server_address}/prompt", data=data)
        urllib.request.urlopen(req).read()

    def get_image(filename: str, subfolder: str, folder_type: str) -> bytes:
        data = {"filename": filename, "subfolder": subfolder, "type": folder_type}
        url_values = urllib.parse.urlencode(data)
        with urllib.request.urlopen(f"http://{server_address}/view?{url_values}") as response:
            return bytes(response.read())

    def get_history(prompt_id: str) -> Any:
        with urllib.request.urlopen(f"http://{server_address}/history/{prompt_id}") as response:
            return json.loads(response.read())

    def get_images(ws: Any, prompt: dict[str, Any]) -> dict[str, list[bytes]]:
        prompt_id = str(uuid.uuid4())
        queue_prompt(prompt, prompt_id)
        output_images = {}
        while True:
            out = ws.recv()
            if isinstance(out, str):
                message = json.loads(out)
                if message["type"] == "executing":
                    data = message["data"]
                    if data["node"] is None and data["prompt_id"] == prompt_id:
                        break  # Execution is done
            else:
                continue  # previews are binary data
        history = get_history(prompt_id)[prompt_id]
        for node_id in history["outputs"]:
            node_output = history["outputs"][node_id]
            images_output = []
            if "images" in node_output:
                for image in node_output["images"]:
                    image_data = get_image(image["filename"], image["subfolder"], image["type"])
                    images_output.append(image_data)
            output_images[node_id] = images_output
        return output_images

    ws = websocket.WebSocket()
    ws.connect(f"ws://{server_address}/ws?clientId={client_id}", timeout=30)
    try:
        return get_images(ws, prompt)
    finally:
        ws.close()


async def in_threads(calls: list[Callable[[], _T]]) -> list[_T]:
    """Blocking clients, each in a thread of its own: not the loop's default executor,
    which the gateway needs meanwhile (its files and journal go through it)."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(await asyncio.gather(*(loop.run_in_executor(pool, c) for c in calls)))


async def test_the_websockets_api_example_runs_its_prompts_over_both_peers(farm: Farm) -> None:
    colors = [0x100000 * i for i in range(6)]
    found = await in_threads(
        [
            functools.partial(example_client, farm.address, workflows.invert(color, width=4))
            for color in colors
        ]
    )
    for color, images in zip(colors, found, strict=True):
        image = decode_png(images["3"][0])
        assert image.width == 4
        assert image.pixels[:3] == (0xFFFFFF - color).to_bytes(3, "big")
    assert all(peer.prompts_received for peer in farm.peers), "both peers ran prompts"
    assert sum(len(p.prompts_received) for p in farm.peers) == len(colors)
    records = farm.service.jobs.activity.recent(50)
    assert sorted(r.server or "" for r in records) == sorted(
        ["a"] * len(farm.peers[0].prompts_received) + ["b"] * len(farm.peers[1].prompts_received)
    ), "the panel's job list holds them"
