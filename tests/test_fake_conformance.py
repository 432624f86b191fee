"""Keeps FakePeer honest: it must answer what a real ComfyUI 0.3.64 answered.

The transcripts in ../shared/comfyui-protocol/ were recorded from a real ComfyUI. Each
scenario is replayed against the fake; every frame and JSON body the fake produces must
have the shape of one the real server produced (same keys, same kinds of values), and
the frames of a prompt must come in the same order.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dispatch_core._png import Image, encode_png
from dispatch_core.testing import FakePeer

PROTOCOL = Path(__file__).resolve().parents[2] / "shared" / "comfyui-protocol"
pytestmark = pytest.mark.skipif(
    not PROTOCOL.is_dir(), reason=f"the recorded transcripts are not at {PROTOCOL}"
)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def transcript(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PROTOCOL / f"{name}.json").read_text())
    return data


def _is_id(key: str) -> bool:
    return key.isdigit() or bool(_UUID.match(key))


def conforms(fake: Any, real: Any) -> bool:
    """Same keys and kinds of values, recursively; id-keyed maps compare value by value."""
    if isinstance(real, dict) and isinstance(fake, dict):
        if real and fake and all(map(_is_id, real)) and all(map(_is_id, fake)):
            return all(any(conforms(v, r) for r in real.values()) for v in fake.values())
        return set(fake) == set(real) and all(conforms(fake[k], real[k]) for k in real)
    if isinstance(real, list) and isinstance(fake, list):
        return not real or all(any(conforms(f, r) for r in real) for f in fake)
    if isinstance(real, bool) or isinstance(fake, bool):
        return type(real) is type(fake)
    if isinstance(real, (int, float)) and isinstance(fake, (int, float)):
        return True
    return type(real) is type(fake)


def real_frames() -> dict[str, list[Any]]:
    """Every recorded WS frame's data, by message type."""
    found: dict[str, list[Any]] = {}
    for path in PROTOCOL.glob("*.json"):
        for frame in json.loads(path.read_text()).get("ws", []):
            if frame["kind"] == "text":
                found.setdefault(frame["message"]["type"], []).append(frame["message"]["data"])
    return found


def assert_frames_conform(frames: list[dict[str, Any]]) -> None:
    real = real_frames()
    for frame in frames:
        kind = frame["type"]
        assert kind in real, f"the fake sent a frame type ComfyUI never sent: {kind}"
        assert any(conforms(frame["data"], r) for r in real[kind]), f"{kind}: {frame['data']}"


def recorded_types(name: str, *, cut_after: str | None = None) -> list[str]:
    types = []
    for frame in transcript(name)["ws"]:
        message = frame["message"]
        node = message["data"].get("node", "-") if message["type"] == "executing" else "-"
        types.append(message["type"] + ("(null)" if node is None else ""))
    return types


def types_of(frames: list[dict[str, Any]]) -> list[str]:
    names = []
    for frame in frames:
        null = frame["type"] == "executing" and frame["data"].get("node", "-") is None
        names.append(frame["type"] + ("(null)" if null else ""))
    return names


class Client:
    """A raw ComfyUI client: one socket under the transcript's client id, plain HTTP."""

    def __init__(self, peer: FakePeer, session: aiohttp.ClientSession, client_id: str):
        self.peer = peer
        self.session = session
        self.client_id = client_id
        self.frames: list[dict[str, Any]] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._arrived = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.ws = await self.session.ws_connect(
            f"{self.peer.url}/ws", params={"clientId": self.client_id}
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            async with self._arrived:
                self.frames.append(json.loads(message.data))
                self._arrived.notify_all()

    async def wait_for(self, kind: str, **data: Any) -> None:
        def seen() -> bool:
            return any(
                f["type"] == kind and all(f["data"].get(k, "-") == v for k, v in data.items())
                for f in self.frames
            )

        async with self._arrived:
            await self._arrived.wait_for(seen)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader

    async def upload(self, recorded_answer: dict[str, str]) -> tuple[int, Any]:
        """Upload a PNG that yields the recorded answer's name and subfolder."""
        form = aiohttp.FormData()
        filename = recorded_answer["name"].replace("%2F", "/")
        form.add_field("image", encode_png(Image.solid(4, 4, (9, 9, 9))), filename=filename)
        form.add_field("subfolder", recorded_answer["subfolder"])
        async with self.session.post(self.peer.url + "/upload/image", data=form) as response:
            return response.status, await response.json()

    async def call(self, request: dict[str, Any]) -> tuple[int, Any]:
        method, path = request["method"], request["path"]
        kwargs = {"json": request["json"]} if "json" in request else {"data": b"{not json"}
        if method == "GET":
            kwargs = {}
        async with self.session.request(method, self.peer.url + path, **kwargs) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text) if text else None
            except ValueError:
                return response.status, text


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


async def warm_cache(client: Client, recorded: dict[str, Any]) -> None:
    """Run the nodes the recording found cached, so the replay finds them cached too."""
    cached = next(
        (
            f["message"]["data"]["nodes"]
            for f in recorded["ws"]
            if f["message"]["type"] == "execution_cached"
        ),
        [],
    )
    if not cached:
        return
    prompt = recorded["http"][0]["request"]["json"]["prompt"]
    warm = {n: prompt[n] for n in cached}
    warm["900"] = {"class_type": "PreviewImage", "inputs": {"images": [cached[-1], 0]}}
    await client.call({"method": "POST", "path": "/prompt", "json": {"prompt": warm}})
    await client.peer.idle()


