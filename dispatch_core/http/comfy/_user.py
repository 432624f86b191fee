"""The page's user: its settings and files, kept in the gateway's own folder.

ComfyUI's page keeps a user's settings (`/settings`) and files (`/userdata`: workflows,
templates, keybindings) on its server. A farm has many servers and none of them is the
page's: the gateway keeps them itself, in `comfyui/user/` beside its config, one user, and
never asks a peer for them. Names are a client's: each path segment is checked as an
upload's (no `..`, no hidden names, no separators in disguise), so nothing outside that
folder is ever read or written. Files are written whole (a temp file, then a rename).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from ..._json import loads_bounded
from ._inputs import check_segments
from ._shapes import ComfyRefusal

__all__ = ["UserFolder"]

_MAX_SETTINGS = 1024 * 1024


class UserFolder:
    """`settings.json` and the files under `data/`."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = asyncio.Lock()

    # -- settings -----------------------------------------------------------------------

    async def settings(self) -> dict[str, Any]:
        return await asyncio.to_thread(self._read_settings)

    def _read_settings(self) -> dict[str, Any]:
        try:
            raw = (self.folder / "comfy.settings.json").read_bytes()[:_MAX_SETTINGS]
            found = loads_bounded(raw)
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    async def update_settings(self, changes: dict[str, Any]) -> None:
        """Merge `changes` in, one writer at a time (two tabs may save at once)."""
        async with self._lock:
            settings = {**await self.settings(), **changes}
            text = json.dumps(settings, indent=2).encode()
            if len(text) > _MAX_SETTINGS:
                raise ComfyRefusal(
                    "too_large", "the settings are too large", field="body", status=413
                )
            await asyncio.to_thread(_write, self.folder / "comfy.settings.json", text)

    # -- files ---------------------------------------------------------------------------

    def path(self, name: str, field: str = "file") -> Path:
        parts = check_segments(name, field, required=True)
        return self.folder.joinpath("data", *parts)

    async def listing(self, folder: str, *, full: bool) -> list[Any] | None:
        """The files under `folder`, recursively, as ComfyUI lists them; None if none."""
        root = self.path(folder, "dir")
        return await asyncio.to_thread(_listing, root, full)

    async def read(self, name: str) -> bytes | None:
        path = self.path(name)
        return await asyncio.to_thread(lambda: path.read_bytes() if _plain_file(path) else None)

    async def write(self, name: str, data: bytes, *, overwrite: bool) -> dict[str, Any] | None:
        """Keep a file; None when it exists and `overwrite` is off (ComfyUI's 409)."""
        path = self.path(name)
        if not overwrite and await asyncio.to_thread(path.exists):
            return None
        await asyncio.to_thread(_write, path, data)
        return {"path": name, "size": len(data), "modified": time.time()}

    async def delete(self, name: str) -> bool:
        path = self.path(name)
        return await asyncio.to_thread(_unlink, path)

    async def move(self, name: str, dest: str, *, overwrite: bool) -> dict[str, Any] | None:
        source, target = self.path(name), self.path(dest, "dest")
        if not await asyncio.to_thread(_plain_file, source):
            raise ComfyRefusal("not_found", f"no file {name[:200]!r}", field="file", status=404)
        if not overwrite and await asyncio.to_thread(target.exists):
            return None
        await asyncio.to_thread(_move, source, target)
        return {"path": dest, "size": target.stat().st_size, "modified": time.time()}


def _plain_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _listing(root: Path, full: bool) -> list[Any] | None:
    if not root.is_dir() or root.is_symlink():
        return None
    found = sorted(p for p in root.rglob("*") if _plain_file(p) and not p.name.startswith("."))
    names = [p.relative_to(root).as_posix() for p in found]
    if not full:
        return names
    return [
        {"path": n, "size": p.stat().st_size, "modified": p.stat().st_mtime}
        for n, p in zip(names, found, strict=True)
    ]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.part")
    temp.write_bytes(data)
    os.replace(temp, path)


def _unlink(path: Path) -> bool:
    if not _plain_file(path):
        return False
    path.unlink()
    return True


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
