"""Cut each remote group out of an API prompt: one node in its place, a sub-workflow for the peer.

Pure data in, data out: the caller says which prompt ids form which group (see
`_membership`) and gives the local `object_info`, which says what each output carries.
Every link entering a group becomes one input of its replacement node (one per output
feeding it, however many nodes inside use it); every link leaving it, one output. The
nodes outside are relinked to the replacement, so groups may feed each other.

Whatever cannot be cut is refused as a whole, before anything runs, with one line per
problem: a link of a type that cannot cross, a node outside a group between two of its
nodes (the group would have to run twice), a node in two groups.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._workflow_checks import links_of
from ..errors import GroupError
from . import _crossing as crossing
from ._crossing import Link
from ._model import (
    BoundaryInput,
    BoundaryKind,
    BoundaryOutput,
    GroupPlan,
    RemoteGroup,
    Rewrite,
    Source,
)
from ._plan_json import replacement_node

__all__ = ["rewrite_prompt"]


@dataclass
class _Edge:
    """One output whose value crosses the group's edge, and the inputs it feeds across it."""

    source: Source
    ends: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Cut:
    group: RemoteGroup
    nodes: list[str]
    """The group's ids present in the prompt, in the prompt's order."""
    entering: list[_Edge]
    leaving: list[_Edge]


def rewrite_prompt(
    prompt: Mapping[str, Any],
    groups: Sequence[RemoteGroup],
    *,
    object_info: Mapping[str, Any],
) -> Rewrite:
    """The local prompt with each group replaced by one node, and how each group runs.

    Group ids absent from the prompt (bypassed or muted nodes) are left out; a group none of
    whose nodes is in the prompt is dropped. The input is never changed. Raises GroupError
    listing every problem found.
    """
    owner = _owners(prompt, groups)
    cuts = [_cut(prompt, group, owner) for group in groups]
    cuts = [cut for cut in cuts if cut.nodes]
    problems = [p for cut in cuts for p in _problems(prompt, cut, object_info)]
    if problems:
        node, group, _ = problems[0]
        raise GroupError("\n".join(text for _, _, text in problems), node=node, group=group)
    taken = set(prompt)
    plans = tuple(_plan(prompt, cut, object_info, taken) for cut in cuts)
    return Rewrite(_local_prompt(prompt, plans, owner), plans)


def _owners(prompt: Mapping[str, Any], groups: Sequence[RemoteGroup]) -> dict[str, RemoteGroup]:
    """Which group each prompt id belongs to; a node in two groups is the caller's mistake."""
    owner: dict[str, RemoteGroup] = {}
    for group in groups:
        for node in group.nodes & prompt.keys():
            if node in owner:
                raise GroupError(
                    f"{crossing.describe(prompt, node)} is in two remote groups, "
                    f"{owner[node].label} and {group.label}; move it into one of them",
                    node=node,
                    group=group.key,
                )
            owner[node] = group
    return owner


def _cut(prompt: Mapping[str, Any], group: RemoteGroup, owner: Mapping[str, RemoteGroup]) -> _Cut:
    nodes = [node for node in prompt if owner.get(node) is group]
    inside = set(nodes)
    entering: dict[Source, _Edge] = {}
    leaving: dict[Source, _Edge] = {}
    for source, node, name in _links(prompt):
        if (node in inside) != (source.node in inside):
            edges = entering if node in inside else leaving
            edges.setdefault(source, _Edge(source)).ends.append((node, name))
    return _Cut(group, nodes, list(entering.values()), list(leaving.values()))


def _links(prompt: Mapping[str, Any]) -> Iterable[Link]:
    """Every link of the prompt, in its order; an index that is not a number reads as -1."""
    for node_id, node in prompt.items():
        for name, (source, index) in links_of(node, with_names=True):
            output = index if isinstance(index, int) and not isinstance(index, bool) else -1
            yield Source(source, output), node_id, name


def _problems(
    prompt: Mapping[str, Any], cut: _Cut, object_info: Mapping[str, Any]
) -> list[tuple[str, str, str]]:
    """(node to show, group key, message) for each thing that stops this cut."""
    found = []
    for edges, entering in ((cut.entering, True), (cut.leaving, False)):
        for edge in edges:
            type_ = crossing.output_type(prompt, edge.source, object_info)
            for node, name in edge.ends:
                text = _refusal(prompt, cut.group, (edge.source, node, name), type_, entering)
                if text:
                    found.append((node, cut.group.key, text))
    between = _between(prompt, set(cut.nodes))
    if between:
        found.append((between[0], cut.group.key, _twice(prompt, cut.group, between)))
    return found


def _refusal(
    prompt: Mapping[str, Any], group: RemoteGroup, link: Link, type_: str | None, entering: bool
) -> str | None:
    kind = crossing.crossing_kind(type_)
    if kind is None:
        return crossing.refuse_type(prompt, group, link, type_, entering=entering)
    if kind == "value" and not entering and group.target.kind == "fan-out":
        return crossing.refuse_fan_out(prompt, group, link, str(type_))
    return None


