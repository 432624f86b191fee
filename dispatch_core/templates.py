"""Saved API-format workflows with named parameters, one JSON file per template.

A template file is either a plain API-format workflow (dropped into the folder by hand),
or what `TemplateStore.save` writes:

    {"format": "comfyui-dispatch/template@1",
     "description": "SDXL portrait",
     "parameters": {"prompt": "6.text", "seed": ["3.seed"]},
     "workflow": {"3": {"class_type": "KSampler", "inputs": {...}}, ...}}

Parameters give friendly names (`prompt`, `seed`, `width`…) to `NODE.INPUT` targets, so a
caller sets a prompt without knowing node ids. A plain workflow gets the parameters that
`suggest_parameters` finds in it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._files import write_atomically
from ._json import JSONLimitError, loads_bounded
from .errors import NotFound, TemplateError, WorkflowError
from .workflow import WorkflowBuilder, is_ui_format

__all__ = ["Template", "TemplateStore", "suggest_parameters"]

FORMAT = "comfyui-dispatch/template@1"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.()+-]{0,79}")
_SAMPLERS = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
_IMAGE_LOADERS = ("LoadImage", "LoadImageMask")
_MAX_TEMPLATE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Template:
    """One saved workflow and the names of its parameters."""

    name: str
    workflow: Mapping[str, Any]
    parameters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Friendly name → one or more `NODE.INPUT` targets, all set to the same value."""
    description: str = ""
    fingerprint: str = ""
    """sha256 of the file: changes whenever the file does."""

    def builder(self, values: Mapping[str, Any] | None = None) -> WorkflowBuilder:
        """A builder of this workflow with `values` applied.

        Keys are parameter names (`"prompt"`), `NODE.INPUT` paths (`"6.text"`,
        `"Positive Prompt.text"`), or a node with an object of inputs (`{"6": {"text": …}}`).
        bytes set an image input: they are uploaded to the peer the job lands on.
        """
        return self.apply(WorkflowBuilder(self.workflow), values)

    def apply(self, builder: WorkflowBuilder, values: Mapping[str, Any] | None) -> WorkflowBuilder:
        """Set `values` (in `builder` shape) on `builder`, which holds this workflow."""
        for key, value in (values or {}).items():
            if isinstance(value, Mapping) and "." not in key and key not in self.parameters:
                builder.apply_overrides({key: value})
                continue
            for path in self.targets(key):
                node, _, input = path.rpartition(".")
                if isinstance(value, (bytes, bytearray)):
                    builder.set_image(node, value, input=input)
                else:
                    builder.set_path(path, value)
        return builder

    def targets(self, key: str) -> list[str]:
        """The `NODE.INPUT` paths that `key` sets."""
        if key in self.parameters:
            return list(self.parameters[key])
        if "." in key:
            return [key]
        known = ", ".join(sorted(self.parameters)) or "none"
        raise TemplateError(
            f"template {self.name!r} has no parameter {key!r} (its parameters: {known}); "
            "name an input as NODE.INPUT, such as '6.text' or 'Positive Prompt.text'",
            template=self.name,
            node=key,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "description": self.description,
            "parameters": {k: list(v) for k, v in self.parameters.items()},
            "workflow": dict(self.workflow),
        }

    def summary(self) -> dict[str, Any]:
        """What a list or a panel shows: name, parameters, node count and classes."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": {k: list(v) for k, v in self.parameters.items()},
            "nodes": len(self.workflow),
            "classes": sorted({str(n.get("class_type")) for n in self.workflow.values()}),
            "fingerprint": self.fingerprint,
        }


def suggest_parameters(workflow: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Friendly names for the inputs people change most: prompt, negative, seed, steps,
    denoise, width, height, image. Found by class and by what feeds each sampler."""
    found: dict[str, list[str]] = {}

    def add(name: str, node_id: str, input: str) -> None:
        inputs = workflow[node_id].get("inputs") or {}
        if input in inputs and not isinstance(inputs[input], list):
            paths = found.setdefault(name, [])
            if f"{node_id}.{input}" not in paths:
                paths.append(f"{node_id}.{input}")

    for node_id, node in workflow.items():
        inputs = node.get("inputs") or {}
        kind = node.get("class_type")
        if kind in _SAMPLERS or kind == "RandomNoise":
            for seed in ("seed", "noise_seed"):
                add("seed", node_id, seed)
            add("steps", node_id, "steps")
            add("denoise", node_id, "denoise")
            for name, side in (("prompt", "positive"), ("negative", "negative")):
                link = inputs.get(side)
                source = str(link[0]) if isinstance(link, list) and link else ""
                if source in workflow and "text" in (workflow[source].get("inputs") or {}):
                    add(name, source, "text")
        elif kind in _IMAGE_LOADERS and "image" not in found:
            add("image", node_id, "image")
        elif not any(isinstance(v, list) for v in inputs.values()):
            add("width", node_id, "width")  # a source of a picture or latent, not a resize
            add("height", node_id, "height")
    return {name: tuple(paths) for name, paths in found.items()}


