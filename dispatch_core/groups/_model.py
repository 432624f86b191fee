"""The vocabulary of remote groups: a target, a group's members, the plan of its rewrite.

A group's target is kept in its title, as a marker at the end: `Upscale [server: gpu-b]`.
The title is the one place that every frontend version saves, reloads, copies and pastes
with the group (groups serialise no `properties`), and it shows the target at a glance
without any drawing code; a user can also type it by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, cast

__all__ = [
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
    "titled",
]

TargetKind = Literal["server", "route", "fan-out"]
BoundaryKind = Literal["image", "mask", "latent", "value"]
"""How a value crosses: a PNG, a PNG of the mask, a `.latent` file, or inlined as it is."""

_KINDS: tuple[TargetKind, ...] = ("server", "route", "fan-out")
# The names config.py accepts (no spaces around them), less `]`, which would end the marker.
_NAME = r"[^\s\]\x00-\x1f\x7f/\\?#%][^\]\x00-\x1f\x7f/\\?#%]{0,63}?"
_MARKER = re.compile(rf"\s*\[\s*(server|route|fan-out)\s*:\s*({_NAME})\s*\]\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Target:
    """Where a remote group runs: one server, a route's choice, or every server of a route."""

    kind: TargetKind
    name: str
    """A server name for `server`; a route name for `route` and `fan-out`."""

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def server(self) -> str | None:
        """The server a job for this target must run on; None when its route chooses."""
        return self.name if self.kind == "server" else None

    @property
    def route(self) -> str:
        """The route a job for this target names: the route itself, or for one server
        `server:NAME`, which then only labels the job (its server is named)."""
        return str(self) if self.kind == "server" else self.name

    @classmethod
    def parse(cls, text: str) -> Target:
        """Read `"server:gpu-b"` back, as the replacement node's `target` input holds it."""
        kind, _, name = text.partition(":")
        if kind not in _KINDS or not re.fullmatch(_NAME, name) or name != name.strip():
            raise ValueError(f"not a remote group target: {text!r}")
        return cls(cast(TargetKind, kind), name)


def parse_title(title: str) -> tuple[str, Target | None]:
    """Split `"Upscale [server: gpu-b]"` into its name and target; no marker: no target.

    Only the three kinds make a marker, so a title such as `"Faces [WIP]"` stays local.
    """
    match = _MARKER.search(title)
    if match is None:
        return title.strip(), None
    kind = cast(TargetKind, match.group(1).lower())
    return title[: match.start()].strip(), Target(kind, match.group(2).strip())


def titled(name: str, target: Target | None) -> str:
    """The title that `parse_title` reads as this name and target: what a menu writes."""
    name = parse_title(name)[0]
    return f"{name} [{target.kind}: {target.name}]" if target else name


@dataclass(frozen=True)
class RemoteGroup:
    """A group of the UI workflow that runs elsewhere, with the prompt ids of its nodes."""

    key: str
    """The group's id, prefixed like a node's by the subgraph nodes it is inside (`"12:3"`)."""
    title: str
    target: Target
    nodes: frozenset[str]
    """Execution ids, as the API prompt names them; nodes inside subgraphs as `"12:5"`."""

    @property
    def label(self) -> str:
        """How messages name it: `'Upscale'`, or `group 3` when the title is only a marker."""
        name = parse_title(self.title)[0]
        return repr(name) if name else f"group {self.key}"


@dataclass(frozen=True)
class Source:
    """One output of one node: the value a link carries."""

    node: str
    output: int

    def link(self) -> list[Any]:
        """The API format's link to this output."""
        return [self.node, self.output]


@dataclass(frozen=True)
class BoundaryInput:
    """A value that enters the group: the replacement node's input `name` carries it."""

    name: str
    """`in_0`, `in_1`, …: the input of the replacement node."""
    type: str
    kind: BoundaryKind
    source: Source
    """The outside output that feeds it, as the original prompt names it."""
    fills: tuple[tuple[str, str], ...]
    """(node id, input) pairs of the sub-workflow, left None, that the run sets: to the
    uploaded file's name (a loader's input) or, for a value, to the value itself."""


@dataclass(frozen=True)
class BoundaryOutput:
    """A value that leaves the group: output `index` of the replacement node."""

    index: int
    type: str
    kind: BoundaryKind
    source: Source
    """The inside output it carries, as the original prompt names it."""
    node: str
    """The sub-workflow node whose outputs in the peer's history hold it: a PreviewImage
    (`images`), a SaveLatent (`latents`) or a PreviewAny (`text`)."""


@dataclass(frozen=True)
class GroupPlan:
    """How one remote group runs: its sub-workflow, its boundary, its replacement node."""

    group: RemoteGroup
    node_id: str
    """The id of the replacement node in the local prompt."""
    workflow: dict[str, Any] = field(hash=False)
    """The group's nodes, ids kept (so that a peer's error names the node the user sees),
    with a loader for each file input and a previewer or saver for each output."""
    inputs: tuple[BoundaryInput, ...]
    outputs: tuple[BoundaryOutput, ...]


@dataclass(frozen=True)
class Rewrite:
    """The local prompt with each remote group replaced by one node, and the groups' plans."""

    prompt: dict[str, Any] = field(hash=False)
    plans: tuple[GroupPlan, ...]
