"""Dispatcher processes for the shared queue's tests: `python -m dispatch_core serve`, each in
a folder of its own with the same config, on a free port; started, killed, waited for."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import local_http

ROOT = Path(__file__).resolve().parent.parent


class Serve:
    """One `serve` process; `url` is its base, known once it printed where its panel is."""

    def __init__(self, folder: Path, config: dict[str, Any]):
        self.folder = folder
        self.config = config
        self.url = ""
        self.process: asyncio.subprocess.Process | None = None
        self._drainer: asyncio.Task[None] | None = None

    async def start(self) -> Serve:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "config.json").write_text(json.dumps(self.config))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "dispatch_core", "serve", "--port", "0"),
            *("--config", str(self.folder / "config.json"), "--status-every", "0"),
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        assert self.process.stderr is not None
        while not self.url:
            line = (await self.process.stderr.readline()).decode()
            if not line:
                raise RuntimeError(f"serve in {self.folder} ended before it listened")
            found = re.search(r"panel on (http://127\.0\.0\.1:\d+)/", line)
            self.url = found.group(1) if found else ""
        self._drainer = asyncio.create_task(self._drain())
        return self

    async def _drain(self) -> None:
        """Read its stderr to the end, so that a chatty process never blocks on the pipe."""
        assert self.process is not None and self.process.stderr is not None
        while await self.process.stderr.readline():
            pass

    def kill(self) -> None:
        """SIGKILL: no cleanup, its slots and jobs left as they were."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            self.process.terminate()
        await self.process.wait()
        if self._drainer is not None:
            await self._drainer

    async def call(
        self, session: aiohttp.ClientSession, method: str, path: str, body: Any = None
    ) -> tuple[int, Any]:
        return await local_http.call_json(session, method, self.url + path, body)


def shared_config(peer_urls: list[str], redis_url: str, *, max_in_flight: int) -> dict[str, Any]:
    servers = {
        f"p{i}": {"url": url, "max_in_flight": max_in_flight} for i, url in enumerate(peer_urls)
    }
    return {
        "servers": servers,
        "routes": {"pool": list(servers)},
        "timeouts": {"job": 120, "request": 5, "poll_interval": 0.2},
        "cache": {"enabled": False},
        "queue": {"backend": "redis", "url": redis_url},
    }
