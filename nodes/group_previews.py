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
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")


def show(plan: GroupPlan, files: Sequence[Files]) -> int:
    """Copy the group's own output images here and announce them; the number shown."""
    shown = 0
    for node_id in sorted(plan.group.nodes):
        images = [
            (label, data)
            for per_result in files
            for label, data in per_result.get(node_id, [])
            if label.lower().endswith(_IMAGE_SUFFIXES)
        ]
        if images:
            entries = [_keep(data, label) for label, data in images]
            host.send_executed(node_id, {"images": entries})
            shown += len(entries)
    return shown


def _keep(data: bytes, label: str) -> dict[str, Any]:
    """Write one image into the temp folder under a name of our own; its `/view` entry."""
    import folder_paths

    suffix = os.path.splitext(label)[1].lower()
    name = f"dispatch_group_{hashlib.sha256(data).hexdigest()[:24]}{suffix}"
    folder = folder_paths.get_temp_directory()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    if not os.path.exists(path):  # named by content: the same image is the same file
        with open(f"{path}.part", "wb") as file:
            file.write(data)
        os.replace(f"{path}.part", path)
    return {"filename": name, "subfolder": "", "type": "temp"}
