"""Small pieces every part of the service shares: events, owned tasks, small state files."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from .._files import move_folder, private_folder, write_atomically

__all__ = ["Background", "Events", "Notify", "StateFile", "adopt_folder"]

Notify = Callable[[str, dict[str, Any]], None]
_log = logging.getLogger("dispatch_core.service")


class Events:
    """Announces changes to the panels: in ComfyUI through `PromptServer.send_sync`.

    Listeners inside the service (metrics, logs, webhooks) hear every event first, with
    or without a panel: they watch the jobs through the same events the panels do, so
    that the engine needs no calls of theirs.
    """

    def __init__(self, notify: Notify | None = None):
        self.notify = notify
        self._listeners: list[Notify] = []

    def listen(self, listener: Notify) -> None:
        self._listeners.append(listener)

    def emit(self, event: str, data: dict[str, Any]) -> None:
        for listener in (*self._listeners, self.notify):
            if listener is None:
                continue
            try:
                listener(event, data)
            except Exception:  # a panel that cannot be told must not fail the change itself
                _log.exception("ComfyUI-Dispatch: could not send %s", event)


class Background:
    """Tasks that run beside their caller; each is owned here and cancelled on close."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class StateFile:
    """A small JSON object kept in one file; missing or unreadable, it counts as empty."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict[str, Any]:
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): v for k, v in saved.items()} if isinstance(saved, dict) else {}

    async def save(self, data: Mapping[str, Any]) -> None:
        text = (json.dumps(data, indent=2) + "\n").encode()
        await asyncio.to_thread(write_atomically, self.path, text)


def adopt_folder(old: Path, new: Path) -> Path:
    """The state folder to use: `new` (owner-only), with `old`'s contents moved in on
    first start; `old` itself when that move failed, so that nothing is lost."""
    folder = move_folder(old, new)
    return private_folder(folder) if folder == new else folder