async def replay(
    name: str, session: aiohttp.ClientSession, peer: FakePeer
) -> tuple[Client, list[tuple[dict[str, Any], int, Any]]]:
    """Replay a scenario's HTTP requests in order, mapping recorded prompt ids to ours."""
    recorded = transcript(name)
    client = Client(peer, session, recorded["client_id"])
    await warm_cache(client, recorded)
    await client.connect()
    await client.wait_for("status")
    ids: dict[str, str] = {}
    accepted: list[str] = []
    answers = []
    for exchange in recorded["http"]:
        request = json.loads(json.dumps(exchange["request"]))
        if request["path"] == "/upload/image":
            answers.append((exchange, *await client.upload(exchange["json"])))
            continue
        if request["path"] in ("/view", "/free"):
            continue  # recorded without query or body: covered by test_fake_peer
        for real_id, fake_id in ids.items():
            request["path"] = request["path"].replace(real_id, fake_id)
            if "json" in request:
                request["json"] = json.loads(json.dumps(request["json"]).replace(real_id, fake_id))
        if request["path"].startswith("/history"):
            await peer.idle()
        if request["path"] == "/interrupt":
            await client.wait_for("executing", node="2")
        status, body = await client.call(request)
        if request["path"] == "/prompt" and request["method"] == "POST" and status == 200:
            if "prompt_id" in exchange.get("json", {}):
                ids[exchange["json"]["prompt_id"]] = body["prompt_id"]
            accepted.append(body["prompt_id"])
        answers.append((exchange, status, body))
    await peer.idle()
    deleted = {
        i for e in recorded["http"] for i in (e["request"].get("json") or {}).get("delete", [])
    }
    for prompt_id in accepted:
        if prompt_id not in {ids.get(i) for i in deleted}:
            await client.wait_for("executing", node=None, prompt_id=prompt_id)
    await client.close()
    return client, answers


def assert_http_conforms(answers: list[tuple[dict[str, Any], int, Any]]) -> None:
    for exchange, status, body in answers:
        where = f"{exchange['request']['method']} {exchange['request']['path']}"
        assert status == exchange["status"], where
        real = exchange.get("json", exchange.get("text"))
        if real is not None and real != {}:
            assert conforms(body, real), f"{where}: {body!r} does not have the shape of {real!r}"


@pytest.mark.parametrize(
    "name",
    ["run_success", "run_cached", "run_runtime_error", "run_progress_model", "run_interrupted"],
)
async def test_single_client_scenarios_match_frame_for_frame(
    name: str, session: aiohttp.ClientSession
) -> None:
    seconds = 0.3 if name == "run_interrupted" else 0.0
    async with FakePeer(
        job_seconds=seconds, models={"upscale_models": ["tiny-compact-x2.safetensors"]}
    ) as peer:
        client, answers = await replay(name, session, peer)
    assert types_of(client.frames) == recorded_types(name)
    assert_frames_conform(client.frames)
    assert_http_conforms(answers)


async def test_invalid_prompts_answer_as_comfyui_does(session: aiohttp.ClientSession) -> None:
    async with FakePeer() as peer:
        client, answers = await replay("prompt_invalid", session, peer)
    assert_http_conforms(answers)
    for exchange, _, body in answers:
        real = exchange.get("json")
        if isinstance(real, dict) and "error" in real:
            assert body["error"]["type"] == real["error"]["type"]
            assert body["error"]["message"] == real["error"]["message"]
            for node_id, errors in real["node_errors"].items():
                got = body["node_errors"][node_id]
                assert [e["type"] for e in got["errors"]] == [e["type"] for e in errors["errors"]]
                assert [e["message"] for e in got["errors"]] == [
                    e["message"] for e in errors["errors"]
                ]
                assert got["class_type"] == errors["class_type"]
    assert types_of(client.frames) == recorded_types("prompt_invalid")
    assert_frames_conform(client.frames)


async def test_busy_queue_and_deletion(session: aiohttp.ClientSession) -> None:
    async with FakePeer(job_seconds=0.2) as peer:
        client, answers = await replay("queue_busy", session, peer)
    assert_http_conforms(answers)
    assert_frames_conform(client.frames)
    kinds = types_of(client.frames)
    assert kinds.count("execution_success") == 2 and kinds[-1] == "executing(null)"


async def test_misc_endpoints(session: aiohttp.ClientSession) -> None:
    async with FakePeer() as peer:
        client, answers = await replay("misc_endpoints", session, peer)
    assert_http_conforms(answers)
    assert_frames_conform(client.frames)


async def test_restart_forgets_queue_and_history(session: aiohttp.ClientSession) -> None:
    recorded = transcript("peer_restart")
    async with FakePeer(job_seconds=5) as peer:
        client = Client(peer, session, "restart")
        prompt = recorded["before_kill"]["queue"]["queue_running"][0][2]
        ids = []
        for _ in range(2):
            request = {"prompt": prompt, "client_id": "restart"}
            _, body = await client.call({"method": "POST", "path": "/prompt", "json": request})
            ids.append(body["prompt_id"])
            assert conforms(body, recorded["before_kill"]["submit"][0])
        _, queue = await client.call({"method": "GET", "path": "/queue"})
        assert conforms(queue, recorded["before_kill"]["queue"])
        await peer.restart()
        _, queue = await client.call({"method": "GET", "path": "/queue"})
        assert queue == recorded["after_restart"]["queue"]
        for prompt_id in ids:
            assert (await client.call({"method": "GET", "path": f"/history/{prompt_id}"}))[1] == {}