class TemplateStore:
    """The folder of templates. Names are checked so that none can leave the folder."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(
            (p.stem for p in self.folder.glob("*.json") if _is_name(p.stem)),
            key=str.lower,
        )

    def list(self) -> list[dict[str, Any]]:
        """A summary of every template; an unreadable one is listed with its error."""
        listing = []
        for name in self.names():
            try:
                listing.append(self.load(name).summary())
            except TemplateError as error:
                listing.append({"name": name, "error": str(error)})
        return listing

    def path(self, name: str) -> Path:
        return self.folder / f"{check_name(name)}.json"

    def fingerprint(self, name: str) -> str:
        """sha256 of the file, or "" when it does not exist (for ComfyUI's IS_CHANGED)."""
        try:
            return hashlib.sha256(self.path(name).read_bytes()).hexdigest()
        except OSError:
            return ""

    def load(self, name: str) -> Template:
        path = self.path(name)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            known = ", ".join(self.names()) or "none saved"
            raise NotFound(
                f"no template {name!r} in {self.folder} (templates: {known})", field="name"
            ) from None
        except OSError as error:
            raise TemplateError(f"{path}: cannot read: {error.strerror}", template=name) from None
        if len(raw) > _MAX_TEMPLATE_BYTES:
            raise TemplateError(f"{path}: larger than 8 MiB; is it a workflow?", template=name)
        try:
            data = loads_bounded(raw.decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise TemplateError(f"{path}: not UTF-8 text", template=name) from None
        except JSONLimitError as error:
            raise TemplateError(f"{path}: {error}", template=name) from None
        fingerprint = hashlib.sha256(raw).hexdigest()
        try:
            return _parse(name, data, fingerprint)
        except WorkflowError as error:
            message = f"{path}: {error.message}"
            raise TemplateError(message, template=name, node=error.node) from None

    def save(
        self,
        name: str,
        workflow: Any,
        *,
        parameters: Mapping[str, Any] | None = None,
        description: str = "",
        overwrite: bool = True,
    ) -> Template:
        """Check and write a template atomically; `parameters=None` suggests them."""
        path = self.path(name)
        data = {"format": FORMAT, "description": description, "workflow": workflow}
        if parameters is not None:
            data["parameters"] = parameters
        template = _parse(name, data, "")
        if not overwrite and path.exists():
            raise TemplateError(f"a template named {name!r} exists already", template=name)
        text = (json.dumps(template.to_dict(), indent=2, ensure_ascii=False) + "\n").encode()
        if len(text) > _MAX_TEMPLATE_BYTES:  # refused before the old file is touched
            raise TemplateError(
                f"template {name!r} is larger than 8 MiB as saved; is an image embedded?",
                template=name,
                node="workflow",
            )
        write_atomically(path, text)
        return self.load(name)

    def rename(self, old: str, new: str) -> Template:
        source, target = self.path(old), self.path(new)
        if not source.exists():
            raise NotFound(f"no template {old!r}", field="name")
        if target.exists() and source != target:
            raise TemplateError(f"a template named {new!r} exists already", template=new)
        os.replace(source, target)
        return self.load(new)

    def delete(self, name: str) -> None:
        try:
            self.path(name).unlink()
        except FileNotFoundError:
            raise NotFound(f"no template {name!r}", field="name") from None


def check_name(name: Any) -> str:
    """A template name that is a plain file name: letters, digits, space, `_ . ( ) + -`.

    One `.json` at the end is the file's own suffix and is dropped; a name that still ends
    in `.json` is refused, so that every name maps to one file and back.
    """
    if isinstance(name, str) and name.lower().endswith(".json"):
        name = name[:-5]
    if not isinstance(name, str) or not _is_name(name):
        raise TemplateError(
            f"bad template name {name!r}: use 1 to 80 letters, digits, spaces or _ . ( ) + -, "
            "starting with a letter or digit",
            template=str(name),
        )
    return name


def _is_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name)) and ".." not in name and not name.lower().endswith(".json")


