"""200 jobs over 3 fake peers that are restarted, stopped, hung and cut off at random.

Bounded in count and time, on loopback only. Every job must end with the right pixels,
no result may be handed over twice, and none may outlive its timeout.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import random
from contextlib import AsyncExitStack

import pytest

from dispatch_core import Config, Dispatcher, DispatchResult, JobSpec
from dispatch_core.testing import FakePeer
from dispatch_core.testing._png import decode_png

import workflows

JOBS = 200
JOB_TIMEOUT = 60.0
MAX_ACTIONS = 80


async def make_chaos(
    peers: list[FakePeer], rng: random.Random, stop: asyncio.Event
) -> collections.Counter[str]:
    actions: collections.Counter[str] = collections.Counter()
    while not stop.is_set() and sum(actions.values()) < MAX_ACTIONS:
        await asyncio.sleep(rng.uniform(0.05, 0.15))
        peer, action = rng.choice(peers), rng.choice(["restart", "crash", "hang", "drop"])
        actions[action] += 1
        if action == "restart":
            await peer.restart()
        elif action == "crash":
            await peer.restart(downtime=0.3)
        elif action == "hang":
            peer.hang = True
            await asyncio.sleep(0.3)
            peer.hang = False
        else:
            await peer.drop_websockets()
    return actions


@pytest.mark.timeout(180)
# About one run in twenty, a client socket whose request was cut off by a peer crashing
# mid-answer is left by aiohttp for the garbage collector, which warns; the session still
# closes it. The warning is not the behaviour under test here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("seed", [2026])
async def test_chaos_every_job_ends_with_the_right_pixels(
    seed: int, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(seed)
    async with AsyncExitStack() as stack:
        peers = [await stack.enter_async_context(FakePeer(job_seconds=0.05)) for _ in range(3)]
        config = Config.from_dict(
            {
                "servers": {
                    f"p{i}": {"url": p.url, "max_in_flight": 2} for i, p in enumerate(peers)
                },
                "routes": {"pool": ["p0", "p1", "p2"]},
                "timeouts": {"job": JOB_TIMEOUT, "request": 0.5, "poll_interval": 0.1},
            }
        )
        async with Dispatcher(config) as dispatcher:
            for name in config.servers:
                dispatcher.peer(name).recheck_interval = 0.5
            stop = asyncio.Event()
            chaos = asyncio.create_task(make_chaos(peers, rng, stop))
            colors = [rng.randrange(2**24) for _ in range(JOBS)]
            jobs = [JobSpec("pool", workflows.invert(c, width=4, height=3)) for c in colors]
            results = await dispatcher.run_parallel(jobs)
            stop.set()
            actions = await chaos
            failures = [r for r in results if not isinstance(r, DispatchResult)]
            assert not failures, failures[:3]
            for color, result in zip(colors, results, strict=True):
                assert isinstance(result, DispatchResult)
                image = decode_png(await result.images[0].read())
                inverted = 0xFFFFFF - color
                expected = bytes(((inverted >> 16) & 255, (inverted >> 8) & 255, inverted & 255))
                assert image.pixels == expected * 12
                assert (result.timings.duration or 0) < JOB_TIMEOUT
            counts = dispatcher.counts
    gc.collect()  # any such socket is collected here, under this test's filter
    prompt_ids = [r.prompt_id for r in results if isinstance(r, DispatchResult)]
    assert len(set(prompt_ids)) == JOBS  # no result handed over twice
    assert counts["completed"] == JOBS
    with capsys.disabled():
        print(
            f"\nchaos: {JOBS} jobs, {sum(actions.values())} actions {dict(actions)}; "
            f"submitted {counts['submitted']}, completed {counts['completed']}, "
            f"resubmitted {counts['resubmitted']}, failed over {counts['failed_over']}, "
            f"retried {counts['retried']}"
        )
