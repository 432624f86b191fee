"""The Remote Dispatch nodes inside a stand-in of ComfyUI's host modules, against fake peers.

The package is loaded the way ComfyUI's `load_custom_node` loads it; each node runs the way
ComfyUI runs a prompt: in a worker thread, in a fresh event loop, while the routes and the
engine live on the server's loop (this test's loop).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from yarl import URL

from dispatch_core.testing import FakePeer
from dispatch_core.testing._png import Image, decode_png, encode_png

import workflows

if os.environ.get("CI") and importlib.util.find_spec("torch") is None:
    pytest.fail("CI must run the node tests: install torch (the CPU build)")
torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
HOST = Path(__file__).resolve().parent / "comfy_host"
PACKAGE = "ComfyUI-Dispatch"


@dataclass
class Comfy:
    """A stand-in ComfyUI with this package loaded, and the peers it dispatches to."""

    package: ModuleType
    server: Any
    base: str
    peers: dict[str, FakePeer]
    folder: Path
    ui: dict[str, Any] | None = None
    """What the last node run showed in place (ComfyUI's `ui` of an output node)."""
    outputs: dict[str, Any] | None = None
    """Every output of the last node run, by name."""

    @property
    def service(self) -> Any:
        return self.package.nodes.host.service()

    def node(self, name: str) -> Any:
        return self.package.NODE_CLASS_MAPPINGS[name]

    async def execute(self, name: str, client_id: str = "tab-1", **inputs: Any) -> Any:
        """Run one node as ComfyUI's prompt worker does: another thread, a fresh loop."""
        cls = self.node(name)
        defaults = {
            key: spec[1].get("default")
            for key, spec in cls.INPUT_TYPES()["required"].items()
            if isinstance(spec[1], dict) and "default" in spec[1]
        }
        kwargs = defaults | {"unique_id": "42"} | inputs
        self.server.client_id = client_id
        self.server.last_prompt_id = f"local-{uuid.uuid4()}"

        def worker() -> Any:
            return asyncio.run(getattr(cls(), cls.FUNCTION)(**kwargs))

        output = await asyncio.to_thread(worker)
        self.ui = output["ui"]
        self.outputs = dict(zip(cls.RETURN_NAMES, output["result"], strict=True))
        return output["result"][:2]  # images, result


def _load_package() -> ModuleType:
    spec = importlib.util.spec_from_file_location(PACKAGE, ROOT / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def host_modules(tmp_path: Path) -> Iterator[None]:
    sys.path.insert(0, str(HOST))
    try:
        import folder_paths

        folder_paths.user_directory = str(tmp_path / "user")
        folder_paths.output_directory = str(tmp_path / "output")
        folder_paths.temp_directory = str(tmp_path / "temp")
        yield
    finally:
        sys.path.remove(str(HOST))
        stand_ins = (PACKAGE, "server", "comfy", "comfy_api", "comfy_extras")
        for name in [n for n in sys.modules if n.split(".")[0] in stand_ins]:
            del sys.modules[name]
        sys.modules.pop("folder_paths", None)


@pytest.fixture
async def comfy(host_modules: None, tmp_path: Path) -> AsyncIterator[Comfy]:
    import comfy.model_management
    import comfy.utils
    import server
    from aiohttp import web

    comfy.utils.updates.clear()
    comfy.utils.previews.clear()
    comfy.model_management.interrupt_processing = False
    async with AsyncExitStack() as stack:
        models = {"checkpoints": ["sd15.safetensors"]}
        peers = {
            n: await stack.enter_async_context(FakePeer(models=models))
            for n in ("gen", "edit", "c")
        }
        folder = tmp_path / "user" / "__dispatch"
        folder.mkdir(parents=True)
        config = {
            "servers": {name: peer.url for name, peer in peers.items()},
            "routes": {"generate": "gen", "edit": "edit", "pool": ["gen", "edit", "c"]},
        }
        (folder / "config.json").write_text(json.dumps(config))
        prompt_server = server.PromptServer(asyncio.get_running_loop())
        package = _load_package()
        prompt_server.app.add_routes(prompt_server.routes)  # as ComfyUI's add_routes does
        runner = web.AppRunner(prompt_server.app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        stack.push_async_callback(runner.cleanup)  # runs on_shutdown: closes the service
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        found = Comfy(package, prompt_server, base, peers, folder)
        yield found


def pixels(batch: Any, index: int = 0) -> bytes:
    return bytes((batch[index] * 255).round().to(torch.uint8).flatten().tolist())


async def test_node_returns_the_peers_images_as_a_tensor(comfy: Comfy) -> None:
    comfy.service.templates.save("invert", workflows.invert(0x102030, width=16, height=8))
    images, result = await comfy.execute(
        "RemoteDispatch", template="invert", route="edit", server="(route's servers)"
    )
    assert images.dtype == torch.float32 and tuple(images.shape) == (1, 8, 16, 3)
    summary = json.loads(result)
    assert summary["server"] == "edit" and summary["images"] == 1
    (file,) = summary["files"]
    assert file["url"].startswith(comfy.peers["edit"].url + "/view?")
    png = comfy.peers["edit"].files.get("output", file["subfolder"], file["filename"])
    assert png is not None
    assert pixels(images) == decode_png(png).pixels  # exactly the peer's PNG
    assert pixels(images)[:3] == bytes((0xFF - 0x10, 0xFF - 0x20, 0xFF - 0x30))


async def test_parameters_prompt_seed_and_overrides_reach_the_peer(comfy: Comfy) -> None:
    comfy.service.templates.save("gen", workflows.txt2img(), parameters=None)
    _, result = await comfy.execute(
        "RemoteDispatch",
        template="gen",
        route="generate",
        server="(route's servers)",
        prompt="a lighthouse",
        seed=1234,
        overrides='{"Negative Prompt.text": "fog", "steps": 3}',
    )
    sent = comfy.peers["gen"].workflows_received[json.loads(result)["prompt_id"]]
    assert sent["6"]["inputs"]["text"] == "a lighthouse"
    assert sent["7"]["inputs"]["text"] == "fog"
    assert sent["3"]["inputs"]["seed"] == 1234 and sent["3"]["inputs"]["steps"] == 3


async def test_an_image_input_is_uploaded_into_the_image_parameter(comfy: Comfy) -> None:
    comfy.service.templates.save("edit", workflows.load_invert())
    source = torch.zeros((2, 4, 6, 3))
    source[0, ..., 0] = 1.0  # red
    source[1, ..., 2] = 1.0  # blue
    images, result = await comfy.execute(
        "RemoteDispatch", template="edit", route="edit", server="(route's servers)", image=source
    )
    assert tuple(images.shape) == (2, 4, 6, 3)  # one job per input image, in order
    assert pixels(images, 0)[:3] == b"\x00\xff\xff" and pixels(images, 1)[:3] == b"\xff\xff\x00"
    assert len(comfy.peers["edit"].uploads) == 2
    assert len(json.loads(result)["jobs"]) == 2


async def test_progress_drives_the_bar_and_the_progress_text(comfy: Comfy) -> None:
    import comfy.utils as comfy_utils

    comfy.peers["gen"].job_seconds = 0.6
    comfy.service.templates.save("gen", workflows.txt2img(steps=6))
    await comfy.execute("RemoteDispatch", template="gen", route="generate", server="gen")
    values = [value for value, total, node in comfy_utils.updates if node == "42"]
    assert values and values == sorted(values) and 0 < values[-1] <= 100
    assert all(total == 100 for _, total, _ in comfy_utils.updates)
    texts = comfy.server.progress_text
    assert any(text.startswith("gen: node 3, ") and "/6" in text for text, _, _ in texts)
    assert texts[-1][0].startswith("gen: 1 image(s) in ")
    assert {sid for _, _, sid in texts} == {"tab-1"}  # the tab that queued it, not all


async def test_a_local_interrupt_interrupts_the_prompt_on_the_peer(comfy: Comfy) -> None:
    import comfy.model_management as mm

    peer = comfy.peers["gen"]
    peer.job_seconds = 30
    comfy.service.templates.save("gen", workflows.txt2img(steps=50))
    running = asyncio.create_task(
        comfy.execute("RemoteDispatch", template="gen", route="generate", server="gen")
    )
    while not peer.prompts_received:  # noqa: ASYNC110 - waits for the fake
        await asyncio.sleep(0.02)
    mm.interrupt_current_processing()
    with pytest.raises(mm.InterruptProcessingException):
        await running
    for _ in range(200):
        if ("POST", "/interrupt") in peer.requests:
            break
        await asyncio.sleep(0.02)
    assert ("POST", "/interrupt") in peer.requests
    await asyncio.wait_for(peer.idle(), 5)


async def test_a_peer_failure_becomes_the_nodes_error(comfy: Comfy) -> None:
    comfy.peers["gen"].fail_nodes["KSampler"] = "CUDA out of memory"
    comfy.service.templates.save("gen", workflows.txt2img())
    with pytest.raises(Exception, match="CUDA out of memory") as caught:
        await comfy.execute("RemoteDispatch", template="gen", route="generate", server="gen")
    text = str(caught.value)
    assert "node 3 (KSampler)" in text and "server 'gen'" in text


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"overrides": "{oops"}, "overrides: not valid JSON at line 1, column 2"),
        ({"overrides": "[1]"}, "overrides must be a JSON object"),
        ({"overrides": '{"99.text": "x"}'}, "no node '99'"),
        ({"overrides": '{"style": "x"}'}, "has no parameter 'style'"),
        ({"template": "nope"}, "no template 'nope'"),
        ({"route": "nope"}, "unknown route 'nope'"),
        ({"server": "nope"}, "unknown server 'nope'"),
        ({"template": "(no template saved yet)"}, "save a workflow as a template"),
    ],
)
async def test_bad_node_inputs_say_what_to_fix(
    comfy: Comfy, inputs: dict[str, Any], message: str
) -> None:
    comfy.service.templates.save("invert", workflows.invert())
    base = {"template": "invert", "route": "edit", "server": "(route's servers)"}
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)")):
        await comfy.execute("RemoteDispatch", **(base | inputs))


