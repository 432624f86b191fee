"""The managed workers of a service: saved in `workers.json`, started as servers.

A started worker becomes an enabled server at `http://127.0.0.1:PORT` and is announced
once it answers; a stopped one is disabled. The ComfyUI folder every worker runs is the
operator's (inside ComfyUI its own), never part of a saved spec or a request.

One worker per GPU in one call: for every detected GPU (`_gpus`) that no saved worker
uses yet, a worker `gpu<N>` on the first free loopback port from a base.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ..config import Config
from ..errors import DispatchError, NotFound, WorkerError
from ._config_store import Edit
from ._gpus import GpuProbe
from ._support import Background, StateFile
from ._worker_args import check_args
from ._workers import WorkerManager, WorkerSpec, check_name

__all__ = ["Fleet"]

EditConfig = Callable[[Edit], Awaitable[Any]]
BASE_PORT = 8189
"""Where one-worker-per-GPU looks for free ports first: ComfyUI's own port plus one."""
_PORTS_TRIED = 1000


class Fleet:
    """Starts, stops and lists workers, keeping their specs and servers in step."""

    def __init__(
        self,
        manager: WorkerManager,
        specs: StateFile,
        *,
        config: Callable[[], Config],
        edit_config: EditConfig,
        announce: Callable[[str], Awaitable[None]],
        background: Background,
        gpus: GpuProbe | None = None,
    ):
        self.manager = manager
        self.probe = gpus if gpus is not None else GpuProbe()
        self._specs = specs
        self._config = config
        self._edit_config = edit_config
        self._announce = announce
        self._background = background

    def list(self) -> list[dict[str, Any]]:
        """Every saved worker, with its process state when started."""
        listing = []
        for name, spec in self._saved().items():
            started = self.manager.workers.get(name)
            state = started.to_dict() if started else {"name": name, **spec, "state": "stopped"}
            listing.append(state)
        return listing

    async def start(self, name: Any, spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Start a worker (a new one from `spec`, or a saved one) and make it a server.

        `spec` takes `port`, `gpu` and `args` only: the ComfyUI folder is the operator's.
        """
        name = check_name(name)
        saved = self._saved()
        if spec is None:
            if name not in saved:
                raise NotFound(f"no saved worker {name!r}: give its port and GPU", field="name")
            spec = saved[name]
        checked = WorkerSpec.from_dict(name, dict(spec))
        url = f"http://127.0.0.1:{checked.port}"
        server = self._config().servers.get(name)
        if server is not None and server.url != url:
            message = f"a server named {name!r} exists with another URL ({server.url})"
            raise WorkerError(message, field="name")
        worker = await self.manager.start(checked)
        saved[name] = checked.to_dict()
        await self._specs.save(saved)
        await self._edit_config(_enable(name, url))
        self._background.start(self._announce_when_up(name), f"worker-ready-{name}")
        return worker.to_dict()

    async def stop(self, name: Any, *, forget: bool = False) -> None:
        """Stop a worker and disable its server; with `forget`, drop its saved spec too."""
        name = check_name(name)
        if name in self.manager.workers:
            await self.manager.stop(name)
            if forget:
                self.manager.forget(name)
        elif name not in self._saved():
            raise NotFound(f"no worker {name!r}", field="name")
        if forget:
            saved = self._saved()
            saved.pop(name, None)
            await self._specs.save(saved)
        if name in self._config().servers:
            await self._edit_config(_disable(name))

    async def gpus(self) -> dict[str, Any]:
        """The machine's GPUs, each with the saved workers that use it."""
        found = await self.probe.detect()
        users = self._gpu_users()
        gpus = [gpu.to_dict() | {"workers": list(users.get(gpu.index, ()))} for gpu in found.gpus]
        return {"gpus": gpus, "source": found.source}

    async def start_per_gpu(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Start a worker `gpu<N>` for every detected GPU that no saved worker uses.

        `options` takes `base_port` (where free ports are looked for first) and `args`
        (allow-listed flags, for each of them); all is checked before anything starts.
        """
        base, args = _per_gpu_options(options)
        found = await self.probe.detect()
        users = self._gpu_users()
        planned: dict[str, WorkerSpec] = {}
        for gpu in found.gpus:
            if gpu.index not in users:
                name = self._free_name(f"gpu{gpu.index}", set(planned))
                port = self._free_port(base, {spec.port for spec in planned.values()})
                data = {"port": port, "gpu": str(gpu.index), "args": args}
                planned[name] = WorkerSpec.from_dict(name, data)
        started = [await self.start(name, spec.to_dict()) for name, spec in planned.items()]
        return {"started": started, "source": found.source}

    def log(self, name: Any, lines: int = 200) -> str:
        """The end of the log of a worker this service knows (saved or started)."""
        name = check_name(name)
        if name not in self.manager.workers and name not in self._saved():
            raise NotFound(f"no worker {name!r}", field="name")
        return self.manager.log(name, lines)

    async def _announce_when_up(self, name: str) -> None:
        with contextlib.suppress(DispatchError):
            await self.manager.wait_ready(name)
        await self._announce(name)

    def _gpu_users(self) -> dict[int, tuple[str, ...]]:
        """GPU number → the saved workers given it (alone or with others, as in "0,1")."""
        users: dict[int, tuple[str, ...]] = {}
        for name, spec in self._saved().items():
            gpu = spec.get("gpu")
            for part in gpu.split(",") if isinstance(gpu, str) else ():
                if part.isascii() and part.isdigit():
                    users[int(part)] = (*users.get(int(part), ()), name)
        return users

    def _free_name(self, wanted: str, planned: set[str]) -> str:
        """`wanted`, or `wanted-2`, `-3`... if a saved worker or a server has that name."""
        taken = planned | set(self._saved()) | set(self._config().servers)
        name, number = wanted, 1
        while name in taken:
            number += 1
            name = f"{wanted}-{number}"
        return name

    def _free_port(self, base: int, planned: set[int]) -> int:
        """The first port from `base` that no saved worker or loopback server uses and that
        nothing listens on now."""
        taken = planned | {spec.get("port") for spec in self._saved().values()}
        for server in self._config().servers.values():
            url = urlsplit(server.url)
            if url.hostname in ("127.0.0.1", "localhost", "::1"):
                taken.add(url.port)
        for port in range(base, min(base + _PORTS_TRIED, 65536)):
            if port not in taken and _bindable(port):
                return port
        raise WorkerError(f"no free port from {base} on", field="base_port")

    def _saved(self) -> dict[str, dict[str, Any]]:
        """Saved specs. A `comfyui` saved by older versions is dropped: it is the operator's."""
        return {
            k: {key: value for key, value in v.items() if key != "comfyui"}
            for k, v in self._specs.load().items()
            if isinstance(v, dict)
        }


def _per_gpu_options(options: Mapping[str, Any]) -> tuple[int, list[str]]:
    unknown = sorted(set(options) - {"base_port", "args"})
    if unknown:
        key = str(unknown[0])[:40]
        raise WorkerError(f"unknown field {key!r} (takes base_port, args)", field=key)
    base = options.get("base_port", BASE_PORT)
    if isinstance(base, bool) or not isinstance(base, int) or not 1024 <= base <= 65535:
        raise WorkerError("'base_port' must be a number from 1024 to 65535", field="base_port")
    args = options.get("args")
    args = [] if args is None else args
    try:
        return base, list(check_args(args))
    except ValueError as error:
        raise WorkerError(str(error), field="args") from None


def _bindable(port: int) -> bool:
    """Free on loopback: nothing answers there, and it can be bound (on Windows a bind
    succeeds beside a server listening on every interface, hence the first check)."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _enable(name: str, url: str) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        entry = config["servers"].setdefault(name, {"url": url})
        entry["enabled"] = True

    return edit


def _disable(name: str) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        config["servers"][name]["enabled"] = False

    return edit
