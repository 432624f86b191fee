"""The node's progress bar and progress text, fed by the peer's reports.

Reports arrive on the server's loop (the engine's), while ComfyUI's bar must be driven
from the node's own thread, where an interrupt raised by its hook belongs: `report` keeps
the latest state under a lock, `show` (called by `host.on_server_loop` on each tick) draws it.
A preview picture from the peer's sampler goes through the same bar, as ComfyUI's own
samplers send theirs, so the browser shows it on this node.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from typing import Any

from ..dispatch_core import DispatchResult, Progress
from . import host

__all__ = ["ProgressRelay"]

_MAX_PREVIEW_PIXELS = 16 * 1024 * 1024
"""A preview larger than this is not decoded: ComfyUI's are 512 px at most by default."""


class ProgressRelay:
    """Progress reports arrive on the server's loop; ComfyUI's bar is driven from the
    node's own thread, where an interrupt raised by its hook belongs."""

    def __init__(self, node_id: str | None, jobs: int):
        self._node_id = node_id
        self._fractions: dict[str, float] = {}
        self._text = ""
        self._shown: tuple[int, str] | None = None
        self._jobs = jobs
        self._lock = threading.Lock()
        self._bar: Any = None
        self._preview: tuple[bytes, str] | None = None
        """The latest preview not shown yet: the peer's picture and its type."""

    def report(self, progress: Progress) -> None:
        step = progress.value / progress.max if progress.max else 0.0
        if progress.node is None:  # a whole-prompt report: nodes done of nodes to run
            fraction = step
        elif progress.nodes_total:  # a step of one node, among the nodes to run
            fraction = (progress.nodes_done + step) / progress.nodes_total
        else:
            fraction = step
        if progress.node is None:
            text = f"{progress.server}: {progress.nodes_done}/{progress.nodes_total} nodes done"
        else:
            text = f"{progress.server}: node {progress.node}, {progress.value:g}/{progress.max:g}"
        with self._lock:  # a bar never goes back
            earlier = self._fractions.get(progress.prompt_id, 0.0)
            self._fractions[progress.prompt_id] = max(earlier, min(fraction, 1.0))
            self._text = text
            if progress.preview is not None:
                self._preview = (progress.preview, progress.preview_type)

    def finished(self, results: Sequence[DispatchResult], images: int) -> None:
        servers = ", ".join(dict.fromkeys(r.server for r in results))
        seconds = max((r.timings.duration or 0.0) for r in results) if results else 0.0
        files = sum(len(r.files) for r in results)
        what = f"{images} image(s)" if images or not files else f"{files} file(s)"
        if self._node_id is not None:
            host.send_progress_text(f"{servers}: {what} in {seconds:.1f} s", self._node_id)

    def show(self) -> None:
        import comfy.utils

        with self._lock:
            value = round(100 * sum(self._fractions.values()) / self._jobs)
            text = self._text
            picture, self._preview = self._preview, None
        preview = _preview(picture) if picture is not None else None
        if self._shown == (value, text) and preview is None:
            return
        self._shown = (value, text)
        if self._bar is None:
            self._bar = comfy.utils.ProgressBar(100, node_id=self._node_id)
        self._bar.update_absolute(value, 100, preview)
        if text and self._node_id is not None:
            host.send_progress_text(text, self._node_id)


def _preview(picture: tuple[bytes, str]) -> tuple[str, Any, int] | None:
    """The peer's preview as ComfyUI's progress hook takes one: `(format, PIL image, max
    size)`; ComfyUI encodes it again and sends it to the browser as its own node's preview.
    None for bytes PIL cannot read (the engine checked only how they start)."""
    from PIL import Image

    data, mime = picture
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > _MAX_PREVIEW_PIXELS:
            return None
        image.load()
    except Exception:  # PIL raises many kinds for a broken file
        return None
    return ("PNG" if mime == "image/png" else "JPEG", image, _preview_size())


def _preview_size() -> int:
    """ComfyUI's `--preview-size` (512 unless set): previews are shrunk to fit it."""
    try:
        from comfy.cli_args import args

        return int(getattr(args, "preview_size", 512) or 512)
    except Exception:  # an older or unusual ComfyUI
        return 512
