"""The images of a remote group's own output nodes, shown on those nodes in the local graph.

A SaveImage or PreviewImage inside a remote group runs on the peer, so ComfyUI here never
runs it and its node would stay blank. The peer's images are copied into the local temp
folder and announced with ComfyUI's own `executed` message under the node's id, exactly
as a local PreviewImage announces its own: the frontend then shows them on that node.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

from ..dispatch_core.groups import GroupPlan
from . import host

Files = dict[str, list[tuple[str, bytes]]]
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"))


def show(plan: GroupPlan, files: Sequence[Files]) -> int:
    """Copy the group's own output images here and announce them; the number shown."""
    shown = 0
    for node_id in sorted(plan.group.nodes):
        images = [
            (data, suffix)
            for per_result in files
            for _, data in per_result.get(node_id, [])
            if (suffix := image_suffix(data)) is not None
        ]
        if images:
            entries = [_keep(data, suffix) for data, suffix in images]
            host.send_executed(node_id, {"images": entries})
            shown += len(entries)
    return shown


def image_suffix(data: bytes) -> str | None:
    """The suffix of a PNG, JPEG, GIF or WEBP file by its first bytes; None for anything else.

    The peer's bytes are written where ComfyUI's `/view` serves them by suffix, so the
    suffix comes from what the bytes are, never from the name the peer gave them.
    """
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((suffix for magic, suffix in _SIGNATURES if data.startswith(magic)), None)


def _keep(data: bytes, suffix: str) -> dict[str, Any]:
    """Write one image into the temp folder under a name of our own; its `/view` entry."""
    import folder_paths

    name = f"dispatch_group_{hashlib.sha256(data).hexdigest()[:24]}{suffix}"
    folder = folder_paths.get_temp_directory()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    if not os.path.exists(path):  # named by content: the same image is the same file
        with open(f"{path}.part", "wb") as file:
            file.write(data)
        os.replace(f"{path}.part", path)
    return {"filename": name, "subfolder": "", "type": "temp"}
