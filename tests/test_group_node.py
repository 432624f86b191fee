"""Remote groups inside a stand-in ComfyUI: the prompt handler cuts them out at queue time,
and the RemoteDispatchGroup node runs each on a fake peer and hands its values back.

A few local node classes are played here by tiny torch functions, so that a whole queued
graph runs: local nodes before the group, the group on its peer, local nodes after it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from test_node import (  # noqa: F401 (fixtures)
    Comfy,
    add_this_comfyui,
    comfy,
    host_modules,
    pixels,
    torch,
)

OBJECT_INFO: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "dispatch_core/data/object_info_subset.json").read_text()
) | {"PrimitiveInt": {"output": ["INT"]}}


@pytest.fixture
def local(comfy: Comfy, tmp_path: Path) -> Iterator[Comfy]:  # noqa: F811 (the fixture)
    """ComfyUI's own `nodes` module as the handler reads it, and a temp folder."""
    import folder_paths

    module = ModuleType("nodes")
    module.NODE_CLASS_MAPPINGS = {  # type: ignore[attr-defined]
        name: type(name, (), {"RETURN_TYPES": tuple(info["output"])})
        for name, info in OBJECT_INFO.items()
    }
    saved = sys.modules.get("nodes")
    sys.modules["nodes"] = module
    folder_paths.temp_directory = str(tmp_path / "temp")
    try:
        yield comfy
    finally:
        if saved is None:
            sys.modules.pop("nodes", None)
        else:
            sys.modules["nodes"] = saved


