"""What the service knows of its servers: status, inventories, calibrations.

A watch asks every server every few seconds while the service runs and tells the panels
only when something changed; a server asked on purpose (test, calibrate, a worker come
up) is announced at once. Calibrations are kept in `calibration.json`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .._dispatcher import Dispatcher, ServerStatus
from ..config import Config
from ..errors import NotFound
from ._support import Events, StateFile

__all__ = ["Monitor"]

_log = logging.getLogger("dispatch_core.service")


class Monitor:
    """Status, inventory and calibration of the configured servers."""

    def __init__(
        self,
        ready: Callable[[], Awaitable[Dispatcher]],
        config: Callable[[], Config],
        events: Events,
        calibrations: StateFile,
    ):
        self._ready = ready
        self._config = config
        self._events = events
        self._calibrations = calibrations
        self._status: dict[str, ServerStatus] = {}

    def known(self, name: str) -> None:
        """Nothing for a configured server; NotFound, naming the known ones, otherwise."""
        servers = self._config().servers
        if name not in servers:
            known = ", ".join(servers) or "none configured"
            raise NotFound(f"no server {name!r} (servers: {known})", field="name")

    def calibrations(self) -> dict[str, float]:
        saved = self._calibrations.load()
        return {k: float(v) for k, v in saved.items() if isinstance(v, (int, float))}

    def latencies(self) -> dict[str, float]:
        """Seconds each server took to answer its last status request, for the metrics."""
        found = self._status.values()
        return {s.name: s.latency_ms / 1000 for s in found if s.latency_ms is not None}

    async def status(self, *, refresh: bool = False) -> list[dict[str, Any]]:
        dispatcher = await self._ready()
        if refresh or set(self._status) != set(self._config().servers):
            self._status = await dispatcher.status()
        return [dataclasses.asdict(s) for s in self._status.values()]

    async def test(self, name: str) -> dict[str, Any]:
        found = await (await self._ready()).server_status(name)
        self._status[name] = found
        return dataclasses.asdict(found)

    async def announce(self, name: str) -> None:
        """Ask one server now and tell the panels, rather than wait for the next watch."""
        await self.test(name)
        self._events.emit("dispatch.status", {"servers": await self.status()})

    async def inventory(self, *, refresh: bool = False) -> dict[str, Any]:
        """Each server's node class count and model lists (read again with `refresh`)."""
        dispatcher = await self._ready()
        servers = self._config().servers
        if refresh or set(dispatcher.inventories) != set(servers):
            await dispatcher.refresh_inventory()
        return {
            name: inventory.to_dict()
            for name, inventory in dispatcher.inventories.items()
            if name in servers
        }

    async def calibrate(self, name: str, runs: int = 3) -> float:
        """Time the calibration workflow on a server; kept in `calibration.json`."""
        seconds = await (await self._ready()).calibrate(name, runs=runs)
        saved = self.calibrations()
        saved[name] = round(seconds, 4)
        await self._calibrations.save(saved)
        await self.announce(name)
        return seconds

    async def free(self, name: str) -> None:
        """Ask the server to unload its models and free VRAM (`POST /free`)."""
        await (await self._ready()).peer(name).free()

    async def watch(self, interval: float) -> None:
        """Every `interval` seconds, until cancelled: status, and inventories grown old."""
        seen: list[dict[str, Any]] | None = None
        while True:
            try:
                now = await self.status(refresh=True)
                await self._refresh_old_inventories()
            except Exception:  # never let the watch die: the next round may work
                _log.exception("ComfyUI-Dispatch: status check failed")
            else:
                changed = [_without_latency(s) for s in now]  # latency jitters every round
                if changed != seen:
                    self._events.emit("dispatch.status", {"servers": now})
                    seen = changed
            await asyncio.sleep(interval)

    async def _refresh_old_inventories(self) -> None:
        dispatcher = await self._ready()
        old = [
            name
            for name, inventory in dispatcher.inventories.items()
            if time.time() - inventory.fetched_at > dispatcher.inventory_max_age
        ]
        for name in old:
            await dispatcher.refresh_inventory(name)


def _without_latency(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k != "latency_ms"}
