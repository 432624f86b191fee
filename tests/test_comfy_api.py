"""ComfyUI's own API on the gateway: ComfyUI's clients, unchanged, drive two fake peers."""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import json
import struct
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
from local_http import call_json, start

from dispatch_core.http.standalone import create_app
from dispatch_core.service import DispatchService
from dispatch_core.testing import FakePeer
from dispatch_core.testing._png import Image, decode_png, encode_png
from dispatch_core.testing._ws import SocketHub

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


# -- comfy-api-simplified, from the package index, unchanged -----------------------------


def simplified_client(base: str, folder: Path) -> dict[str, bytes]:
    """comfy-api-simplified's own flow: upload an image, set a node's input, queue and
    wait for the images of the node titled 'Save'."""
    from comfy_api_simplified import ComfyApiWrapper, ComfyWorkflowWrapper

    api = ComfyApiWrapper(base)
    source = folder / "green.png"
    source.write_bytes(encode_png(Image.solid(5, 3, (0, 255, 0))))
    uploaded = api.upload_image(source)
    workflow = ComfyWorkflowWrapper(workflows.load_invert())
    for node in workflow.values():
        node.setdefault("_meta", {"title": node["class_type"]})
    workflow["3"]["_meta"]["title"] = "Save"
    workflow.set_node_param("Input", "image", f"{uploaded['subfolder']}/{uploaded['name']}")
    found: dict[str, bytes] = api.queue_and_wait_images(workflow, "Save")
    return found


async def test_comfy_api_simplified_runs_a_workflow_through_the_gateway(
    farm: Farm, tmp_path: Path
) -> None:
    pytest.importorskip("comfy_api_simplified", reason="comfy-api-simplified is a test extra")
    (found,) = await in_threads([functools.partial(simplified_client, farm.base, tmp_path)])
    (image,) = [decode_png(data) for data in found.values()]
    assert (image.width, image.height) == (5, 3)
    assert image.pixels[:3] == bytes([255, 0, 255]), "the uploaded green, inverted"
    uploads = [u for p in farm.peers for u in p.uploads]
    assert len(uploads) == 1, "the upload went to the peer that ran the prompt, only"


# -- the socket: progress, previews, the end; refusals ---------------------------------


class PreviewHub(SocketHub):
    """The fake's socket hub, sending a legacy preview (type 1, PNG) after each progress
    frame, as ComfyUI does for a client without the metadata flag."""

    def send(self, sid: str | None, kind: str, data: Any) -> None:
        super().send(sid, kind, data)
        if kind == "progress":
            png = encode_png(Image.solid(2, 2, (int(data["value"]), 0, 0)))
            self.send_binary(sid, struct.pack(">II", 1, 2) + png)


async def frames_until_done(
    socket: aiohttp.ClientWebSocketResponse, prompt_id: str
) -> list[tuple[str, Any]]:
    """Every frame heard until `executing` null for `prompt_id`: (type, data); previews as
    ("binary", bytes)."""
    heard: list[tuple[str, Any]] = []
    while True:
        message = await socket.receive(timeout=20)
        if message.type == aiohttp.WSMsgType.BINARY:
            heard.append(("binary", message.data))
            continue
        frame = json.loads(message.data)
        heard.append((frame["type"], frame["data"]))
        if frame["type"] == "executing" and frame["data"].get("prompt_id") == prompt_id:
            if frame["data"]["node"] is None:
                return heard