def _between(prompt: Mapping[str, Any], inside: set[str]) -> list[str]:
    """The outside nodes that take from the group and feed it: the group would run twice.

    A path out of the group and back in leaves it for the last time, and enters it for the
    first time, through outside nodes only; so walking outside nodes alone finds them all.
    """
    users: dict[str, set[str]] = {}
    feeders: dict[str, set[str]] = {}
    for source, node, _ in _links(prompt):
        users.setdefault(source.node, set()).add(node)
        feeders.setdefault(node, set()).add(source.node)
    after = _reach(inside, users, inside)
    before = _reach(inside, feeders, inside)
    return [node for node in prompt if node in after and node in before]


def _reach(start: set[str], step: Mapping[str, set[str]], inside: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = [n for node in start for n in step.get(node, ()) if n not in inside]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo += [n for n in step.get(node, ()) if n not in inside and n not in seen]
    return seen


def _twice(prompt: Mapping[str, Any], group: RemoteGroup, between: list[str]) -> str:
    names = ", ".join(crossing.describe(prompt, node) for node in between)
    verbs, which = ("is", "takes", "feeds"), names
    if len(between) > 1:
        verbs, which = ("are", "take", "feed"), "them"
    return (
        f"remote group {group.label} would have to run twice: {names} {verbs[0]} outside it "
        f"but {verbs[1]} from it and {verbs[2]} it again; move {which} into the group, "
        "or split the group in two"
    )


def _plan(
    prompt: Mapping[str, Any], cut: _Cut, object_info: Mapping[str, Any], taken: set[str]
) -> GroupPlan:
    """The sub-workflow with its loaders and savers, and the boundary that names them."""
    sub = _SubWorkflow(prompt, cut.nodes)
    inputs = tuple(
        sub.enter(f"in_{index}", edge, _type(prompt, edge, object_info))
        for index, edge in enumerate(cut.entering)
    )
    outputs = tuple(
        sub.leave(index, edge, _type(prompt, edge, object_info))
        for index, edge in enumerate(cut.leaving)
    )
    node_id = _fresh("remote_group_" + cut.group.key.replace(":", "_"), taken)
    return GroupPlan(cut.group, node_id, sub.workflow(), inputs, outputs)


def _type(prompt: Mapping[str, Any], edge: _Edge, object_info: Mapping[str, Any]) -> str:
    type_ = crossing.output_type(prompt, edge.source, object_info)
    assert type_ is not None, "refused by _problems"
    return type_


class _SubWorkflow:
    """The group's nodes, copied, and the nodes added around them to carry its boundary."""

    def __init__(self, prompt: Mapping[str, Any], nodes: list[str]):
        self.loaders: dict[str, Any] = {}
        self.nodes = {node: copy.deepcopy(prompt[node]) for node in nodes}
        self.savers: dict[str, Any] = {}
        self.taken = set(nodes)

    def workflow(self) -> dict[str, Any]:
        """Loaders first, then the group's nodes, then savers: the order a reader expects."""
        return {**self.loaders, **self.nodes, **self.savers}

    def enter(self, name: str, edge: _Edge, type_: str) -> BoundaryInput:
        kind = _kind(type_)
        fills = tuple(edge.ends)
        if kind != "value":
            loader = _fresh(name, self.taken)
            self.loaders[loader] = crossing.loader_node(kind)
            fills = ((loader, crossing.loader_input(kind)),)
        for node, input_name in edge.ends:
            self.nodes[node]["inputs"][input_name] = None if kind == "value" else [fills[0][0], 0]
        return BoundaryInput(name, type_, kind, edge.source, fills)

    def leave(self, index: int, edge: _Edge, type_: str) -> BoundaryOutput:
        kind = _kind(type_)
        node, savers = crossing.saver_nodes(
            kind, edge.source.link(), lambda base: _fresh(base, self.taken), f"out_{index}"
        )
        self.savers.update(savers)
        return BoundaryOutput(index, type_, kind, edge.source, node)


def _kind(type_: str) -> BoundaryKind:
    kind = crossing.crossing_kind(type_)
    assert kind is not None, "refused by _problems"
    return kind


def _fresh(base: str, taken: set[str]) -> str:
    """`base`, or `base_2`, `base_3`, … : the first id not taken, which it then takes."""
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}_{n}"
    taken.add(candidate)
    return candidate


def _local_prompt(
    prompt: Mapping[str, Any], plans: tuple[GroupPlan, ...], owner: Mapping[str, RemoteGroup]
) -> dict[str, Any]:
    """The prompt with each group's nodes replaced, where its first node was, by its node."""
    plan_of = {plan.group: plan for plan in plans}
    moved = {
        output.source: [plan.node_id, output.index] for plan in plans for output in plan.outputs
    }
    local: dict[str, Any] = {}
    for node_id, node in prompt.items():
        group = owner.get(node_id)
        if group is None:
            local[node_id] = copy.deepcopy(node)
        elif plan_of[group].node_id not in local:
            plan = plan_of[group]
            local[plan.node_id] = replacement_node(plan)
    for node in local.values():
        _relink(node, moved)
    return local


def _relink(node: Any, moved: Mapping[Source, list[Any]]) -> None:
    """Point each input fed from inside a group at the group's replacement node instead."""
    inputs = node.get("inputs")
    for name, (source, index) in links_of(node, with_names=True):
        if isinstance(index, int) and Source(source, index) in moved:
            inputs[name] = list(moved[Source(source, index)])
