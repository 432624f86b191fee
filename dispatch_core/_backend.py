"""Where jobs wait and who runs them: this process alone, or every process sharing a queue.

The `local` backend is the dispatcher as it always was: its own lanes, its own journal,
and no `Coordination` at all (nothing here is called on its path). A shared backend takes
over a job between its cache lookup and its result: it puts the job in a queue every
process reads, runs the jobs this process takes there, and hands each submitter its
result, whichever process ran it. The Redis one lives in `dispatch_core.redis`, imported
only when the config names it, so that the local backend never imports a Redis client.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .config import QueueSettings
from .errors import ConfigError

if TYPE_CHECKING:
    from ._dispatcher import Dispatcher
    from ._job import JobRun
    from .result import DispatchResult

__all__ = ["Coordination", "coordination_for"]


class Coordination(Protocol):
    """A queue shared by several dispatcher processes, and this process's part in it."""

    name: str
    """The backend's name, as the config says it (`redis`)."""
    on_record: Callable[[dict[str, Any]], None] | None
    """Told every job record that changes, in any process (the service's job list)."""

    async def open(self, dispatcher: Dispatcher) -> None:
        """Start taking jobs for `dispatcher`'s servers; never fails for an absent queue
        (a job submitted meanwhile fails, naming the queue's URL)."""

    async def close(self) -> None:
        """Stop taking jobs; give back this process's slots; stop every task it owns."""

    async def run(self, run: JobRun) -> DispatchResult:
        """Queue the job for every process, and its result once one of them ran it."""

    async def queued(self, job_id: str, ended: asyncio.Future[Any]) -> None:
        """Until the job submitted here is in the queue, or `ended` (it failed before)."""

    async def cancel(self, job_id: str) -> bool:
        """Stop a job wherever it waits or runs; False if it had ended or is unknown."""

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        """The newest job records of every process, oldest first; [] if unreachable."""

    async def in_flight(self, servers: list[str]) -> dict[str, int]:
        """Server → the prompts it has from every process sharing the queue (slots leased
        and not expired); {} if the queue cannot be reached."""

    async def record(self, job_id: str) -> dict[str, Any] | None:
        """One job's record as the queue has it, whichever process ran it; None if unknown
        (or the queue cannot be reached)."""

    def describe(self) -> dict[str, Any]:
        """For the status route and the panel: the backend, this process, the others."""


_CLIENTS = {"redis": (("redis", "hiredis"), "redis[hiredis]")}
"""Backend → the client modules it imports (redis-py, and hiredis, which reads the
replies of the queue's steps), and the requirement that installs them."""


def coordination_for(settings: QueueSettings) -> Coordination | None:
    """The coordination a queue setting asks for; None for `local`, which needs none."""
    if settings.backend == "local" or settings.url is None:
        return None
    # Relative: inside ComfyUI this package is `ComfyUI-Dispatch.dispatch_core`, and no
    # `dispatch_core` is importable on its own.
    try:
        module = importlib.import_module(f".{settings.backend}", __package__)
    except ModuleNotFoundError as missing:
        clients, requirement = _CLIENTS.get(settings.backend, ((), None))
        if missing.name not in clients:
            raise
        raise ConfigError(
            f"the {settings.backend!r} queue backend needs {requirement} in the Python "
            f"that runs this dispatcher: {sys.executable} -m pip install '{requirement}'",
            key="queue.backend",
        ) from None
    made: Coordination = module.Coordination(settings.url)
    return made
