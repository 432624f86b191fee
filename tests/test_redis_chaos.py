"""Jobs on a shared queue while dispatcher processes are SIGKILLed and Redis is restarted at
random (with its append-only file, as a production Redis keeps its queue).

This test's own dispatcher submits every job and takes jobs too; two `serve` processes
take jobs beside it, and are killed and replaced. Every job must end once with the right
pixels; a killed process's queued jobs are taken by the others and its running prompts
attached to; each prompt a peer ran more than once is counted and printed.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from dispatchers import Serve, shared_config
from redis_server import RedisServer, need_redis

from dispatch_core import Config, Dispatcher, DispatchResult, JobSpec
from dispatch_core.testing import FakePeer
from dispatch_core.testing._png import decode_png

import workflows

JOBS = int(os.environ.get("DISPATCH_REDIS_CHAOS_JOBS", "200"))
MAX_ACTIONS = 8


async def make_chaos(
    serves: list[Serve],
    redis: RedisServer,
    rng: random.Random,
    stop: asyncio.Event,
    folder: Path,
) -> collections.Counter[str]:
    actions: collections.Counter[str] = collections.Counter()
    while not stop.is_set() and sum(actions.values()) < MAX_ACTIONS:
        with_pause = asyncio.create_task(stop.wait())
        await asyncio.wait([with_pause], timeout=rng.uniform(0.4, 1.2))
        with_pause.cancel()
        if stop.is_set():
            break
        if rng.random() < 0.6:
            actions["kill"] += 1
            index = rng.randrange(len(serves))
            serves[index].kill()
            await serves[index].stop()
            replacement = Serve(folder / f"d{sum(actions.values())}", serves[index].config)
            serves[index] = await replacement.start()
        else:
            actions["redis restart"] += 1
            await asyncio.to_thread(redis.restart)
    return actions


@pytest.mark.timeout(240)
@pytest.mark.parametrize("seed", [2026])
async def test_killed_dispatchers_and_a_restarted_redis_lose_no_job(
    seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need_redis()
    rng = random.Random(seed)
    with RedisServer(tmp_path / "redis", persistent=True) as redis:
        async with AsyncExitStack() as stack:
            peers = [await stack.enter_async_context(FakePeer(job_seconds=0.25)) for _ in range(4)]
            config = shared_config([p.url for p in peers], redis.url, max_in_flight=2)
            serves = [await Serve(tmp_path / f"s{i}", config).start() for i in range(2)]
            try:
                async with Dispatcher(Config.from_dict(config)) as dispatcher:
                    stop, all_queued = asyncio.Event(), asyncio.Event()
                    queued: set[str] = set()

                    def count(job_id: str) -> None:  # chaos begins once every job is queued
                        queued.add(job_id)
                        if len(queued) == JOBS:
                            all_queued.set()

                    assert dispatcher.coordination is not None
                    dispatcher.coordination.on_queued = count
                    colors = [rng.randrange(2**24) for _ in range(JOBS)]
                    jobs = [JobSpec("pool", workflows.invert(c, width=2, height=2)) for c in colors]
                    running = asyncio.create_task(dispatcher.run_parallel(jobs))
                    await all_queued.wait()
                    chaos = asyncio.create_task(make_chaos(serves, redis, rng, stop, tmp_path))
                    results = await running
                    stop.set()
                    actions = await chaos
                    counts = dispatcher.counts
                    takes = dispatcher.coordination.executor.takes
                    failures = [r for r in results if not isinstance(r, DispatchResult)]
                    assert not failures, failures[:3]
                    for color, result in zip(colors, results, strict=True):
                        assert isinstance(result, DispatchResult)
                        image = decode_png(await result.images[0].read())
                        assert image.pixels[:3] == (0xFFFFFF - color).to_bytes(3, "big")
            finally:
                for serve in serves:
                    await serve.stop()
    prompt_ids = [r.prompt_id for r in results if isinstance(r, DispatchResult)]
    assert len(set(prompt_ids)) == JOBS  # no result handed over twice
    received = sum(len(p.prompts_received) for p in peers)
    with capsys.disabled():
        print(
            f"\nredis chaos: {JOBS} jobs, {sum(actions.values())} actions {dict(actions)}; "
            f"prompts run {received} ({received - JOBS} run again), here: submitted "
            f"{counts['submitted']}, completed {counts['completed']}, attached "
            f"{counts['attached']}, takes tried {takes}"
        )
