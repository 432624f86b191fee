"""Three dispatcher processes sharing one real Redis, over four fake peers: every job done
once with the right pixels, no peer ever holding more than its `max_in_flight`, every job
readable (and its file) from any process, and its events heard by every panel."""

from __future__ import annotations

import asyncio
import json
import os
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from dispatch_core.testing import FakePeer
from dispatch_core.testing._png import decode_png

import workflows
from dispatchers import Serve, shared_config
from redis_server import RedisServer, need_redis

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