def n(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


def ui(groups: dict[str, tuple[str, list[str]]], prompt: dict[str, Any]) -> dict[str, Any]:
    """A UI workflow for `prompt`: nodes in a row, each group drawn around its nodes."""
    nodes = [
        {"id": int(node_id), "type": node["class_type"], "pos": [300 * i, 100], "size": [200, 80]}
        for i, (node_id, node) in enumerate(prompt.items())
    ]
    drawn = []
    for key, (title, members) in groups.items():
        xs = [300 * list(prompt).index(member) for member in members]
        drawn.append(
            {
                "id": int(key),
                "title": title,
                "bounding": [min(xs) - 20, 0, max(xs) - min(xs) + 240, 300],
            }
        )
    return {"version": 0.4, "nodes": nodes, "links": [], "groups": drawn}


def queue(host: Comfy, prompt: dict[str, Any], groups: dict[str, tuple[str, list[str]]]) -> Any:
    """What `POST /prompt` hands ComfyUI's validation: the body after the prompt handlers."""
    body = {"prompt": prompt, "extra_data": {"extra_pnginfo": {"workflow": ui(groups, prompt)}}}
    return host.server.trigger_on_prompt(body)["prompt"]


LOCAL = {
    "EmptyImage": lambda width, height, batch_size, color: (
        torch.tensor([(color >> 16) & 255, (color >> 8) & 255, color & 255])
        .div(255)
        .expand(batch_size, height, width, 3),
    ),
    "ImageInvert": lambda image: (1.0 - image,),
    "PrimitiveInt": lambda value: (value,),
    "SaveImage": lambda images, filename_prefix: (images,),
}


def upstream_first(prompt: dict[str, Any]) -> list[str]:
    order: list[str] = []

    def visit(node_id: str) -> None:
        if node_id not in order:
            for value in prompt[node_id]["inputs"].values():
                if isinstance(value, list):
                    visit(value[0])
            order.append(node_id)

    for node_id in prompt:
        visit(node_id)
    return order


async def execute_group(host: Comfy, **inputs: Any) -> tuple[Any, ...]:
    """RemoteDispatchGroup as ComfyUI's prompt worker runs a node: another thread, a new loop."""
    node_class = host.node("RemoteDispatchGroup")
    host.server.last_prompt_id = "local-prompt"

    def worker() -> tuple[Any, ...]:
        return asyncio.run(node_class().run(**inputs))

    return await asyncio.to_thread(worker)


async def run(host: Comfy, prompt: dict[str, Any]) -> dict[str, Any]:
    """Run a queued prompt as ComfyUI would, each node after those it takes from."""
    outputs: dict[str, Any] = {}
    node_class = host.node("RemoteDispatchGroup")
    for node_id in upstream_first(prompt):
        node = prompt[node_id]
        inputs = {
            name: outputs[value[0]][value[1]] if isinstance(value, list) else value
            for name, value in node["inputs"].items()
        }
        if node["class_type"] == "RemoteDispatchGroup":
            assert node_class.VALIDATE_INPUTS(inputs["group"]) is True
            outputs[node_id] = await execute_group(host, unique_id=node_id, **inputs)
        else:
            outputs[node_id] = LOCAL[node["class_type"]](**inputs)
    return outputs


def only_prompt(peer: Any) -> dict[str, Any]:
    (sent,) = peer.workflows_received.values()
    return sent


async def test_a_group_runs_on_its_peer_and_the_local_save_gets_its_pixels(local: Comfy) -> None:
    prompt = {
        "1": n("EmptyImage", width=6, height=4, batch_size=1, color=0xFF0000),
        "2": n("ImageInvert", image=["1", 0]),
        "3": n("SaveImage", images=["2", 0], filename_prefix="x"),
    }
    queued = queue(local, prompt, {"1": ("Edit [server: edit]", ["2"])})
    assert [node["class_type"] for node in queued.values()] == [
        "EmptyImage",
        "RemoteDispatchGroup",
        "SaveImage",
    ]
    outputs = await run(local, queued)
    sent = only_prompt(local.peers["edit"])
    assert sorted(node["class_type"] for node in sent.values()) == [
        "ImageInvert",
        "LoadImage",
        "PreviewImage",
    ]
    assert local.peers["gen"].workflows_received == {}
    saved = outputs["3"][0]
    assert tuple(saved.shape) == (1, 4, 6, 3)
    assert pixels(saved)[:3] == b"\x00\xff\xff"  # red, inverted on the peer
    (job,) = local.service.jobs.activity.recent()
    assert job.label == "Edit [server: edit]" and job.server == "edit"


async def test_a_batch_crosses_as_one_loader_per_image(local: Comfy) -> None:
    prompt = {
        "1": n("EmptyImage", width=4, height=4, batch_size=3, color=0x0000FF),
        "2": n("ImageInvert", image=["1", 0]),
        "3": n("SaveImage", images=["2", 0], filename_prefix="x"),
    }
    outputs = await run(local, queue(local, prompt, {"1": ("[route: edit]", ["2"])}))
    assert tuple(outputs["3"][0].shape) == (3, 4, 4, 3)
    classes = [node["class_type"] for node in only_prompt(local.peers["edit"]).values()]
    assert classes.count("LoadImage") == 3 and classes.count("ImageBatch") == 2


async def test_a_plain_value_is_written_into_the_remote_input(local: Comfy) -> None:
    prompt = {
        "1": n("PrimitiveInt", value=24),
        "2": n("EmptyImage", width=["1", 0], height=8, batch_size=1, color=0),
        "3": n("SaveImage", images=["2", 0], filename_prefix="x"),
    }
    outputs = await run(local, queue(local, prompt, {"1": ("Make [server: gen]", ["2"])}))
    assert tuple(outputs["3"][0].shape) == (1, 8, 24, 3)
    sent = only_prompt(local.peers["gen"])
    assert sent["2"]["inputs"]["width"] == 24


async def test_a_latent_goes_from_one_group_to_another(local: Comfy) -> None:
    txt2img = {
        "4": n("CheckpointLoaderSimple", ckpt_name="sd15.safetensors"),
        "5": n("EmptyLatentImage", width=64, height=32, batch_size=1),
        "6": n("VAEDecode", samples=["5", 0], vae=["4", 2]),
        "7": n("SaveImage", images=["6", 0], filename_prefix="x"),
    }
    groups = {"1": ("Latent [server: gen]", ["5"]), "2": ("Decode [server: edit]", ["4", "6"])}
    outputs = await run(local, queue(local, txt2img, groups))
    assert tuple(outputs["7"][0].shape) == (1, 32, 64, 3)
    made = only_prompt(local.peers["gen"])
    assert any(node["class_type"] == "SaveLatent" for node in made.values())
    used = only_prompt(local.peers["edit"])
    (loader,) = [node for node in used.values() if node["class_type"] == "LoadLatent"]
    assert loader["inputs"]["latent"].endswith(".latent")


async def test_the_nodes_of_a_group_light_up_here_as_they_run_there(local: Comfy) -> None:
    import workflows

    local.peers["gen"].job_seconds = 0.3
    prompt = workflows.txt2img(steps=3)
    members = [key for key, node in prompt.items() if node["class_type"] != "SaveImage"]
    local.server.client_id = "tab-1"
    await run(local, queue(local, prompt, {"1": ("Gen [server: gen]", members)}))
    bars = [m for kind, m, sid in local.server.messages if kind == "progress" and sid == "tab-1"]
    sampler = [key for key, node in prompt.items() if node["class_type"] == "KSampler"]
    assert [(m["node"], m["value"], m["max"]) for m in bars if m["node"] in sampler] == [
        (sampler[0], step, 3) for step in (1, 2, 3)
    ]
    lit = {m["node"] for kind, m, _ in local.server.messages if kind == "executing"}
    assert set(sampler) <= lit <= set(members)


async def test_a_fan_out_group_runs_everywhere_with_seed_plus_i(local: Comfy) -> None:
    import workflows

    prompt = {key: node for key, node in workflows.txt2img(seed=7).items()}
    members = [key for key, node in prompt.items() if node["class_type"] != "SaveImage"]
    queued = queue(local, prompt, {"1": ("Gen [fan-out: pool]", members)})
    outputs = await run(local, queued)
    (saved,) = [
        out[0]
        for key, out in outputs.items()
        if prompt.get(key, {}).get("class_type") == "SaveImage"
    ]
    assert saved.shape[0] == 3
    seeds = [
        node["inputs"]["seed"]
        for name in ("gen", "edit", "c")
        for node in only_prompt(local.peers[name]).values()
        if node["class_type"] == "KSampler"
    ]
    assert seeds == [7, 8, 9]


async def test_the_groups_own_save_image_shows_its_images_here(local: Comfy) -> None:
    prompt = {
        "1": n("EmptyImage", width=4, height=4, batch_size=1, color=0x00FF00),
        "2": n("SaveImage", images=["1", 0], filename_prefix="remote"),
    }
    queued = queue(local, prompt, {"1": ("All [server: gen]", ["1", "2"])})
    assert [node["class_type"] for node in queued.values()] == ["RemoteDispatchGroup"]
    local.server.client_id = "tab-1"
    await run(local, queued)
    await_messages = [m for m in local.server.messages if m[0] == "executed"]
    ((_, message, sid),) = await_messages
    assert message["node"] == "2" and sid == "tab-1"
    (image,) = message["output"]["images"]
    assert image["type"] == "temp"
    import folder_paths

    assert (Path(folder_paths.get_temp_directory()) / image["filename"]).is_file()


async def test_a_group_sent_to_this_comfyui_itself_is_refused_at_once(local: Comfy) -> None:
    await add_this_comfyui(local, "here", ["self"])
    prompt = {
        "1": n("EmptyImage", width=4, height=4, batch_size=1, color=0),
        "2": n("ImageInvert", image=["1", 0]),
        "3": n("SaveImage", images=["2", 0], filename_prefix="x"),
    }
    with pytest.raises(Exception, match=r"'self' \(http://localhost:\d+\) is this ComfyUI itself"):
        await run(local, queue(local, prompt, {"1": ("Edit [route: here]", ["2"])}))
    assert not local.service.jobs.activity.recent()  # nothing was queued anywhere


async def test_a_model_link_across_the_edge_is_refused_at_validation(local: Comfy) -> None:
    import workflows

    prompt = workflows.txt2img()
    queued = queue(local, prompt, {"1": ("Sample [server: gen]", ["3"])})
    ((node_id, node),) = queued.items()
    assert node_id == "3"  # the node the refused link feeds: the frontend marks it
    message = local.node("RemoteDispatchGroup").VALIDATE_INPUTS(node["inputs"]["group"])
    assert message.startswith("cannot send MODEL into remote group 'Sample': the link from node 4")
    assert "move node 4 (CheckpointLoaderSimple) into the group" in message


async def test_a_target_that_is_not_configured_is_refused_at_validation(local: Comfy) -> None:
    prompt = {
        "1": n("EmptyImage", width=4, height=4, batch_size=1, color=0),
        "2": n("SaveImage", images=["1", 0], filename_prefix="x"),
    }
    queued = queue(local, prompt, {"1": ("[server: gpu-z]", ["1", "2"])})
    (node,) = queued.values()
    message = local.node("RemoteDispatchGroup").VALIDATE_INPUTS(node["inputs"]["group"])
    assert message.startswith("remote group: unknown server 'gpu-z' (known: c, edit, gen)")


@pytest.mark.parametrize(
    ("group", "message"),
    [
        ("", "this node is made when a remote group is queued"),
        (7, "remote group: not a remote group plan"),
        ({"version": 1}, "remote group: not a remote group plan"),
        ("[" * 50_000 + "]" * 50_000, "nested deeper than"),
        ('{"refused": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested deeper than"),
        ('{"version": 1, "target": "server:gen", "key": ' + "9" * 5000 + "}", "integer"),
    ],
)
def test_a_hostile_group_input_is_refused_at_validation_never_raised(
    local: Comfy, group: Any, message: str
) -> None:
    """VALIDATE_INPUTS takes `group`, so ComfyUI checks nothing of it first: any prompt
    posted to ComfyUI reaches it as it was sent."""
    answer = local.node("RemoteDispatchGroup").VALIDATE_INPUTS(group)
    assert isinstance(answer, str) and message in answer


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": {"1": n("EmptyImage")}},  # a script's bare API prompt
        {"prompt": {"1": n("EmptyImage")}, "extra_data": {"extra_pnginfo": {"workflow": 7}}},
        {"prompt": "nonsense", "extra_data": {"extra_pnginfo": {"workflow": {"nodes": []}}}},
        {"prompt": {}, "extra_data": []},
    ],
)
def test_a_prompt_without_remote_groups_is_left_as_it_is(local: Comfy, body: Any) -> None:
    assert local.server.trigger_on_prompt(json.loads(json.dumps(body))) == body


