"""The benchmark's rows: each measures the dispatcher and its baseline in the same run."""

from __future__ import annotations

import asyncio
import io
import random
import statistics
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from rapidfuzz.distance import Levenshtein

from .._cache import ResultCache
from .._dispatcher import Dispatcher
from ..job import JobSpec
from ._peers import (
    cpu_spent,
    given_or_spawned,
    makespan,
    peers_alone,
    pool_config,
    raw_job,
    spawn_peers,
    tiny,
)

__all__ = [
    "Row",
    "row_detection",
    "row_fuzzy",
    "row_images",
    "row_latency",
    "row_loop_lag",
    "row_makespan",
    "row_slow_fast",
]


@dataclass(frozen=True)
class Row:
    name: str
    ours: str
    baseline: str
    ratio: str
    target: str
    met: bool


async def row_latency(jobs: int, urls: Sequence[str] = ()) -> Row:
    """`urls`: a server of the user's to measure on, instead of a fake peer."""
    async with given_or_spawned(urls, 1, 0.0) as urls, aiohttp.ClientSession() as session:
        frames: asyncio.Queue[str] = asyncio.Queue()
        client_id = uuid.uuid4().hex
        async with session.ws_connect(urls[0] + "/ws", params={"clientId": client_id}) as ws:

            async def pump() -> None:
                async for message in ws:
                    frames.put_nowait(message.data)

            reader = asyncio.create_task(pump())
            raw, ours = [], []
            async with Dispatcher(pool_config(urls)) as dispatcher:
                await dispatcher.peer("p0").start()
                for i in range(jobs):  # interleaved, so both see the same machine state
                    raw.append(await raw_job(session, urls[0], frames, client_id, 2 * i))
                    began = time.perf_counter()
                    result = await dispatcher.run("pool", tiny(2 * i + 1))  # never cached
                    await asyncio.gather(*(f.read() for f in result.files))
                    ours.append(time.perf_counter() - began)
            reader.cancel()
    ours_ms, raw_ms = statistics.median(ours) * 1000, statistics.median(raw) * 1000
    ratio = ours_ms / raw_ms
    return Row(
        "added latency per job (submit → images in hand)",
        f"{ours_ms:.2f} ms",
        f"raw client {raw_ms:.2f} ms",
        f"{ratio:.2f}×",
        "≤ 1.05× or < 2 ms added",
        ratio <= 1.05 or ours_ms - raw_ms < 2,
    )


async def row_detection(jobs: int, poll: float = 1.2, urls: Sequence[str] = ()) -> Row:
    """Time from the peer's `execution_success` to the result in hand, against polling;
    `urls`: a server of the user's to measure on, instead of a fake peer."""

    def success_ms(entry: dict[str, Any]) -> float:
        return next(
            m[1]["timestamp"] for m in entry["status"]["messages"] if m[0] == "execution_success"
        )

    async with given_or_spawned(urls, 1, 0.05) as urls, aiohttp.ClientSession() as session:
        ours, polled = [], []
        async with Dispatcher(pool_config(urls)) as dispatcher:
            await dispatcher.peer("p0").start()
            for i in range(jobs):
                result = await dispatcher.run("pool", tiny(i))
                entry = await dispatcher.peer("p0").history(result.prompt_id)
                assert entry is not None and result.timings.finished is not None
                ours.append(result.timings.finished * 1000 - success_ms(entry))
            for i in range(jobs):
                prompt_id = str(uuid.uuid4())
                async with session.post(
                    urls[0] + "/prompt", json={"prompt": tiny(jobs + i), "prompt_id": prompt_id}
                ):
                    pass
                while not (entry := await dispatcher.peer("p0").history(prompt_id)):  # noqa: ASYNC110
                    await asyncio.sleep(poll)  # the baseline polls
                polled.append(time.time() * 1000 - success_ms(entry))
    ours_ms, polled_ms = statistics.median(ours), statistics.median(polled)
    return Row(
        "completion detection after the peer's last frame",
        f"{ours_ms:.1f} ms",
        f"/history every {poll:g} s: {polled_ms:.0f} ms",
        f"{ours_ms / max(polled_ms, 1e-9):.3f}×",
        "< 10 ms",
        ours_ms < 10,
    )


