"""What may cross a remote group's edge, how it crosses, and what the peer adds to carry it.

A peer is a stock ComfyUI: it cannot be handed a tensor or a model object, only files and
values. So images and masks cross as PNGs, latents as `.latent` files (SaveLatent's format,
read by LoadLatent), and plain values (INT, FLOAT, STRING, BOOLEAN, combo choices) are
written into the remote node's input. MODEL, CLIP, VAE, CONDITIONING and every other type
live in one process's memory: a link carrying one is refused, saying which node to move.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .._workflow_checks import class_of
from ._model import BoundaryKind, RemoteGroup, Source

__all__ = [
    "Link",
    "crossing_kind",
    "describe",
    "loader_input",
    "loader_node",
    "output_type",
    "refuse_fan_out",
    "refuse_type",
    "saver_nodes",
]

Link = tuple[Source, str, str]
"""A link as the prompt holds it: the output it comes from, and the node and input it feeds."""

_KINDS: dict[str, BoundaryKind] = {
    "IMAGE": "image",
    "MASK": "mask",
    "LATENT": "latent",
    "INT": "value",
    "FLOAT": "value",
    "STRING": "value",
    "BOOLEAN": "value",
    "COMBO": "value",
}
_CAN_CROSS = "only images, masks, latents and plain values can"
LATENT_PREFIX = "latents/dispatch"
"""Where the peer's SaveLatent writes a latent leaving a group (under its output folder)."""


def output_type(
    prompt: Mapping[str, Any], source: Source, object_info: Mapping[str, Any]
) -> str | None:
    """The type of one output, `"COMBO"` for a list of choices; None when object_info cannot say."""
    info = object_info.get(class_of(prompt.get(source.node)))
    outputs = info.get("output") if isinstance(info, Mapping) else None
    if not isinstance(outputs, list) or not 0 <= source.output < len(outputs):
        return None
    kind = outputs[source.output]
    if isinstance(kind, list):
        return "COMBO"
    return kind if isinstance(kind, str) else None


def crossing_kind(type_: str | None) -> BoundaryKind | None:
    """How a value of this type crosses, or None when it cannot."""
    return _KINDS.get(type_) if type_ is not None else None


def loader_node(kind: BoundaryKind) -> dict[str, Any]:
    """The peer's node that turns an uploaded file back into a value; its input `fill` is None.

    LoadImageMask on the red channel reads a grey PNG as the mask itself (alpha would be
    inverted, as LoadImage inverts it).
    """
    if kind == "image":
        return {"class_type": "LoadImage", "inputs": {"image": None}}
    if kind == "mask":
        return {"class_type": "LoadImageMask", "inputs": {"image": None, "channel": "red"}}
    return {"class_type": "LoadLatent", "inputs": {"latent": None}}


def loader_input(kind: BoundaryKind) -> str:
    """The loader's input that the run sets to the uploaded file's name."""
    return "latent" if kind == "latent" else "image"


def saver_nodes(
    kind: BoundaryKind, link: list[Any], new_id: Callable[[str], str], base: str
) -> tuple[str, dict[str, dict[str, Any]]]:
    """The peer's nodes that make a leaving value readable from its history.

    Returns the id of the output node (PreviewImage, SaveLatent or PreviewAny) and the
    nodes by id; a mask is first drawn as an image, which the run reads back as a mask.
    """
    node_id = new_id(base)
    if kind == "image":
        return node_id, {node_id: {"class_type": "PreviewImage", "inputs": {"images": link}}}
    if kind == "mask":
        image_id = new_id(f"{base}_image")
        return node_id, {
            image_id: {"class_type": "MaskToImage", "inputs": {"mask": link}},
            node_id: {"class_type": "PreviewImage", "inputs": {"images": [image_id, 0]}},
        }
    if kind == "latent":
        saver = {"samples": link, "filename_prefix": LATENT_PREFIX}
        return node_id, {node_id: {"class_type": "SaveLatent", "inputs": saver}}
    return node_id, {node_id: {"class_type": "PreviewAny", "inputs": {"source": link}}}


def describe(prompt: Mapping[str, Any], node_id: str) -> str:
    """`node 4 (CheckpointLoaderSimple)`: how every message names a node."""
    return f"node {node_id} ({class_of(prompt.get(node_id)) or 'unknown'})"


def refuse_type(
    prompt: Mapping[str, Any],
    group: RemoteGroup,
    link: Link,
    type_: str | None,
    *,
    entering: bool,
) -> str:
    """The message for a link whose type cannot cross; it says which node to move where."""
    what = type_ if type_ is not None else "an output of unknown type"
    return (
        f"cannot send {what} {'into' if entering else 'out of'} remote group {group.label}: "
        f"{_link_text(prompt, link)} would cross to another server, and {_CAN_CROSS}; "
        f"{_move(prompt, link, entering=entering)}"
    )


def refuse_fan_out(prompt: Mapping[str, Any], group: RemoteGroup, link: Link, type_: str) -> str:
    """The message for a plain value leaving a fan-out group: each server makes its own."""
    return (
        f"cannot send {type_} out of fan-out group {group.label}: {_link_text(prompt, link)} "
        "would carry one value per server, and a fan-out group returns only images, masks "
        f"and latents, as one batch; {_move(prompt, link, entering=False)}"
    )


def _link_text(prompt: Mapping[str, Any], link: Link) -> str:
    source, node, name = link
    return (
        f"the link from {describe(prompt, source.node)} output {source.output} "
        f"to {describe(prompt, node)} input {name!r}"
    )


def _move(prompt: Mapping[str, Any], link: Link, *, entering: bool) -> str:
    """Either end may move: the link's source (the loader) across, or its user the other way."""
    source, node, _ = link
    there, back = ("into", "out of") if entering else ("out of", "into")
    return (
        f"move {describe(prompt, source.node)} {there} the group, "
        f"or {describe(prompt, node)} {back} it"
    )
