"""Stand-in for ComfyUI's `server` module: a PromptServer with a real aiohttp app."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any
from urllib.parse import unquote

from aiohttp import web


class PromptServer:
    instance: PromptServer

    def __init__(self, loop: asyncio.AbstractEventLoop):
        PromptServer.instance = self
        self.loop = loop
        self.routes = web.RouteTableDef()
        self.app = web.Application()
        self.client_id: str | None = None
        self.last_prompt_id: str | None = None
        """The prompt running now: ComfyUI's prompt worker sets it before executing one."""
        self.on_prompt_handlers: list[Any] = []
        self.messages: list[tuple[str, Any, str | None]] = []
        self.progress_text: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()
        self.routes.get("/userdata/{file}")(self.get_user_data)
        self.routes.get("/queue")(self.get_queue)

    async def get_queue(self, request: web.Request) -> web.Response:
        """ComfyUI's `GET /queue`: the running prompt as `[number, id, prompt, extra, outputs]`."""
        running = [[0, self.last_prompt_id, {}, {}, []]] if self.last_prompt_id else []
        return web.json_response({"queue_running": running, "queue_pending": []})

    async def get_user_data(self, request: web.Request) -> web.StreamResponse:
        """ComfyUI's `GET /userdata/{file}` in one user mode: any file under `user/default/`."""
        path = await asyncio.to_thread(_user_file, request.match_info["file"])
        if path is None:
            return web.Response(status=403)
        if not path:
            return web.Response(status=404)
        return web.FileResponse(path)

    def add_on_prompt_handler(self, handler: Any) -> None:
        self.on_prompt_handlers.append(handler)

    def trigger_on_prompt(self, json_data: Any) -> Any:
        """As ComfyUI's: each handler in turn; one that raises is logged and skipped."""
        for handler in self.on_prompt_handlers:
            try:
                json_data = handler(json_data)
            except Exception:
                continue
        return json_data

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        """Thread-safe, like ComfyUI's: queued onto the server's loop."""
        self.loop.call_soon_threadsafe(self.messages.append, (event, data, sid))

    def send_progress_text(self, text: str, node_id: str, sid: str | None = None) -> None:
        with self._lock:
            self.progress_text.append((text, node_id, sid))


def _user_file(name: str) -> str | None:
    """The file of `user/default/` so named; "" when there is none, None outside it."""
    import folder_paths

    root = os.path.abspath(os.path.join(folder_paths.get_user_directory(), "default"))
    path = os.path.abspath(os.path.join(root, unquote(name)))
    if os.path.commonpath((root, path)) != root:
        return None
    return path if os.path.isfile(path) else ""
