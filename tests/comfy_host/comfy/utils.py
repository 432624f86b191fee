"""Stand-in for `comfy.utils.ProgressBar` and the hook main.py installs on it."""

from __future__ import annotations

from typing import Any

from comfy import model_management

updates: list[tuple[float, float, str | None]] = []
previews: list[tuple[str, tuple[int, int], int | None, str | None]] = []
"""(format, picture size, max size, node) of every preview the hook was given."""


def _hook(value: float, total: float, preview: Any, node_id: str | None = None) -> None:
    """Like ComfyUI's `hijack_progress`: an interrupt raises here first."""
    model_management.throw_exception_if_processing_interrupted()
    updates.append((value, total, node_id))
    if preview is not None:
        kind, image, max_size = preview
        previews.append((kind, image.size, max_size, node_id))


PROGRESS_BAR_HOOK = _hook


class ProgressBar:
    def __init__(self, total: float, node_id: str | None = None):
        self.total = total
        self.current = 0.0
        self.hook = PROGRESS_BAR_HOOK
        self.node_id = node_id

    def update_absolute(
        self, value: float, total: float | None = None, preview: Any = None
    ) -> None:
        if total is not None:
            self.total = total
        value = min(value, self.total)
        self.current = value
        if self.hook is not None:
            self.hook(self.current, self.total, preview, node_id=self.node_id)

    def update(self, value: float) -> None:
        self.update_absolute(self.current + value)
