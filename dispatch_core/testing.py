"""FakePeer: a ComfyUI stand-in on loopback that speaks ComfyUI's real HTTP and WS protocol.

It has one executor and a queue, sends the frames a real ComfyUI 0.3.64 sends in the same
order (held to recorded transcripts by a conformance test), writes real PNGs that depend on
the inputs, validates prompts against real `object_info`, and can be made slow, hung,
restarted or silent, so that pipelines can be tested without a GPU:

    async with FakePeer(job_seconds=0.1) as peer:
        ...  # point a Dispatcher or any ComfyUI client at peer.url

`python -m dispatch_core.testing --port 8188` runs one until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import heapq
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web

from ._fake_files import KINDS, FileStore, locate
from ._fake_run import PromptRun
from ._fake_validate import validate_prompt

__all__ = ["FakePeer", "main"]

_MODEL_INPUTS = {
    "ckpt_name": "checkpoints",
    "lora_name": "loras",
    "model_name": "upscale_models",
    "vae_name": "vae",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
}
_GIB = 1024**3
_MAX_UPLOAD = 100 * 1024 * 1024  # ComfyUI's default --max-upload-size
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@cache
def _shipped_object_info() -> dict[str, Any]:
    text = resources.files("dispatch_core").joinpath("data/object_info_subset.json").read_text()
    return dict(json.loads(text))


class _Client:
    """One socket and its outbox: frames are written in the order they were sent."""

    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self.outbox: asyncio.Queue[str] = asyncio.Queue()

    def send(self, kind: str, data: Any) -> None:
        self.outbox.put_nowait(json.dumps({"type": kind, "data": data}))

    async def write_forever(self) -> None:
        while True:
            text = await self.outbox.get()
            if self.ws.closed:
                return
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return


class FakePeer:
    """One fake ComfyUI server. Attributes below may be changed at any time by a test."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        job_seconds: float = 0.0,
        models: Mapping[str, list[str]] | None = None,
        fail_nodes: Mapping[str, str] | None = None,
    ):
        self.host = host
        self.port = port
        self.job_seconds = job_seconds
        """Seconds each prompt takes, spread over the nodes it runs."""
        self.models = {k: list(v) for k, v in (models or {}).items()}
        self.fail_nodes = dict(fail_nodes or {})
        """Class name → message: every node of that class raises RuntimeError(message)."""
        self.http_delay = 0.0
        """Seconds before every HTTP answer."""
        self.fail_http: dict[str, int] = {}
        """Path → status: answer that status with an HTML body instead."""
        self.canned: dict[str, tuple[int, str]] = {}
        """Path → (status, body): answer exactly that, as JSON, instead (truncated JSON, say)."""
        self.cut_after_handling: set[str] = set()
        """Paths whose requests are carried out, then the connection is cut before the answer."""
        self.ws_silent = False
        """Keep sockets open but send nothing (a reconnected socket that stopped receiving)."""
        self.max_concurrent_seen = 0
        """Most prompts held at once (pending + running) since the peer was created."""
        self.prompts_received: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.uploads: list[dict[str, str]] = []
        self._hang = asyncio.Event()
        self._hang.set()
        self.files = FileStore()
        self._validation_cache: tuple[str, dict[str, Any]] = ("", {})
        self._runner: web.AppRunner | None = None
        self._executor: asyncio.Task[None] | None = None
        self._sockets: dict[str, _Client] = {}
        self._reset_state()

    def _reset_state(self) -> None:
        self._queue: list[tuple[float, int, list[Any]]] = []
        self._running: list[Any] | None = None
        self._history: dict[str, dict[str, Any]] = {}
        self._cache: dict[str, tuple[str, tuple[Any, ...], dict[str, Any] | None]] = {}
        self._number = 0
        self._interrupt = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- life cycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def hang(self) -> bool:
        """While true, HTTP requests are accepted and never answered."""
        return not self._hang.is_set()

    @hang.setter
    def hang(self, value: bool) -> None:
        if value:
            self._hang.clear()
        else:
            self._hang.set()

    async def __aenter__(self) -> FakePeer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application(middlewares=[self._faults], client_max_size=_MAX_UPLOAD)
        for prefix in ("", "/api"):
            app.router.add_routes([web.route(m, prefix + p, h) for m, p, h in self._routes()])
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]
        self._executor = asyncio.create_task(self._execute_forever(), name=f"fake-peer:{self.port}")

    async def stop(self) -> None:
        """Stop listening (clients now get connection refused); state is kept."""
        self._hang.set()
        if self._executor is not None:
            self._executor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._executor
            self._executor = None
        await self.drop_websockets()
        if self._running is not None:
            heapq.heappush(self._queue, (self._running[0], 0, self._running))
            self._running = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self, *, downtime: float = 0.0) -> None:
        """Stop, forget queue, history and cache as a real restart does, and start again
        after `downtime` seconds (during which connections are refused)."""
        await self.stop()
        self._reset_state()
        await asyncio.sleep(downtime)
        await self.start()

    def send_garbage(self) -> None:
        """Send every client frames that are not ComfyUI's protocol."""
        for client in self._sockets.values():
            client.outbox.put_nowait("not json {")
            client.outbox.put_nowait('{"type": "executing"}')
            client.outbox.put_nowait('{"type": "progress", "data": [1, 2]}')

    async def idle(self) -> None:
        """Wait until nothing is queued or running."""
        await self._idle.wait()

    async def drop_websockets(self) -> None:
        """Close every client socket from the server side; prompts keep running."""
        clients = list(self._sockets.values())
        self._sockets.clear()
        for client in clients:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await client.ws.close()

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
        ]

    @web.middleware
    async def _faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path.removeprefix("/api")
        self.requests.append((request.method, path))
        if path == "/ws":
            return await handler(request)
        await self._hang.wait()
        if self.http_delay:
            await asyncio.sleep(self.http_delay)
        if path in self.fail_http:
            status = self.fail_http[path]
            body = f"<html><body><h1>{status}</h1>bad gateway</body></html>"
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
            return web.Response(
                status=500, text="500 Internal Server Error\n\nServer got itself in trouble"
            )
        if "prompt" not in body:
            error = {
                "type": "no_prompt",
                "message": "No prompt provided",
                "details": "No prompt provided",
                "extra_info": {},
            }
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        prompt = body["prompt"]
        check = validate_prompt(prompt, self._validation_info(), self._input_exists)
        if check.error is not None:
            return web.json_response(
                {"error": check.error, "node_errors": check.node_errors}, status=400
            )
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        if "number" in body:
            number: float = float(body["number"])
        else:
            number = self._number
            self._number += 1
        extra = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra["client_id"] = body["client_id"]
        self._put([number, prompt_id, prompt, extra, check.outputs])
        return web.json_response(
            {"prompt_id": prompt_id, "number": number, "node_errors": check.node_errors}
        )

    def _put(self, item: list[Any]) -> None:
        self.prompts_received.append(item[1])
        heapq.heappush(self._queue, (item[0], len(self.prompts_received), item))
        self._idle.clear()
        self.max_concurrent_seen = max(self.max_concurrent_seen, self._remaining())
        self._broadcast_status()
        self._wake.set()

    async def _get_prompt(self, _: web.Request) -> web.Response:
        return web.json_response({"exec_info": {"queue_remaining": self._remaining()}})

    async def _get_queue(self, _: web.Request) -> web.Response:
        running = [self._running] if self._running is not None else []
        return web.json_response(
            {"queue_running": running, "queue_pending": [e[2] for e in self._queue]}
        )

    async def _post_queue(self, request: web.Request) -> web.Response:
        body = await _json_or_empty(request)
        if body.get("clear"):
            self._queue.clear()
        delete = set(body.get("delete") or ())
        if delete:
            self._queue = [e for e in self._queue if e[2][1] not in delete]
            heapq.heapify(self._queue)
        self._broadcast_status()
        return web.Response()

    async def _get_history(self, request: web.Request) -> web.Response:
        items = list(self._history.items())
        offset = int(request.query.get("offset", -1))
        if "max_items" in request.query:
            count = int(request.query["max_items"])
            items = items[offset : offset + count] if offset >= 0 else items[-count:]
        return web.json_response(dict(items))

    async def _get_history_one(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self._history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    async def _post_history(self, request: web.Request) -> web.Response:
        body = await _json_or_empty(request)
        if body.get("clear"):
            self._history.clear()
        for prompt_id in body.get("delete") or ():
            self._history.pop(prompt_id, None)
        return web.Response()

    async def _post_interrupt(self, request: web.Request) -> web.Response:
        body = await _json_or_empty(request)
        target = body.get("prompt_id")
        if target is None or (self._running is not None and self._running[1] == target):
            self._interrupt = True
        return web.Response()

    async def _post_free(self, _: web.Request) -> web.Response:
        self._cache.clear()
        return web.Response()

    async def _view(self, request: web.Request) -> web.Response:
        filename = request.query.get("filename")
        if filename is None:
            return web.Response(status=404)
        kind, subfolder, name = locate(
            filename, request.query.get("type", "output"), request.query.get("subfolder", "")
        )
        if name.startswith("/") or ".." in name:
            return web.Response(status=400)
        if kind not in KINDS:
            return web.Response(status=400)
        if ".." in subfolder.split("/"):
            return web.Response(status=403)
        data = self.files.get(kind, subfolder, name.rsplit("/", 1)[-1])
        if data is None:
            return web.Response(status=404)
        content_type = "image/png" if name.endswith(".png") else "application/octet-stream"
        return web.Response(
            body=data,
            content_type=content_type,
            headers={"Content-Disposition": f'filename="{name}"'},
        )

    async def _upload(self, request: web.Request) -> web.Response:
        try:
            form = await request.post()
        except (ValueError, AssertionError):
            return web.Response(status=400)
        image = form.get("image")
        if not isinstance(image, web.FileField) or not image.filename:
            return web.Response(status=400)
        kind = str(form.get("type") or "input")
        if kind not in KINDS:
            return web.Response(
                status=500, text="500 Internal Server Error\n\nServer got itself in trouble"
            )
        subfolder = str(form.get("subfolder") or "").strip("/")
        if ".." in subfolder.split("/"):
            return web.Response(status=400)
        name = image.filename.replace("/", "%2F")
        data = image.file.read()
        overwrite = str(form.get("overwrite", "")).lower() in ("true", "1")
        name = self.files.upload(kind, subfolder, name, data, overwrite)
        answer = {"name": name, "subfolder": subfolder, "type": kind}
        self.uploads.append(answer)
        return web.json_response(answer)

    async def _system_stats(self, _: web.Request) -> web.Response:
        system = {
            "os": "posix",
            "ram_total": 16 * _GIB,
            "ram_free": 12 * _GIB,
            "comfyui_version": "0.3.64",
            "required_frontend_version": "1.27.10",
            "installed_templates_version": "0.1.95",
            "required_templates_version": "0.1.95",
            "python_version": "3.11.7 (fake)",
            "pytorch_version": "fake",
            "embedded_python": False,
            "argv": ["main.py", "--fake", "--port", str(self.port)],
        }
        device = {
            "name": "fake",
            "type": "cpu",
            "index": None,
            "vram_total": 8 * _GIB,
            "vram_free": 7 * _GIB,
            "torch_vram_total": 8 * _GIB,
            "torch_vram_free": 7 * _GIB,
        }
        return web.json_response({"system": system, "devices": [device]})

    def object_info(self) -> dict[str, Any]:
        """The shipped object_info with this peer's model lists filled in."""
        info = copy.deepcopy(_shipped_object_info())
        inputs = [name for name in self.files.input_names()]
        for node in info.values():
            for section in (node.get("input") or {}).values():
                if not isinstance(section, dict):
                    continue
                for name, config in section.items():
                    folder = _MODEL_INPUTS.get(name)
                    if folder and isinstance(config[0], list):
                        config[0] = list(self.models.get(folder, []))
                    elif folder and config[0] == "COMBO":
                        config[1]["options"] = list(self.models.get(folder, []))
                    elif (
                        isinstance(config, list)
                        and len(config) > 1
                        and isinstance(config[1], dict)
                        and config[1].get("image_upload")
                    ):
                        config[0] = inputs
        return info

    def _validation_info(self) -> dict[str, Any]:
        """object_info for validation, rebuilt only when the model lists change."""
        key = json.dumps(self.models, sort_keys=True)
        if self._validation_cache[0] != key:
            self._validation_cache = (key, self.object_info())
        return self._validation_cache[1]

    async def _object_info_all(self, _: web.Request) -> web.Response:
        return web.json_response(self.object_info())

    async def _object_info_one(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        info = self.object_info().get(name)
        return web.json_response({name: info} if info is not None else {})

    async def _features(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"supports_preview_metadata": True, "max_upload_size": _MAX_UPLOAD}
        )

    def _input_exists(self, name: str) -> bool:
        return self.files.read_input(name) is not None

    # -- WebSocket ----------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        client = _Client(ws)
        self._sockets[sid] = client
        writer = asyncio.create_task(client.write_forever())
        try:
            client.send("status", {"status": self._exec_info(), "sid": sid})
            if self._running is not None and self._running[3].get("client_id") == sid:
                client.send("executing", {"node": None})
            await self._read(ws, client)
        finally:
            # ComfyUI's quirk: an old socket closing unregisters the id, even if reused.
            self._sockets.pop(sid, None)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    async def _read(self, ws: web.WebSocketResponse, client: _Client) -> None:
        """Only a first `feature_flags` frame means anything; the rest is ignored."""
        first = True
        async for message in ws:
            if first and message.type == WSMsgType.TEXT:
                first = False
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    if json.loads(message.data)["type"] == "feature_flags":
                        features = {
                            "supports_preview_metadata": True,
                            "max_upload_size": _MAX_UPLOAD,
                        }
                        client.send("feature_flags", features)

    def _send(self, client_id: str | None, kind: str, data: Any) -> None:
        """Queue a frame for one client (None: every socket); each socket keeps the order."""
        if self.ws_silent:
            return
        if client_id is None:
            targets = list(self._sockets.values())
        else:
            target = self._sockets.get(client_id)
            targets = [target] if target is not None else []
        for client in targets:
            client.send(kind, data)

    def _remaining(self) -> int:
        return len(self._queue) + (1 if self._running is not None else 0)

    def _exec_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self._remaining()}}

    def _broadcast_status(self) -> None:
        self._send(None, "status", {"status": self._exec_info()})

    # -- execution ----------------------------------------------------------------------

    async def _execute_forever(self) -> None:
        while True:
            while not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            self._running = heapq.heappop(self._queue)[2]
            self._broadcast_status()
            await PromptRun(self, self._running).run()
            self._running = None
            await asyncio.sleep(0)


async def _json_or_empty(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dispatch_core.testing", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--job-seconds", type=float, default=0.5)
    parser.add_argument(
        "--checkpoint", action="append", default=[], help="model names it claims to have"
    )
    args = parser.parse_args(argv)

    async def serve() -> None:
        async with FakePeer(
            host=args.host,
            port=args.port,
            job_seconds=args.job_seconds,
            models={"checkpoints": args.checkpoint or ["sd15.safetensors"]},
        ) as peer:
            print(f"fake ComfyUI peer on {peer.url} (Ctrl-C to stop)", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