def test_a_failure_of_the_cut_itself_refuses_rather_than_runs_here(
    local: Comfy, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = local.package.nodes.group_handler

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(handler, "rewrite_prompt", broken)
    prompt = {"1": n("EmptyImage", width=4, height=4, batch_size=1, color=0)}
    body = {
        "prompt": prompt,
        "extra_data": {"extra_pnginfo": {"workflow": ui({"1": ("[server: gen]", ["1"])}, prompt)}},
    }
    queued = handler.on_prompt(body)["prompt"]
    (node,) = queued.values()
    message = local.node("RemoteDispatchGroup").VALIDATE_INPUTS(node["inputs"]["group"])
    assert message == "remote groups could not be prepared: boom"


@pytest.mark.parametrize(
    ("data", "suffix"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, ".png"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 20, ".jpg"),
        (b"GIF89a" + b"\0" * 20, ".gif"),
        (b"RIFF\0\0\0\0WEBPVP8 ", ".webp"),
        (b"<html><script>alert(1)</script></html>", None),  # a peer's "image.png"
        (b"RIFF\0\0\0\0WAVEfmt ", None),
        (b"", None),
    ],
)
def test_a_peer_file_is_shown_here_only_when_its_bytes_are_an_image(
    local: Comfy, data: bytes, suffix: str | None
) -> None:
    """The local temp folder is served by ComfyUI's /view by suffix: the bytes decide it."""
    assert local.package.nodes.group_previews.image_suffix(data) == suffix