def _parse(name: str, data: Any, fingerprint: str) -> Template:
    if isinstance(data, Mapping) and data.get("format") == FORMAT:
        workflow = _api_workflow(data.get("workflow"))
        description = data.get("description") or ""
        if not isinstance(description, str):
            raise WorkflowError("'description' must be text")
        raw_parameters = data.get("parameters")
    else:
        workflow, description, raw_parameters = _api_workflow(data), "", None
    if raw_parameters is None:
        parameters = suggest_parameters(workflow)
    else:
        parameters = _parameters(raw_parameters, workflow)
    return Template(name, workflow, parameters, description, fingerprint)


def _api_workflow(workflow: Any) -> dict[str, Any]:
    if is_ui_format(workflow):
        WorkflowBuilder(workflow)  # raises, saying how to export the API format
    if not isinstance(workflow, Mapping) or not workflow:
        raise WorkflowError("expected an API-format workflow: an object of node id → node")
    for node_id, node in workflow.items():
        if not isinstance(node, Mapping) or not isinstance(node.get("class_type"), str):
            raise WorkflowError(f"node {node_id} has no 'class_type'", node=str(node_id))
        if not isinstance(node.get("inputs"), Mapping):
            raise WorkflowError(f"node {node_id} has no 'inputs' object", node=str(node_id))
    return {str(k): v for k, v in workflow.items()}


def _parameters(raw: Any, workflow: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, Mapping):
        raise WorkflowError("'parameters' must be an object of name → NODE.INPUT")
    builder = WorkflowBuilder(workflow)
    parameters = {}
    for name, targets in raw.items():
        paths = [targets] if isinstance(targets, str) else targets
        if not isinstance(name, str) or not name or "." in name:
            raise WorkflowError(f"parameter name {name!r} must be a word without dots")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise WorkflowError(
                f'parameter {name!r} must name NODE.INPUT targets, such as "6.text"', node=name
            )
        parameters[name] = tuple(_target(builder, workflow, name, p) for p in paths)
    return parameters


def _target(builder: WorkflowBuilder, workflow: Mapping[str, Any], name: str, path: str) -> str:
    """`path` with its node resolved to an id; the input must exist in that node."""
    node, dot, input = path.rpartition(".")
    if not dot or not node or not input:
        raise WorkflowError(f"parameter {name!r}: {path!r} is not NODE.INPUT", node=name)
    node_id = builder.resolve(node)
    if input not in workflow[node_id]["inputs"]:
        inputs = ", ".join(workflow[node_id]["inputs"]) or "none"
        raise WorkflowError(
            f"parameter {name!r}: node {node_id} ({workflow[node_id]['class_type']}) has no "
            f"input {input!r} (its inputs: {inputs})",
            node=node_id,
        )
    return f"{node_id}.{input}"
