"""The fake peer's input, output and temp folders, kept in memory."""

from __future__ import annotations

import random
import string
from typing import Any

from ._png import Image, encode_png

KINDS = ("input", "output", "temp")


def locate(name: str, kind: str, subfolder: str = "") -> tuple[str, str, str]:
    """Honour ComfyUI's `name.png [temp]` annotation, which overrides `type`."""
    for annotated in KINDS:
        if name.endswith(f" [{annotated}]"):
            return annotated, subfolder, name[: -len(annotated) - 3]
    return kind, subfolder, name


class FileStore:
    """Files by (type, subfolder, name); names follow ComfyUI's collision rules."""

    def __init__(self) -> None:
        self._files: dict[tuple[str, str, str], bytes] = {}
        self._counters: dict[str, int] = {}
        self.temp_prefix = "ComfyUI_temp_" + "".join(random.choices(string.ascii_lowercase, k=5))

    def get(self, kind: str, subfolder: str, name: str) -> bytes | None:
        return self._files.get((kind, subfolder, name))

    def read_input(self, annotated: str) -> bytes | None:
        """A LoadImage value such as `sub/name.png` or `name.png [temp]`."""
        kind, _, path = locate(annotated, "input")
        subfolder, _, filename = path.rpartition("/")
        return self.get(kind, subfolder, filename)

    def input_names(self) -> list[str]:
        found = ("/".join(p for p in (sub, n) if p) for k, sub, n in self._files if k == "input")
        return sorted(found)

    def upload(self, kind: str, subfolder: str, name: str, data: bytes, overwrite: bool) -> str:
        """Store an upload; the same content keeps its name, other content gets `name (1)`."""
        stem, dot, suffix = name.rpartition(".")
        if not dot:
            stem, suffix = name, ""
        candidate, counter = name, 1
        while not overwrite and (kind, subfolder, candidate) in self._files:
            if self._files[(kind, subfolder, candidate)] == data:
                break
            candidate = f"{stem} ({counter}){dot}{suffix}"
            counter += 1
        self._files[(kind, subfolder, candidate)] = data
        return candidate

    def save(self, kind: str, prefix: str, images: list[Image]) -> dict[str, Any]:
        """Write PNGs as SaveImage does (`prefix_00001_.png`); the node's UI output."""
        subfolder, _, base = prefix.rpartition("/")
        ui = []
        for image in images:
            count = self._counters.get(prefix, 0) + 1
            self._counters[prefix] = count
            filename = f"{base}_{count:05}_.png"
            self._files[(kind, subfolder, filename)] = encode_png(image)
            ui.append({"filename": filename, "subfolder": subfolder, "type": kind})
        return {"images": ui}