async def test_progress_and_previews_reach_the_clients_socket(tmp_path: Path) -> None:
    async with FakePeer(models={"checkpoints": ["sd15.safetensors"]}) as peer:
        peer._hub = PreviewHub(peer._greeting)
        (tmp_path / "config.json").write_text(json.dumps({"servers": {"a": peer.url}}))
        service = DispatchService(tmp_path, status_interval=0)
        runner, base = await start(create_app(service))
        try:
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(base + "/ws?clientId=me") as socket:
                    first = json.loads((await socket.receive(timeout=10)).data)
                    assert first == {
                        "type": "status",
                        "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "me"},
                    }
                    body = {
                        "prompt": workflows.txt2img(steps=3),
                        "client_id": "me",
                        "prompt_id": "mine",
                    }
                    status, answer = await call_json(session, "POST", base + "/prompt", body)
                    assert status == 200 and answer == {
                        "prompt_id": "mine",
                        "number": 1,
                        "node_errors": {},
                    }
                    heard = await frames_until_done(socket, "mine")
        finally:
            await runner.cleanup()
    kinds = [kind for kind, _ in heard]
    steps = [d["value"] for k, d in heard if k == "progress"]
    assert steps == [1, 2, 3] and all(d["node"] == "3" for k, d in heard if k == "progress")
    previews = [d for k, d in heard if k == "binary"]
    assert len(previews) == 3 and all(p[:8] == struct.pack(">II", 1, 2) for p in previews)
    assert decode_png(previews[2][8:]).pixels[:3] == bytes([3, 0, 0])
    assert kinds.index("execution_start") < kinds.index("progress") < kinds.index("executed")
    assert kinds[-3:] == ["execution_success", "status", "executing"]
    comfy = [(k, d) for k, d in heard if not k.startswith("dispatch.")]  # the panel's events
    ids = {d.get("prompt_id") for k, d in comfy if k not in ("binary", "status")}
    assert ids == {"mine"}, "every frame under the client's id, never the engine's"
    (executed,) = [d for k, d in heard if k == "executed"]
    assert executed["output"]["images"][0]["subfolder"] == "@a"


async def test_a_failing_node_ends_as_comfyui_ends_it(farm: Farm) -> None:
    farm.peers[0].fail_nodes["ImageInvert"] = farm.peers[1].fail_nodes["ImageInvert"] = "boom"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(farm.base + "/ws?clientId=me") as socket:
            body = {"prompt": workflows.invert(), "client_id": "me", "prompt_id": "bad"}
            status, _ = await call_json(session, "POST", farm.base + "/prompt", body)
            assert status == 200
            heard = await frames_until_done(socket, "bad")
        status, history = await call_json(session, "GET", farm.base + "/history/bad")
    assert [k for k, _ in heard][-3:] == ["execution_error", "status", "executing"]
    error = dict(heard)["execution_error"]
    assert (error["node_id"], error["exception_message"]) == ("2", "boom")
    assert history["bad"]["status"]["status_str"] == "error"
    assert history["bad"]["status"]["messages"][-1][0] == "execution_error"


UNKNOWN_NODE = {
    "error": {
        "type": "invalid_prompt",
        "message": "Cannot execute because node NoSuchNode does not exist.",
        "details": "Node ID '#2'",
        "extra_info": {},
        "field": "prompt",
    },
    "node_errors": {},
}


NOT_AN_INT = {  # as ComfyUI 0.3.64 answered (tests/protocol/prompt_invalid.json)
    "type": "invalid_input_type",
    "message": "Failed to convert an input value to a INT value",
    "details": "width, abc, invalid literal for int() with base 10: 'abc'",
    "extra_info": {
        "input_name": "width",
        "input_config": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
        "received_value": "abc",
        "exception_message": "invalid literal for int() with base 10: 'abc'",
    },
}


async def test_an_invalid_prompt_gets_comfyuis_400_shape(farm: Farm) -> None:
    unknown = workflows.invert()
    unknown["2"]["class_type"] = "NoSuchNode"
    missing = workflows.invert()
    del missing["1"]["inputs"]["width"]
    not_a_number = workflows.invert()
    not_a_number["1"]["inputs"]["width"] = "abc"
    too_large = workflows.invert(width=10**6)
    no_model = workflows.txt2img()
    no_outputs = {"1": workflows.invert()["1"]}
    async with aiohttp.ClientSession() as session:
        url = farm.base + "/prompt"
        assert await call_json(session, "POST", url, {"prompt": unknown}) == (400, UNKNOWN_NODE)
        status, answer = await call_json(session, "POST", url, {"prompt": missing})
        assert status == 400 and answer["error"]["type"] == "prompt_outputs_failed_validation"
        (error,) = answer["node_errors"]["1"]["errors"]
        assert error["type"] == "required_input_missing" and error["details"] == "width"
        assert answer["node_errors"]["1"]["class_type"] == "EmptyImage"
        status, answer = await call_json(session, "POST", url, {"prompt": not_a_number})
        assert status == 400 and answer["node_errors"]["1"]["errors"] == [NOT_AN_INT]
        status, answer = await call_json(session, "POST", url, {"prompt": too_large})
        (error,) = answer["node_errors"]["1"]["errors"]
        assert (status, error["type"], error["details"]) == (400, "value_bigger_than_max", "width")
        status, answer = await call_json(session, "POST", url, {"prompt": no_model})
        assert (
            status == 400 and answer["node_errors"]["4"]["errors"][0]["type"] == "value_not_in_list"
        )
        status, answer = await call_json(session, "POST", url, {"prompt": no_outputs})
        assert (status, answer["error"]["type"]) == (400, "prompt_no_outputs")
        status, answer = await call_json(session, "POST", url, {"client_id": "x"})
        assert (status, answer["error"]["type"]) == (400, "no_prompt")
    assert not any(p.prompts_received for p in farm.peers), "nothing refused reached a peer"


