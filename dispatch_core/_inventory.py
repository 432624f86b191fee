"""What each server can run: its node classes and the model files its loaders list.

Read from a peer's `/object_info`, where every loader's model input is a combo of the files
in its folder (`CheckpointLoaderSimple.ckpt_name` lists `models/checkpoints`). A workflow
needs its node classes and the model files named in those inputs; a server that lacks one
would refuse the prompt, so the dispatcher sends it elsewhere, or refuses it up front with
the list of what is missing where.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MODEL_INPUTS", "Inventory", "Needs", "needs_of"]

MODEL_INPUTS = {
    "ckpt_name": "checkpoints",
    "lora_name": "loras",
    "model_name": "upscale_models",
    "vae_name": "vae",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
    "control_net_name": "controlnet",
}
"""Loader input → model folder; numbered inputs (`clip_name2`) read the same folder."""
_NUMBERED = re.compile(r"^(.*?)\d+$")
_NO_FILES: frozenset[str] = frozenset()
"""Shared by every job that loads no model: one object fewer for each waiting job."""


def is_loader(class_type: str) -> bool:
    """Loaders read model files; other nodes' `model_name` (API nodes) names a service."""
    return any(word in class_type for word in ("Loader", "Lora", "Checkpoint"))


def model_folder(input_name: str) -> str | None:
    """The model folder an input names a file of, or None for any other input."""
    if input_name in MODEL_INPUTS:
        return MODEL_INPUTS[input_name]
    numbered = _NUMBERED.match(input_name)
    return MODEL_INPUTS.get(numbered.group(1)) if numbered else None


@dataclass(frozen=True)
class Needs:
    """What one workflow needs of a server."""

    node_classes: Mapping[str, str] = field(default_factory=dict)
    """Class → the first node id using it, for the message."""
    models: Mapping[tuple[str, str, str], str] = field(default_factory=dict)
    """(class, input, file) → node id: each model file named by a loader."""

    @property
    def model_files(self) -> frozenset[str]:
        """The files alone: what stays loaded on the GPU after the job."""
        return frozenset(file for _, _, file in self.models) if self.models else _NO_FILES


def needs_of(workflow: Mapping[str, Any]) -> Needs:
    classes: dict[str, str] = {}
    models: dict[tuple[str, str, str], str] = {}
    for node_id, node in workflow.items():
        if not isinstance(node, Mapping) or not isinstance(node.get("class_type"), str):
            continue
        kind = node["class_type"]
        classes.setdefault(kind, str(node_id))
        for name, value in (node.get("inputs") or {}).items() if is_loader(kind) else ():
            if isinstance(value, str) and model_folder(name) is not None:
                models.setdefault((kind, name, value), str(node_id))
    return Needs(classes, models)


@dataclass(frozen=True)
class Inventory:
    """One server's node classes and model lists, as its `/object_info` said."""

    node_classes: frozenset[str]
    choices: Mapping[tuple[str, str], frozenset[str]]
    """(class, model input) → the files it offers."""
    fetched_at: float = field(default_factory=time.time)

    @classmethod
    def from_object_info(cls, info: Mapping[str, Any]) -> Inventory:
        choices = {}
        for kind, spec in info.items():
            sections = spec.get("input") if isinstance(spec, Mapping) and is_loader(kind) else None
            for section in ("required", "optional"):
                for name, entry in ((sections or {}).get(section) or {}).items():
                    options = _combo_options(entry)
                    if options is not None and model_folder(name) is not None:
                        choices[(kind, name)] = frozenset(options)
        return cls(frozenset(info), choices)

    def models(self) -> dict[str, list[str]]:
        """Folder → files, merged over every loader of that folder: what a panel shows."""
        found: dict[str, set[str]] = {}
        for (_, name), files in self.choices.items():
            found.setdefault(model_folder(name) or name, set()).update(files)
        return {folder: sorted(files) for folder, files in sorted(found.items())}

    def missing(self, needs: Needs) -> list[str]:
        """What this server lacks to run a workflow with these needs; empty if nothing."""
        lacking = [
            f"node class {kind} (node {node})"
            for kind, node in needs.node_classes.items()
            if kind not in self.node_classes
        ]
        for (kind, name, file), node in needs.models.items():
            offered = self.choices.get((kind, name))
            if kind in self.node_classes and offered is not None and file not in offered:
                lacking.append(f"{model_folder(name)}/{file} (node {node})")
        return lacking

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_classes": len(self.node_classes),
            "models": self.models(),
            "fetched_at": self.fetched_at,
        }


def _combo_options(entry: Any) -> Iterable[str] | None:
    """The options of a combo input spec: `[[...], {...}]` or `["COMBO", {"options": [...]}]`."""
    if not isinstance(entry, list) or not entry:
        return None
    if isinstance(entry[0], list):
        return [str(x) for x in entry[0]]
    if entry[0] == "COMBO" and len(entry) > 1 and isinstance(entry[1], Mapping):
        options = entry[1].get("options")
        return [str(x) for x in options] if isinstance(options, list) else None
    return None
