"""The config file of a service: read once, edited whole, versioned, shown masked.

A config file that cannot be read is renamed with a `.bad` suffix and reported in
`error`; the service then starts with no servers rather than refusing to start, and
nothing is written until the user saves. Every edit is checked whole before the file is
touched, and carries the version it was made on when the caller has one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._files import write_atomically
from .._json import JSONLimitError, loads_bounded
from ..config import AUTO, Config
from ..errors import ConfigConflict, ConfigError

__all__ = ["MASK", "ConfigStore", "Edit"]

MASK = "********"
"""Shown instead of every header value; sent back unchanged, it keeps the stored value."""

Edit = Callable[[dict[str, Any]], None]
"""A change to the config's plain-data form, checked as a whole once made."""
_log = logging.getLogger("dispatch_core.service")


class ConfigStore:
    """One config file and the config it holds."""

    def __init__(self, path: Path):
        self.path = path
        self.config = Config()
        self.error: str | None = None
        """Why the config file could not be used, and where it was kept."""
        self.version = ""
        self._editing = asyncio.Lock()
        self._read()

    def view(self) -> dict[str, Any]:
        """The config with every header value masked, its version and any load error."""
        data = self.config.to_dict()
        for server in data["servers"].values():
            server["headers"] = dict.fromkeys(server["headers"], MASK)
        return {
            "config": data,
            "version": self.version,
            "error": self.error,
            "warnings": route_warnings(self.config),
            "path": str(self.path),
        }

    async def edit(self, change: Edit, *, expected_version: str | None = None) -> Config:
        """Apply `change`, check the result, save it; a stale version is refused."""
        async with self._editing:
            if expected_version is not None and expected_version != self.version:
                raise ConfigConflict(
                    "the config changed since you loaded it (another tab or a file edit); "
                    "reload it and apply your change again",
                    current_version=self.version,
                )
            data = self.config.to_dict()
            change(data)
            self._unmask(data)
            config = Config.from_dict(data)
            text = (json.dumps(config.to_dict(), indent=2) + "\n").encode()
            await asyncio.to_thread(write_atomically, self.path, text)
            self.config, self.error, self.version = config, None, _version(text)
        return config

    def _unmask(self, data: dict[str, Any]) -> None:
        """A masked header keeps its stored value, but only while its server's URL stays:
        the value was meant for that host, not for a new one."""
        servers = data.get("servers")
        if not isinstance(servers, dict):
            return  # the config's own check names the mistake
        for name, server in servers.items():
            headers = server.get("headers") if isinstance(server, dict) else None
            if not isinstance(headers, dict):
                continue
            stored = self.config.servers.get(name)
            moved = stored is not None and server.get("url") != stored.url
            for header, value in headers.items():
                if value != MASK:
                    continue
                key = f"servers.{name}.headers.{header}"
                if moved:
                    raise ConfigError("the URL changed: send the header's value again", key=key)
                if stored is None or header not in stored.headers:
                    raise ConfigError("send the header's value, not the mask", key=key)
                headers[header] = stored.headers[header]

    def _read(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as error:
            self.error = f"{self.path}: cannot read: {error.strerror}"
            return
        try:
            self.config = Config.from_dict(loads_bounded(raw), path=str(self.path))
            self.version = _version(raw)
            return
        except JSONLimitError as error:
            problem = f"{self.path}: {error}"
        except ConfigError as error:
            problem = str(error)
        self._set_aside(problem)

    def _set_aside(self, problem: str) -> None:
        kept = self.path.with_name(self.path.name + ".bad")
        if kept.exists():
            kept = self.path.with_name(f"{self.path.name}.{int(time.time())}.bad")
        self.path.rename(kept)
        self.error = (
            f"{problem}. The file was kept as {kept.name}; no server is configured until "
            "you fix that file and rename it back, or save a new config"
        )
        _log.error("ComfyUI-Dispatch: %s", self.error)


def route_warnings(config: Config) -> list[str]:
    """Routes that can send no job anywhere, or only to some of their servers."""
    warnings = []
    for route, names in config.routes.items():
        if names == (AUTO,):
            if config.servers and not any(s.enabled for s in config.servers.values()):
                warnings.append(f"route {route!r}: every server is disabled")
            continue
        disabled = [n for n in names if not config.servers[n].enabled]
        if disabled and len(disabled) == len(names):
            warnings.append(f"route {route!r}: every server is disabled ({', '.join(disabled)})")
        elif disabled:
            warnings.append(f"route {route!r}: server {', '.join(disabled)} is disabled")
    return warnings


def _version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]
