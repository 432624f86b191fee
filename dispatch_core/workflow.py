"""WorkflowBuilder: edit an API-format workflow by node id, title or class, safely.

The builder deep-copies what it is given, so a template loaded once can feed many jobs.
Images set with `set_image` are only recorded: the dispatcher uploads them to the peer the
job lands on and points the input at the name that peer gave.
"""

from __future__ import annotations

import collections
import copy
import inspect
import json
import os
import random
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._workflow_checks import (
    class_of,
    input_names,
    is_output,
    links_of,
    shipped_object_info,
    validate_workflow,
)
from .errors import WorkflowError

__all__ = ["ImageUpload", "WorkflowBuilder", "is_ui_format", "load_workflow"]

_UI_FORMAT_HINT = (
    "this is a UI-format workflow, not the API format: in ComfyUI use "
    "Workflow → Export (API) (older versions: enable Dev mode in the settings, "
    "then 'Save (API Format)')"
)
_SEED_INPUTS = ("seed", "noise_seed")


@dataclass(frozen=True)
class ImageUpload:
    """An image to upload to the peer at dispatch time, for one node's input."""

    node_id: str
    input: str
    source: Any
    """bytes, a file path, or anything with an async `read()` (an OutputFile of another job)."""
    filename: str

    @property
    def key(self) -> str:
        """`"node_id.input"`: the key of this upload's name in `with_uploaded`."""
        return f"{self.node_id}.{self.input}"


def is_ui_format(workflow: Any) -> bool:
    """True for the frontend's saved workflow (nodes + links), which a peer cannot run."""
    return (
        isinstance(workflow, Mapping)
        and isinstance(workflow.get("nodes"), list)
        and ("links" in workflow or "version" in workflow)
    )


