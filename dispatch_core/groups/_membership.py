"""Which nodes of a UI workflow are in which remote group, by the frontend's own geometry.

The frontend puts a node in a group when the centre of the node's rectangle (its body and
the title bar above `pos`) lies in the group's `bounding` rectangle, right and bottom edges
excluded; a group is inside another when its rectangle is within the other's. A node in
several remote groups belongs to the innermost one; when neither of two holds the other
the node's group is ambiguous, and refused. Groups without a target are only decoration
and change nothing: a plain group drawn inside a remote one does not take its nodes out.

Subgraphs: the prompt names a node inside a subgraph by the path of subgraph nodes that
leads to it (`"12:5"`). A subgraph node inside a remote group puts everything inside it in
that group, unless a remote group drawn inside the subgraph's own definition claims it;
such a group is one remote group per subgraph node that uses the definition. A subgraph
node can be a remote group of its own: its title carries the target as a group's does
(`Upscale [server: gpu-b]`), and it is inside any group drawn around it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import GroupError
from ._model import RemoteGroup, Target, parse_title

__all__ = ["NODE_TITLE_HEIGHT", "remote_groups"]

NODE_TITLE_HEIGHT = 30
"""LiteGraph.NODE_TITLE_HEIGHT: a node's rectangle starts this far above its `pos`."""
_COLLAPSED_WIDTH = 80
"""LiteGraph.NODE_COLLAPSED_WIDTH: a collapsed node's width when its title cannot be measured."""
_MAX_DEPTH = 32
"""Subgraphs nested deeper than this are a definition that contains itself."""

_Rect = tuple[float, float, float, float]


@dataclass
class _Group:
    key: str
    title: str
    target: Target
    rect: _Rect
    nodes: set[str] = field(default_factory=set)


def remote_groups(workflow: Mapping[str, Any]) -> tuple[RemoteGroup, ...]:
    """The remote groups of a UI workflow (`extra_pnginfo.workflow`), each with its node ids.

    Keys are group ids, prefixed inside subgraphs like node ids (`"12:3"`). Every remote
    group is listed, empty ones too; entries the frontend would not have written (a group
    without a rectangle, a node without a position) are skipped. Raises GroupError for a
    node whose group is ambiguous.
    """
    definitions = workflow.get("definitions")
    subgraphs = definitions.get("subgraphs") if isinstance(definitions, Mapping) else None
    by_id = {s.get("id"): s for s in _objects(subgraphs)}
    found: list[_Group] = []
    _walk(workflow, "", None, by_id, found, 0)
    return tuple(RemoteGroup(g.key, g.title, g.target, frozenset(g.nodes)) for g in found)


def _walk(
    graph: Mapping[str, Any],
    prefix: str,
    inherited: _Group | None,
    subgraphs: Mapping[Any, Mapping[str, Any]],
    found: list[_Group],
    depth: int,
) -> None:
    """Place each node of one graph, then walk into the subgraphs its nodes stand for."""
    groups = [g for g in (_group(prefix, item) for item in _objects(graph.get("groups"))) if g]
    found += groups
    for node in _objects(graph.get("nodes")):
        rect = _node_rect(node)
        if rect is None or "id" not in node:
            continue
        node_id = f"{prefix}{node['id']}"
        owner = _innermost(node_id, node, rect, groups) or inherited
        definition = subgraphs.get(node.get("type"))
        if definition is not None and depth < _MAX_DEPTH:
            owner = _subgraph_group(node_id, node, rect, found) or owner
            _walk(definition, f"{node_id}:", owner, subgraphs, found, depth + 1)
        elif owner is not None:
            owner.nodes.add(node_id)


def _group(prefix: str, item: Mapping[str, Any]) -> _Group | None:
    title = item.get("title")
    rect = _numbers(item.get("bounding"), 4)
    if not isinstance(title, str) or rect is None or "id" not in item:
        return None
    target = parse_title(title)[1]
    if target is None:
        return None
    return _Group(f"{prefix}{item['id']}", title, target, (rect[0], rect[1], rect[2], rect[3]))


def _subgraph_group(
    node_id: str, node: Mapping[str, Any], rect: _Rect, found: list[_Group]
) -> _Group | None:
    """The remote group a subgraph node titled with a target makes of everything inside it."""
    title = node.get("title")
    target = parse_title(title)[1] if isinstance(title, str) else None
    if target is None:
        return None
    group = _Group(f"node-{node_id}", str(title), target, rect)
    found.append(group)
    return group


def _innermost(
    node_id: str, node: Mapping[str, Any], rect: _Rect, groups: list[_Group]
) -> _Group | None:
    """The remote group that holds the node's centre and lies inside all others that do."""
    x, y = rect[0] + rect[2] * 0.5, rect[1] + rect[3] * 0.5
    holding = [g for g in groups if _has_point(g.rect, x, y)]
    if not holding:
        return None
    inner = min(holding, key=lambda g: g.rect[2] * g.rect[3])
    for other in holding:
        if other is not inner and not _contains(other.rect, inner.rect):
            name = f"node {node_id} ({node.get('type', 'unknown')})"
            raise GroupError(
                f"{name} is in remote groups {_label(inner)} and {_label(other)}, and neither "
                "is inside the other; move the node, or one group inside the other",
                node=node_id,
                group=inner.key,
            )
    return inner


def _label(group: _Group) -> str:
    return RemoteGroup(group.key, group.title, group.target, frozenset()).label


def _node_rect(node: Mapping[str, Any]) -> _Rect | None:
    """The rectangle the frontend measures: the body, and the title bar above `pos`.

    A collapsed node is only its title bar, as wide as its title; without a font to
    measure it, LiteGraph's collapsed width stands in.
    """
    pos = _numbers(node.get("pos"), 2)
    size = _numbers(node.get("size"), 2)
    if pos is None or size is None:
        return None
    flags = node.get("flags")
    if isinstance(flags, Mapping) and flags.get("collapsed"):
        width = min(size[0], _COLLAPSED_WIDTH)
        return (pos[0], pos[1] - NODE_TITLE_HEIGHT, width, NODE_TITLE_HEIGHT)
    return (pos[0], pos[1] - NODE_TITLE_HEIGHT, size[0], size[1] + NODE_TITLE_HEIGHT)


def _has_point(rect: _Rect, x: float, y: float) -> bool:
    return rect[0] <= x < rect[0] + rect[2] and rect[1] <= y < rect[1] + rect[3]


def _contains(outer: _Rect, inner: _Rect) -> bool:
    """Whether `inner` lies within `outer`, as the frontend nests groups; equal ones do not."""
    if outer == inner:
        return False
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and outer[0] + outer[2] >= inner[0] + inner[2]
        and outer[1] + outer[3] >= inner[1] + inner[3]
    )


def _numbers(value: Any, length: int) -> list[float] | None:
    """A list of numbers, or the `{"0": x, "1": y}` objects that old workflows saved."""
    if isinstance(value, Mapping):
        value = [value.get(str(i)) for i in range(length)]
    if not isinstance(value, list) or len(value) < length:
        return None
    numbers = value[:length]
    if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
        return None
    return [float(n) for n in numbers]


def _objects(value: Any) -> Iterable[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []
