"""Cutting remote groups out of an API prompt: graph shapes, what crosses, every refusal.

Each shape is a prompt, its groups, and the rewrite drawn as lines: the local prompt's
nodes, then each plan's boundary and sub-workflow. In those lines a link reads `input=node:output`
and an input the run fills (a file name, or a value) reads `input=?`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from dispatch_core import GroupError, WorkflowError
from dispatch_core.groups import (
    REPLACEMENT_CLASS,
    RemoteGroup,
    Rewrite,
    Target,
    plan_from_json,
    plan_to_json,
    refusal_of,
    remote_groups,
    rewrite_prompt,
    titled,
)

import workflows

OBJECT_INFO: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "dispatch_core/data/object_info_subset.json").read_text()
)
# Stock ComfyUI classes beyond the shipped subset, with their real output types; and one
# whose output is a list of choices, as custom nodes declare combo outputs.
OBJECT_INFO |= {
    "PrimitiveInt": {"output": ["INT"]},
    "PrimitiveFloat": {"output": ["FLOAT"]},
    "PrimitiveString": {"output": ["STRING"]},
    "PrimitiveBoolean": {"output": ["BOOLEAN"]},
    "LatentUpscaleBy": {"output": ["LATENT"]},
    "ControlNetLoader": {"output": ["CONTROL_NET"]},
    "ControlNetApplyAdvanced": {"output": ["CONDITIONING", "CONDITIONING"]},
    "ChooseSampler": {"output": [["euler", "heun"]]},
}
GPU_B = Target("server", "gpu-b")


def n(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


def group(key: str, nodes: set[str], target: Target = GPU_B, name: str = "Edit") -> RemoteGroup:
    return RemoteGroup(key, titled(name, target), target, frozenset(nodes))


def chain() -> dict[str, Any]:
    """EmptyImage 1 → ImageInvert 2 → ImageBlur 3 → SaveImage 4."""
    return {
        "1": n("EmptyImage", width=8, height=8, batch_size=1, color=0),
        "2": n("ImageInvert", image=["1", 0]),
        "3": n("ImageBlur", image=["2", 0], blur_radius=1, sigma=1.0),
        "4": n("SaveImage", images=["3", 0], filename_prefix="x"),
    }


def draw(rewrite: Rewrite) -> list[str]:
    lines = ["local " + _node(node_id, node) for node_id, node in rewrite.prompt.items()]
    for plan in rewrite.plans:
        lines.append(f"plan {plan.group.key} {plan.group.target} as {plan.node_id}")
        for b in plan.inputs:
            fills = ", ".join(f"{node}.{name}" for node, name in b.fills)
            lines.append(f"  {b.name} {b.type} {b.kind} from {_src(b.source)} fills {fills}")
        for o in plan.outputs:
            lines.append(f"  out {o.index} {o.type} {o.kind} from {_src(o.source)} at {o.node}")
        lines += ["  " + _node(node_id, node) for node_id, node in plan.workflow.items()]
    return lines


def _src(source: Any) -> str:
    return f"{source.node}:{source.output}"


def _node(node_id: str, node: dict[str, Any]) -> str:
    parts = [node_id, node["class_type"]]
    for name, value in node["inputs"].items():
        if isinstance(value, list):
            parts.append(f"{name}={value[0]}:{value[1]}")
        elif value is None:
            parts.append(f"{name}=?")
    return " ".join(parts)


def subgraph_chain() -> dict[str, Any]:
    """The chain inside subgraph node 12 (ids 12:4 … 12:6), saved outside it by node 13."""
    return {
        "12:4": n("EmptyImage", width=8, height=8, batch_size=1, color=0),
        "12:5": n("ImageInvert", image=["12:4", 0]),
        "12:6": n("ImageBlur", image=["12:5", 0], blur_radius=1, sigma=1.0),
        "13": n("SaveImage", images=["12:6", 0], filename_prefix="x"),
    }


def primitive_in() -> dict[str, Any]:
    return {
        "1": n("EmptyImage", width=8, height=8, batch_size=1, color=0),
        "5": n("PrimitiveInt", value=3),
        "2": n("ImageBlur", image=["1", 0], blur_radius=["5", 0], sigma=1.0),
        "3": n("SaveImage", images=["2", 0], filename_prefix="x"),
    }


def latent() -> dict[str, Any]:
    return {
        "4": n("CheckpointLoaderSimple", ckpt_name="sd15.safetensors"),
        "5": n("EmptyLatentImage", width=64, height=64, batch_size=1),
        "9": n("LatentUpscaleBy", samples=["5", 0], upscale_method="nearest-exact", scale_by=1.5),
        "8": n("VAEDecode", samples=["9", 0], vae=["4", 2]),
        "10": n("SaveImage", images=["8", 0], filename_prefix="x"),
    }


def mask_in() -> dict[str, Any]:
    return {
        "1": n("SolidMask", value=0.5, width=8, height=8),
        "2": n("MaskToImage", mask=["1", 0]),
        "3": n("SaveImage", images=["2", 0], filename_prefix="x"),
    }


def mask_out() -> dict[str, Any]:
    return {
        "1": n("EmptyImage", width=8, height=8, batch_size=1, color=0),
        "2": n("ImageToMask", image=["1", 0], channel="red"),
        "3": n("MaskToImage", mask=["2", 0]),
        "4": n("SaveImage", images=["3", 0], filename_prefix="x"),
    }


def shared() -> dict[str, Any]:
    """One output feeding two inputs inside, one feeding two nodes outside."""
    return {
        "1": n("EmptyImage", width=8, height=8, batch_size=1, color=0),
        "2": n("ImageBatch", image1=["1", 0], image2=["1", 0]),
        "3": n("SaveImage", images=["2", 0], filename_prefix="x"),
        "4": n("PreviewImage", images=["2", 0]),
    }


def two_branches() -> dict[str, Any]:
    prompt = chain()
    prompt |= {
        "5": n("EmptyImage", width=8, height=8, batch_size=1, color=255),
        "6": n("ImageInvert", image=["5", 0]),
        "7": n("SaveImage", images=["6", 0], filename_prefix="y"),
    }
    return prompt


def taken_ids() -> dict[str, Any]:
    """A prompt (from a script) whose ids are those the rewrite would pick first."""
    return {
        "1": n("EmptyImage", width=8, height=8, batch_size=1, color=0),
        "in_0": n("ImageInvert", image=["1", 0]),
        "remote_group_g": n("SaveImage", images=["in_0", 0], filename_prefix="x"),
    }


SHAPES: list[tuple[str, dict[str, Any], list[RemoteGroup], list[str]]] = [
    (
        "a group in the middle: an IMAGE in, an IMAGE out",
        chain(),
        [group("g", {"2", "3"})],
        [
            "local 1 EmptyImage",
            "local remote_group_g RemoteDispatchGroup in_0=1:0",
            "local 4 SaveImage images=remote_group_g:0",
            "plan g server:gpu-b as remote_group_g",
            "  in_0 IMAGE image from 1:0 fills in_0.image",
            "  out 0 IMAGE image from 3:0 at out_0",
            "  in_0 LoadImage image=?",
            "  2 ImageInvert image=in_0:0",
            "  3 ImageBlur image=2:0",
            "  out_0 PreviewImage images=3:0",
        ],
    ),
    (
        "a source group: only outputs",
        chain(),
        [group("g", {"1", "2"})],
        [
            "local remote_group_g RemoteDispatchGroup",
            "local 3 ImageBlur image=remote_group_g:0",
            "local 4 SaveImage images=3:0",
            "plan g server:gpu-b as remote_group_g",
            "  out 0 IMAGE image from 2:0 at out_0",
            "  1 EmptyImage",
            "  2 ImageInvert image=1:0",
            "  out_0 PreviewImage images=2:0",
        ],
    ),
    (
        "a sink group: only inputs, its SaveImage runs on the peer",
        chain(),
        [group("g", {"3", "4"})],
        [
            "local 1 EmptyImage",
            "local 2 ImageInvert image=1:0",
            "local remote_group_g RemoteDispatchGroup in_0=2:0",
            "plan g server:gpu-b as remote_group_g",
            "  in_0 IMAGE image from 2:0 fills in_0.image",
            "  in_0 LoadImage image=?",
            "  3 ImageBlur image=in_0:0",
            "  4 SaveImage images=3:0",
        ],
    ),
    (
        "a group with no outside links",
        chain(),
        [group("g", {"1", "2", "3", "4"})],
        [
            "local remote_group_g RemoteDispatchGroup",
            "plan g server:gpu-b as remote_group_g",
            "  1 EmptyImage",
            "  2 ImageInvert image=1:0",
            "  3 ImageBlur image=2:0",
            "  4 SaveImage images=3:0",
        ],
    ),
    (
        "an empty group, and one whose nodes are all bypassed: nothing changes",
        chain(),
        [group("g", set()), group("h", {"98", "99"})],
        [
            "local 1 EmptyImage",
            "local 2 ImageInvert image=1:0",
            "local 3 ImageBlur image=2:0",
            "local 4 SaveImage images=3:0",
        ],
    ),
    (
        "a group inside a subgraph: ids like 12:5",
        subgraph_chain(),
        [group("12:3", {"12:5", "12:6"})],
        [
            "local 12:4 EmptyImage",
            "local remote_group_12_3 RemoteDispatchGroup in_0=12:4:0",
            "local 13 SaveImage images=remote_group_12_3:0",
            "plan 12:3 server:gpu-b as remote_group_12_3",
            "  in_0 IMAGE image from 12:4:0 fills in_0.image",
            "  out 0 IMAGE image from 12:6:0 at out_0",
            "  in_0 LoadImage image=?",
            "  12:5 ImageInvert image=in_0:0",
            "  12:6 ImageBlur image=12:5:0",
            "  out_0 PreviewImage images=12:6:0",
        ],
    ),
    (
        "a group feeding another group, on another target",
        chain(),
        [group("a", {"2"}), group("b", {"3"}, Target("route", "upscale"), "Blur")],
        [
            "local 1 EmptyImage",
            "local remote_group_a RemoteDispatchGroup in_0=1:0",
            "local remote_group_b RemoteDispatchGroup in_0=remote_group_a:0",
            "local 4 SaveImage images=remote_group_b:0",
            "plan a server:gpu-b as remote_group_a",
            "  in_0 IMAGE image from 1:0 fills in_0.image",
            "  out 0 IMAGE image from 2:0 at out_0",
            "  in_0 LoadImage image=?",
            "  2 ImageInvert image=in_0:0",
            "  out_0 PreviewImage images=2:0",
            "plan b route:upscale as remote_group_b",
            "  in_0 IMAGE image from 2:0 fills in_0.image",
            "  out 0 IMAGE image from 3:0 at out_0",
            "  in_0 LoadImage image=?",
            "  3 ImageBlur image=in_0:0",
            "  out_0 PreviewImage images=3:0",
        ],
    ),
    (
        "two groups side by side on different servers",
        two_branches(),
        [group("a", {"2"}), group("b", {"6"}, Target("server", "gpu-c"))],
        [
            "local 1 EmptyImage",
            "local remote_group_a RemoteDispatchGroup in_0=1:0",
            "local 3 ImageBlur image=remote_group_a:0",
            "local 4 SaveImage images=3:0",
            "local 5 EmptyImage",
            "local remote_group_b RemoteDispatchGroup in_0=5:0",
            "local 7 SaveImage images=remote_group_b:0",
            "plan a server:gpu-b as remote_group_a",
            "  in_0 IMAGE image from 1:0 fills in_0.image",
            "  out 0 IMAGE image from 2:0 at out_0",
            "  in_0 LoadImage image=?",
            "  2 ImageInvert image=in_0:0",
            "  out_0 PreviewImage images=2:0",
            "plan b server:gpu-c as remote_group_b",
            "  in_0 IMAGE image from 5:0 fills in_0.image",
            "  out 0 IMAGE image from 6:0 at out_0",
            "  in_0 LoadImage image=?",
            "  6 ImageInvert image=in_0:0",
            "  out_0 PreviewImage images=6:0",
        ],
    ),
    (
        "a fan-out group: its images come back as one batch",
        chain(),
        [group("g", {"1", "2"}, Target("fan-out", "generate"))],
        [
            "local remote_group_g RemoteDispatchGroup",
            "local 3 ImageBlur image=remote_group_g:0",
            "local 4 SaveImage images=3:0",
            "plan g fan-out:generate as remote_group_g",
            "  out 0 IMAGE image from 2:0 at out_0",
            "  1 EmptyImage",
            "  2 ImageInvert image=1:0",
            "  out_0 PreviewImage images=2:0",
        ],
    ),
    (
        "a primitive crossing in: inlined where it is used",
        primitive_in(),
        [group("g", {"2"})],
        [
            "local 1 EmptyImage",
            "local 5 PrimitiveInt",
            "local remote_group_g RemoteDispatchGroup in_0=1:0 in_1=5:0",
            "local 3 SaveImage images=remote_group_g:0",
            "plan g server:gpu-b as remote_group_g",
            "  in_0 IMAGE image from 1:0 fills in_0.image",
            "  in_1 INT value from 5:0 fills 2.blur_radius",
            "  out 0 IMAGE image from 2:0 at out_0",
            "  in_0 LoadImage image=?",
            "  2 ImageBlur image=in_0:0 blur_radius=?",
            "  out_0 PreviewImage images=2:0",
        ],
    ),
    (
        "a primitive crossing out: read back from a PreviewAny",
        primitive_in(),
        [group("g", {"5"})],
        [
            "local 1 EmptyImage",
            "local remote_group_g RemoteDispatchGroup",
            "local 2 ImageBlur image=1:0 blur_radius=remote_group_g:0",
            "local 3 SaveImage images=2:0",
            "plan g server:gpu-b as remote_group_g",
            "  out 0 INT value from 5:0 at out_0",
            "  5 PrimitiveInt",
            "  out_0 PreviewAny source=5:0",
        ],
    ),
    (
        "a LATENT crossing both ways: LoadLatent and SaveLatent",
        latent(),
        [group("g", {"9"})],
        [
            "local 4 CheckpointLoaderSimple",
            "local 5 EmptyLatentImage",
            "local remote_group_g RemoteDispatchGroup in_0=5:0",
            "local 8 VAEDecode samples=remote_group_g:0 vae=4:2",
            "local 10 SaveImage images=8:0",
            "plan g server:gpu-b as remote_group_g",
            "  in_0 LATENT latent from 5:0 fills in_0.latent",
            "  out 0 LATENT latent from 9:0 at out_0",
            "  in_0 LoadLatent latent=?",
            "  9 LatentUpscaleBy samples=in_0:0",
            "  out_0 SaveLatent samples=9:0",
        ],
    ),
    (
        "a MASK crossing in: a grey PNG, read by LoadImageMask",
        mask_in(),
        [group("g", {"2"})],
        [
            "local 1 SolidMask",
            "local remote_group_g RemoteDispatchGroup in_0=1:0",
            "local 3 SaveImage images=remote_group_g:0",
            "plan g server:gpu-b as remote_group_g",
            "  in_0 MASK mask from 1:0 fills in_0.image",
            "  out 0 IMAGE image from 2:0 at out_0",
            "  in_0 LoadImageMask image=?",
            "  2 MaskToImage mask=in_0:0",
            "  out_0 PreviewImage images=2:0",
        ],
    ),
    (
        "a MASK crossing out: drawn as an image on the peer",
        mask_out(),
        [group("g", {"2"})],
        [
            "local 1 EmptyImage",
            "local remote_group_g RemoteDispatchGroup in_0=1:0",
            "local 3 MaskToImage mask=remote_group_g:0",
            "local 4 SaveImage images=3:0",
            "plan g server:gpu-b as remote_group_g",
            "  in_0 IMAGE image from 1:0 fills in_0.image",
            "  out 0 MASK mask from 2:0 at out_0",
            "  in_0 LoadImage image=?",
            "  2 ImageToMask image=in_0:0",
            "  out_0_image MaskToImage mask=2:0",
            "  out_0 PreviewImage images=out_0_image:0",
        ],
    ),
    (
        "one output used twice on each side: one input, one output",
        shared(),
        [group("g", {"2"})],
        [
            "local 1 EmptyImage",
            "local remote_group_g RemoteDispatchGroup in_0=1:0",
            "local 3 SaveImage images=remote_group_g:0",
            "local 4 PreviewImage images=remote_group_g:0",
            "plan g server:gpu-b as remote_group_g",
            "  in_0 IMAGE image from 1:0 fills in_0.image",
            "  out 0 IMAGE image from 2:0 at out_0",
            "  in_0 LoadImage image=?",
            "  2 ImageBatch image1=in_0:0 image2=in_0:0",
            "  out_0 PreviewImage images=2:0",
        ],
    ),
    (
        "ids the rewrite would pick are taken: it picks others",
        taken_ids(),
        [group("g", {"in_0"})],
        [
            "local 1 EmptyImage",
            "local remote_group_g_2 RemoteDispatchGroup in_0=1:0",
            "local remote_group_g SaveImage images=remote_group_g_2:0",
            "plan g server:gpu-b as remote_group_g_2",
            "  in_0 IMAGE image from 1:0 fills in_0_2.image",
            "  out 0 IMAGE image from in_0:0 at out_0",
            "  in_0_2 LoadImage image=?",
            "  in_0 ImageInvert image=in_0_2:0",
            "  out_0 PreviewImage images=in_0:0",
        ],
    ),
]


@pytest.mark.parametrize(
    ("prompt", "groups", "expected"), [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES]
)
def test_shape(prompt: dict[str, Any], groups: list[RemoteGroup], expected: list[str]) -> None:
    before = copy.deepcopy(prompt)
    rewrite = rewrite_prompt(prompt, groups, object_info=OBJECT_INFO)
    assert draw(rewrite) == expected
    assert prompt == before  # the input is never changed


@pytest.mark.parametrize(
    ("source", "type_"),
    [
        ("PrimitiveInt", "INT"),
        ("PrimitiveFloat", "FLOAT"),
        ("PrimitiveString", "STRING"),
        ("PrimitiveBoolean", "BOOLEAN"),
        ("ChooseSampler", "COMBO"),
    ],
)
def test_every_plain_value_crosses_inlined(source: str, type_: str) -> None:
    prompt = {"1": n(source), "2": n("PreviewAny", source=["1", 0])}
    (plan,) = rewrite_prompt(prompt, [group("g", {"2"})], object_info=OBJECT_INFO).plans
    (boundary,) = plan.inputs
    assert (boundary.type, boundary.kind, boundary.fills) == (type_, "value", (("2", "source"),))
    assert plan.workflow == {"2": n("PreviewAny", source=None)}


# --- the replacement node and its plan ------------------------------------------------------


def test_the_replacement_node_carries_its_plan_and_target() -> None:
    rewrite = rewrite_prompt(chain(), [group("g", {"2", "3"})], object_info=OBJECT_INFO)
    node = rewrite.prompt["remote_group_g"]
    assert node == {
        "class_type": REPLACEMENT_CLASS,
        "inputs": {"group": node["inputs"]["group"], "target": "server:gpu-b", "in_0": ["1", 0]},
        "_meta": {"title": "Edit [server: gpu-b]"},
    }
    assert REPLACEMENT_CLASS == "RemoteDispatchGroup"
    (plan,) = rewrite.plans
    assert json.loads(node["inputs"]["group"]) == plan_to_json(plan)
    assert plan_from_json(node["inputs"]["group"]) == plan
    assert plan_from_json(plan_to_json(plan)).workflow == plan.workflow


def test_plan_json_holds_the_boundary() -> None:
    (plan,) = rewrite_prompt(primitive_in(), [group("g", {"2"})], object_info=OBJECT_INFO).plans
    data = plan_to_json(plan)
    assert {k: data[k] for k in ("version", "key", "title", "target", "nodes", "node_id")} == {
        "version": 1,
        "key": "g",
        "title": "Edit [server: gpu-b]",
        "target": "server:gpu-b",
        "nodes": ["2"],
        "node_id": "remote_group_g",
    }
    assert data["inputs"] == [
        {
            "name": "in_0",
            "type": "IMAGE",
            "kind": "image",
            "source": ["1", 0],
            "fills": [["in_0", "image"]],
        },
        {
            "name": "in_1",
            "type": "INT",
            "kind": "value",
            "source": ["5", 0],
            "fills": [["2", "blur_radius"]],
        },
    ]
    assert data["outputs"] == [
        {"type": "IMAGE", "kind": "image", "source": ["2", 0], "node": "out_0"}
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(version=2), "version 2, not 1"),
        (lambda d: d.update(target="moon:x"), "not a remote group target: 'moon:x'"),
        (lambda d: d.update(workflow=[]), "workflow is not an object"),
        (lambda d: d["inputs"][0].update(kind="tensor"), "kind 'tensor' is not one of"),
        (lambda d: d["outputs"][0].update(source=["2", -1]), "output -1 is not an output index"),
        (lambda d: d["inputs"][0].update(fills=[["in_0"]]), "not enough values to unpack"),
        (lambda d: d.pop("nodes"), "'nodes'"),
        (lambda d: d.update(key=3), "3 is not a string"),
    ],
)
def test_a_malformed_plan_is_a_workflow_error(change: Any, message: str) -> None:
    (plan,) = rewrite_prompt(chain(), [group("g", {"2", "3"})], object_info=OBJECT_INFO).plans
    data = plan_to_json(plan)
    change(data)
    with pytest.raises(WorkflowError, match=r"^not a remote group plan: ") as caught:
        plan_from_json(json.dumps(data))
    assert message in str(caught.value)
    with pytest.raises(WorkflowError, match="not a remote group plan"):
        plan_from_json("{not json")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper than"),
        ('{"version": 1, "key": ' + "9" * 5000 + "}", "integer"),
        ('{"version": NaN}', "NaN"),
        ("\ud800", "not valid JSON"),
        ("", "not valid JSON"),
    ],
)
def test_a_hostile_plan_text_is_a_workflow_error_not_a_crash(text: str, message: str) -> None:
    """The plan comes in a prompt anyone who reaches ComfyUI may post."""
    with pytest.raises(WorkflowError, match=r"^not a remote group plan: ") as caught:
        plan_from_json(text)
    assert message in str(caught.value)
    assert refusal_of('{"refused": ' + text + "}") is None


def test_from_the_ui_workflow_to_the_rewrite() -> None:
    """Membership and rewrite together: nested groups, each node in the innermost."""
    nodes = [
        {"id": i, "type": t, "pos": [x, 50], "size": [100, 60]}
        for i, t, x in [(1, "EmptyImage", -500), (2, "ImageInvert", 50), (3, "ImageBlur", 250)]
    ]
    groups = [
        {"id": 1, "title": "Edit [server: gpu-b]", "bounding": [0, 0, 600, 300]},
        {"id": 2, "title": "Blur [server: gpu-c]", "bounding": [200, 0, 200, 200]},
    ]
    found = remote_groups({"nodes": nodes, "groups": groups, "links": []})
    rewrite = rewrite_prompt(chain(), found, object_info=OBJECT_INFO)
    assert draw(rewrite)[:4] == [
        "local 1 EmptyImage",
        "local remote_group_1 RemoteDispatchGroup in_0=1:0",
        "local remote_group_2 RemoteDispatchGroup in_0=remote_group_1:0",
        "local 4 SaveImage images=remote_group_2:0",
    ]


# --- refusals ------------------------------------------------------------------------------

CAN = "would cross to another server, and only images, masks, latents and plain values can"


def pair(source: str, output: int, user: str, name: str) -> dict[str, Any]:
    """Node 1 (`source`) feeding node 2 (`user`) through `name`."""
    return {"1": n(source), "2": n(user, **{name: ["1", output]})}


REFUSALS = [
    (
        "MODEL into the group",
        pair("CheckpointLoaderSimple", 0, "KSampler", "model"),
        {"2"},
        "cannot send MODEL into remote group 'Edit': the link from node 1 "
        f"(CheckpointLoaderSimple) output 0 to node 2 (KSampler) input 'model' {CAN}; "
        "move node 1 (CheckpointLoaderSimple) into the group, or node 2 (KSampler) out of it",
    ),
    (
        "MODEL out of the group",
        pair("CheckpointLoaderSimple", 0, "KSampler", "model"),
        {"1"},
        "cannot send MODEL out of remote group 'Edit': the link from node 1 "
        f"(CheckpointLoaderSimple) output 0 to node 2 (KSampler) input 'model' {CAN}; "
        "move node 1 (CheckpointLoaderSimple) out of the group, or node 2 (KSampler) into it",
    ),
    (
        "CLIP",
        pair("CheckpointLoaderSimple", 1, "CLIPTextEncode", "clip"),
        {"2"},
        "cannot send CLIP into remote group 'Edit': the link from node 1 "
        f"(CheckpointLoaderSimple) output 1 to node 2 (CLIPTextEncode) input 'clip' {CAN}; "
        "move node 1 (CheckpointLoaderSimple) into the group, or node 2 (CLIPTextEncode) out of it",
    ),
    (
        "VAE",
        pair("CheckpointLoaderSimple", 2, "VAEDecode", "vae"),
        {"2"},
        "cannot send VAE into remote group 'Edit': the link from node 1 "
        f"(CheckpointLoaderSimple) output 2 to node 2 (VAEDecode) input 'vae' {CAN}; "
        "move node 1 (CheckpointLoaderSimple) into the group, or node 2 (VAEDecode) out of it",
    ),
    (
        "CONDITIONING",
        pair("CLIPTextEncode", 0, "KSampler", "positive"),
        {"2"},
        "cannot send CONDITIONING into remote group 'Edit': the link from node 1 "
        f"(CLIPTextEncode) output 0 to node 2 (KSampler) input 'positive' {CAN}; "
        "move node 1 (CLIPTextEncode) into the group, or node 2 (KSampler) out of it",
    ),
    (
        "CONTROL_NET",
        pair("ControlNetLoader", 0, "ControlNetApplyAdvanced", "control_net"),
        {"2"},
        "cannot send CONTROL_NET into remote group 'Edit': the link from node 1 "
        f"(ControlNetLoader) output 0 to node 2 (ControlNetApplyAdvanced) input 'control_net' "
        f"{CAN}; move node 1 (ControlNetLoader) into the group, or node 2 "
        "(ControlNetApplyAdvanced) out of it",
    ),
    (
        "any other in-memory type: UPSCALE_MODEL",
        pair("UpscaleModelLoader", 0, "ImageUpscaleWithModel", "upscale_model"),
        {"2"},
        "cannot send UPSCALE_MODEL into remote group 'Edit': the link from node 1 "
        "(UpscaleModelLoader) output 0 to node 2 (ImageUpscaleWithModel) input 'upscale_model' "
        f"{CAN}; move node 1 (UpscaleModelLoader) into the group, or node 2 "
        "(ImageUpscaleWithModel) out of it",
    ),
    (
        "a class the local ComfyUI does not list",
        pair("MysteryNode", 0, "ImageInvert", "image"),
        {"2"},
        "cannot send an output of unknown type into remote group 'Edit': the link from node 1 "
        f"(MysteryNode) output 0 to node 2 (ImageInvert) input 'image' {CAN}; "
        "move node 1 (MysteryNode) into the group, or node 2 (ImageInvert) out of it",
    ),
    (
        "an output the class does not have",
        pair("EmptyImage", 3, "ImageInvert", "image"),
        {"2"},
        "cannot send an output of unknown type into remote group 'Edit': the link from node 1 "
        f"(EmptyImage) output 3 to node 2 (ImageInvert) input 'image' {CAN}; "
        "move node 1 (EmptyImage) into the group, or node 2 (ImageInvert) out of it",
    ),
]


@pytest.mark.parametrize(
    ("prompt", "nodes", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refusal(prompt: dict[str, Any], nodes: set[str], message: str) -> None:
    with pytest.raises(GroupError) as caught:
        rewrite_prompt(prompt, [group("g", nodes)], object_info=OBJECT_INFO)
    assert str(caught.value) == message
    assert (caught.value.node, caught.value.group, caught.value.field) == ("2", "g", "2")
    assert caught.value.problems == (message,)


def test_a_plain_value_cannot_leave_a_fan_out_group() -> None:
    with pytest.raises(GroupError) as caught:
        rewrite_prompt(
            primitive_in(), [group("g", {"5"}, Target("fan-out", "gen"))], object_info=OBJECT_INFO
        )
    assert str(caught.value) == (
        "cannot send INT out of fan-out group 'Edit': the link from node 5 (PrimitiveInt) "
        "output 0 to node 2 (ImageBlur) input 'blur_radius' would carry one value per server, "
        "and a fan-out group returns only images, masks and latents, as one batch; "
        "move node 5 (PrimitiveInt) out of the group, or node 2 (ImageBlur) into it"
    )


def test_every_refused_link_is_listed_at_once() -> None:
    with pytest.raises(GroupError) as caught:
        rewrite_prompt(workflows.txt2img(), [group("g", {"3"})], object_info=OBJECT_INFO)
    assert [line.split(":")[0] for line in caught.value.problems] == [
        "cannot send MODEL into remote group 'Edit'",
        "cannot send CONDITIONING into remote group 'Edit'",
        "cannot send CONDITIONING into remote group 'Edit'",
    ]
    assert "input 'negative'" in caught.value.problems[2]
    assert caught.value.node == "3"


def test_the_whole_txt2img_in_a_group_needs_nothing_to_cross() -> None:
    prompt = workflows.txt2img()
    rewrite = rewrite_prompt(prompt, [group("g", set(prompt))], object_info=OBJECT_INFO)
    assert list(rewrite.prompt) == ["remote_group_g"]
    assert rewrite.plans[0].workflow == prompt


def test_a_link_that_leaves_and_comes_back_is_refused() -> None:
    prompt = chain()  # 1 → 2 → 3 → 4; with the group {2, 4}, node 3 is between
    prompt["4"] = n("ImageScaleBy", image=["3", 0], upscale_method="nearest-exact", scale_by=2)
    prompt["5"] = n("SaveImage", images=["4", 0], filename_prefix="x")
    with pytest.raises(GroupError) as caught:
        rewrite_prompt(prompt, [group("g", {"2", "4"})], object_info=OBJECT_INFO)
    assert str(caught.value) == (
        "remote group 'Edit' would have to run twice: node 3 (ImageBlur) is outside it but "
        "takes from it and feeds it again; move node 3 (ImageBlur) into the group, or split "
        "the group in two"
    )
    assert caught.value.node == "3"


def test_two_groups_that_feed_each_other_are_refused() -> None:
    prompt = chain()  # a = {2}, b = {3}, and a's second node 5 takes b's output
    prompt["5"] = n("ImageBatch", image1=["2", 0], image2=["3", 0])
    prompt["4"]["inputs"]["images"] = ["5", 0]
    groups = [group("a", {"2", "5"}), group("b", {"3"}, name="Blur")]
    with pytest.raises(GroupError) as caught:
        rewrite_prompt(prompt, groups, object_info=OBJECT_INFO)
    assert caught.value.problems == (
        "remote group 'Edit' would have to run twice: node 3 (ImageBlur) is outside it but "
        "takes from it and feeds it again; move node 3 (ImageBlur) into the group, or split "
        "the group in two",
    )


def test_several_nodes_between_are_named_together() -> None:
    prompt = chain()  # 1 → 2 → 3 → 6 → 4: the group {2, 4} has 3 and 6 between
    prompt["6"] = n("ImageInvert", image=["3", 0])
    prompt["4"] = n("ImageScaleBy", image=["6", 0], upscale_method="nearest-exact", scale_by=2)
    with pytest.raises(GroupError) as caught:
        rewrite_prompt(prompt, [group("g", {"2", "4"})], object_info=OBJECT_INFO)
    assert str(caught.value) == (
        "remote group 'Edit' would have to run twice: node 3 (ImageBlur), node 6 (ImageInvert) "
        "are outside it but take from it and feed it again; move them into the group, or split "
        "the group in two"
    )


def test_a_node_given_to_two_groups_is_refused() -> None:
    with pytest.raises(GroupError) as caught:
        rewrite_prompt(
            chain(), [group("a", {"2"}), group("b", {"2", "3"}, name="Blur")], object_info={}
        )
    assert str(caught.value) == (
        "node 2 (ImageInvert) is in two remote groups, 'Edit' and 'Blur'; move it into one of them"
    )


def test_the_groups_face() -> None:
    import dispatch_core.groups as face

    assert set(face.__all__) == {
        "NODE_TITLE_HEIGHT",
        "REPLACEMENT_CLASS",
        "BoundaryInput",
        "BoundaryKind",
        "BoundaryOutput",
        "GroupPlan",
        "RemoteGroup",
        "Rewrite",
        "Source",
        "Target",
        "TargetKind",
        "parse_title",
        "plan_from_json",
        "plan_to_json",
        "refusal_node",
        "refusal_of",
        "remote_groups",
        "replacement_node",
        "rewrite_prompt",
        "titled",
    }
