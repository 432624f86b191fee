"""Keeps FakePeer honest: it must answer what a real ComfyUI 0.3.64 answered.

The transcripts in tests/protocol/ were recorded from a real ComfyUI (by `record.py`
there, which records them again when ComfyUI changes: point DISPATCH_PROTOCOL_DIR at the
new folder to replay those instead). Each
scenario's requests are replayed against the fake, sending the recorded prompt ids as our
own so that ids match; then, frame by frame and answer by answer, the fake must produce
the same message types in the same order, the same HTTP statuses and content types, and
bodies with the same type tree (same keys, same kinds of values, recursively). Where the
real server's timing decided the order (a `status` frame racing a node), only what is
deterministic is compared. Slow nodes of the recordings are made slow with `job_seconds`.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dispatch_core.testing import FakePeer
from dispatch_core.testing._png import Image, encode_png
from dispatch_core.testing._preview import SAMPLERS

PROTOCOL = Path(os.environ.get("DISPATCH_PROTOCOL_DIR") or Path(__file__).parent / "protocol")
pytestmark = pytest.mark.timeout(15)
Frame = dict[str, Any]
Hook = Callable[["Replay"], Awaitable[None]]


def transcript(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PROTOCOL / f"{name}.json").read_text())
    return data


# -- the shape of a JSON value --------------------------------------------------------------


def kind(value: Any) -> str:
    """A JSON value's kind; ints and floats are both numbers (0.0 and 1 both occur)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names[type(value)]


def shape_diff(fake: Any, real: Any, path: str = "$") -> list[str]:
    """Where the type tree of `fake` differs from that of `real`.

    Objects must have the same keys; arrays of the same length are compared item by item,
    others by the set of their items' shapes (a traceback's length is not a protocol fact).
    """
    if kind(fake) != kind(real):
        return [f"{path}: {kind(fake)} where ComfyUI has {kind(real)}"]
    if isinstance(real, dict):
        problems = [f"{path}: unexpected key {k!r}" for k in fake.keys() - real.keys()]
        problems += [f"{path}: missing key {k!r}" for k in real.keys() - fake.keys()]
        for key in real.keys() & fake.keys():
            problems += shape_diff(fake[key], real[key], f"{path}.{key}")
        return problems
    if isinstance(real, list):
        if len(fake) == len(real):
            return [
                p
                for i, (f, r) in enumerate(zip(fake, real, strict=True))
                for p in shape_diff(f, r, f"{path}[{i}]")
            ]
        if not fake or not real:
            return [f"{path}: {len(fake)} items where ComfyUI has {len(real)}"]
        return [
            f"{path}[{i}]: no item of this shape in ComfyUI's"
            for i, item in enumerate(fake)
            if all(shape_diff(item, r) for r in real)
        ]
    return []


def test_the_shape_comparator_itself() -> None:
    assert shape_diff({"a": [1, 2.5], "b": None}, {"a": [3], "b": None}) == []
    assert shape_diff({"a": 1}, {"a": "1"}) == ["$.a: number where ComfyUI has string"]
    assert shape_diff({"a": 1, "c": 2}, {"a": 1, "b": 2}) == [
        "$: unexpected key 'c'",
        "$: missing key 'b'",
    ]
    assert shape_diff([True], [1]) == ["$[0]: bool where ComfyUI has number"]
    assert shape_diff([], ["x"]) == ["$: 0 items where ComfyUI has 1"]
    assert shape_diff(["x", "y", "z"], ["a", "b"]) == []


# -- replaying a scenario ---------------------------------------------------------------


PREVIEW_FLAGS = {"supports_preview_metadata": True}
"""What the frontend (and the dispatcher) announce first, so that previews carry metadata."""


def binary_frame(data: bytes) -> Frame:
    """A binary frame as a replay keeps it: its event type, what precedes the picture, and
    the picture's first bytes, in the shape the recording keeps them."""
    event, word = struct.unpack(">II", data[:8])
    found: dict[str, Any] = {"image_head_hex": data[8:16].hex()}
    if event == 1:
        found["image_type"] = word
    elif event == 4:
        found["metadata"] = json.loads(data[8 : 8 + word])
        found["image_head_hex"] = data[8 + word : 16 + word].hex()
    return {"type": f"binary {event}", "data": found}


