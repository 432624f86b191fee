"""FakePeer's own behaviour where the transcripts say little: files, uploads, faults, limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from dispatch_core import PeerClient, QueueState, ServerConfig
from dispatch_core._png import Image, decode_png, encode_png
from dispatch_core.testing import FakePeer

from . import workflows


@pytest.fixture
async def peer() -> AsyncIterator[FakePeer]:
    async with FakePeer(models={"checkpoints": ["sd15.safetensors"]}) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post_prompt(
    http: aiohttp.ClientSession, peer: FakePeer, prompt: dict[str, Any], **extra: Any
) -> Any:
    async with http.post(peer.url + "/prompt", json={"prompt": prompt, **extra}) as response:
        return await response.json()


async def upload(
    http: aiohttp.ClientSession, peer: FakePeer, data: bytes, name: str, **fields: str
) -> Any:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=name)
    for key, value in fields.items():
        form.add_field(key, value)
    async with http.post(peer.url + "/upload/image", data=form) as response:
        assert response.status == 200
        return await response.json()


async def test_view_serves_the_pngs_with_comfyuis_checks(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    body = await post_prompt(http, peer, workflows.invert(0x203040, width=5, height=3))
    await peer.idle()
    async with http.get(f"{peer.url}/history/{body['prompt_id']}") as response:
        entry = (await response.json())[body["prompt_id"]]
    image = entry["outputs"]["3"]["images"][0]
    async with http.get(peer.url + "/view", params=image) as response:
        assert response.headers["Content-Disposition"] == f'filename="{image["filename"]}"'
        assert decode_png(await response.read()) == Image.solid(5, 3, (0xDF, 0xCF, 0xBF))
    for params, status in [
        ({"filename": "../x.png"}, 400),
        ({"filename": "/etc/passwd"}, 400),
        ({"filename": "missing.png"}, 404),
        ({"filename": image["filename"], "type": "nope"}, 400),
    ]:
        async with http.get(peer.url + "/view", params=params) as response:
            assert response.status == status, params


async def test_upload_reuses_same_content_and_renames_different(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    one = encode_png(Image.solid(2, 2, (1, 2, 3)))
    two = encode_png(Image.solid(2, 2, (4, 5, 6)))
    assert (await upload(http, peer, one, "up.png"))["name"] == "up.png"
    assert (await upload(http, peer, one, "up.png"))["name"] == "up.png"
    assert (await upload(http, peer, two, "up.png"))["name"] == "up (1).png"
    assert (await upload(http, peer, two, "up.png", overwrite="true"))["name"] == "up.png"
    sub = await upload(http, peer, one, "up.png", subfolder="dispatch", type="temp")
    assert sub == {"name": "up.png", "subfolder": "dispatch", "type": "temp"}


async def test_load_image_reads_an_upload(peer: FakePeer, http: aiohttp.ClientSession) -> None:
    answer = await upload(
        http, peer, encode_png(Image.solid(3, 2, (10, 20, 30))), "in.png", subfolder="d"
    )
    prompt = workflows.load_invert()
    prompt["1"]["inputs"]["image"] = f"{answer['subfolder']}/{answer['name']}"
    body = await post_prompt(http, peer, prompt)
    assert body["node_errors"] == {}
    await peer.idle()
    missing = workflows.load_invert()
    body = await post_prompt(http, peer, missing)
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert body["node_errors"]["1"]["errors"][0]["type"] == "custom_validation_failed"


async def test_api_prefix_and_features(peer: FakePeer, http: aiohttp.ClientSession) -> None:
    async with http.get(peer.url + "/api/queue") as response:
        assert await response.json() == {"queue_running": [], "queue_pending": []}
    async with http.get(peer.url + "/api/features") as response:
        assert (await response.json())["max_upload_size"] == 104857600
    async with http.ws_connect(peer.url + "/api/ws", params={"clientId": "x"}) as ws:
        first = await ws.receive_json()
        await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        flags = await ws.receive_json()
    assert first["data"]["sid"] == "x" and flags["type"] == "feature_flags"


async def test_queue_delete_interrupt_and_concurrency(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    peer.job_seconds = 5
    ids = [
        (await post_prompt(http, peer, workflows.txt2img(seed=i)))["prompt_id"] for i in range(3)
    ]
    assert peer.max_concurrent_seen == 3
    async with http.post(peer.url + "/interrupt", json={"prompt_id": ids[2]}):
        pass  # not the running one: nothing happens
    async with http.post(peer.url + "/queue", json={"delete": [ids[2]]}):
        pass
    async with http.get(peer.url + "/queue") as response:
        queue = await response.json()
    assert [item[1] for item in queue["queue_running"]] == [ids[0]]
    assert [item[1] for item in queue["queue_pending"]] == [ids[1]]
    async with http.post(peer.url + "/queue", json={"clear": True}):
        pass
    async with http.post(peer.url + "/interrupt"):
        pass  # no body: a global interrupt
    await peer.idle()
    async with http.get(peer.url + "/history") as response:
        history = await response.json()
    assert list(history) == [ids[0]]
    assert history[ids[0]]["status"]["status_str"] == "error"


async def test_fail_nodes_and_progress_broadcast_without_client(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    peer.fail_nodes = {"ImageInvert": "out of memory"}
    async with http.ws_connect(peer.url + "/ws", params={"clientId": "observer"}) as ws:
        await ws.receive_json()
        body = await post_prompt(http, peer, workflows.invert())
        kinds: list[str] = []
        while True:  # until the queue is empty again
            message = await ws.receive_json()
            kinds.append(message["type"])
            if message["type"] == "status" and message["data"]["status"]["exec_info"] == {
                "queue_remaining": 0
            }:
                break
    assert "progress_state" in kinds and "execution_error" not in kinds
    await peer.idle()
    async with http.get(f"{peer.url}/history/{body['prompt_id']}") as response:
        entry = (await response.json())[body["prompt_id"]]
    error = entry["status"]["messages"][-1]
    assert error[0] == "execution_error" and error[1]["exception_message"] == "out of memory"


async def test_faults_can_be_injected(peer: FakePeer, http: aiohttp.ClientSession) -> None:
    peer.fail_http = {"/queue": 503}
    async with http.get(peer.url + "/queue") as response:
        assert response.status == 503 and "<html>" in await response.text()
    peer.fail_http = {}
    peer.hang = True
    pending = asyncio.ensure_future(http.get(peer.url + "/queue"))
    done, _ = await asyncio.wait({pending}, timeout=0.1)
    assert not done
    peer.hang = False
    async with await pending as response:
        assert response.status == 200
    await peer.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(peer.url + "/queue"):
            pass
    await peer.start()
    async with http.get(peer.url + "/queue") as response:
        assert response.status == 200


async def test_generation_depends_on_prompt_and_seed(http: aiohttp.ClientSession) -> None:
    async with FakePeer(models={"checkpoints": ["sd15.safetensors"]}) as peer:
        outputs = []
        for text, seed in [("a", 1), ("a", 2), ("b", 1), ("a", 1)]:
            body = await post_prompt(http, peer, workflows.txt2img(text, seed))
            await peer.idle()
            async with http.get(f"{peer.url}/history/{body['prompt_id']}") as response:
                image = (await response.json())[body["prompt_id"]]["outputs"]["9"]["images"][0]
            async with http.get(peer.url + "/view", params=image) as response:
                outputs.append(decode_png(await response.read()).pixels)
        body = await post_prompt(
            http, peer, workflows.txt2img("a", 1) | {"3": {"class_type": "KSampler", "inputs": {}}}
        )
    assert outputs[0] != outputs[1] != outputs[2] and outputs[0] == outputs[3]
    assert body["node_errors"]["3"]["errors"][0]["type"] == "required_input_missing"


async def test_a_peer_client_alone_runs_a_prompt(
    peer: FakePeer, http: aiohttp.ClientSession
) -> None:
    async with PeerClient(ServerConfig("gpu", peer.url), http) as client:
        entry = await client.run(workflows.invert(0x000000, width=2, height=2))
        image = entry["outputs"]["3"]["images"][0]
        png = await client.view(image["filename"], image["subfolder"], image["type"])
        assert (await client.queue()) == QueueState(running=(), pending=())
    assert decode_png(png) == Image.solid(2, 2, (255, 255, 255))
