"""FakePeer: one fake ComfyUI server, its settings, life cycle and executor."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from ._custom import CustomNode, PromptHandler
from ._files import FileStore
from ._info import MAX_UPLOAD
from ._routes import ComfyRoutes
from ._run import PromptRun
from ._ws import SocketHub

__all__ = ["FakePeer"]


class FakePeer(ComfyRoutes):
    """One fake ComfyUI server. The public attributes may be changed at any time by a test;
    its HTTP routes are in ComfyRoutes."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        job_seconds: float = 0.0,
        models: Mapping[str, list[str]] | None = None,
        fail_nodes: Mapping[str, str] | None = None,
        prompt_seconds: Callable[[dict[str, Any]], float] | None = None,
        load_seconds: float | Mapping[str, float] = 0.0,
        cold_seconds: float = 0.0,
        memory_slots: int | None = None,
        flags: Sequence[str] = (),
        custom_nodes: Mapping[str, CustomNode] | None = None,
        prompt_handlers: Sequence[PromptHandler] = (),
        preview_method: str = "none",
    ):
        self.host = host
        self.port = port
        self._retimed = asyncio.Event()
        self._job_seconds = float(job_seconds)
        self.prompt_seconds = prompt_seconds
        """Seconds a given prompt takes, read when it starts; overrides job_seconds."""
        self.models = {k: list(v) for k, v in (models or {}).items()}
        """Model folder → file names: fills the loaders' lists (checkpoints, loras, ...)."""
        self.load_seconds: float | dict[str, float] = (
            float(load_seconds) if isinstance(load_seconds, float | int) else dict(load_seconds)
        )
        """Seconds a loader node takes to load its model file when it is not held (one
        figure, or one per file name): ComfyUI reads it from disk and builds the model."""
        self.cold_seconds = float(cold_seconds)
        """Seconds more for the first load after a start: the process's own warm-up."""
        self.memory_slots = memory_slots
        """How many model files it holds at once; the least recently used goes first
        (None: all). ComfyUI's default cache keeps those of the last prompt only."""
        self.flags = list(flags)
        """ComfyUI command-line flags its `/system_stats` says it was started with (it acts
        on none of them: `--cache-lru 12` beside `memory_slots=2` tells a dispatcher what
        a ComfyUI holding two checkpoints of a six-node graph would say)."""
        self.preview_method = preview_method
        """ComfyUI's `--preview-method`: anything but `none` makes samplers send a preview
        per step (see `_preview`)."""
        self.loads = 0
        """Model files loaded since the peer was created, as its log would show."""
        self.on_load: Callable[[str], None] | None = None
        """Called with each model file loaded (the CLI prints it, as ComfyUI logs it)."""
        self.custom_nodes = dict(custom_nodes or {})
        """Class name → a custom node pack's node class, run by this peer as its own."""
        self.prompt_handlers = list(prompt_handlers)
        """What custom node packs registered with add_on_prompt_handler: each sees every
        `POST /prompt` body first; one that raises is skipped, as ComfyUI logs and skips it."""
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
        self.max_concurrent_seen = 0
        """Most prompts held at once (pending + running) since the peer was created."""
        self.prompts_received: list[str] = []
        """Ids of accepted prompts, in arrival order."""
        self.workflows_received: dict[str, dict[str, Any]] = {}
        """Prompt id → the workflow it ran, as received."""
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every request, the /api prefix removed."""
        self.uploads: list[dict[str, str]] = []
        """The answers to every successful upload."""
        self.files = FileStore()
        self._hang = asyncio.Event()
        self._hang.set()
        self._hub = SocketHub(self._greeting)
        self._info_cache: tuple[str, dict[str, Any]] = ("", {})
        self._runner: web.AppRunner | None = None
        self._executor: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._reset_state()

    def _reset_state(self) -> None:
        """What a ComfyUI process keeps only in memory, and so loses on restart."""
        self._queue: list[tuple[float, str, int, list[Any]]] = []
        self._running: list[Any] | None = None
        self._run: PromptRun | None = None
        self._history: dict[str, dict[str, Any]] = {}
        self._cache: dict[str, tuple[tuple[Any, ...], dict[str, Any] | None]] = {}
        self._number = 0
        self._interrupt = False
        self._free_memory = False
        self._held: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._cold = True
        self._wake.clear()
        self._idle.set()
        self.files.clear_temp()

    # -- settings -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def job_seconds(self) -> float:
        """Seconds each prompt takes, spread over the nodes it runs; a change applies at once,
        to the running prompt too."""
        return self._job_seconds

    @job_seconds.setter
    def job_seconds(self, value: float) -> None:
        self._job_seconds = float(value)
        self._retimed.set()
        self._retimed = asyncio.Event()

    @property
    def hang(self) -> bool:
        """While true, HTTP requests (and WebSocket handshakes) are accepted, never answered."""
        return not self._hang.is_set()

    @hang.setter
    def hang(self, value: bool) -> None:
        if value:
            self._hang.clear()
        else:
            self._hang.set()

    @property
    def ws_silent(self) -> bool:
        """Sockets stay open but hear nothing after their first status frame."""
        return self._hub.silent

    @ws_silent.setter
    def ws_silent(self, value: bool) -> None:
        self._hub.silent = value

    # -- life cycle ---------------------------------------------------------------------

    async def __aenter__(self) -> FakePeer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen (on the same port as before after a stop) and start the executor."""
        self._runner = web.AppRunner(self._app(), shutdown_timeout=0.5, handle_signals=False)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except BaseException:  # the port is taken, say: leave nothing behind
            await self._runner.cleanup()
            self._runner = None
            raise
        if self.port == 0:
            self.port = self._runner.addresses[0][1]
        self._executor = asyncio.create_task(self._execute_forever(), name=f"fake-peer:{self.port}")

    def _app(self) -> web.Application:
        """A fresh app: each route under `/path` and, as ComfyUI aliases them, `/api/path`."""
        app = web.Application(middlewares=[self._faults], client_max_size=MAX_UPLOAD)
        for prefix in ("", "/api"):
            app.router.add_routes([web.route(m, prefix + p, h) for m, p, h in self._routes()])
        return app

    async def stop(self) -> None:
        """Stop listening (clients now get connection refused) and release hung requests;
        queue and history are kept, and a running prompt goes back to the queue."""
        self._hang.set()
        if self._executor is not None:
            self._executor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._executor
            self._executor = None
        self._hub.drop()
        if self._running is not None:
            heapq.heappush(self._queue, (self._running[0], self._running[1], -1, self._running))
            self._running = self._run = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self, *, downtime: float = 0.0) -> None:
        """Stop, forget queue, history, cache and temp files as a real restart does, and
        start again after `downtime` seconds (during which connections are refused)."""
        await self.stop()
        self._reset_state()
        await asyncio.sleep(downtime)
        await self.start()

    async def idle(self) -> None:
        """Wait until nothing is queued or running."""
        await self._idle.wait()

    async def drop_websockets(self) -> None:
        """Cut every client socket from the server side; prompts keep running."""
        self._hub.drop()

    def send_garbage(self) -> None:
        """Send every client frames that are not ComfyUI's protocol."""
        for text in ("not json {", '{"type": "executing"}', '{"type": "progress", "data": [1]}'):
            self._hub.send_raw(text)

    # -- WebSocket ----------------------------------------------------------------------

    def _greeting(self, sid: str) -> list[tuple[str | None, Any]]:
        """The status with the socket's sid; on reconnect, the node its prompt is running."""
        frames: list[tuple[str | None, Any]] = [
            ("status", {**self._exec_info_status(), "sid": sid})
        ]
        run = self._run
        if run is not None and run.client_id == sid and run.current_node is not None:
            frames.append(("executing", {"node": run.current_node}))
        return frames

    # -- execution ----------------------------------------------------------------------

    def _load_model(self, name: str) -> float:
        """A loader node needs `name`: the seconds it spends loading it (0 when held)."""
        if name in self._held:
            self._held.move_to_end(name)
            return 0.0
        self._held[name] = None
        while self.memory_slots is not None and len(self._held) > max(self.memory_slots, 1):
            self._held.popitem(last=False)
        self.loads += 1
        if self.on_load is not None:
            self.on_load(name)
        load = self.load_seconds
        seconds = load.get(name, 0.0) if isinstance(load, dict) else load
        seconds += self.cold_seconds if self._cold else 0.0
        self._cold = False
        return float(seconds)

    async def _execute_forever(self) -> None:
        """prompt_worker: one prompt at a time, lowest `number` first."""
        while True:
            while not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            self._apply_free()
            self._running = heapq.heappop(self._queue)[3]
            self._broadcast_status()
            self._run = PromptRun(self, self._running)
            try:
                await self._run.run()
            except Exception:  # a bug of the fake's own: keep serving, say so
                logging.getLogger(__name__).exception("fake peer failed a prompt")
                self._run.finish(False)
            self._running = self._run = None
            await asyncio.sleep(0)
