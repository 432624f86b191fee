"""The fake peer's input, output and temp folders, kept in memory with ComfyUI's naming rules,
and the two routes that reach them: `/view` and `/upload/image`."""

from __future__ import annotations

import mimetypes
import posixpath
import random
import re
import time
from typing import Any

from aiohttp import web

from ._png import Image, encode_png

__all__ = ["KINDS", "TROUBLE", "FileStore", "inside", "locate", "upload", "view"]

KINDS = ("input", "output", "temp")
TROUBLE = "500 Internal Server Error\n\nServer got itself in trouble"
_DOWNLOAD_ONLY = {
    "text/html",
    "text/html-sandboxed",
    "application/xhtml+xml",
    "text/javascript",
    "text/css",
}
# A fresh ComfyUI install ships input/example.png, so LoadImage's list is never empty.
_EXAMPLE = encode_png(Image.solid(64, 64, (128, 128, 128)))


def locate(name: str, kind: str | None) -> tuple[str | None, str]:
    """Honour ComfyUI's `name.png [temp]` annotation, which overrides `type`."""
    for annotated in KINDS:
        if name.endswith(f" [{annotated}]"):
            return annotated, name[: -len(annotated) - 3]
    return kind, name


def inside(path: str) -> str | None:
    """`path` normalised, or None when it would leave its folder (ComfyUI's commonpath test)."""
    if path.startswith("/"):
        return None
    normal = posixpath.normpath(path or ".")
    if normal == "..":
        return None
    if normal.startswith("../"):
        return None
    return "" if normal == "." else normal


class FileStore:
    """Files by (type, subfolder, name). Temp is wiped on restart, as ComfyUI does at start."""

    def __init__(self) -> None:
        self._files: dict[tuple[str, str, str], bytes] = {("input", "", "example.png"): _EXAMPLE}
        self.temp_prefix = "ComfyUI_temp_" + "".join(
            random.choices("abcdefghijklmnopqrstupvxyz", k=5)
        )

    def get(self, kind: str, subfolder: str, name: str) -> bytes | None:
        return self._files.get((kind, subfolder, name))

    def read_input(self, annotated: str) -> bytes | None:
        """A LoadImage value such as `sub/name.png` or `name.png [temp]`."""
        kind, path = locate(annotated, "input")
        subfolder, _, filename = path.rpartition("/")
        return self.get(kind or "input", subfolder, filename)

    def input_names(self) -> list[str]:
        """What LoadImage's combo lists: top-level input files only, sorted."""
        return sorted(n for k, sub, n in self._files if k == "input" and not sub)

    def clear_temp(self) -> None:
        self._files = {key: data for key, data in self._files.items() if key[0] != "temp"}

    def upload(self, kind: str, subfolder: str, name: str, data: bytes, overwrite: bool) -> str:
        """Store an upload; the same content keeps its name, other content gets `name (1)`."""
        stem, suffix = posixpath.splitext(name)
        candidate, counter = name, 1
        while not overwrite and (kind, subfolder, candidate) in self._files:
            if self._files[(kind, subfolder, candidate)] == data:
                return candidate  # a duplicate: nothing is written
            candidate = f"{stem} ({counter}){suffix}"
            counter += 1
        self._files[(kind, subfolder, candidate)] = data
        return candidate

    def save(
        self,
        kind: str,
        prefix: str,
        images: list[Image],
        *,
        text: dict[str, str] | None = None,
        extension: str = "png",
    ) -> list[dict[str, Any]]:
        """Write as SaveImage does (`prefix_00001_.png`, counting on from the files there)."""
        first = images[0] if images else Image(0, 0, b"")
        folder, base, counter = self._save_path(kind, prefix, first.width, first.height)
        level = 4 if kind == "output" else 1  # SaveImage's and PreviewImage's compress_level
        results = []
        for image in images:
            filename = f"{base}_{counter:05}_.{extension}"
            self._files[(kind, folder, filename)] = encode_png(image, text=text, level=level)
            results.append({"filename": filename, "subfolder": folder, "type": kind})
            counter += 1
        return results

    def save_file(self, prefix: str, extension: str, data: bytes) -> dict[str, Any]:
        """Write one output file as SaveLatent, SaveVideo and SaveAudio name theirs."""
        folder, base, counter = self._save_path("output", prefix, 0, 0)
        filename = f"{base}_{counter:05}_.{extension}"
        self._files[("output", folder, filename)] = data
        return {"filename": filename, "subfolder": folder, "type": "output"}

    def _save_path(self, kind: str, prefix: str, width: int, height: int) -> tuple[str, str, int]:
        """folder_paths.get_save_image_path: fill %vars%, refuse to leave the folder."""
        if "%" in prefix:
            prefix = _fill_vars(prefix, width, height)
        normal = posixpath.normpath(prefix)
        folder, base = posixpath.split(normal)
        if inside(folder) is None:
            raise ValueError(
                "**** ERROR: Saving image outside the output folder is not allowed."
                f"\n full_output_folder: {folder}"
                f"\n         output_dir: {kind}"
            )
        folder = inside(folder) or ""
        pattern = re.compile(re.escape(base) + r"_(\d+)_")
        used = [
            int(m.group(1))
            for k, sub, name in self._files
            if k == kind and sub == folder and (m := pattern.match(name))
        ]
        return folder, base, max(used, default=0) + 1


