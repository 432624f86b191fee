"""Jobs waiting for a slot are kept small: thousands may wait, and the garbage collector
walks every object they hold on each full collection (the event loop pauses meanwhile)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from dispatch_core import Config, Dispatcher
from dispatch_core._runner import Runner
from dispatch_core._scheduler import Scheduler
from dispatch_core.testing import FakePeer

WAITING = 300
MOST_OBJECTS_PER_JOB = 42
"""Measured 36 on CPython 3.11 (the caller's task and workflow included); 50 before the
closures of a job were made only once it holds a slot."""


def tiny(color: int) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
    }


async def test_a_waiting_job_holds_few_objects_for_the_collector() -> None:
    async with FakePeer(job_seconds=30) as peer:
        config = Config.from_dict({"servers": {"p": {"url": peer.url}}, "routes": {"r": "p"}})
        async with Dispatcher(config) as dispatcher:
            await dispatcher.refresh_inventory()
            gc.collect()
            before = len(gc.get_objects())
            jobs = [asyncio.create_task(dispatcher.run("r", tiny(i))) for i in range(WAITING)]
            await asyncio.sleep(0)  # each job runs up to its wait for the slot
            await asyncio.sleep(0)  # and the first is placed, at the loop's next turn
            assert dispatcher.in_flight() == {"p": 1}
            gc.collect()
            per_job = (len(gc.get_objects()) - before) / WAITING
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
    assert per_job <= MOST_OBJECTS_PER_JOB, per_job


def test_the_functions_a_job_waits_in_make_no_cells() -> None:
    """A closure's variables become cells when its function starts, and stay while the
    job waits: the functions on a waiting job's stack must define none."""
    own = Dispatcher
    waiting_in = (own.run, own._run, own._run_guarded, Runner.execute, Runner.run_on)
    for function in (*waiting_in, Scheduler.acquire):
        assert function.__code__.co_cellvars == (), function.__qualname__