async def test_images_of_different_sizes_are_reported_not_cropped(comfy: Comfy) -> None:
    workflow = workflows.invert(width=16, height=8)
    workflow["4"] = {
        "class_type": "EmptyImage",
        "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 0},
    }
    workflow["5"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["4", 0], "filename_prefix": "b"},
    }
    comfy.service.templates.save("two", workflow)
    mismatch = r"differ in size.*(16×8: .*4×4|4×4: .*16×8): .*output_node"
    with pytest.raises(ValueError, match=mismatch):
        await comfy.execute(
            "RemoteDispatch", template="two", route="edit", server="(route's servers)"
        )
    images, _ = await comfy.execute(
        "RemoteDispatch", template="two", route="edit", server="(route's servers)", output_node="5"
    )
    assert tuple(images.shape) == (1, 4, 4, 3)


async def test_is_changed_follows_the_template_file(comfy: Comfy) -> None:
    node = comfy.node("RemoteDispatch")
    comfy.service.templates.save("t", workflows.invert())
    first = node.IS_CHANGED(template="t", route="edit", seed=1)
    assert node.IS_CHANGED(template="t", route="edit", seed=1) == first
    comfy.service.templates.save("t", workflows.invert(color=0x00FF00))
    assert node.IS_CHANGED(template="t", route="edit", seed=1) != first