def form(filename: str = "x.png", **fields: str) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for key, value in fields.items():
        data.add_field(key, value)
    data.add_field("image", encode_png(Image.solid(1, 1, (1, 2, 3))), filename=filename)
    return data


DEEP = "[" * 100_000 + "]" * 100_000
HOSTILE: list[tuple[str, str, Any, int, str]] = [
    ("POST", "/prompt", "{", 400, "body"),
    ("POST", "/prompt", "[]", 400, "body"),
    ("POST", "/prompt", '{"prompt": ' + DEEP + "}", 400, "body"),
    ("POST", "/prompt", {"prompt": workflows.invert(), "prompt_id": "../../etc"}, 400, "prompt_id"),
    ("POST", "/prompt", {"prompt": workflows.invert(), "prompt_id": "a" * 200}, 400, "prompt_id"),
    ("POST", "/prompt", {"prompt": workflows.invert(), "client_id": "a\r\nb"}, 400, "client_id"),
    ("POST", "/prompt", {"prompt": workflows.invert(), "extra_data": "x"}, 400, "extra_data"),
    ("POST", "/prompt?route=nowhere", {"prompt": workflows.invert()}, 400, "route"),
    ("POST", "/prompt", {"prompt": {"1": {"inputs": {}}}}, 400, "prompt"),
    ("POST", "/prompt", {"prompt": "text"}, 400, "prompt"),
    ("GET", "/history/a..b", None, 400, "prompt_id"),
    ("GET", "/history/" + "a" * 300, None, 400, "prompt_id"),
    ("GET", "/view?filename=../config.json", None, 400, "filename"),
    ("GET", "/view?filename=/etc/passwd", None, 400, "filename"),
    ("GET", "/view?filename=sub%2Fx.png", None, 400, "filename"),
    ("GET", "/view?filename=x.png&subfolder=../..", None, 400, "subfolder"),
    ("GET", "/view?filename=x.png&subfolder=@a/../../x", None, 400, "subfolder"),
    ("GET", "/view?filename=x.png&subfolder=@nowhere", None, 404, "subfolder"),
    ("GET", "/view?filename=x.png&type=evil", None, 400, "type"),
    ("GET", "/view", None, 400, "filename"),
    ("POST", "/upload/image", form("../x.png"), 400, "filename"),
    ("POST", "/upload/image", form(".hidden.png"), 400, "filename"),
    ("POST", "/upload/image", form("x.png", subfolder="../../up"), 400, "subfolder"),
    ("POST", "/upload/image", form("x.png", subfolder="a\\..\\b"), 400, "subfolder"),
    ("POST", "/upload/image", form("x.png", type="evil"), 400, "type"),
    ("POST", "/upload/image", '{"image": "x"}', 400, "body"),
    ("POST", "/upload/mask", form("x.png", original_ref="{"), 400, "original_ref"),
    ("POST", "/queue", {"delete": "x"}, 400, "delete"),
    ("POST", "/queue", {"delete": ["../x"]}, 400, "delete"),
    ("POST", "/interrupt", {"prompt_id": "../x"}, 400, "prompt_id"),
    ("GET", "/models/..%2Fsecrets", None, 400, "folder"),
    ("GET", "/history?max_items=-1", None, 400, "max_items"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    HOSTILE,
    ids=[f"{m} {p[:40]} {f}" for m, p, _, _, f in HOSTILE],
)
async def test_hostile_requests_get_a_clear_4xx_naming_the_field(
    farm: Farm, method: str, path: str, body: Any, status: int, field: str
) -> None:
    data = json.dumps(body) if isinstance(body, dict) else body
    async with aiohttp.ClientSession() as session:
        async with session.request(method, farm.base + path, data=data) as response:
            answer = await response.json()
            assert response.status == status, answer
    assert answer["error"]["field"] == field
    assert not any(p.prompts_received for p in farm.peers)
    assert not (farm.service.folder / "comfyui" / "up").exists()


@pytest.mark.parametrize("path", ["/prompt", "/upload/image"])
async def test_an_oversized_body_is_refused_with_413(farm: Farm, path: str) -> None:
    big = io.BytesIO(b"x" * (64 * 1024 * 1024 + 1))
    data: Any = big
    if path == "/upload/image":
        data = aiohttp.FormData()
        data.add_field("image", big, filename="big.png")
    async with aiohttp.ClientSession() as session:
        async with session.post(farm.base + path, data=data) as response:
            assert response.status == 413
            assert (await response.json())["error"]["field"] in ("body", "image")
    assert not (farm.service.folder / "comfyui" / "input").exists()


async def test_the_farm_queue_interrupt_and_delete_act_on_the_clients_ids(farm: Farm) -> None:
    for peer in farm.peers:
        peer.job_seconds = 30  # held until interrupted
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(farm.base + "/ws?clientId=me") as socket:
            for n in range(3):  # two run (one a peer), the third waits for a free slot
                body = {"prompt": workflows.invert(n), "client_id": "me", "prompt_id": f"p{n}"}
                assert (await call_json(session, "POST", farm.base + "/prompt", body))[0] == 200
            while sum(len(p.prompts_received) for p in farm.peers) < 2:
                await socket.receive(timeout=10)
            _, queue = await call_json(session, "GET", farm.base + "/queue")
            assert sorted(item[1] for item in queue["queue_running"]) == ["p0", "p1"]
            assert [item[1] for item in queue["queue_pending"]] == ["p2"]
            assert queue["queue_pending"][0][3] == {"client_id": "me"}
            await call_json(session, "POST", farm.base + "/queue", {"delete": ["p2", "p0"]})
            heard = await frames_until_done(socket, "p2")
            assert heard[-3][0] == "execution_interrupted"
            await call_json(session, "POST", farm.base + "/interrupt", {"prompt_id": "p0"})
            heard = await frames_until_done(socket, "p0")
            assert [k for k, _ in heard][-3:] == ["execution_interrupted", "status", "executing"]
            await call_json(session, "POST", farm.base + "/interrupt")
            await frames_until_done(socket, "p1")
            for peer in farm.peers:
                peer.job_seconds = 0  # its nodes never look at the interrupt flag: let go
        _, history = await call_json(session, "GET", farm.base + "/history")
        _, queue = await call_json(session, "GET", farm.base + "/queue")
    assert set(history) == {"p0", "p1", "p2"}
    assert {e["status"]["status_str"] for e in history.values()} == {"error"}
    assert queue == {"queue_running": [], "queue_pending": []}
    assert sum(len(p.prompts_received) for p in farm.peers) == 2, "p2 never reached a peer"


async def test_beyond_loopback_every_comfyui_route_needs_the_token(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"servers": {}}))
    service = DispatchService(tmp_path, status_interval=0)
    runner, base = await start(create_app(service, token="s3cret"))
    basic = {"Authorization": "Basic " + base64.b64encode(b"anyone:s3cret").decode()}
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/queue", "/api/queue", "/history", "/object_info", "/view?filename=x"):
                async with session.get(base + path) as response:
                    assert response.status == 401, path
            async with session.get(base + "/ws") as response:
                assert response.status == 401
            async with session.get(base + "/queue", headers=basic) as response:
                assert response.status == 200
            headers = {"Authorization": "Bearer s3cret"}
            async with session.get(base + "/api/queue", headers=headers) as response:
                assert response.status == 200
    finally:
        await runner.cleanup()