def recorded_binary(frame: dict[str, Any]) -> Frame:
    fields = ("image_type", "metadata", "image_head_hex")
    return {
        "type": f"binary {frame['event_type']}",
        "data": {k: frame[k] for k in fields if k in frame},
    }


def label(frame: Frame) -> str:
    """A frame's type; `executing` says whether its node is null, `status` its count."""
    data = frame["data"]
    if frame["type"] == "executing":
        return "executing(null)" if data.get("node", "-") is None else "executing"
    if frame["type"] == "status":
        return f"status({data['status']['exec_info']['queue_remaining']})"
    return str(frame["type"])


@dataclass
class Answer:
    status: int
    content_type: str | None
    disposition: str | None
    body: Any


class Replay:
    """A raw ComfyUI client under the transcript's client id, replaying its requests."""

    def __init__(self, name: str, peer: FakePeer, session: aiohttp.ClientSession):
        self.name = name
        self.recorded = transcript(name)
        self.peer = peer
        self.session = session
        self.frames: list[Frame] = []
        self.answers: list[tuple[dict[str, Any], Answer]] = []
        self.accepted: list[str] = []
        self._arrived = asyncio.Condition()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        client_id = self.recorded["client_id"]
        self._ws = await self.session.ws_connect(
            f"{self.peer.url}/ws", params={"clientId": client_id}
        )
        self._reader = asyncio.create_task(self._read())
        await self.until(lambda f: f["type"] == "status")
        if any(f["type"] == "feature_flags" for f in self.recorded_frames()):
            await self._ws.send_json({"type": "feature_flags", "data": PREVIEW_FLAGS})
            await self.until(lambda f: f["type"] == "feature_flags")

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await self._reader

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                frame = binary_frame(bytes(message.data))
            else:
                frame = json.loads(message.data)
            async with self._arrived:
                self.frames.append(frame)
                self._arrived.notify_all()

    async def until(self, wanted: Callable[[Frame], bool]) -> None:
        async with self._arrived:
            await self._arrived.wait_for(lambda: any(map(wanted, self.frames)))

    async def executing(self, node: str | None, prompt_id: str | None = None) -> None:
        def seen(frame: Frame) -> bool:
            data = frame["data"]
            return (
                frame["type"] == "executing"
                and data.get("node", "-") == node
                and (prompt_id is None or data.get("prompt_id") == prompt_id)
            )

        await self.until(seen)

    async def warm_cache(self) -> None:
        """Run the nodes the recording found cached, so the replay finds them cached too."""
        cached: list[str] = next(
            (
                f["message"]["data"]["nodes"]
                for f in self.recorded["ws"]
                if f["message"]["type"] == "execution_cached"
            ),
            [],
        )
        if cached:
            prompt = self.recorded["http"][0]["request"]["json"]["prompt"]
            warm = {n: prompt[n] for n in cached}
            warm["900"] = {"class_type": "PreviewImage", "inputs": {"images": [cached[-1], 0]}}
            if any(node["class_type"] in SAMPLERS for node in prompt.values()):
                warm = json.loads(json.dumps(prompt))  # the same, sampled with another seed
                for node in warm.values():
                    if node["class_type"] in SAMPLERS:
                        node["inputs"]["seed"] += 1
            await self.request({"method": "POST", "path": "/prompt", "json": {"prompt": warm}})
            await self.peer.idle()

    async def run(self, hooks: dict[int, Hook] | None = None) -> None:
        """Every recorded request in order; `hooks[i]` runs before request i."""
        await self.warm_cache()
        await self.connect()
        for index, exchange in enumerate(self.recorded["http"]):
            if hooks and index in hooks:
                await hooks[index](self)
            request = json.loads(json.dumps(exchange["request"]))
            if request["path"].startswith(("/history", "/view")):
                await self.peer.idle()
            answer = await self.send(request, exchange)
            self.answers.append((exchange, answer))
        await self.peer.idle()
        deleted = {
            i
            for e in self.recorded["http"]
            for i in (e["request"].get("json") or {}).get("delete", [])
        }
        for prompt_id in self.accepted:
            if prompt_id not in deleted:
                await self.executing(None, prompt_id)
        await self.close()

    async def send(self, request: dict[str, Any], exchange: dict[str, Any]) -> Answer:
        """The request as recorded, with what the recording left out filled in."""
        path = request["path"]
        if path == "/upload/image":
            return await self.upload(exchange["json"])
        if path == "/view":
            return await self.request(request, params=self.view_params(exchange))
        if path == "/history" and self.name == "queue_busy":  # recorded without its query
            return await self.request(request, params={"max_items": 2})
        if path == "/prompt" and request["method"] == "POST" and exchange["status"] == 200:
            prompt_id = exchange["json"]["prompt_id"]  # sent as our own
            request["json"]["prompt_id"] = prompt_id
            self.accepted.append(prompt_id)
        return await self.request(request)

    def view_params(self, exchange: dict[str, Any]) -> dict[str, str]:
        if exchange["status"] == 404:
            return {"filename": "never_written.png"}
        if exchange["status"] == 400:
            return {"filename": "../outside.png"}
        body = self.answers[-1][1].body
        (entry,) = body.values()
        image = dict(next(iter(entry["outputs"].values()))["images"][0])
        return image

    async def upload(self, recorded_answer: dict[str, str]) -> Answer:
        """Upload a PNG under the name and subfolder the recorded answer names."""
        form = aiohttp.FormData()
        filename = recorded_answer["name"].replace("%2F", "/")  # aiohttp encodes it back
        form.add_field("image", encode_png(Image.solid(4, 4, (9, 9, 9))), filename=filename)
        form.add_field("subfolder", recorded_answer["subfolder"])
        return await self.request({"method": "POST", "path": "/upload/image"}, data=form)

    async def request(self, request: dict[str, Any], **kwargs: Any) -> Answer:
        if "json" in request:
            kwargs["json"] = request["json"]
        elif request["method"] == "POST" and "data" not in kwargs:
            kwargs["data"] = b"{not json"  # the one body-less POST recorded is the bad one
        url = self.peer.url + request["path"]
        async with self.session.request(request["method"], url, **kwargs) as response:
            raw = await response.read()
            content_type = response.headers.get("Content-Type")
            body: Any = raw
            if content_type and content_type.startswith("application/json"):
                body = json.loads(raw)
            elif content_type and content_type.startswith("text/"):
                body = raw.decode()
            disposition = response.headers.get("Content-Disposition")
            return Answer(response.status, content_type, disposition, body)

    # -- checks -------------------------------------------------------------------------

    def recorded_frames(self) -> list[Frame]:
        return [
            f["message"] if f["kind"] == "text" else recorded_binary(f) for f in self.recorded["ws"]
        ]

    def assert_http_conforms(self) -> None:
        for exchange, answer in self.answers:
            where = f"{exchange['request']['method']} {exchange['request']['path']}"
            headers = exchange["headers"]
            assert answer.status == exchange["status"], where
            assert answer.content_type == headers.get("Content-Type"), where
            assert (answer.disposition is None) == ("Content-Disposition" not in headers), where
            if "json" in exchange:
                problems = shape_diff(answer.body, exchange["json"])
                assert not problems, f"{where}: {problems}"
            elif "text" in exchange:
                assert answer.body == exchange["text"], where
            else:
                head = bytes.fromhex(exchange["head_hex"])[:8]
                assert answer.body[:8] == head and bool(answer.body) == bool(head), where

    def assert_frames_conform(self, *, with_status: bool = True) -> None:
        """Same frame types in the same order, and each frame shaped like its twin."""
        fake, real = self.frames, self.recorded_frames()
        if not with_status:  # the real server's timing placed them
            statuses = [label(f) for f in fake if f["type"] == "status"]
            assert statuses == [label(f) for f in real if f["type"] == "status"]
            fake = [f for f in fake if f["type"] != "status"]
            real = [f for f in real if f["type"] != "status"]
        assert [label(f) for f in fake] == [label(f) for f in real]
        for index, (mine, theirs) in enumerate(zip(fake, real, strict=True)):
            problems = shape_diff(mine["data"], theirs["data"])
            assert not problems, f"frame {index} ({mine['type']}): {problems}"
        self.assert_ordering_facts()

    def assert_ordering_facts(self) -> None:
        """Per prompt: one ending, never success after a failure, `executing` null last."""
        for prompt_id in self.accepted:
            mine = [f for f in self.frames if _prompt_of(f) == prompt_id]
            if not mine:
                continue  # deleted before it ran
            endings = [f["type"] for f in mine if f["type"] in _ENDINGS]
            assert len(endings) == 1, endings
            assert label(mine[-1]) == "executing(null)"
            assert label(mine[-2]) == endings[0]