async def test_input_types_list_templates_routes_and_servers(comfy: Comfy) -> None:
    node = comfy.node("RemoteDispatch")
    assert node.INPUT_TYPES()["required"]["template"][0] == ["(no template saved yet)"]
    comfy.service.templates.save("b", workflows.invert())
    comfy.service.templates.save("a", workflows.invert())
    required = node.INPUT_TYPES()["required"]
    assert required["template"][0] == ["a", "b"]
    assert required["route"][0] == ["generate", "edit", "pool"]
    assert required["server"][0] == ["(route's servers)", "gen", "edit", "c"]
    assert required["seed"][1]["control_after_generate"] is True


async def test_fan_out_returns_every_servers_images_in_order_with_seeds(comfy: Comfy) -> None:
    comfy.service.templates.save("gen", workflows.txt2img())
    images, result = await comfy.execute(
        "RemoteDispatchFanOut", template="gen", route="pool", servers="", on_error="fail", seed=10
    )
    summary = json.loads(result)
    assert [job["server"] for job in summary["jobs"]] == ["gen", "edit", "c"]
    assert summary["seeds"] == {"gen": 10, "edit": 11, "c": 12}
    for index, job in enumerate(summary["jobs"]):
        sent = comfy.peers[job["server"]].workflows_received[job["prompt_id"]]
        assert sent["3"]["inputs"]["seed"] == 10 + index
        first = job["files"][0]
        png = comfy.peers[job["server"]].files.get("output", first["subfolder"], first["filename"])
        assert png is not None
        assert pixels(images, index) == decode_png(png).pixels
    assert images.shape[0] == 3


