"""Stand-in for ComfyUI's `server` module: a PromptServer with a real aiohttp app."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web


class PromptServer:
    instance: PromptServer

    def __init__(self, loop: asyncio.AbstractEventLoop):
        PromptServer.instance = self
        self.loop = loop
        self.routes = web.RouteTableDef()
        self.app = web.Application()
        self.client_id: str | None = None
        self.messages: list[tuple[str, Any, str | None]] = []
        self.progress_text: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        """Thread-safe, like ComfyUI's: queued onto the server's loop."""
        self.loop.call_soon_threadsafe(self.messages.append, (event, data, sid))

    def send_progress_text(self, text: str, node_id: str, sid: str | None = None) -> None:
        with self._lock:
            self.progress_text.append((text, node_id, sid))