def _prompt_of(frame: Frame) -> Any:
    data = frame["data"]
    return data.get("prompt_id", (data.get("metadata") or {}).get("prompt_id"))


_ENDINGS = ("execution_success", "execution_error", "execution_interrupted")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


# -- the scenarios ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["run_success", "run_cached", "run_progress_model", "run_runtime_error"]
)
async def test_runs_match_the_recording_frame_for_frame(
    name: str, session: aiohttp.ClientSession
) -> None:
    async with FakePeer(models={"upscale_models": ["tiny-compact-x2.safetensors"]}) as peer:
        replay = Replay(name, peer, session)
        await replay.run()
    replay.assert_frames_conform()
    replay.assert_http_conforms()


async def test_a_cached_rerun_reports_the_same_files(session: aiohttp.ClientSession) -> None:
    async with FakePeer() as peer:
        replay = Replay("run_cached", peer, session)
        await replay.run()
    first, second = [a.body for e, a in replay.answers if e["request"]["path"] != "/prompt"]
    (one,), (two,) = first.values(), second.values()
    assert one["outputs"] == two["outputs"]
    executed = [f["data"]["output"] for f in replay.frames if f["type"] == "executed"]
    assert executed == [one["outputs"]["3"]] * 2


async def test_an_interrupt_stops_at_the_next_node_as_recorded(
    session: aiohttp.ClientSession,
) -> None:
    async def while_blurring(replay: Replay) -> None:
        await replay.executing("2")

    async def after_interrupt(replay: Replay) -> None:
        replay.peer.job_seconds = 0  # the blur ends; ComfyUI notices before node 3

    async with FakePeer(job_seconds=60) as peer:
        replay = Replay("run_interrupted", peer, session)
        await replay.run({1: while_blurring, 3: after_interrupt})
    replay.assert_frames_conform()
    replay.assert_http_conforms()


