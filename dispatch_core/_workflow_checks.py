"""Reading an API-format workflow as a graph: its links, its output nodes, its problems.

Kept apart from `WorkflowBuilder`, which edits: these functions only read, judging a
workflow against a peer's `object_info`, or against the one shipped (recorded from a stock
ComfyUI) before any peer is asked; the fake peer serves that same shipped object_info.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from .errors import WorkflowError

__all__ = [
    "class_of",
    "input_names",
    "is_output",
    "links_of",
    "shipped_object_info",
    "validate_workflow",
]


@cache
def shipped_object_info() -> dict[str, Any]:
    """The object_info of a stock ComfyUI, for checks made before any peer is asked."""
    # relative to this package: inside ComfyUI it is a subpackage, not `dispatch_core`
    data = resources.files(__package__ or "dispatch_core") / "data" / "object_info_subset.json"
    text = data.read_text()
    return dict(json.loads(text))


def validate_workflow(nodes: Mapping[str, Any], object_info: Mapping[str, Any] | None) -> None:
    """Raise one WorkflowError listing every structural problem found.

    Only a peer's own `object_info` can say a node class or a required input is missing;
    without one, the shipped object_info still bounds output indexes and finds output nodes.
    """
    problems: list[tuple[str | None, str]] = []
    for node_id, node in nodes.items():
        problems += [(node_id, p) for p in _node_problems(nodes, node_id, node, object_info)]
    if nodes and not any(is_output(n, _known(object_info)) for n in nodes.values()):
        problems.append((None, "the workflow has no output node (SaveImage, PreviewImage, …)"))
    if not nodes:
        problems.append((None, "the workflow is empty"))
    if problems:
        error = WorkflowError(
            "the workflow is not valid:\n" + "\n".join(f"  {p}" for _, p in problems),
            node=problems[0][0],
        )
        error.problems = tuple(p for _, p in problems)  # type: ignore[attr-defined]
        raise error


def _node_problems(
    nodes: Mapping[str, Any], node_id: str, node: Any, object_info: Mapping[str, Any] | None
) -> list[str]:
    if not isinstance(node, Mapping):
        return [f"node {node_id} is not an object"]
    if not isinstance(node.get("class_type"), str):
        return [f"node {node_id} has no class_type"]
    if not isinstance(node.get("inputs"), Mapping):
        return [f"node {node_id} ({node['class_type']}) has no 'inputs' object"]
    found = []
    for name, link in links_of(node, with_names=True):
        source, index = link
        if str(source) not in nodes:
            found.append(f"node {node_id} input {name!r}: dangling link to missing node {source}")
        elif not isinstance(index, int) or isinstance(index, bool) or index < 0:
            found.append(
                f"node {node_id} input {name!r}: output index {index!r} is not a whole number"
            )
        else:
            found += _link_index_problem(nodes, node_id, name, str(source), index, object_info)
    info = object_info.get(node["class_type"]) if object_info is not None else None
    if object_info is not None and info is None:
        found.append(f"node {node_id}: the peer has no node class {node['class_type']!r}")
    if isinstance(info, Mapping):
        required = (info.get("input") or {}).get("required") or {}
        for name in required:
            if name not in node["inputs"]:
                found.append(
                    f"node {node_id} ({node['class_type']}): required input {name!r} is missing"
                )
    return found


def _link_index_problem(
    nodes: Mapping[str, Any],
    node_id: str,
    name: str,
    source: str,
    index: int,
    object_info: Mapping[str, Any] | None,
) -> list[str]:
    info = _known(object_info).get(class_of(nodes[source]))
    outputs = info.get("output") if isinstance(info, Mapping) else None
    if isinstance(outputs, list) and index >= len(outputs):
        return [
            f"node {node_id} input {name!r}: node {source} has {len(outputs)} outputs, "
            f"not an output {index}"
        ]
    return []


def _known(object_info: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return object_info if object_info is not None else shipped_object_info()


def is_output(node: Any, object_info: Mapping[str, Any]) -> bool:
    """Whether the peer runs this node for its own sake; by name for a class it does not list."""
    info = object_info.get(class_of(node))
    if isinstance(info, Mapping):
        return bool(info.get("output_node"))
    return class_of(node).startswith(("Save", "Preview"))


def input_names(object_info: Mapping[str, Any], class_type: str) -> set[str] | None:
    """The inputs a node class takes, or None when `object_info` does not know the class."""
    info = object_info.get(class_type)
    if not isinstance(info, Mapping):
        return None
    sections = info.get("input") or {}
    return {name for key in ("required", "optional") for name in (sections.get(key) or {})}


def class_of(node: Any) -> str:
    return str(node.get("class_type", "")) if isinstance(node, Mapping) else ""


def links_of(node: Any, *, with_names: bool = False) -> list[Any]:
    """The `[source id, output index]` pairs among a node's inputs, ids as strings."""
    inputs = node.get("inputs") if isinstance(node, Mapping) else None
    found = []
    for name, value in (inputs or {}).items() if isinstance(inputs, Mapping) else ():
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)):
            link = [str(value[0]), value[1]]
            found.append((name, link) if with_names else link)
    return found