@pytest.fixture
async def page_farm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Farm]:
    """The gateway serving a stand-in for ComfyUI's page (an index.html and one script)."""
    page = tmp_path / "page"
    (page / "extensions" / "core").mkdir(parents=True)
    (page / "index.html").write_text("<title>ComfyUI</title>")
    (page / "extensions" / "core" / "x.js").write_text("export {};")
    monkeypatch.setenv("DISPATCH_FRONTEND", str(page))
    async with FakePeer() as a:
        folder = tmp_path / "gateway"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"servers": {"a": a.url}}))
        service = DispatchService(folder, status_interval=0)
        runner, base = await start(create_app(service))
        try:
            yield Farm([a], base, service)
        finally:
            await runner.cleanup()


async def test_the_pages_user_files_live_in_the_gateways_folder(page_farm: Farm) -> None:
    base = page_farm.base
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/") as response:
            assert "<title>ComfyUI</title>" in await response.text()
        _, scripts = await call_json(session, "GET", base + "/api/extensions")
        assert "/extensions/core/x.js" in scripts
        assert "/extensions/ComfyUI-Dispatch/dispatch.js" in scripts
        async with session.get(base + "/extensions/ComfyUI-Dispatch/dispatch.js") as response:
            assert response.status == 200
        url = base + "/api/userdata/workflows%2Fa.json"
        async with session.post(url + "?overwrite=false", data=b'{"nodes": []}') as response:
            assert (response.status, await response.json()) == (200, "workflows/a.json")
        async with session.post(url + "?overwrite=false", data=b"{}") as response:
            assert response.status == 409
        moved = base + "/api/userdata/workflows%2Fa.json/move/workflows%2Fb.json"
        async with session.post(moved) as response:
            assert response.status == 200
        _, listed = await call_json(session, "GET", base + "/api/userdata?dir=workflows")
        assert listed == ["b.json"]
        async with session.get(base + "/api/userdata/workflows%2Fb.json") as response:
            assert await response.read() == b'{"nodes": []}'
        async with session.delete(base + "/api/userdata/workflows%2Fb.json") as response:
            assert response.status == 204
        assert await call_json(session, "POST", base + "/api/settings/Comfy.X", 3) == (200, b"")
        assert await call_json(session, "GET", base + "/api/settings/Comfy.X") == (200, 3)
    user = page_farm.service.folder / "comfyui" / "user"
    assert json.loads((user / "comfy.settings.json").read_text()) == {"Comfy.X": 3}
    assert not page_farm.peers[0].requests or all(
        "userdata" not in path and "settings" not in path for _, path in page_farm.peers[0].requests
    ), "never a peer's"