async def test_fan_out_uses_the_templates_own_parameters(comfy: Comfy) -> None:
    comfy.service.templates.save("gen", workflows.txt2img(), parameters={"look": "6.text"})
    _, result = await comfy.execute(
        "RemoteDispatchFanOut",
        template="gen",
        route="pool",
        servers="gen, c",
        on_error="fail",
        overrides='{"look": "a storm"}',
    )
    for job in json.loads(result)["jobs"]:
        sent = comfy.peers[job["server"]].workflows_received[job["prompt_id"]]
        assert sent["6"]["inputs"]["text"] == "a storm"
    labels = {record.label for record in comfy.service.jobs.activity.recent()}
    assert labels == {"gen"}


async def test_fan_out_partial_keeps_the_others_images(comfy: Comfy) -> None:
    comfy.peers["edit"].fail_nodes["KSampler"] = "no such model"
    comfy.service.templates.save("gen", workflows.txt2img())
    inputs = {"template": "gen", "route": "pool", "servers": "c, edit, gen", "seed": 1}
    with pytest.raises(Exception, match="no such model"):
        await comfy.execute("RemoteDispatchFanOut", on_error="fail", **inputs)
    images, result = await comfy.execute("RemoteDispatchFanOut", on_error="partial", **inputs)
    summary = json.loads(result)
    assert [job["server"] for job in summary["jobs"]] == ["c", "gen"]
    assert (
        summary["failed"][0]["server"] == "edit"
        and "no such model" in summary["failed"][0]["error"]
    )
    assert images.shape[0] == 2


async def test_routes_are_served_on_comfyuis_server_and_events_reach_the_ui(comfy: Comfy) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(comfy.base + "/dispatch/config") as response:
            body = await response.json()
    assert set(body["config"]["servers"]) == {"gen", "edit", "c"}
    comfy.service.templates.save("t", workflows.invert())
    await comfy.execute("RemoteDispatch", template="t", route="edit", server="(route's servers)")
    await asyncio.sleep(0.05)  # send_sync hops through the loop
    events = [event for event, _, _ in comfy.server.messages]
    assert "dispatch.job" in events