def load_workflow(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an API-format workflow file; a parse error names the file, line and column."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # -sig: Windows editors add a BOM
    except OSError as error:
        raise WorkflowError(f"{path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise WorkflowError(
            f"{path}: not UTF-8 text (byte {error.start}): is it a workflow file?"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise WorkflowError(
            f"{path}: not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None
    if is_ui_format(data):
        raise WorkflowError(f"{path}: {_UI_FORMAT_HINT}")
    if not isinstance(data, dict):
        raise WorkflowError(f"{path}: expected a JSON object of node id → node")
    return data


class WorkflowBuilder:
    """A fluent editor of one API-format workflow; `build()` returns a fresh copy."""

    def __init__(
        self,
        workflow: Mapping[str, Any],
        *,
        object_info: Mapping[str, Any] | None = None,
        uploads: Iterable[ImageUpload] = (),
    ):
        if is_ui_format(workflow):
            raise WorkflowError(_UI_FORMAT_HINT)
        if not isinstance(workflow, Mapping):
            raise WorkflowError(
                f"expected an object of node id → node, got {type(workflow).__name__}"
            )
        self._nodes: dict[str, Any] = {str(k): copy.deepcopy(v) for k, v in workflow.items()}
        self._object_info = object_info
        # keyed by (node id, input): a node such as ImageBatch takes two images
        self._uploads: dict[tuple[str, str], ImageUpload] = {
            (u.node_id, u.input): u for u in uploads
        }

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> WorkflowBuilder:
        return cls(load_workflow(path), **kwargs)

    def copy(self) -> WorkflowBuilder:
        return WorkflowBuilder(
            self._nodes, object_info=self._object_info, uploads=self.image_uploads
        )

    def __repr__(self) -> str:
        return f"WorkflowBuilder({len(self._nodes)} nodes, {len(self._uploads)} uploads)"

    @property
    def image_uploads(self) -> tuple[ImageUpload, ...]:
        return tuple(self._uploads.values())

    # -- naming nodes -------------------------------------------------------------------

    def resolve(self, node: str | int) -> str:
        """The id of the node named by id, then by `_meta.title`, then by class."""
        key = str(node)
        if key in self._nodes:
            return key
        for label, matches in (("title", self._by_title(key)), ("class", self._by_class(key))):
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise WorkflowError(
                    f"{key!r} matches nodes {', '.join(matches)} by {label}: "
                    "use a node id or a unique title",
                    node=key,
                )
        raise WorkflowError(f"no node {key!r} in the workflow; it has {self._listing()}", node=key)

    def _by_title(self, title: str) -> list[str]:
        return [i for i, n in self._nodes.items() if _title(n) == title]

    def _by_class(self, class_type: str) -> list[str]:
        return [i for i, n in self._nodes.items() if class_of(n) == class_type]

    def _listing(self, limit: int = 12) -> str:
        items = [f"{i} ({_title(n) or class_of(n)})" for i, n in self._nodes.items()]
        more = f", … {len(items) - limit} more" if len(items) > limit else ""
        return ", ".join(items[:limit]) + more if items else "no nodes"

    def _inputs(self, node_id: str) -> dict[str, Any]:
        node = self._nodes[node_id]
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            raise WorkflowError(f"node {node_id} has no 'inputs' object", node=node_id)
        return node["inputs"]

    def _check_input(self, node_id: str, name: str) -> None:
        known = input_names(self._info(), class_of(self._nodes[node_id]))
        if known is not None and name not in known and name not in self._inputs(node_id):
            listing = f"its inputs are {', '.join(sorted(known))}" if known else "it has none"
            raise WorkflowError(
                f"node {node_id} ({class_of(self._nodes[node_id])}) has no input {name!r}; "
                + listing,
                node=node_id,
            )

    def _info(self) -> Mapping[str, Any]:
        return self._object_info if self._object_info is not None else shipped_object_info()

    # -- edits --------------------------------------------------------------------------

    def set(self, node: str | int, input: str, value: Any) -> WorkflowBuilder:
        node_id = self.resolve(node)
        self._check_input(node_id, input)
        self._inputs(node_id)[input] = copy.deepcopy(value)
        self._uploads.pop((node_id, input), None)  # an explicit value wins over an earlier image
        return self

    def set_path(self, path: str, value: Any) -> WorkflowBuilder:
        """`"6.text"` or `"Positive Prompt.text"`: split at the last dot."""
        node, dot, input = path.rpartition(".")
        if not dot or not node or not input:
            raise WorkflowError(f"{path!r}: expected NODE.INPUT, such as '6.text'", node=path)
        return self.set(node, input, value)

    def apply_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> WorkflowBuilder:
        """`{node: {input: value}}`, each node named by id, title or class."""
        if not isinstance(overrides, Mapping):
            raise WorkflowError(
                f"overrides must be an object of node → inputs, not {type(overrides).__name__}"
            )
        for node, inputs in overrides.items():
            if not isinstance(inputs, Mapping):
                raise WorkflowError(
                    f"override for {node!r} must be an object of input → value", node=str(node)
                )
            for input, value in inputs.items():
                self.set(node, input, value)
        return self

    def set_dimensions(
        self, width: int, height: int, node: str | int | None = None
    ) -> WorkflowBuilder:
        """Size `node`, or every source of an image or latent (EmptyLatentImage, EmptyImage…).

        Nodes fed by a link (ImageScale, ImageCrop) are left alone: their width and height
        are a resize or a crop of what flows in, not the size of the picture made.
        """
        targets = [self.resolve(node)] if node is not None else self._sources_with_size()
        if not targets:
            raise WorkflowError("no source node with literal width and height inputs; name one")
        for node_id in targets:
            self.set(node_id, "width", width).set(node_id, "height", height)
        return self

    def _sources_with_size(self) -> list[str]:
        return [
            i
            for i, n in self._nodes.items()
            if _literal(n, "width") and _literal(n, "height") and not links_of(n)
        ]

    def randomize_seed(
        self,
        node: str | int | None = None,
        input: str | None = None,
        *,
        rng: random.Random | None = None,
    ) -> WorkflowBuilder:
        """A new seed in every literal `seed` and `noise_seed` (or `input`), or in one node's."""
        chooser = rng or random.SystemRandom()
        names = (input,) if input is not None else _SEED_INPUTS
        if node is not None:
            node_id = self.resolve(node)
            found = [k for k in names if _literal(self._nodes[node_id], k)]
            return self.set(node_id, (found or names)[0], chooser.randrange(2**53))
        targets = [(i, k) for i in self._nodes for k in names if _literal(self._nodes[i], k)]
        if not targets:
            raise WorkflowError(f"no node with a literal {' or '.join(names)} input")
        for node_id, key in targets:
            self._inputs(node_id)[key] = chooser.randrange(2**53)
        return self

    def set_image(
        self, node: str | int, data: Any, *, input: str = "image", filename: str | None = None
    ) -> WorkflowBuilder:
        node_id = self.resolve(node)
        self._check_input(node_id, input)
        if isinstance(data, (str, os.PathLike)):
            if not Path(data).is_file():
                raise WorkflowError(f"image file {str(data)!r} does not exist", node=node_id)
            filename = filename or Path(data).name
        elif not isinstance(data, (bytes, bytearray)) and not _has_async_read(data):
            # a sync file's read() would only fail at dispatch time, on `await`
            raise WorkflowError(
                "set_image takes bytes, a path or an output file (async read()), "
                f"not {type(data).__name__}",
                node=node_id,
            )
        name = filename or getattr(data, "filename", None) or f"dispatch_{node_id}.png"
        source = bytes(data) if isinstance(data, bytearray) else data
        self._uploads[(node_id, input)] = ImageUpload(node_id, input, source, Path(name).name)
        return self

    def set_image_url(self, node: str | int, url: str, *, input: str = "url") -> WorkflowBuilder:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise WorkflowError(f"{url!r} is not an http:// or https:// URL", node=str(node))
        return self.set(node, input, url)

    def remove_node(self, node: str | int) -> WorkflowBuilder:
        node_id = self.resolve(node)
        del self._nodes[node_id]
        for key in [k for k in self._uploads if k[0] == node_id]:
            del self._uploads[key]
        return self

    def remove_nodes(self, *nodes: str | int) -> WorkflowBuilder:
        """Resolve every name first, so that ids and titles of the same node may be mixed."""
        for node_id in dict.fromkeys(self.resolve(n) for n in nodes):
            self.remove_node(node_id)
        return self

    def prune(self, keep: Iterable[str | int] = ()) -> WorkflowBuilder:
        """Drop every node that no output node (nor a node in `keep`) depends on."""
        wanted = [i for i, n in self._nodes.items() if is_output(n, self._info())]
        wanted += [self.resolve(k) for k in keep]
        reachable: set[str] = set()
        while wanted:
            node_id = wanted.pop()
            if node_id in reachable or node_id not in self._nodes:
                continue
            reachable.add(node_id)
            wanted += [link[0] for link in links_of(self._nodes[node_id])]
        for node_id in [i for i in self._nodes if i not in reachable]:
            self.remove_node(node_id)
        return self

    # -- checks and output --------------------------------------------------------------

    def validate(self) -> WorkflowBuilder:
        """Raise one WorkflowError listing every structural problem found."""
        validate_workflow(self._nodes, self._object_info)
        return self

    def build(self) -> dict[str, Any]:
        return copy.deepcopy(self._nodes)

    def view(self) -> Mapping[str, Any]:
        """The workflow as it stands, read-only and not copied: for a look, not to send."""
        return types.MappingProxyType(self._nodes)

    def with_uploaded(self, names: Mapping[str, str]) -> dict[str, Any]:
        """The workflow to send, each upload's input set to the name the peer gave it.

        Not a deep copy: only the nodes it changes are new; it is for sending, not editing.

        `names` is keyed by `upload.key` (`"node_id.input"`), or by node id alone where the
        node has a single upload.
        """
        built = dict(self._nodes)  # nodes with an upload are copied below, the rest shared
        per_node = collections.Counter(u.node_id for u in self._uploads.values())
        for upload in self._uploads.values():
            name = names.get(upload.key)
            if name is None and per_node[upload.node_id] == 1:
                name = names.get(upload.node_id)
            if name is None:
                raise WorkflowError(
                    f"no uploaded name for node {upload.node_id} input {upload.input!r}",
                    node=upload.node_id,
                )
            node = dict(built[upload.node_id])
            node["inputs"] = dict(node["inputs"]) | {upload.input: name}
            built[upload.node_id] = node
        return built


def _title(node: Any) -> str | None:
    meta = node.get("_meta") if isinstance(node, Mapping) else None
    title = meta.get("title") if isinstance(meta, Mapping) else None
    return title if isinstance(title, str) else None


def _literal(node: Any, name: str) -> bool:
    inputs = node.get("inputs") if isinstance(node, Mapping) else None
    return isinstance(inputs, Mapping) and name in inputs and not isinstance(inputs[name], list)


def _has_async_read(data: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(data, "read", None))