async def test_invalid_prompts_are_refused_as_recorded(session: aiohttp.ClientSession) -> None:
    async with FakePeer() as peer:
        replay = Replay("prompt_invalid", peer, session)
        await replay.run()
    replay.assert_http_conforms()
    replay.assert_frames_conform()
    for exchange, answer in replay.answers:
        real = exchange.get("json")
        if not (isinstance(real, dict) and "error" in real):
            continue
        assert answer.body["error"] == real["error"]
        assert answer.body["node_errors"].keys() == real["node_errors"].keys()
        for node_id, errors in real["node_errors"].items():
            mine = answer.body["node_errors"][node_id]
            assert mine["class_type"] == errors["class_type"]
            assert mine["dependent_outputs"] == errors["dependent_outputs"]
            for got, want in zip(mine["errors"], errors["errors"], strict=True):
                assert {k: got[k] for k in ("type", "message", "details")} == {
                    k: want[k] for k in ("type", "message", "details")
                }
                want_info = dict(want["extra_info"])
                got_info = dict(got["extra_info"])
                want_info.pop("traceback", None), got_info.pop("traceback", None)
                assert got_info == want_info


async def test_a_busy_queue_answers_as_recorded(session: aiohttp.ClientSession) -> None:
    async def first_is_blurring(replay: Replay) -> None:
        await replay.executing("2", replay.recorded["http"][0]["json"]["prompt_id"])

    async def let_them_run(replay: Replay) -> None:
        replay.peer.job_seconds = 0

    async with FakePeer(job_seconds=60) as peer:
        replay = Replay("queue_busy", peer, session)
        await replay.run({1: first_is_blurring, 7: let_them_run})
    replay.assert_http_conforms()
    replay.assert_frames_conform(with_status=False)
    answers = [a.body for _, a in replay.answers]
    deleted = replay.recorded["http"][5]["request"]["json"]["delete"][0]
    assert answers[9] == {} and deleted not in answers[10]
    assert [item[1] for item in answers[6]["queue_pending"]] == [
        item[1] for item in replay.recorded["http"][6]["json"]["queue_pending"]
    ]


