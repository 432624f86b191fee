"""The replacement node in the local prompt, and its `group` input: a plan as JSON and back.

The replacement node (class `RemoteDispatchGroup`) carries everything its run needs in its
own inputs, so that the prompt in ComfyUI's queue and history says what ran where:

    {"class_type": "RemoteDispatchGroup",
     "inputs": {"group": "<JSON of the plan>", "target": "server:gpu-b",
                "in_0": ["4", 0], "in_1": ["9", 1]},
     "_meta": {"title": "Upscale [server: gpu-b]"}}

`in_0…in_N` are links, fed by the nodes that fed the group; output `i` of the node is the
group's boundary output `i`. The plan is a JSON text because a ComfyUI STRING input is
the only kind that carries a structure through validation unchanged.

A graph that cannot be cut is queued as one such node whose `group` is a refusal,
`{"refused": "<message>"}`, under the id of the node to show: its validation fails with
the message, so ComfyUI answers the queueing with a 400 that names that node.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast, get_args

from .._json import JSONLimitError, loads_bounded
from ..errors import WorkflowError
from ._model import (
    BoundaryInput,
    BoundaryKind,
    BoundaryOutput,
    GroupPlan,
    RemoteGroup,
    Source,
    Target,
)

__all__ = [
    "REPLACEMENT_CLASS",
    "plan_from_json",
    "plan_to_json",
    "refusal_node",
    "refusal_of",
    "replacement_node",
]

REPLACEMENT_CLASS = "RemoteDispatchGroup"
_VERSION = 1


def replacement_node(plan: GroupPlan) -> dict[str, Any]:
    """The node that takes the group's place; its `in_i` links name the original sources."""
    inputs: dict[str, Any] = {
        "group": json.dumps(plan_to_json(plan), separators=(",", ":")),
        "target": str(plan.group.target),
    }
    inputs.update({boundary.name: boundary.source.link() for boundary in plan.inputs})
    return {"class_type": REPLACEMENT_CLASS, "inputs": inputs, "_meta": {"title": plan.group.title}}


def refusal_node(message: str) -> dict[str, Any]:
    """The node that stands for a graph refused whole: its validation fails with `message`."""
    return {
        "class_type": REPLACEMENT_CLASS,
        "inputs": {"group": json.dumps({"refused": message}), "target": ""},
        "_meta": {"title": "Remote group refused"},
    }


def refusal_of(text: Any) -> str | None:
    """The message of a refusal made by `refusal_node`; None for anything else."""
    if not isinstance(text, str) or not text.startswith('{"refused"'):
        return None
    try:
        message = loads_bounded(text).get("refused")
    except (JSONLimitError, AttributeError):
        return None
    return message if isinstance(message, str) else None


def plan_to_json(plan: GroupPlan) -> dict[str, Any]:
    """Everything the replacement node needs to run the group, as plain JSON data."""
    group = plan.group
    return {
        "version": _VERSION,
        "key": group.key,
        "title": group.title,
        "target": str(group.target),
        "nodes": sorted(group.nodes),
        "node_id": plan.node_id,
        "workflow": plan.workflow,
        "inputs": [
            {
                "name": b.name,
                "type": b.type,
                "kind": b.kind,
                "source": b.source.link(),
                "fills": [list(fill) for fill in b.fills],
            }
            for b in plan.inputs
        ],
        "outputs": [
            {"type": b.type, "kind": b.kind, "source": b.source.link(), "node": b.node}
            for b in plan.outputs
        ],
    }


def plan_from_json(data: Any) -> GroupPlan:
    """Read a plan back (a JSON text or its data); a malformed one is a WorkflowError.

    The node checks what it is given: a prompt can be posted by anyone who reaches ComfyUI,
    so the text is read within the engine's JSON bounds (depth, integer size).
    """
    try:
        if isinstance(data, str):
            data = loads_bounded(data)
        return _plan(data)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise WorkflowError(f"not a remote group plan: {error}") from None


def _plan(data: Mapping[str, Any]) -> GroupPlan:
    if data["version"] != _VERSION:
        raise ValueError(f"version {data['version']!r}, not {_VERSION}")
    group = RemoteGroup(
        _text(data["key"]),
        _text(data["title"]),
        Target.parse(_text(data["target"])),
        frozenset(_text(node) for node in data["nodes"]),
    )
    workflow = data["workflow"]
    if not isinstance(workflow, dict):
        raise TypeError("workflow is not an object")
    inputs = tuple(_input(item) for item in data["inputs"])
    outputs = tuple(_output(index, item) for index, item in enumerate(data["outputs"]))
    return GroupPlan(group, _text(data["node_id"]), workflow, inputs, outputs)


def _input(item: Mapping[str, Any]) -> BoundaryInput:
    fills = tuple((_text(node), _text(name)) for node, name in item["fills"])
    return BoundaryInput(
        _text(item["name"]),
        _text(item["type"]),
        _kind(item["kind"]),
        _source(item["source"]),
        fills,
    )


def _output(index: int, item: Mapping[str, Any]) -> BoundaryOutput:
    return BoundaryOutput(
        index,
        _text(item["type"]),
        _kind(item["kind"]),
        _source(item["source"]),
        _text(item["node"]),
    )


def _source(link: Any) -> Source:
    node, output = link
    if not isinstance(output, int) or isinstance(output, bool) or output < 0:
        raise ValueError(f"output {output!r} is not an output index")
    return Source(_text(node), output)


def _kind(value: Any) -> BoundaryKind:
    if value not in get_args(BoundaryKind):
        raise ValueError(f"kind {value!r} is not one of {', '.join(get_args(BoundaryKind))}")
    return cast(BoundaryKind, value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value
