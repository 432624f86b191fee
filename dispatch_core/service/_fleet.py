"""The managed workers of a service: saved in `workers.json`, started as servers.

A started worker becomes an enabled server at `http://127.0.0.1:PORT` and is announced
once it answers; a stopped one is disabled. The ComfyUI folder every worker runs is the
operator's (inside ComfyUI its own), never part of a saved spec or a request.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..config import Config
from ..errors import DispatchError, NotFound, WorkerError
from ._config_store import Edit
from ._support import Background, StateFile
from ._workers import WorkerManager, WorkerSpec, check_name

__all__ = ["Fleet"]

EditConfig = Callable[[Edit], Awaitable[Any]]


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
    ):
        self.manager = manager
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

    def _saved(self) -> dict[str, dict[str, Any]]:
        """Saved specs. A `comfyui` saved by older versions is dropped: it is the operator's."""
        return {
            k: {key: value for key, value in v.items() if key != "comfyui"}
            for k, v in self._specs.load().items()
            if isinstance(v, dict)
        }


def _enable(name: str, url: str) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        entry = config["servers"].setdefault(name, {"url": url})
        entry["enabled"] = True

    return edit


def _disable(name: str) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        config["servers"][name]["enabled"] = False

    return edit
