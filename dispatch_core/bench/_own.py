"""`--peers URL …`: the benchmark's rows on the user's own ComfyUI servers.

Anyone can then reproduce the table on their GPUs, against the same baselines: a raw
client (POST /prompt, wait on the WebSocket, GET /history and /view) for the per-job
overhead, polling `/history` for completion detection, and for the pool an even split of
the jobs queued on every server at once. The workflow is the benchmark's own (EmptyImage
into SaveImage, core nodes only), each job with another colour so that no cache answers;
it writes small PNGs into each server's output folder.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from .._dispatcher import Dispatcher
from .._status import calibration_workflow
from ..job import JobSpec
from ..workflow import WorkflowBuilder
from ._peers import makespan, peers_alone, pool_config, tiny
from ._rows import Row, row_detection, row_latency

__all__ = ["pool_job", "row_pool", "run_on_peers"]

Make = Callable[[int], dict[str, Any]]


def pool_job(name: str) -> tuple[str, Make]:
    """The pool row's job: `tiny` (8×8, all overhead), `calibration` (blur and invert a
    1024² batch: seconds on a CPU), or an API-format workflow file, its seeds varied."""
    if name == "tiny":
        return "tiny", lambda i: tiny(_fresh(i))
    if name == "calibration":
        return "calibration", lambda i: calibration_workflow()
    builder = WorkflowBuilder.from_file(name)
    return Path(name).name, lambda i: builder.copy().randomize_seed().build()


async def run_on_peers(urls: Sequence[str], jobs: int, job: str = "calibration") -> list[Row]:
    """Per-job overhead and completion detection on the first server (the tiny job: what
    is measured is ours, not the server's work), the pool's makespan on all of them."""
    await _check_reachable(urls)
    rows = [
        await row_latency(jobs, urls=urls[:1]),
        await row_detection(max(jobs // 5, 2), urls=urls[:1]),
    ]
    if len(urls) > 1:
        rows.append(await row_pool(urls, jobs, *pool_job(job)))
    return rows


async def row_pool(urls: Sequence[str], jobs: int, label: str, make: Make) -> Row:
    """The pool's makespan against the ideal split by each server's own speed, and against
    an even split queued on every server at once (what a client without a dispatcher does)."""
    speeds = [await _seconds_per_job(url, 3, make) for url in urls]
    ideal = jobs / sum(1 / s for s in speeds)
    ours = await makespan(urls, [JobSpec("pool", make(i)) for i in range(jobs)])
    even = await peers_alone(urls, jobs // len(urls), make)
    shown = ", ".join(f"{s:.2f}" for s in speeds)
    return Row(
        f"pool of {len(urls)} servers, {jobs} {label} jobs (s/job alone: {shown})",
        f"{ours:.2f} s",
        f"even split queued at once {even:.2f} s; ideal {ideal:.2f} s",
        f"{ours / ideal:.3f}× ideal, {ours / even:.3f}× even split",
        "≤ 1.10× ideal",
        ours / ideal <= 1.10,
    )


async def _seconds_per_job(url: str, jobs: int, make: Make) -> float:
    """One server's median seconds a job, run one after another (after one to warm it)."""
    async with Dispatcher(pool_config([url])) as dispatcher:
        await dispatcher.run("pool", make(0))
        took = []
        for i in range(jobs):
            began = time.perf_counter()
            await dispatcher.run("pool", make(i + 1))
            took.append(time.perf_counter() - began)
    return statistics.median(took)


def _fresh(index: int) -> int:
    """A colour no earlier run used: a real ComfyUI caches a prompt it has seen."""
    return (uuid.uuid4().int + index) % 2**24


async def _check_reachable(urls: Sequence[str]) -> None:
    """Fail at once, naming the server, rather than time out in the first row."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for url in urls:
            try:
                async with session.get(url.rstrip("/") + "/system_stats") as response:
                    stats: Any = await response.json()
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                raise SystemExit(f"error: {url} does not answer as a ComfyUI: {error!r}") from None
            if not isinstance(stats, dict) or "system" not in stats:
                raise SystemExit(f"error: {url} does not answer as a ComfyUI (/system_stats)")
