# ruff: noqa: F811 - the fixtures of test_node are imported, then named as arguments
"""The example workflows ComfyUI's template browser lists: only ours, and loadable.

ComfyUI 0.3.64 (app/custom_node_manager.py) lists every `*.json` of a custom node's
folders named `example_workflows`, `example`, `examples`, `workflow` or `workflows`; its
frontend shows `NAME.jpg` beside each. A UI-format workflow keeps widget values by
position, so each file is checked against the nodes' inputs as they are now.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from test_node import Comfy, comfy, host_modules  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ["example_workflows", "example", "examples", "workflow", "workflows"]
EXAMPLES = sorted((ROOT / "example_workflows").glob("*.json"))
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}


def test_only_example_workflows_is_a_folder_comfyui_lists() -> None:
    assert [name for name in SCANNED if (ROOT / name).is_dir()] == ["example_workflows"]
    assert len(EXAMPLES) >= 3
    for path in EXAMPLES:
        assert path.with_suffix(".jpg").is_file(), f"{path.name}: no thumbnail"
        assert path.with_suffix(".jpg").read_bytes()[:2] == b"\xff\xd8"


def widget_names(node: Any) -> list[str]:
    """The widgets of a node class, in order, as the frontend makes them."""
    inputs = node.INPUT_TYPES()
    names: list[str] = []
    for name, (kind, options) in (inputs["required"] | inputs.get("optional", {})).items():
        if options.get("forceInput") or not (isinstance(kind, list) or kind in WIDGET_TYPES):
            continue
        names.append(name)
        if options.get("control_after_generate"):
            names.append(f"{name} control")
    return names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
async def test_an_example_matches_the_nodes_inputs(comfy: Comfy, path: Path) -> None:
    found = json.loads(await asyncio.to_thread(path.read_text))
    assert found["version"] == 0.4
    nodes = {node["id"]: node for node in found["nodes"]}
    ours = [n for n in nodes.values() if n["type"] in comfy.package.NODE_CLASS_MAPPINGS]
    assert ours, "an example shows at least one of our nodes"
    for node in ours:
        names = widget_names(comfy.node(node["type"]))
        assert len(node["widgets_values"]) == len(names), (node["id"], names)
        spec = comfy.node(node["type"]).INPUT_TYPES()
        sockets = [n for n, (kind, o) in spec["optional"].items() if n in ("prompt", "image")]
        assert [i["name"] for i in node["inputs"]] == sockets
        assert [o["name"] for o in node["outputs"]] == list(comfy.node(node["type"]).RETURN_NAMES)
    for link_id, source, out, target, slot, kind in found["links"]:
        assert nodes[source]["outputs"][out]["type"] == kind
        assert nodes[target]["inputs"][slot]["type"] == kind
        assert nodes[target]["inputs"][slot]["link"] == link_id
        assert link_id in nodes[source]["outputs"][out]["links"]
