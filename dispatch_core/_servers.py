"""The configured servers as the dispatcher holds them: a lane and a client for each.

A lane is one server's slots and what it has shown of itself (speed, failures, models
held); a client is its HTTP API and its one WebSocket. Both follow the config as it
changes, without dropping a job in flight: a server that moves to another URL or leaves
keeps its old client until its last job is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

from ._lanes import Lane
from ._peer import PeerClient
from ._residency import Residency
from ._scheduler import Scheduler
from .config import Config
from .errors import DispatcherClosed, NotFound

__all__ = ["Servers"]


class Servers:
    """Lanes and clients of the configured servers, kept in step with the config."""

    def __init__(self, config: Config):
        self.config = config
        self.lanes: dict[str, Lane] = {}
        self.scheduler = Scheduler(self.lanes)
        """Which waiting job takes a slot that frees, on any server."""
        for name, server in config.servers.items():
            self.lanes[name] = Lane(server, self.scheduler.slot_freed)
        self.session: aiohttp.ClientSession | None = None
        """Set while the dispatcher is open; clients are made on first use."""
        self._peers: dict[str, PeerClient] = {}
        self._retired: list[PeerClient] = []
        """Clients of servers whose URL changed or that left, kept until their jobs end."""

    def lane(self, name: str) -> Lane:
        lane = self.lanes.get(name)
        if lane is None:
            raise NotFound(f"unknown server {name!r} (known: {self.known()})", field="server")
        return lane

    def peer(self, name: str) -> PeerClient:
        """The client of one configured server (created on first use)."""
        if self.session is None:
            raise DispatcherClosed("the dispatcher is not open: use `async with Dispatcher(...)`")
        lane = self.lane(name)
        if name not in self._peers:
            self._peers[name] = PeerClient(lane.server, self.session, timeouts=self.config.timeouts)
        return self._peers[name]

    def known(self) -> str:
        return ", ".join(sorted(self.lanes)) or "none configured"

    def in_flight(self) -> dict[str, int]:
        return {name: lane.in_flight for name, lane in self.lanes.items()}

    async def reconfigure(self, config: Config, forget: Callable[[str], None]) -> None:
        """Take a new config; `forget(name)` drops what was learned of a server that moved
        or left. A larger `max_in_flight` starts waiting jobs at once."""
        self.config = config
        for name, server in config.servers.items():
            lane = self.lanes.get(name)
            if lane is None:
                self.lanes[name] = Lane(server, self.scheduler.slot_freed)
                continue
            moved = (lane.server.url, dict(lane.server.headers)) != (
                server.url,
                dict(server.headers),
            )
            lane.server = server
            if moved:
                forget(name)
                await self._retire(name, lane)
            lane.grant_free_slots()
        for name in [n for n in self.lanes if n not in config.servers]:
            forget(name)
            await self._retire(name, self.lanes.pop(name))

    async def _retire(self, name: str, lane: Lane) -> None:
        """Forget what the lane knew of its server; close the client when it is idle."""
        lane.residency, lane.calibrated = Residency(), None
        peer = self._peers.pop(name, None)
        if peer is None:
            return
        if lane.in_flight:
            self._retired.append(peer)
        else:
            await peer.close()

    async def close(self) -> None:
        await asyncio.gather(*(peer.close() for peer in [*self._peers.values(), *self._retired]))
        self._peers.clear()
        self._retired.clear()
