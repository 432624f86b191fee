"""Fake ComfyUI peers in child processes (so their work does not share the dispatcher's
event loop), and the clients that drive them: the dispatcher, and the raw baseline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from .._dispatcher import Dispatcher
from ..config import Config
from ..job import JobSpec

__all__ = [
    "Busy",
    "counted_peers",
    "cpu_spent",
    "given_or_spawned",
    "makespan",
    "peers_alone",
    "pool_config",
    "raw_job",
    "spawn_peers",
    "stream",
    "tiny",
]


_PIDS: dict[str, int] = {}
"""URL → process id of each fake peer running, for its CPU time."""


@dataclass
class Busy:
    """CPU seconds spent while something ran: by this process, and by the fake peers."""

    own: float = 0.0
    peers: float = 0.0

    def shown(self, jobs: int, wall: float) -> str:
        """Per job, and how busy the machine's cores were: whether a row was CPU-bound."""
        if not self.peers:
            return f"dispatcher CPU {self.own / jobs * 1000:.2f} ms a job"
        busy = (self.own + self.peers) / (wall * (os.cpu_count() or 1))
        return (
            f"CPU a job: dispatcher {self.own / jobs * 1000:.2f} ms, peers "
            f"{self.peers / jobs * 1000:.2f} ms; {os.cpu_count()} cores {busy:.0%} busy"
        )


@contextlib.contextmanager
def cpu_spent(urls: Sequence[str]) -> Iterator[Busy]:
    """The CPU time this process and the fake peers at `urls` spend inside the block."""
    busy = Busy()
    own, peers = time.process_time(), _peers_cpu(urls)
    yield busy
    busy.own, busy.peers = time.process_time() - own, _peers_cpu(urls) - peers


def _peers_cpu(urls: Sequence[str]) -> float:
    """CPU seconds the fake peers have used, from /proc (0 where there is none)."""
    return sum(cpu_of(_PIDS.get(url, -1)) for url in urls)


def cpu_of(pid: int) -> float:
    """CPU seconds a process has used, from /proc (0 where there is none: not Linux)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def tiny(seed: int = 0) -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": seed % 2**24},
        },
        "2": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": "bench"},
        },
    }


@contextlib.asynccontextmanager
async def spawn_peers(count: int, job_seconds: float, *flags: str) -> AsyncIterator[list[str]]:
    """Fake peers in child processes; their URLs."""
    async with counted_peers(count, job_seconds, *flags) as (urls, _):
        yield urls


@contextlib.asynccontextmanager
async def given_or_spawned(
    urls: Sequence[str], count: int, job_seconds: float
) -> AsyncIterator[list[str]]:
    """The user's own servers when given (`--peers`), else fake peers spawned for the row."""
    if urls:
        yield list(urls)
        return
    async with spawn_peers(count, job_seconds) as spawned:
        yield spawned


@contextlib.asynccontextmanager
async def counted_peers(
    count: int, job_seconds: float, *flags: str
) -> AsyncIterator[tuple[list[str], list[int]]]:
    """Fake peers in child processes; their URLs, and the models each has loaded so far,
    counted from the lines it prints (as a real peer's log shows its loads)."""
    processes: list[asyncio.subprocess.Process] = []
    urls: list[str] = []
    loads = [0] * count
    readers: list[asyncio.Task[None]] = []
    try:
        for _ in range(count):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dispatch_core.testing",
                "--port",
                "0",
                "--job-seconds",
                str(job_seconds),
                *flags,
                stdout=asyncio.subprocess.PIPE,
            )
            processes.append(process)
        for index, process in enumerate(processes):
            assert process.stdout is not None
            line = (await process.stdout.readline()).decode()
            urls.append(line.split(" on ")[1].split()[0])
            _PIDS[urls[-1]] = process.pid
            readers.append(asyncio.create_task(_count_loads(process.stdout, loads, index)))
        yield urls, loads
    finally:
        for url in urls:
            _PIDS.pop(url, None)
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            await process.wait()
        await asyncio.gather(*readers, return_exceptions=True)


async def _count_loads(stream: asyncio.StreamReader, loads: list[int], index: int) -> None:
    async for line in stream:
        if line.startswith(b"loaded "):
            loads[index] += 1


def pool_config(urls: Sequence[str], **extra: Any) -> Config:
    settings = extra.pop("server", {})
    servers = {f"p{i}": {"url": url, **settings} for i, url in enumerate(urls)}
    return Config.from_dict({"servers": servers, "routes": {"pool": list(servers)}, **extra})


async def raw_job(
    session: aiohttp.ClientSession,
    url: str,
    frames: asyncio.Queue[str],
    client_id: str,
    seed: int = 0,
) -> float:
    """The baseline client: POST /prompt, wait on the WebSocket, GET /history and /view."""
    began = time.perf_counter()
    prompt_id = str(uuid.uuid4())
    body = {"prompt": tiny(seed), "client_id": client_id, "prompt_id": prompt_id}
    async with session.post(url + "/prompt", json=body) as response:
        await response.read()
    while True:
        message = json.loads(await frames.get())
        data = message["data"]
        if (
            message["type"] == "executing"
            and data.get("node") is None
            and data.get("prompt_id") == prompt_id
        ):
            break
    async with session.get(f"{url}/history/{prompt_id}") as response:
        entry = (await response.json())[prompt_id]
    for output in entry["outputs"].values():
        for image in output["images"]:
            async with session.get(url + "/view", params=image) as response:
                await response.read()
    return time.perf_counter() - began


async def makespan(urls: Sequence[str], jobs: list[JobSpec], **config: Any) -> float:
    async with Dispatcher(pool_config(urls, **config)) as dispatcher:
        for name in dispatcher.config.servers:
            await dispatcher.peer(name).start()
        await dispatcher.refresh_inventory()  # a running dispatcher has it; read every 5 min
        began = time.perf_counter()
        results = await dispatcher.run_parallel(jobs)
        took = time.perf_counter() - began
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise RuntimeError(f"{len(failed)} jobs failed, first: {failed[0]!r}")
    return took


async def peers_alone(
    urls: Sequence[str], jobs_each: int, make: Callable[[int], dict[str, Any]] = tiny
) -> float:
    """How long the peers themselves take with all their prompts queued on them at once."""

    async def one(session: aiohttp.ClientSession, url: str) -> None:
        for i in range(jobs_each):
            async with session.post(url + "/prompt", json={"prompt": make(i)}) as response:
                await response.read()
        while True:
            async with session.get(url + "/prompt") as response:
                if (await response.json())["exec_info"]["queue_remaining"] == 0:
                    return
            await asyncio.sleep(0.005)

    async with aiohttp.ClientSession() as session:
        began = time.perf_counter()
        await asyncio.gather(*(one(session, url) for url in urls))
        return time.perf_counter() - began


async def stream(dispatcher: Dispatcher, workflows: list[dict[str, Any]], going: int) -> None:
    """Run every workflow on the pool, keeping `going` jobs outstanding, as a client does."""
    outstanding = asyncio.Semaphore(going)

    async def one(workflow: dict[str, Any]) -> None:
        async with outstanding:
            await dispatcher.run("pool", workflow)

    await asyncio.gather(*(one(w) for w in workflows))