def _fill_vars(prefix: str, width: int, height: int) -> str:
    now = time.localtime()
    values = {
        "%width%": str(width),
        "%height%": str(height),
        "%year%": str(now.tm_year),
        "%month%": f"{now.tm_mon:02}",
        "%day%": f"{now.tm_mday:02}",
        "%hour%": f"{now.tm_hour:02}",
        "%minute%": f"{now.tm_min:02}",
        "%second%": f"{now.tm_sec:02}",
    }
    for key, value in values.items():
        prefix = prefix.replace(key, value)
    return prefix


def view(files: FileStore, request: web.Request) -> web.Response:
    """server.py view_image: its path checks, its 400/403/404, its headers."""
    query = request.query
    if "filename" not in query:
        return web.Response(status=404)
    annotated, filename = locate(query["filename"], None)
    if not filename or filename.startswith("/") or ".." in filename:
        return web.Response(status=400)
    kind = annotated or query.get("type", "output")
    if kind not in KINDS:
        return web.Response(status=400)
    subfolder = inside(query.get("subfolder", ""))
    if subfolder is None:
        return web.Response(status=403)
    name = posixpath.basename(filename)  # a directory in `filename` is dropped
    data = files.get(kind, subfolder, name)
    if data is None:
        return web.Response(status=404)
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if content_type in _DOWNLOAD_ONLY:
        content_type = "application/octet-stream"
    headers = {"Content-Disposition": f'filename="{name}"'}
    return web.Response(body=data, content_type=content_type, headers=headers)


async def upload(
    files: FileStore, request: web.Request
) -> tuple[web.Response, dict[str, str] | None]:
    """server.py image_upload: duplicate detection, `name (1).png`, path checks."""
    post = await request.post()
    image = post.get("image")
    kind = post.get("type", "input")
    if kind not in KINDS:  # an unbound variable in get_dir_by_type
        return web.Response(status=500, text=TROUBLE), None
    if not isinstance(image, web.FileField):
        return web.Response(status=400), None
    filename = image.filename
    subfolder = str(post.get("subfolder", ""))
    folder = inside(subfolder)
    if not filename or folder is None or inside(posixpath.join(folder, filename)) is None:
        return web.Response(status=400), None
    if "/" in filename:  # the file's own directory is never created
        return web.Response(status=500, text=TROUBLE), None
    overwrite = post.get("overwrite") in ("true", "1")
    name = files.upload(str(kind), folder, filename, image.file.read(), overwrite)
    answer = {"name": name, "subfolder": subfolder, "type": str(kind)}
    return web.json_response(answer), answer
