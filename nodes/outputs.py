"""The peer's files on this ComfyUI's disk: previewed in the node, or saved as SaveImage saves.

A Remote Dispatch node is an output node, so that it alone is a valid prompt: its images
are shown in place, as PreviewImage shows them, from the peer's own bytes written into the
local temp folder (no re-encoding). With `save_output` they go to the output folder
instead, named after the peer's file name prefix (`ComfyUI_00007_.png` → `ComfyUI`), with
the next free local counter, as SaveImage would name them here.

The peer's names are its words, not paths: every part is reduced to a safe file name and
the result is checked to stay inside the folder it is written to.
"""

from __future__ import annotations

import os
import posixpath
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["LocalFile", "local_path", "previewable", "save_locally"]

LocalFile = dict[str, str]
"""`{"filename", "subfolder", "type"}`: what ComfyUI's `ui.images` entries hold."""

_COUNTER = re.compile(r"^(?P<prefix>.*?)_(?P<n>\d{5,})_?$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
_PREVIEW_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif"}


def prefix_of(filename: str, subfolder: str) -> str:
    """`subfolder/prefix` of a peer's file: its name without the counter SaveImage added."""
    stem = posixpath.splitext(posixpath.basename(filename.replace("\\", "/")))[0]
    found = _COUNTER.match(stem)
    prefix = _safe_part(found.group("prefix") if found else stem) or "ComfyUI"
    parts = [_safe_part(p) for p in subfolder.replace("\\", "/").split("/")]
    return "/".join([*(p for p in parts if p), prefix])


def _safe_part(part: str) -> str:
    cleaned = _UNSAFE.sub("_", part).strip(" .")
    return "" if cleaned in ("", ".", "..") else cleaned[:120]


def _suffix_of(filename: str) -> str:
    """`.png`: letters and digits only, so that it can never name a folder."""
    suffix = posixpath.splitext(filename.replace("\\", "/"))[1].lower()
    kept = re.sub(r"[^a-z0-9]", "", suffix)[:10]
    return f".{kept}" if kept else ""


def _inside(root: Path, path: Path) -> bool:
    return os.path.commonpath((root.resolve(), path.resolve())) == str(root.resolve())


def _next_free(folder: Path, prefix: str, suffix: str, data: bytes) -> str:
    """Write `prefix_NNNNN_suffix` with the next counter not taken; its file name."""
    taken = [_COUNTER.match(Path(n).stem) for n in os.listdir(folder)]
    numbers = [int(m.group("n")) for m in taken if m and m.group("prefix") == prefix]
    counter = max(numbers, default=0) + 1
    while True:
        name = f"{prefix}_{counter:05}_{suffix}"
        try:
            with open(folder / name, "xb") as file:  # never overwrites a file being written
                file.write(data)
            return name
        except FileExistsError:
            counter += 1


def save_locally(files: Sequence[tuple[Any, bytes]], *, keep: bool) -> list[LocalFile]:
    """Write each `(OutputFile, bytes)`; their `ui` entries, in order.

    keep: into the output folder, named after the peer's prefix; else into the temp
    folder under a random name, as PreviewImage does.
    """
    import folder_paths

    if keep:
        root = Path(folder_paths.get_output_directory())
    else:
        root = Path(folder_paths.get_temp_directory())
    written: list[LocalFile] = []
    run = secrets.token_hex(4)
    for index, (output, data) in enumerate(files):
        suffix = _suffix_of(output.filename)
        if keep:
            subfolder, _, prefix = prefix_of(output.filename, output.subfolder).rpartition("/")
        else:
            subfolder, prefix = "", f"dispatch_{run}_{index:03}"
        folder = root / subfolder
        if not _inside(root, folder):
            raise ValueError(f"{output.filename}: its subfolder leaves the output folder")
        folder.mkdir(parents=True, exist_ok=True)
        name = _next_free(folder, prefix, suffix, data)
        written.append(
            {"filename": name, "subfolder": subfolder, "type": "output" if keep else "temp"}
        )
    return written


def previewable(entry: LocalFile) -> bool:
    """An image the frontend's node preview can show."""
    return posixpath.splitext(entry["filename"])[1].lower() in _PREVIEW_SUFFIXES


def local_path(entry: LocalFile) -> Path:
    """Where a file `save_locally` wrote is on this disk."""
    import folder_paths

    if entry["type"] == "output":
        root = folder_paths.get_output_directory()
    else:
        root = folder_paths.get_temp_directory()
    return Path(root) / entry["subfolder"] / entry["filename"]
