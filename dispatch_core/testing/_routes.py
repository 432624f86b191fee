"""ComfyUI's HTTP routes on the fake peer, and the status it reports.

A part of FakePeer, split off to keep each readable: the handlers answer from, and change,
the queue, history, cache and files that FakePeer holds, declared here by their types.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import json
import logging
import posixpath
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ._custom import CustomNode, PromptHandler
from ._files import TROUBLE, FileStore, upload, view
from ._info import FEATURES, MODEL_FOLDERS, object_info, system_stats
from ._validate import validate_prompt
from ._ws import SocketHub

__all__ = ["ComfyRoutes", "Handler"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ComfyRoutes:
    """FakePeer's HTTP face: what ComfyUI answers on each route, over FakePeer's state."""

    # FakePeer's settings and records, documented there.
    port: int
    flags: list[str]
    models: dict[str, list[str]]
    custom_nodes: dict[str, CustomNode]
    prompt_handlers: list[PromptHandler]
    files: FileStore
    http_delay: float
    fail_http: dict[str, int]
    canned: dict[str, tuple[int, str]]
    cut_after_handling: set[str]
    max_concurrent_seen: int
    prompts_received: list[str]
    workflows_received: dict[str, dict[str, Any]]
    requests: list[tuple[str, str]]
    uploads: list[dict[str, str]]
    # What a ComfyUI process keeps in memory, set by FakePeer._reset_state.
    _queue: list[tuple[float, str, int, list[Any]]]
    _running: list[Any] | None
    _history: dict[str, dict[str, Any]]
    _cache: dict[str, tuple[tuple[Any, ...], dict[str, Any] | None]]
    _number: int
    _interrupt: bool
    _free_memory: bool
    _held: collections.OrderedDict[str, None]
    # FakePeer's machinery.
    _hang: asyncio.Event
    _hub: SocketHub
    _info_cache: tuple[str, dict[str, Any]]
    _wake: asyncio.Event
    _idle: asyncio.Event

    # -- answers ------------------------------------------------------------------------

    def object_info(self) -> dict[str, Any]:
        """The shipped object_info with this peer's model lists and input files filled in,
        and its custom nodes."""
        info = object_info(self.models, self.files.input_names())
        return info | {name: dict(node.info) for name, node in self.custom_nodes.items()}

    def _info(self) -> dict[str, Any]:
        """object_info for validation, rebuilt only when models or input files change."""
        key = json.dumps(
            [self.models, self.files.input_names(), sorted(self.custom_nodes)], sort_keys=True
        )
        if self._info_cache[0] != key:
            self._info_cache = (key, self.object_info())
        return self._info_cache[1]

    def _remaining(self) -> int:
        return len(self._queue) + (1 if self._running is not None else 0)

    def _exec_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self._remaining()}}

    def _exec_info_status(self) -> dict[str, Any]:
        return {"status": self._exec_info()}

    def _broadcast_status(self) -> None:
        self._hub.send(None, "status", self._exec_info_status())

    # -- HTTP ---------------------------------------------------------------------------

    def _routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/ws", self._ws),
            ("POST", "/prompt", self._post_prompt),
            ("GET", "/prompt", self._get_prompt),
            ("GET", "/queue", self._get_queue),
            ("POST", "/queue", self._post_queue),
            ("GET", "/history", self._get_history),
            ("GET", "/history/{prompt_id}", self._get_history_one),
            ("POST", "/history", self._post_history),
            ("POST", "/interrupt", self._post_interrupt),
            ("POST", "/free", self._post_free),
            ("GET", "/view", self._view),
            ("POST", "/upload/image", self._upload),
            ("GET", "/system_stats", self._system_stats),
            ("GET", "/object_info", self._object_info_all),
            ("GET", "/object_info/{node_class}", self._object_info_one),
            ("GET", "/features", self._features),
            ("GET", "/embeddings", self._embeddings),
            ("GET", "/models", self._model_folders),
            ("GET", "/models/{folder}", self._model_files),
        ]

    @web.middleware
    async def _faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path[4:] if request.path.startswith("/api/") else request.path
        self.requests.append((request.method, path))
        await self._hang.wait()
        if path == "/ws":
            return await handler(request)
        if self.http_delay:
            await asyncio.sleep(self.http_delay)
        if path in self.fail_http:
            status = self.fail_http[path]
            body = f"<html><head><title>{status}</title></head><body>bad gateway</body></html>"
            return web.Response(status=status, text=body, content_type="text/html")
        if path in self.canned:
            status, text = self.canned[path]
            return web.Response(status=status, text=text, content_type="application/json")
        response = await handler(request)
        if path in self.cut_after_handling and request.transport is not None:
            request.transport.abort()
        return response

    async def _post_prompt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=500, text=TROUBLE)
        body = self._handled(body)
        if "number" in body:  # the counter moves even for prompts that fail validation
            number: float = float(body["number"])
        else:
            number = -self._number if body.get("front") else self._number
            self._number += 1
        if "prompt" not in body:
            error = {
                "type": "no_prompt",
                "message": "No prompt provided",
                "details": "No prompt provided",
                "extra_info": {},
            }
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        prompt = body["prompt"]
        prompt_id = str(body.get("prompt_id", uuid.uuid4()))
        targets = body.get("partial_execution_targets")
        check = validate_prompt(
            prompt, self._info(), self._input_exists, targets, custom=self.custom_nodes
        )
        extra = body.get("extra_data", {})
        if "client_id" in body:
            extra["client_id"] = body["client_id"]
        if check.error is not None:
            return web.json_response(
                {"error": check.error, "node_errors": check.node_errors}, status=400
            )
        self._put([number, prompt_id, prompt, extra, check.outputs])
        return web.json_response(
            {"prompt_id": prompt_id, "number": number, "node_errors": check.node_errors}
        )

    def _put(self, item: list[Any]) -> None:
        self.prompts_received.append(item[1])
        self.workflows_received[item[1]] = item[2]
        heapq.heappush(self._queue, (item[0], item[1], len(self.prompts_received), item))
        self._idle.clear()
        self.max_concurrent_seen = max(self.max_concurrent_seen, self._remaining())
        self._broadcast_status()
        self._wake.set()

    async def _get_prompt(self, _: web.Request) -> web.Response:
        return web.json_response(self._exec_info())

    async def _get_queue(self, _: web.Request) -> web.Response:
        running = [self._running] if self._running is not None else []
        pending = [entry[3] for entry in self._queue]  # heap order, as ComfyUI answers
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def _post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self._queue = []
            self._broadcast_status()
        for prompt_id in body.get("delete") or ():
            self._delete_pending(prompt_id)
        return web.Response()

    def _delete_pending(self, prompt_id: str) -> None:
        """PromptQueue.delete_queue_item, with its double status when the last one goes."""
        for index, entry in enumerate(self._queue):
            if entry[1] == prompt_id:
                if len(self._queue) == 1:
                    self._queue = []
                    self._broadcast_status()
                else:
                    self._queue.pop(index)
                    heapq.heapify(self._queue)
                self._broadcast_status()
                return

    async def _get_history(self, request: web.Request) -> web.Response:
        """PromptQueue.get_history: `max_items` alone gives the last ones."""
        query = request.query
        max_items = int(query["max_items"]) if "max_items" in query else None
        offset = int(query["offset"]) if "offset" in query else -1
        if offset < 0 and max_items is not None:
            offset = len(self._history) - max_items
        answer: dict[str, Any] = {}
        for index, (prompt_id, entry) in enumerate(self._history.items()):
            if index >= offset:
                answer[prompt_id] = entry
                if max_items is not None and len(answer) >= max_items:
                    break
        return web.json_response(answer)

    async def _get_history_one(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self._history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    async def _post_history(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self._history.clear()
        for prompt_id in body.get("delete") or ():
            self._history.pop(prompt_id, None)
        return web.Response()

    async def _post_interrupt(self, request: web.Request) -> web.Response:
        """With a prompt_id, only the running prompt of that id; without, whatever runs."""
        try:
            body = await request.json()
        except ValueError:
            body = {}
        target = body.get("prompt_id") if isinstance(body, dict) else None
        if target is None or (self._running is not None and self._running[1] == target):
            self._interrupt = True
        return web.Response()

    async def _post_free(self, request: web.Request) -> web.Response:
        """`free_memory` drops the output cache, after the running prompt."""
        body = await request.json()
        if body.get("free_memory"):
            self._free_memory = True
            if self._running is None:
                self._apply_free()
        return web.Response()

    def _apply_free(self) -> None:
        if self._free_memory:
            self._cache.clear()
            self._held.clear()  # the cached loader outputs were what held the models
            self._free_memory = False

    async def _view(self, request: web.Request) -> web.Response:
        return view(self.files, request)

    async def _upload(self, request: web.Request) -> web.Response:
        response, answer = await upload(self.files, request)
        if answer is not None:
            self.uploads.append(answer)
        return response

    async def _system_stats(self, _: web.Request) -> web.Response:
        return web.json_response(system_stats(self.port, self.flags))

    async def _object_info_all(self, _: web.Request) -> web.Response:
        return web.json_response(self.object_info())

    async def _object_info_one(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        info = self.object_info().get(name)
        return web.json_response({name: info} if info is not None else {})

    async def _features(self, _: web.Request) -> web.Response:
        return web.json_response(dict(FEATURES))

    async def _embeddings(self, _: web.Request) -> web.Response:
        return web.json_response(
            [posixpath.splitext(n)[0] for n in self.models.get("embeddings", [])]
        )

    async def _model_folders(self, _: web.Request) -> web.Response:
        return web.json_response(list(MODEL_FOLDERS))

    async def _model_files(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in MODEL_FOLDERS:
            return web.Response(status=404)
        return web.json_response(sorted(self.models.get(folder, [])))

    def _handled(self, body: Any) -> Any:
        """The body after every prompt handler, as PromptServer.trigger_on_prompt does it."""
        for handler in self.prompt_handlers:
            try:
                body = handler(body)
            except Exception:
                logging.getLogger(__name__).exception("a prompt handler raised: skipped")
        return body

    def _input_exists(self, name: str) -> bool:
        return self.files.read_input(name) is not None

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        return await self._hub.handle(request)