async def row_makespan(jobs: int, peers: int = 4, seconds: float = 0.02) -> Row:
    """Beside the ideal, what sets the pace: the peers' own cost a prompt (all queued on
    them at once), the round trip between one job and the next on a peer (gone when a
    second prompt waits in its queue: `max_in_flight` 2), and the CPU each side spent."""
    specs = [JobSpec("pool", tiny(i)) for i in range(jobs)]
    async with spawn_peers(peers, seconds) as urls:
        with cpu_spent(urls) as ours:
            took = await makespan(urls, specs)
        queued = await makespan(urls, specs, server={"max_in_flight": 2})
        with cpu_spent(urls) as theirs:
            alone = await peers_alone(urls, jobs // peers)
    ideal = jobs * seconds / peers
    ratio = took / ideal
    return Row(
        f"makespan of {jobs} jobs over {peers} peers ({seconds * 1000:g} ms each)",
        f"{took:.2f} s ({ours.shown(jobs, took)}); with max_in_flight 2: {queued:.2f} s",
        f"ideal {ideal:.2f} s; the peers with all jobs queued on them: {alone:.2f} s "
        f"({theirs.shown(jobs, alone)})",
        f"{ratio:.3f}× ideal, {took / alone:.3f}× peers alone; max_in_flight 2: "
        f"{queued / ideal:.3f}× ideal",
        "≤ 1.05× ideal",
        ratio <= 1.05,
    )


async def row_slow_fast(jobs: int, fast: float = 0.02, slow: float = 0.06) -> Row:
    async with spawn_peers(1, fast) as fast_url, spawn_peers(1, slow) as slow_url:
        urls = fast_url + slow_url
        took = await makespan(urls, [JobSpec("pool", tiny(i)) for i in range(jobs)])
        specs = [JobSpec("pool", tiny(i)) for i in range(jobs)]
        queued = await makespan(urls, specs, server={"max_in_flight": 2})
    ideal = jobs / (1 / fast + 1 / slow)
    ratio = took / ideal
    return Row(
        f"pool of one fast ({fast * 1000:g} ms) and one slow ({slow * 1000:g} ms) peer",
        f"{took:.2f} s; with max_in_flight 2: {queued:.2f} s",
        f"ideal split {ideal:.2f} s",
        f"{ratio:.3f}×; max_in_flight 2: {queued / ideal:.3f}×",
        "≤ 1.10×",
        ratio <= 1.10,
    )


async def row_loop_lag(queued: int, in_flight: int, peers: int = 5) -> Row:
    """Jobs parked in the dispatcher's queues must not slow its event loop down. Timed
    once the in-flight prompts are on the peers: while they are being posted, the loop
    lags as much with no job queued at all (that start is shown beside, not judged)."""
    async with spawn_peers(peers, 10.0) as urls:
        config = pool_config(
            urls, server={"max_in_flight": in_flight // peers}, timeouts={"request": 2}
        )
        async with Dispatcher(config) as dispatcher:
            await dispatcher.refresh_inventory()
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            tasks = [
                asyncio.create_task(dispatcher.run("pool", tiny(i)))
                for i in range(queued + in_flight)
            ]
            await _until(lambda: sum(dispatcher.in_flight().values()) >= in_flight)
            memory = tracemalloc.get_traced_memory()[0] - base
            tracemalloc.stop()
            held = sum(dispatcher.in_flight().values())
            starting = await _loop_lags(400)
            await _until(lambda: dispatcher.counts["submitted"] >= held)
            parked = await _loop_lags(400)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    p99, p99_starting = _p99_ms(parked), _p99_ms(starting)
    per_job = memory / (queued + in_flight) / 1024
    return Row(
        f"{queued:,} queued and {held} in flight",
        f"loop lag p99 {p99:.1f} ms (max {max(parked) * 1000:.1f} ms)",
        f"{per_job:.1f} KiB per queued job; p99 {p99_starting:.0f} ms as the {held} were posted",
        "—",
        "p99 < 20 ms",
        p99 < 20,
    )


async def _until(condition: Callable[[], bool], seconds: float = 10) -> None:
    """Polls, as a caller outside the dispatcher would; gives up after `seconds`."""
    deadline = time.perf_counter() + seconds
    while not condition() and time.perf_counter() < deadline:  # noqa: ASYNC110 - no event to await
        await asyncio.sleep(0.05)


async def _loop_lags(count: int, sleep: float = 0.005) -> list[float]:
    """How late a `sleep` wakes, `count` times: what the loop keeps every other task waiting."""
    lags = []
    for _ in range(count):
        began = time.perf_counter()
        await asyncio.sleep(sleep)
        lags.append(time.perf_counter() - began - sleep)
    return lags


def _p99_ms(seconds: list[float]) -> float:
    return statistics.quantiles(seconds, n=100)[98] * 1000


def _prompts(count: int, rng: random.Random) -> list[str]:
    words = "a red blue jacket hat portrait studio light dark forest city night cat dog".split()
    return [" ".join(rng.choice(words) for _ in range(8)) + f" {i}" for i in range(count)]


def row_fuzzy(entries: int, lookups: int) -> Row:
    rng = random.Random(7)
    keys = _prompts(entries, rng)
    cache: ResultCache[int] = ResultCache(entries, fuzzy=True, max_distance=3)
    for i, key in enumerate(keys):
        cache.put("gen", key, i)
    asked = [rng.choice(keys) + "s" for _ in range(lookups)]
    ours = _timed(lambda q: cache.get("gen", q), asked)
    plain = _timed(
        lambda q: min(keys, key=lambda k: Levenshtein.distance(q, k)),
        asked[: max(3, lookups // 10)],
    )
    p50, base = statistics.median(ours) * 1000, statistics.median(plain) * 1000
    return Row(
        f"fuzzy cache lookup among {entries:,} entries",
        f"p50 {p50:.2f} ms",
        f"plain edit-distance scan {base:.1f} ms",
        f"{base / p50:.0f}× faster",
        "p50 < 2 ms",
        p50 < 2,
    )


def _timed(call: Callable[[str], object], inputs: Sequence[str]) -> list[float]:
    times = []
    for value in inputs:
        began = time.perf_counter()
        call(value)
        times.append(time.perf_counter() - began)
    return times


def _photo_like_pngs(size: int) -> list[bytes]:
    """PNGs that compress like generated pictures, saved as ComfyUI's SaveImage saves them."""
    from PIL import Image as PILImage

    pngs = []
    for i in range(4):
        gradient = PILImage.linear_gradient("L").resize((size, size)).rotate(90 * i)
        fractal = PILImage.effect_mandelbrot((size, size), (-2.0, -1.5, 1.0, 1.5), 60 + i)
        noise = PILImage.effect_noise((size, size), 24)
        buffer = io.BytesIO()
        PILImage.merge("RGB", (gradient, fractal, noise)).save(buffer, "PNG", compress_level=4)
        pngs.append(buffer.getvalue())
    return pngs


async def row_images(size: int, rounds: int) -> Row:
    """Output images fetched through `/view` and decoded, against decoding them from disk."""
    try:
        from PIL import Image as PILImage  # only the baseline needs Pillow
    except ImportError:
        return Row("4 PNG images peer → caller", "skipped", "no Pillow", "—", "≤ 1.2×", True)

    def decode(source: Any) -> None:
        PILImage.open(source).load()

    pngs = _photo_like_pngs(size)
    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / f"{i}.png" for i in range(4)]
        for path, png in zip(paths, pngs, strict=True):
            path.write_bytes(png)
        ours, disk = [], []
        async with spawn_peers(1, 0.0) as urls, Dispatcher(pool_config(urls)) as dispatcher:
            peer = dispatcher.peer("p0")
            names = [
                (await peer.upload_image(png, f"out{i}.png", type="output"))["name"]
                for i, png in enumerate(pngs)
            ]
            for _ in range(rounds):
                began = time.perf_counter()
                for data in await asyncio.gather(*(peer.view(name) for name in names)):
                    decode(io.BytesIO(data))
                ours.append(time.perf_counter() - began)
                began = time.perf_counter()
                for path in paths:
                    decode(path)
                disk.append(time.perf_counter() - began)
    ours_ms, disk_ms = statistics.median(ours) * 1000, statistics.median(disk) * 1000
    ratio = ours_ms / disk_ms
    return Row(
        f"4 images {size}×{size} PNG peer → caller (fetched + decoded)",
        f"{ours_ms:.1f} ms",
        f"PIL from disk {disk_ms:.1f} ms",
        f"{ratio:.2f}×",
        "≤ 1.2×",
        ratio <= 1.2,
    )
