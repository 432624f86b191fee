"""A finished job's files as the node's outputs, and what the node shows in place.

Only what the graph uses is fetched and decoded: a LATENT, VIDEO or AUDIO output that no
node is connected to costs nothing, and one that is connected but that the template did
not produce is an error saying which save node the template lacks, rather than a None
that fails somewhere downstream.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..dispatch_core import DispatchResult, OutputFile, WorkflowError
from . import media
from .images import to_batch
from .outputs import LocalFile, local_path, previewable, save_locally

__all__ = ["OUTPUTS", "Fetched", "node_output", "read_outputs", "wanted_outputs"]

OUTPUTS = ("images", "result", "mask", "latent", "video", "audio")
"""The nodes' outputs, in slot order: new ones are added at the end, so that links saved
in older workflows keep their slots."""
_SAVERS = {"latent": "SaveLatent", "video": "SaveVideo (or SaveWEBM)", "audio": "SaveAudio"}

Fetched = tuple[str, OutputFile, bytes]
"""A file of a result, read: a label naming where it came from, the file, its bytes."""


def wanted_outputs(graph: Any, node_id: str | None) -> set[str] | None:
    """The outputs other nodes of the prompt are connected to; None when unknown (then
    every output the template produced is made, and none is missed)."""
    if not isinstance(graph, Mapping) or node_id is None:
        return None
    wanted = {"images", "result"}  # cheap, and shown in place
    for node in graph.values():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        for value in inputs.values() if isinstance(inputs, Mapping) else ():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) == str(node_id):
                if isinstance(value[1], int) and 0 <= value[1] < len(OUTPUTS):
                    wanted.add(OUTPUTS[value[1]])
    return wanted


async def read_outputs(
    results: Sequence[DispatchResult], *, wanted: set[str] | None, every: bool
) -> list[Fetched]:
    """The images of every result, and its files of the wanted kinds, in order; every: all
    their files (to save them)."""
    kinds = set(OUTPUTS) if wanted is None else wanted

    def needed(file: OutputFile) -> bool:
        return every or file.kind == "image" or media.kind_of(file.filename) in kinds

    files = [(r, f) for r in results for f in r.files if needed(f)]
    data = await asyncio.gather(*(f.read() for _, f in files))
    return [
        (f"{r.server}: node {f.node_id} {f.filename}", f, d)
        for (r, f), d in zip(files, data, strict=True)
    ]


def node_output(
    files: Sequence[Fetched],
    summary: dict[str, Any],
    *,
    keep: bool,
    wanted: set[str] | None,
    where: str,
) -> dict[str, Any]:
    """What ComfyUI takes from an output node: the values of its outputs, and the files
    shown in place. A connected output the files cannot make is an error naming `where`
    (the template); with `wanted` unknown, a missing one is None."""
    images = [(label, data) for label, f, data in files if f.kind == "image"]
    by_kind = {k: [(f, d) for _, f, d in files if media.kind_of(f.filename) == k] for k in _SAVERS}
    shown_too = [(f, d) for _, f, d in files if f.kind == "image" or media.kind_of(f.filename)]
    written = save_locally([(f, d) for _, f, d in files] if keep else shown_too, keep=keep)
    paths = {
        id(f): local_path(e) for (_, f, _), e in zip(_order(files, keep), written, strict=True)
    }
    values: dict[str, Any] = {"images": to_batch(images)}
    values["mask"] = media.to_masks(images) if wanted is None or "mask" in wanted else None
    for kind, found in by_kind.items():
        if wanted is None and found:
            values[kind] = _decode(kind, found, paths, where)
        else:
            values[kind] = _decode(kind, found, paths, where) if kind in (wanted or ()) else None
    summary["images"] = len(images)
    if keep:
        summary["saved"] = [posixpath.join(e["subfolder"], e["filename"]) for e in written]
    values["result"] = json.dumps(summary, indent=2)
    return {"ui": _shown(written), "result": tuple(values[name] for name in OUTPUTS)}


def _order(files: Sequence[Fetched], keep: bool) -> list[Fetched]:
    """The files in the order `save_locally` was given them."""
    return [x for x in files if keep or x[1].kind == "image" or media.kind_of(x[1].filename)]


def _decode(
    kind: str, found: list[tuple[OutputFile, bytes]], paths: dict[int, Path], where: str
) -> Any:
    if not found:
        raise WorkflowError(
            f"the '{kind}' output is connected, but {where} returned no {kind} file: "
            f"end the template with {_SAVERS[kind]}, or disconnect the output"
        )
    if kind == "latent":
        return media.to_latent([(f.filename, d) for f, d in found])
    first = paths[id(found[0][0])]
    return media.to_video(first) if kind == "video" else media.to_audio(first)


def _shown(written: list[LocalFile]) -> dict[str, Any]:
    """A video is shown as ComfyUI's SaveVideo shows one; otherwise the images."""
    videos = [e for e in written if media.kind_of(e["filename"]) == "video"]
    if videos:
        return {"images": videos, "animated": (True,)}
    return {"images": [e for e in written if previewable(e)]}
