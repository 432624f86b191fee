"""Rows for the shared queue: short jobs over fake peers from 1, 2 and 4 dispatcher processes
sharing a real redis-server, against the local backend in one process, in the same run;
and the Redis round trips each job cost.

The benchmark's own process submits every job (through the queue) and takes jobs too; the
others are helper processes that only take jobs. Round trips are counted by each process's
client (every command and script is one), summed and divided by the jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from .._dispatcher import Dispatcher
from ..job import JobSpec
from ._peers import makespan, pool_config, spawn_peers, tiny
from ._rows import Row

__all__ = ["helper", "rows_shared"]

TARGET = 1.10
"""One process on Redis against the local backend: at most this ratio."""


async def rows_shared(
    jobs: int, peers: int = 8, seconds: float = 0.02, repeats: int = 3
) -> list[Row]:
    """The local backend and one process on Redis take turns `repeats` times (medians:
    a shared machine's load moves a lot between minutes), then 2 and 4 processes once."""
    if shutil.which("redis-server") is None:
        return [Row("shared queue on Redis", "skipped", "redis-server not installed", "", "", True)]
    specs = [JobSpec("pool", tiny(i)) for i in range(jobs)]
    locals_, ones = [], []
    async with spawn_peers(peers, seconds) as urls:
        for _ in range(repeats):
            locals_.append(await makespan(urls, specs))
            async with redis_server() as (url, _):  # a fresh one: nothing learned before
                ones.append(await _on_redis(urls, url, specs, 1))
        found = [(1, statistics.median(t for t, _ in ones), sum(r for _, r in ones) // repeats)]
        for n in (2, 4):
            async with redis_server() as (url, _):
                found.append((n, *await _on_redis(urls, url, specs, n)))
    local = statistics.median(locals_)
    rows = []
    for n, took, _ in found:
        ratio = took / local
        rows.append(
            Row(
                f"shared queue, {n} dispatcher process{'es' if n > 1 else ''}: "
                f"{jobs} jobs over {peers} peers ({seconds * 1000:g} ms each) on Redis",
                f"{took:.2f} s",
                f"local backend, one process: {local:.2f} s"
                + (f" (median of {repeats}, taking turns)" if n == 1 else ""),
                f"{ratio:.3f}×",
                f"≤ {TARGET:.2f}×" if n == 1 else "(shown)",
                ratio <= TARGET if n == 1 else True,
            )
        )
    trips = ", ".join(f"{n} process{'es' if n > 1 else ''}: {t / jobs:.1f}" for n, _, t in found)
    rows.append(Row("Redis round trips per job", trips, "", "", "(shown)", True))
    return rows


async def _on_redis(
    urls: Sequence[str], url: str, specs: list[JobSpec], processes: int
) -> tuple[float, int]:
    """The makespan of `specs` on Redis with `processes` dispatchers; the round trips."""
    config = pool_config(urls, queue={"backend": "redis", "url": url})
    async with _helpers(config.to_dict(), processes - 1) as helpers:
        async with Dispatcher(config) as dispatcher:
            for name in dispatcher.config.servers:
                await dispatcher.peer(name).start()
            await dispatcher.refresh_inventory()
            assert dispatcher.coordination is not None
            before = _round_trips(dispatcher)
            began = time.perf_counter()
            results = await dispatcher.run_parallel(specs)
            took = time.perf_counter() - began
            ours = _round_trips(dispatcher) - before
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise RuntimeError(f"{len(failed)} jobs failed, first: {failed[0]!r}")
        theirs = [await _stop_helper(process) for process in helpers]
    return took, ours + sum(theirs)


def _round_trips(dispatcher: Dispatcher) -> int:
    return int(getattr(dispatcher.coordination, "round_trips", 0))


@contextlib.asynccontextmanager
async def redis_server() -> AsyncIterator[tuple[str, int]]:
    """A redis-server on a free loopback port, without persistence: its URL and pid."""
    with socket.socket() as probe, tempfile.TemporaryDirectory() as folder:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        process = await asyncio.create_subprocess_exec(
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--dir", folder),
            stdout=asyncio.subprocess.DEVNULL,
        )
        try:
            await _until_it_answers(port)
            yield f"redis://127.0.0.1:{port}/0", process.pid
        finally:
            process.terminate()
            await process.wait()


async def _until_it_answers(port: int) -> None:
    for _ in range(500):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        await asyncio.sleep(0.01)  # the server is starting
    raise RuntimeError(f"redis-server did not start on port {port}")


@contextlib.asynccontextmanager
async def _helpers(
    config: dict[str, Any], count: int
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    code = "import asyncio, sys; from dispatch_core.bench._shared import helper; "
    code += "asyncio.run(helper(sys.argv[1]))"
    processes = []
    try:
        for _ in range(count):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                code,
                json.dumps(config),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            processes.append(process)
            assert process.stdout is not None
            await process.stdout.readline()  # "ready"
        yield processes
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
            await process.wait()


async def _stop_helper(process: asyncio.subprocess.Process) -> int:
    """Ask a helper to stop; the round trips it made."""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.close()
    line = await process.stdout.readline()
    await process.wait()
    return int(line or 0)


async def helper(config: str) -> None:
    """A dispatcher process that only takes jobs, until its stdin closes; then it prints
    the round trips it made."""
    async with Dispatcher(json.loads(config)) as dispatcher:
        for name in dispatcher.config.servers:
            await dispatcher.peer(name).start()
        print("ready", flush=True)
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        await reader.read()
        trips = _round_trips(dispatcher)
    print(trips, flush=True)