PAGE_HOSTILE: list[tuple[str, str, Any, int, str]] = [
    ("GET", "/api/userdata/..%2F..%2Fconfig.json", None, 400, "file"),
    ("POST", "/api/userdata/..%2Fescape.json", "{}", 400, "file"),
    ("POST", "/api/userdata/a.json/move/..%2F..%2Fconfig.json", None, 400, "dest"),
    ("GET", "/api/userdata?dir=..%2F..", None, 400, "dir"),
    ("GET", "/api/userdata?dir=%2Fetc", None, 400, "dir"),
    ("POST", "/api/settings", "[1]", 400, "body"),
    ("POST", "/api/settings", "{", 400, "body"),
    ("POST", "/api/settings/x", DEEP, 400, "body"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    PAGE_HOSTILE,
    ids=[f"{m} {p[:50]}" for m, p, _, _, _ in PAGE_HOSTILE],
)
async def test_hostile_names_for_the_pages_files_get_a_4xx(
    page_farm: Farm, method: str, path: str, body: Any, status: int, field: str
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, page_farm.base + path, data=body) as response:
            answer = await response.json()
            assert response.status == status, answer
    assert answer["error"]["field"] == field
    assert json.loads((page_farm.service.folder / "config.json").read_text())["servers"]
    assert not (page_farm.service.folder / "escape.json").exists()


async def test_a_repeat_answered_without_frames_still_shows_its_images(farm: Farm) -> None:
    """The same prompt again attaches to the first (the journal): no frame comes from a
    peer, so the gateway tells its images and its end itself."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(farm.base + "/ws?clientId=me") as socket:
            for prompt_id in ("first", "again"):
                body = {"prompt": workflows.invert(), "client_id": "me", "prompt_id": prompt_id}
                assert (await call_json(session, "POST", farm.base + "/prompt", body))[0] == 200
                heard = await frames_until_done(socket, prompt_id)
        _, history = await call_json(session, "GET", farm.base + "/history/again")
    assert sum(len(p.prompts_received) for p in farm.peers) == 1, "run once"
    executed = [d for k, d in heard if k == "executed"]
    assert executed and executed[0]["prompt_id"] == "again"
    assert executed[0]["output"] == history["again"]["outputs"]["3"]
    assert [k for k, _ in heard][-3:] == ["execution_success", "status", "executing"]


async def test_the_route_comes_from_extra_data_a_header_or_the_query(farm: Farm) -> None:
    """`gen` routes to server a only; without a route a prompt may go to either."""
    asks: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        ("/prompt", {"extra_data": {"dispatch_route": "gen"}}, {}),
        ("/prompt", {}, {"X-Dispatch-Route": "gen"}),
        ("/prompt?route=gen", {}, {}),
    ]
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(farm.base + "/ws?clientId=me") as socket:
            for n, (path, extra, headers) in enumerate(asks):
                body = {"prompt": workflows.invert(n), "client_id": "me", "prompt_id": f"r{n}"}
                async with session.post(
                    farm.base + path, json=body | extra, headers=headers
                ) as response:
                    assert response.status == 200, await response.text()
                await frames_until_done(socket, f"r{n}")
        _, history = await call_json(session, "GET", farm.base + "/history")
    assert len(farm.peers[0].prompts_received) == 3 and not farm.peers[1].prompts_received
    assert "dispatch_route" not in json.dumps(farm.peers[0].workflows_received)
    assert history["r0"]["prompt"][3] == {"dispatch_route": "gen", "client_id": "me"}


async def test_a_peers_frames_reach_the_client_with_its_token_masked(tmp_path: Path) -> None:
    """A peer that writes the token it is sent into its own error (echoing it, say): the
    client of the gateway never sees the token."""
    async with FakePeer(fail_nodes={"ImageInvert": "I was sent peer-s3cret"}) as peer:
        server = {"url": peer.url, "headers": {"Authorization": "Bearer peer-s3cret"}}
        (tmp_path / "config.json").write_text(json.dumps({"servers": {"a": server}}))
        service = DispatchService(tmp_path, status_interval=0)
        runner, base = await start(create_app(service))
        try:
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(base + "/ws?clientId=me") as socket:
                    body = {"prompt": workflows.invert(), "client_id": "me", "prompt_id": "t"}
                    assert (await call_json(session, "POST", base + "/prompt", body))[0] == 200
                    heard = await frames_until_done(socket, "t")
                _, history = await call_json(session, "GET", base + "/history/t")
        finally:
            await runner.cleanup()
    error = dict(heard)["execution_error"]
    assert error["exception_message"].startswith("I was sent ")
    assert "peer-s3cret" not in json.dumps(heard) + json.dumps(history)


@pytest.mark.parametrize(
    ("method", "path", "headers", "field"),
    [
        ("GET", "/ws", {"Origin": "http://evil.example", "Upgrade": "websocket"}, "Origin"),
        ("POST", "/prompt", {"Host": "evil.example:8190"}, "Host"),
        ("POST", "/api/prompt", {"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site"),
        ("GET", "/view?filename=x.png", {"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site"),
        ("POST", "/upload/image", {"Origin": "http://evil.example"}, "Origin"),
        ("POST", "/interrupt", {"Origin": "null"}, "Origin"),
    ],
)
async def test_other_sites_never_reach_the_comfyui_routes(
    farm: Farm, method: str, path: str, headers: dict[str, str], field: str
) -> None:
    body = json.dumps({"prompt": workflows.invert()})
    async with aiohttp.ClientSession() as session:
        async with session.request(
            method, farm.base + path, data=body, headers=headers
        ) as response:
            assert response.status == 403
            assert (await response.json())["field"] == field
    assert not any(p.prompts_received for p in farm.peers)


async def test_an_upload_is_kept_viewable_and_renamed_as_comfyui_renames(farm: Farm) -> None:
    async with aiohttp.ClientSession() as session:
        answers = []
        for color in ((1, 2, 3), (1, 2, 3), (9, 9, 9)):
            data = aiohttp.FormData()
            data.add_field("subfolder", "mine")
            png = encode_png(Image.solid(1, 1, color))
            data.add_field("image", png, filename="up.png")
            async with session.post(farm.base + "/upload/image", data=data) as response:
                answers.append(await response.json())
        params = {"filename": "up (1).png", "subfolder": "mine", "type": "input"}
        async with session.get(farm.base + "/view", params=params) as response:
            assert response.status == 200
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert decode_png(await response.read()).pixels == bytes([9, 9, 9])
        _, info = await call_json(session, "GET", farm.base + "/object_info/LoadImage")
    names = [a["name"] for a in answers]
    assert names == ["up.png", "up.png", "up (1).png"], "same bytes reuse the name"
    assert answers[0] == {"name": "up.png", "subfolder": "mine", "type": "input"}
    assert not any(p.uploads for p in farm.peers), "kept here until a prompt needs it"
    assert "LoadImage" in info