async def test_a_broken_config_is_reported_by_the_node_not_at_import(
    host_modules: None, tmp_path: Path
) -> None:
    import server

    folder = tmp_path / "user" / "__dispatch"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{broken")
    server.PromptServer(asyncio.get_running_loop())
    package = _load_package()  # must not raise
    service = package.nodes.host.service()
    try:
        assert "config.json.bad" in (service.config_error or "")
        assert package.NODE_CLASS_MAPPINGS["RemoteDispatch"].INPUT_TYPES()["required"]["route"][
            0
        ] == ["(no route configured)"]
    finally:
        await service.close()


async def test_our_state_is_out_of_reach_of_comfyuis_user_data_routes(comfy: Comfy) -> None:
    user = comfy.folder.parent
    assert comfy.service.folder == user / "__dispatch"
    if os.name == "posix":
        assert comfy.folder.stat().st_mode & 0o777 == 0o700
    async with aiohttp.ClientSession() as session:
        (user / "default").mkdir(exist_ok=True)
        (user / "default" / "probe.txt").write_text("served")
        async with session.get(comfy.base + "/userdata/probe.txt") as response:
            assert response.status == 200  # the stand-in route serves user/default/
        for name in ("dispatch%2Fconfig.json", "..%2F__dispatch%2Fconfig.json"):
            url = URL(f"{comfy.base}/userdata/{name}", encoded=True)
            async with session.get(url) as response:
                assert response.status in (403, 404), name


def old_state(user: Path) -> Path:
    """The folder older versions kept under `user/default/`, as they left it."""
    old = user / "default" / "dispatch"
    (old / "templates").mkdir(parents=True)
    (old / "templates" / "t.json").write_text(json.dumps({"workflow": workflows.invert()}))
    config = {
        "servers": {"gpu": {"url": "http://127.0.0.1:9", "headers": {"Authorization": "s3cret"}}},
        "routes": {"default": "gpu"},
    }
    (old / "config.json").write_text(json.dumps(config))
    (old / ".config.json.abcdefgh.tmp").write_text(json.dumps(config))
    (old / "calibration.json").write_text(json.dumps({"gpu": 1.5}))
    (old / "workers.json").write_text(json.dumps({"w": {"port": 8300, "comfyui": "/x"}}))
    (old / "workers").mkdir()
    (old / "workers" / "w.log").write_text("started\n")
    return old


@pytest.mark.parametrize("system_users", [True, False], ids=["newer ComfyUI", "0.3.64"])
async def test_an_old_state_folder_is_moved_on_first_start(
    host_modules: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, system_users: bool
) -> None:
    import folder_paths
    import server

    if not system_users:
        monkeypatch.delattr(folder_paths, "get_system_user_directory")
    user = tmp_path / "user"
    old_state(user)
    server.PromptServer(asyncio.get_running_loop())
    package = _load_package()  # registers the routes: the service starts here
    service = package.nodes.host.service()
    try:
        assert service.folder == user / "__dispatch"
        assert service.config.servers["gpu"].headers == {"Authorization": "s3cret"}
        assert service.templates.names() == ["t"]
        assert [w["name"] for w in service.fleet.list()] == ["w"]
        assert "comfyui" not in service.fleet.list()[0]
        assert service.fleet.manager.log("w") == "started"
        made_here = ("jobs.sqlite",)  # the service's own job table, opened at start
        moved = sorted(p.name for p in service.folder.iterdir() if not p.name.startswith(made_here))
        assert moved == ["calibration.json", "config.json", "templates", "workers", "workers.json"]
        assert not (user / "default" / "dispatch").exists()
        leftovers = [p for p in (user / "default").rglob("*") if p.is_file()]
        assert not any("s3cret" in p.read_text(errors="replace") for p in leftovers)
    finally:
        await service.close()


async def test_a_failed_move_keeps_the_old_folder_working(
    host_modules: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import server

    old = old_state(tmp_path / "user")
    replace = os.replace

    def no_other_disk(source: Any, target: Any) -> None:
        if Path(source).name == "templates":
            raise OSError(18, "Invalid cross-device link")
        replace(source, target)

    monkeypatch.setattr(os, "replace", no_other_disk)
    server.PromptServer(asyncio.get_running_loop())
    package = _load_package()
    service = package.nodes.host.service()
    try:
        assert service.folder == old
        assert set(service.config.servers) == {"gpu"} and service.templates.names() == ["t"]
        assert not any((tmp_path / "user" / "__dispatch").iterdir())
        assert "/api/userdata serves" in caplog.text
    finally:
        await service.close()


def test_tensor_round_trip_through_png() -> None:
    sys.path.insert(0, str(HOST))
    try:
        package = _load_package()
        images = package.nodes.images
        picture = Image.solid(5, 3, (0x33, 0x66, 0x99))
        batch = images.to_batch([("a", encode_png(picture))])
        assert pixels(batch) == picture.pixels
        assert decode_png(images.to_png(batch[0])).pixels == picture.pixels
        with pytest.raises(ValueError, match="x: not an image"):
            images.to_batch([("x", b"not a png")])
        assert tuple(images.to_batch([]).shape) == (0, 64, 64, 3)
        huge = encode_png(Image.solid(1, 1, (0, 0, 0)))
        header = (150_000).to_bytes(4, "big") + (1_000).to_bytes(4, "big") + huge[24:29]
        crc = zlib.crc32(b"IHDR" + header).to_bytes(4, "big")
        huge = huge[:16] + header + crc + huge[33:]  # a PNG that claims 150 MP
        too_large = r"big: too large, refused \(150000×1000 pixels is more than 128 MP"
        with pytest.raises(ValueError, match=too_large):
            images.to_batch([("big", huge)])
    finally:
        sys.path.remove(str(HOST))
        for name in [n for n in sys.modules if n.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def test_the_package_runs_where_only_its_requirements_are_installed(tmp_path: Path) -> None:
    """In ComfyUI, `dispatch_core` is reached through the package, never installed."""
    script = f"""
import importlib, importlib.util, sys
sys.modules["dispatch_core"] = None  # any absolute import of it now fails
spec = importlib.util.spec_from_file_location("ComfyUI-Dispatch", {str(ROOT / "__init__.py")!r})
package = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = package
spec.loader.exec_module(package)
workflow = importlib.import_module("ComfyUI-Dispatch.dispatch_core.workflow")
workflow.WorkflowBuilder({workflows.invert()!r}).set("1", "width", 3)  # reads shipped data
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr


async def test_a_rerun_after_a_restart_attaches_instead_of_running_again(comfy: Comfy) -> None:
    comfy.service.templates.save("invert", workflows.invert(0x445566))
    inputs = {"template": "invert", "route": "edit", "server": "(route's servers)"}
    first, first_result = await comfy.execute("RemoteDispatch", **inputs)
    host = comfy.package.nodes.host
    await host.service().close()  # ComfyUI stops; the journal stays on disk
    host._service = None
    again, again_result = await comfy.execute("RemoteDispatch", **inputs)
    assert len(comfy.peers["edit"].prompts_received) == 1
    assert json.loads(again_result)["prompt_id"] == json.loads(first_result)["prompt_id"]
    assert pixels(again) == pixels(first)
    assert (await host.service().ready()).counts["attached"] == 1


async def test_fan_out_on_an_auto_route_goes_to_every_enabled_server(comfy: Comfy) -> None:
    await comfy.service.edit_config(comfy.service.edits.put_route("everywhere", "auto"))
    comfy.service.templates.save("gen", workflows.txt2img())
    images, result = await comfy.execute(
        "RemoteDispatchFanOut", template="gen", route="everywhere", servers="", on_error="fail"
    )
    assert [job["server"] for job in json.loads(result)["jobs"]] == ["gen", "edit", "c"]
    assert images.shape[0] == 3


async def test_a_repeated_node_job_is_served_from_the_cache(comfy: Comfy) -> None:
    comfy.service.templates.save("invert", workflows.invert(0x102030, width=16, height=8))
    inputs = {"template": "invert", "route": "generate", "server": "gen"}
    first, _ = await comfy.execute("RemoteDispatch", **inputs)
    again, result = await comfy.execute("RemoteDispatch", **inputs)
    assert json.loads(result)["cached"] is True
    assert len(comfy.peers["gen"].prompts_received) == 1
    assert pixels(again) == pixels(first)


async def test_the_node_previews_its_images_in_place_byte_for_byte(comfy: Comfy) -> None:
    node = comfy.node("RemoteDispatch")
    assert node.OUTPUT_NODE is True  # so that it alone is a valid prompt
    assert {"remote", "multi gpu", "distributed", "render farm"} <= set(node.SEARCH_ALIASES)
    comfy.service.templates.save("invert", workflows.invert(0x102030, width=16, height=8))
    _, result = await comfy.execute(
        "RemoteDispatch", template="invert", route="edit", server="(route's servers)"
    )
    assert comfy.ui is not None
    (shown,) = comfy.ui["images"]
    assert shown["type"] == "temp" and shown["subfolder"] == ""
    (file,) = json.loads(result)["files"]
    local = await asyncio.to_thread(
        (comfy.folder.parent.parent / "temp" / shown["filename"]).read_bytes
    )
    assert local == comfy.peers["edit"].files.get("output", file["subfolder"], file["filename"])
    assert not (comfy.folder.parent.parent / "output").exists()  # nothing saved unasked


async def test_save_output_names_files_with_the_templates_prefix(comfy: Comfy) -> None:
    workflow = workflows.invert(width=4, height=4)
    workflow["3"]["inputs"]["filename_prefix"] = "portraits/face"
    comfy.service.templates.save("invert", workflow)
    output = comfy.folder.parent.parent / "output"
    (output / "portraits").mkdir(parents=True)
    (output / "portraits" / "face_00041_.png").write_bytes(b"an earlier one")
    inputs = {"template": "invert", "route": "edit", "server": "(route's servers)"}
    _, result = await comfy.execute("RemoteDispatch", save_output=True, **inputs)
    assert comfy.ui is not None
    assert comfy.ui["images"] == [
        {"filename": "face_00042_.png", "subfolder": "portraits", "type": "output"}
    ]
    assert json.loads(result)["saved"] == ["portraits/face_00042_.png"]
    assert (output / "portraits" / "face_00042_.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("filename", "subfolder", "prefix"),
    [
        ("ComfyUI_00001_.png", "", "ComfyUI"),
        ("x_00002_.png", "../../etc", "etc/x"),
        ("..\\..\\evil_00003_.png", "a/../..", "a/evil"),
        ("name.png", "/abs/olute", "abs/olute/name"),
        ("_00001_.png", "..", "ComfyUI"),
        ("sp ace$|:_00001_.webp", "sub:dir", "sub_dir/sp ace_"),
    ],
)
def test_a_peers_file_name_becomes_a_safe_local_prefix(
    filename: str, subfolder: str, prefix: str
) -> None:
    sys.path.insert(0, str(HOST))
    try:
        package = _load_package()
        assert package.nodes.outputs.prefix_of(filename, subfolder) == prefix
    finally:
        sys.path.remove(str(HOST))
        for name in [n for n in sys.modules if n.split(".")[0] == PACKAGE]:
            del sys.modules[name]


async def add_this_comfyui(comfy: Comfy, route: str, servers: list[str]) -> None:
    edits = comfy.service.edits
    await comfy.service.edit_config(
        edits.add_server("self", {"url": comfy.base.replace("127.0.0.1", "localhost")})
    )
    await comfy.service.edit_config(edits.put_route(route, servers))


async def test_a_job_for_this_comfyui_itself_is_refused_before_anything_is_queued(
    comfy: Comfy,
) -> None:
    await add_this_comfyui(comfy, "here", ["self"])
    comfy.service.templates.save("invert", workflows.invert())
    for inputs in (
        {"route": "here", "server": "(route's servers)"},
        {"route": "edit", "server": "self"},
    ):
        with pytest.raises(
            Exception, match=r"'self' \(http://localhost:\d+\) is this ComfyUI itself"
        ):
            await comfy.execute("RemoteDispatch", template="invert", **inputs)
    with pytest.raises(Exception, match="is this ComfyUI itself"):
        await comfy.execute(
            "RemoteDispatchFanOut",
            template="invert",
            route="here",
            servers="self, gen",
            on_error="partial",
        )
    assert not comfy.service.jobs.activity.recent()  # nothing was queued anywhere


async def test_a_pool_that_includes_this_comfyui_runs_on_the_others(comfy: Comfy) -> None:
    await add_this_comfyui(comfy, "both", ["self", "gen"])
    comfy.service.templates.save("gen", workflows.txt2img())
    for _ in range(2):
        _, result = await comfy.execute(
            "RemoteDispatch",
            template="gen",
            route="both",
            server="(route's servers)",
            seed=len(comfy.peers["gen"].prompts_received),
        )
        assert json.loads(result)["server"] == "gen"
    _, result = await comfy.execute(
        "RemoteDispatchFanOut", template="gen", route="both", servers="", on_error="fail"
    )
    assert [job["server"] for job in json.loads(result)["jobs"]] == ["gen"]


async def test_the_peers_sampler_previews_show_on_the_node(comfy: Comfy) -> None:
    """Through ComfyUI's own progress bar, as its samplers send theirs: the browser gets
    them as this node's preview."""
    import comfy.utils as comfy_utils

    peer = comfy.peers["gen"]
    peer.preview_method, peer.job_seconds = "latent2rgb", 0.6
    comfy.service.templates.save("gen", workflows.txt2img(steps=6))
    await comfy.execute("RemoteDispatch", template="gen", route="generate", server="gen")
    assert comfy_utils.previews  # throttled: at least the first, at most one per step
    assert len(comfy_utils.previews) <= 6
    assert set(comfy_utils.previews) == {("JPEG", (64, 64), 512, "42")}


async def test_parameter_widgets_values_reach_the_peer_and_overrides_win(comfy: Comfy) -> None:
    parameters = {"look": "6.text", "steps": "3.steps", "cfg": "3.cfg", "sampler": "3.sampler_name"}
    comfy.service.templates.save("gen", workflows.txt2img(), parameters=parameters)
    widgets = {"param:look": "a storm", "param:steps": 7, "param:cfg": 4.5, "param:sampler": "ddim"}
    _, result = await comfy.execute(
        "RemoteDispatch",
        template="gen",
        route="generate",
        server="gen",
        overrides='{"cfg": 6.0}',
        **widgets,
    )
    sent = comfy.peers["gen"].workflows_received[json.loads(result)["prompt_id"]]["3"]["inputs"]
    assert (
        comfy.peers["gen"].workflows_received[json.loads(result)["prompt_id"]]["6"]["inputs"][
            "text"
        ]
        == "a storm"
    )
    assert (sent["steps"], sent["cfg"], sent["sampler_name"]) == (7, 6.0, "ddim")
    with pytest.raises(Exception, match="has no parameter 'style'"):
        await comfy.execute(
            "RemoteDispatch", template="gen", route="generate", server="gen", **{"param:style": "x"}
        )


def test_the_optional_inputs_take_any_parameter_but_list_only_their_own() -> None:
    """As ComfyUI's execution asks them (`in`, `[]`), and as /object_info lists them."""
    sys.path.insert(0, str(HOST))
    try:
        optional = _load_package().nodes.remote_dispatch._optional_inputs()
        assert "param:prompt" in optional and optional["param:prompt"][0] == "*"
        assert "param:" not in optional and "other" not in optional
        assert optional["image"][0] == "IMAGE"
        listed = json.loads(json.dumps(optional))
        assert list(listed) == ["prompt", "image", "output_node", "save_output"]
    finally:
        sys.path.remove(str(HOST))
        for name in [n for n in sys.modules if n.split(".")[0] == PACKAGE]:
            del sys.modules[name]


async def test_with_a_shared_queue_this_comfyui_takes_jobs_from_its_start(
    host_modules: None, tmp_path: Path
) -> None:
    """Not once something here has run: a `serve` joins at once, and so does ComfyUI."""
    import server
    from aiohttp import web
    from redis_server import RedisServer, need_redis

    need_redis()
    with RedisServer(tmp_path / "redis") as redis:
        async with FakePeer() as peer:
            folder = tmp_path / "user" / "__dispatch"
            folder.mkdir(parents=True)
            config = {"servers": {"gpu": peer.url}, "queue": {"backend": "redis", "url": redis.url}}
            (folder / "config.json").write_text(json.dumps(config))
            prompt_server = server.PromptServer(asyncio.get_running_loop())
            _load_package()
            runner = web.AppRunner(prompt_server.app)
            await runner.setup()  # ComfyUI's start: the app's startup hooks run
            try:
                host = sys.modules[f"{PACKAGE}.nodes.host"]
                assert host._joining is not None, "nothing started at ComfyUI's start"
                await asyncio.wait_for(host._joining, 10)
                assert host.service()._dispatcher is not None, "no dispatcher until first use"
                shared = host.service()._dispatcher.coordination
                assert type(shared).__module__.startswith(f"{PACKAGE}.dispatch_core.redis")
            finally:
                await runner.cleanup()
