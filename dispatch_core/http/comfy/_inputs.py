"""The gateway's own input folder: what clients upload, kept until a prompt needs it.

A client uploads to the gateway as it would to ComfyUI (`POST /upload/image`), before it
knows, or the gateway knows, which peer will run its prompt. So the file stays here, and a
prompt that names it (`LoadImage.image = "sub/name.png"`) takes its bytes along: the
engine uploads them to the peer the job lands on, as it does for any job's image.

Names come from clients: a name is one path segment of printable characters, a subfolder
a few such segments; neither may climb out (`..`), start at the root or hide a separator.
Collisions follow ComfyUI: the same bytes reuse the name, other bytes get `name (1).png`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from pathlib import Path, PurePosixPath

from .._serve_file import INLINE_TYPES
from ._shapes import ComfyRefusal

__all__ = ["Inputs", "check_segments"]

_SEGMENT = re.compile(r"^[^.\x00-\x1f\x7f/\\][^\x00-\x1f\x7f/\\]{0,199}$")
"""One name: printable, no separator, not hidden (nor `.`, `..`, nor our `.part` files)."""
_TYPES = ("input", "temp", "output")
_MAX_SEGMENTS = 8


class Inputs:
    """Files uploaded to the gateway, by type (`input`, `temp`, `output`) and subfolder."""

    def __init__(self, folder: Path):
        self.folder = folder

    def _root(self, kind: str) -> Path:
        if kind not in _TYPES:
            raise ComfyRefusal(
                "invalid_type", f"type must be one of {', '.join(_TYPES)}", field="type"
            )
        return self.folder / kind

    def place(self, filename: str, subfolder: str, kind: str) -> Path:
        """Where a file of that name lives here; checked, never outside the folder."""
        folders = check_segments(subfolder, "subfolder")
        name = check_segments(filename, "filename", required=True)
        if len(name) != 1 or len(folders) >= _MAX_SEGMENTS:
            raise ComfyRefusal(
                "invalid_filename",
                "a file name, without folders (give them as 'subfolder')",
                field="filename",
            )
        parts = [*folders, *name]
        return self._root(kind).joinpath(*parts)

    async def save(
        self, data: bytes, filename: str, subfolder: str, kind: str, *, overwrite: bool
    ) -> dict[str, str]:
        """Keep an upload; ComfyUI's answer `{"name", "subfolder", "type"}`."""
        target = self.place(filename, subfolder, kind)
        name = await asyncio.to_thread(_write, target, data, overwrite)
        return {"name": name, "subfolder": subfolder, "type": kind}

    async def read(self, value: str) -> tuple[bytes, str] | None:
        """The bytes and name of an uploaded input a prompt names (`sub/x.png`, `x.png
        [input]`), or None when the gateway holds no such file (the peer may)."""
        kind = "input"
        for annotated in _TYPES:
            if value.endswith(f" [{annotated}]"):
                value, kind = value.removesuffix(f" [{annotated}]"), annotated
        folder, _, name = value.rpartition("/")
        try:
            path = self.place(name, folder, kind)
        except ComfyRefusal:
            return None
        data = await asyncio.to_thread(_read_if_file, path)
        return None if data is None else (data, name)

    def listing(self) -> list[str]:
        """The top-level input files, as ComfyUI lists them for LoadImage."""
        root = self.folder / "input"
        if not root.is_dir():
            return []
        return sorted(
            p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in INLINE_TYPES
        )


def check_segments(text: str, field: str, *, required: bool = False) -> list[str]:
    """The path segments of a client's name, or a refusal naming `field`."""
    if not text:
        if required:
            raise ComfyRefusal("invalid_" + field, f"'{field}' is needed", field=field)
        return []
    parts = PurePosixPath(text).parts
    ok = (
        not text.startswith("/")
        and len(text) <= 1000
        and all(_SEGMENT.match(p) and p not in (".", "..") for p in parts)
        and "\\" not in text
    )
    if not ok:
        raise ComfyRefusal(
            "invalid_" + field, f"'{field}' is not a plain relative name", field=field
        )
    return list(parts)


def _write(target: Path, data: bytes, overwrite: bool) -> str:
    """Write under the name, or ComfyUI's `name (n).ext` when other bytes hold it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    candidate, index = target, 0
    while not overwrite and candidate.exists():
        if candidate.is_file() and _same(candidate, data):
            return candidate.name
        index += 1
        candidate = target.with_name(f"{target.stem} ({index}){target.suffix}")
    temp = candidate.with_name(f".{candidate.name}.{os.getpid()}.part")
    temp.write_bytes(data)
    os.replace(temp, candidate)
    return candidate.name


def _same(path: Path, data: bytes) -> bool:
    return hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()


def _read_if_file(path: Path) -> bytes | None:
    if path.is_symlink() or not path.is_file():
        return None
    return path.read_bytes()
