"""Three dispatcher processes sharing one real Redis, over four fake peers: every job done
once with the right pixels, no peer ever holding more than its `max_in_flight`, every job
readable (and its file) from any process, and its events heard by every panel."""

from __future__ import annotations

import asyncio
import json
import os
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from dispatchers import Serve, shared_config
from redis_server import RedisServer, need_redis

from dispatch_core import Config, Dispatcher
from dispatch_core.testing import FakePeer
from dispatch_core.testing._png import decode_png

import workflows

JOBS = int(os.environ.get("DISPATCH_REDIS_JOBS", "500"))
"""The issue's count; a smaller one for a quick run."""
PROCESSES = 3
PEERS = 4
MAX_IN_FLIGHT = 2


def expected_pixel(color: int) -> bytes:
    return (0xFFFFFF - color).to_bytes(3, "big")


class Panel:
    """A panel's event socket: the ids of the jobs it heard end, from the start."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.done: set[str] = set()
        self.wanted: set[str] | None = None
        self.heard_all = asyncio.Event()
        self.task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        async for message in self.ws:
            event = json.loads(message.data)
            if event["type"] == "dispatch.job" and event["data"]["state"] == "done":
                self.done.add(event["data"]["id"])
                self._check()

    def expect(self, ids: set[str]) -> None:
        self.wanted = ids
        self._check()

    def _check(self) -> None:
        if self.wanted is not None and self.wanted <= self.done:
            self.heard_all.set()

    async def close(self) -> None:
        await self.ws.close()
        await self.task


@pytest.mark.timeout(240)
async def test_three_processes_four_peers_every_job_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need_redis()
    with RedisServer(tmp_path / "redis") as redis:
        async with AsyncExitStack() as stack:
            peers = [
                await stack.enter_async_context(FakePeer(job_seconds=0.01)) for _ in range(PEERS)
            ]
            config = shared_config([p.url for p in peers], redis.url, max_in_flight=MAX_IN_FLIGHT)
            dispatchers = []
            for i in range(PROCESSES):
                serve = await Serve(tmp_path / f"d{i}", config).start()
                stack.push_async_callback(serve.stop)
                dispatchers.append(serve)
            session = await stack.enter_async_context(aiohttp.ClientSession())
            panels = [Panel(await session.ws_connect(d.url + "/dispatch/ws")) for d in dispatchers]
            colors = [(i * 7919) % 0xFFFFFF for i in range(JOBS)]

            async def submit(i: int) -> str:
                body = {"route": "pool", "workflow": workflows.invert(colors[i], width=2, height=2)}
                status, answer = await dispatchers[i % PROCESSES].call(
                    session, "POST", "/dispatch/run", body
                )
                assert status == 202, answer
                return str(answer["id"])

            ids = list(await asyncio.gather(*(submit(i) for i in range(JOBS))))
            for panel in panels:  # every panel hears every job end, whoever ran it
                panel.expect(set(ids))
                await panel.heard_all.wait()
            prompts = set()
            for i, job_id in enumerate(ids):
                reader = dispatchers[(i + 1) % PROCESSES]
                status, record = await reader.call(session, "GET", f"/dispatch/jobs/{job_id}")
                assert status == 200 and record["state"] == "done", record
                prompts.add(record["prompt_id"])
                fetcher = dispatchers[(i + 2) % PROCESSES]
                path = f"/dispatch/jobs/{job_id}/files/0"
                async with session.get(fetcher.url + path) as answer:
                    assert answer.status == 200
                    png = await answer.read()
                assert decode_png(png).pixels[:3] == expected_pixel(colors[i])
            for panel in panels:
                await panel.close()
    received = sum(len(p.prompts_received) for p in peers)
    most = [p.max_concurrent_seen for p in peers]
    assert len(prompts) == JOBS and received == JOBS  # each job run, and delivered, once
    assert max(most) <= MAX_IN_FLIGHT
    with capsys.disabled():
        print(
            f"\nshared queue: {JOBS} jobs, {PROCESSES} dispatchers, {PEERS} peers; "
            f"prompts received {received}, most held at once per peer {most}"
        )


async def job_events(pubsub: Any, ids: set[str], state: str, count: int) -> None:
    """Until `count` of the jobs `ids` have been announced in `state` on the queue."""
    seen: set[str] = set()
    async for message in pubsub.listen():
        if message.get("type") != "message":
            continue
        event = json.loads(message["data"])
        if event.get("t") == "job" and event["id"] in ids and event["record"]["state"] == state:
            seen.add(event["id"])
            if len(seen) >= count:
                return


@pytest.mark.timeout(120)
async def test_a_killed_dispatchers_jobs_are_taken_over_and_its_prompts_attached(
    tmp_path: Path,
) -> None:
    need_redis()
    import redis.asyncio as aioredis

    with RedisServer(tmp_path / "redis") as redis:
        async with AsyncExitStack() as stack:
            peers = [await stack.enter_async_context(FakePeer(job_seconds=1.0)) for _ in range(2)]
            config = shared_config([p.url for p in peers], redis.url, max_in_flight=1)
            config["timeouts"]["job"] = 10  # a job not taken over in time fails: bounded
            client = aioredis.from_url(redis.url)
            stack.push_async_callback(client.aclose)
            pubsub = await stack.enter_async_context(client.pubsub())
            await pubsub.subscribe("dispatch:events")
            doomed = await Serve(tmp_path / "doomed", config).start()
            session = await stack.enter_async_context(aiohttp.ClientSession())
            ids = set()
            for i in range(4):
                body = {"route": "pool", "workflow": workflows.invert(i, width=2, height=2)}
                status, answer = await doomed.call(session, "POST", "/dispatch/run", body)
                assert status == 202, answer
                ids.add(answer["id"])
            await job_events(pubsub, ids, "running", 2)  # two on the peers, two queued
            doomed.kill()
            await doomed.stop()
            async with Dispatcher(Config.from_dict(config)) as survivor:
                await job_events(pubsub, ids, "done", 4)
                attached = survivor.counts["attached"]
                for job_id in ids:
                    assert dispatcher_record_done(await survivor.coordination.record(job_id))
    assert attached == 2  # the prompts running when it died were waited for, not sent again
    assert sum(len(p.prompts_received) for p in peers) == 4


def dispatcher_record_done(record: dict[str, Any] | None) -> bool:
    return record is not None and record["state"] == "done" and len(record["files"]) == 1