async def test_misc_endpoints_answer_as_recorded(session: aiohttp.ClientSession) -> None:
    async with FakePeer() as peer:
        replay = Replay("misc_endpoints", peer, session)
        await replay.run()
    replay.assert_http_conforms()
    replay.assert_frames_conform()
    for exchange, answer in replay.answers:
        path = exchange["request"]["path"]
        if path.startswith(("/object_info", "/features", "/upload", "/api/queue")):
            assert answer.body == exchange["json"], path  # nothing here depends on the host


async def test_a_restart_forgets_queue_and_history(session: aiohttp.ClientSession) -> None:
    recorded = transcript("peer_restart")
    before, after = recorded["before_kill"], recorded["after_restart"]
    async with FakePeer(job_seconds=60) as peer:
        replay = Replay("run_success", peer, session)  # only its request helper is used
        for item, answer in zip(
            before["queue"]["queue_running"] + before["queue"]["queue_pending"],
            before["submit"],
            strict=True,
        ):
            body = {"prompt": item[2], "client_id": "restart", "prompt_id": answer["prompt_id"]}
            sent = await replay.request({"method": "POST", "path": "/prompt", "json": body})
            assert not shape_diff(sent.body, answer)
        queue = await replay.request({"method": "GET", "path": "/queue"})
        assert not shape_diff(queue.body, before["queue"])
        assert [i[1] for i in queue.body["queue_running"]] == [
            i[1] for i in before["queue"]["queue_running"]
        ]
        await peer.restart()
        queue = await replay.request({"method": "GET", "path": "/queue"})
        assert queue.body == after["queue"]
        for prompt_id, entry in after["history"].items():
            path = f"/history/{prompt_id}"
            assert (await replay.request({"method": "GET", "path": path})).body == entry
        everything = await replay.request({"method": "GET", "path": "/history"})
        assert len(everything.body) == after["history_all_count"]


@pytest.mark.parametrize("name", ["run_previews", "run_previews_legacy"])
async def test_sampler_previews_match_the_recording(
    name: str, session: aiohttp.ClientSession
) -> None:
    """Binary preview frames, as ComfyUI sends them with `--preview-method` on: type 4
    before each step's `progress` for a client that asked for metadata, type 1 after."""
    models = {"checkpoints": ["rand-1.safetensors"]}
    async with FakePeer(models=models, preview_method="latent2rgb") as peer:
        replay = Replay(name, peer, session)
        await replay.run()
    replay.assert_frames_conform()
    replay.assert_http_conforms()
    previews = [f for f in replay.frames if f["type"].startswith("binary")]
    assert len(previews) == 3 and all(
        f["data"]["image_head_hex"].startswith("ffd8ffe0") for f in previews
    )
    if name == "run_previews":
        (prompt_id,) = replay.accepted
        assert {f["data"]["metadata"]["prompt_id"] for f in previews} == {prompt_id}


async def test_no_previews_without_a_preview_method(session: aiohttp.ClientSession) -> None:
    async with FakePeer(models={"checkpoints": ["rand-1.safetensors"]}) as peer:
        replay = Replay("run_previews", peer, session)
        await replay.run()
    assert not [f for f in replay.frames if f["type"].startswith("binary")]
