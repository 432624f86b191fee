"""The queue backend setting, and dispatchers sharing one real Redis: in one process here
(each Dispatcher is a process of its own to the queue); tests/test_redis_processes.py runs
them as real processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import local_http
import pytest
from redis_server import RedisServer, free_port, need_redis

from dispatch_core import Config, Dispatcher, DispatchResult, QueueUnreachable
from dispatch_core.service import DispatchService
from dispatch_core.testing import FakePeer
from dispatch_core.testing._png import decode_png

import workflows


def test_the_local_backend_never_imports_a_redis_client() -> None:
    code = (
        "import sys, dispatch_core, dispatch_core.service, dispatch_core.http\n"
        "from dispatch_core import Dispatcher, Config\n"
        "Dispatcher(Config())\n"
        "assert 'redis' not in sys.modules, sorted(m for m in sys.modules if 'redis' in m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_redis_backend_without_hiredis_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['hiredis'] = None  # not installed\n"
        "from dispatch_core._backend import coordination_for\n"
        "from dispatch_core.config import QueueSettings\n"
        "from dispatch_core.errors import ConfigError\n"
        "try:\n"
        "    coordination_for(QueueSettings('redis', 'redis://127.0.0.1:6379/0'))\n"
        "except ConfigError as error:\n"
        "    assert \"pip install 'redis[hiredis]'\" in str(error), error\n"
        "else:\n"
        "    raise AssertionError('no ConfigError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("queue", "field", "words"),
    [
        ({"backend": "redis"}, "queue.url", "missing"),
        ({"backend": "redis", "url": "http://h:6379"}, "queue.url", "not a redis://"),
        ({"backend": "redis", "url": "redis://u:pw@h:6379/0"}, "queue.url", "password"),
        ({"backend": "redis", "url": "redis://h:99999/0"}, "queue.url", "invalid port"),
        ({"backend": "redis", "url": "redis://"}, "queue.url", "no host"),
        ({"backend": "redis", "url": 7}, "queue.url", "redis:// URL string"),
        ({"backend": "redis", "url": "redis://h/0\r\nFLUSHALL"}, "queue.url", "no fragment"),
        ({"backend": "local", "url": "redis://h:6379/0"}, "queue.url", "only the 'redis'"),
        ({"backend": "rabbit"}, "queue.backend", "'local' or 'redis'"),
        ({"backend": "redis", "url": "redis://h/0", "db": 1}, "queue.db", "unknown key"),
        ("redis", "queue", "must be an object"),
    ],
)
async def test_a_bad_queue_setting_is_a_4xx_naming_the_field(
    tmp_path: Path, queue: Any, field: str, words: str
) -> None:
    async with DispatchService(tmp_path, status_interval=0) as service:
        runner, base = await local_http.serve_routes(service)
        try:
            async with aiohttp.ClientSession() as session:
                url = f"{base}/dispatch/settings"
                status, body = await local_http.call_json(session, "PUT", url, {"queue": queue})
        finally:
            await runner.cleanup()
    assert status == 400, body
    assert body["field"] == field and words in body["error"], body


async def test_the_status_route_names_the_local_backend(tmp_path: Path) -> None:
    async with DispatchService(tmp_path, status_interval=0) as service:
        assert service.queue_view() == {"backend": "local", "processes": []}


# -- on a real Redis ----------------------------------------------------------------------


@pytest.fixture
async def peers() -> AsyncIterator[list[FakePeer]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(FakePeer(job_seconds=0.02)) for _ in range(3)]


def shared_config(peers: list[FakePeer], url: str, *, max_in_flight: int = 1) -> Config:
    servers = {f"p{i}": {"url": p.url, "max_in_flight": max_in_flight} for i, p in enumerate(peers)}
    return Config.from_dict(
        {
            "servers": servers,
            "routes": {"pool": list(servers), "first": "p0"},
            "timeouts": {"job": 30, "request": 5},
            "queue": {"backend": "redis", "url": url},
        }
    )


def inverted(result: DispatchResult | BaseException, color: int, png: bytes) -> bool:
    assert isinstance(result, DispatchResult), result
    return decode_png(png).pixels[:3] == (0xFFFFFF - color).to_bytes(3, "big")


async def test_two_dispatchers_share_the_slots_and_the_work(
    redis_url: str, peers: list[FakePeer]
) -> None:
    config = shared_config(peers, redis_url)
    async with Dispatcher(config) as one, Dispatcher(config) as two:
        colors = list(range(0x100000, 0x100000 + 60))
        jobs = [
            (one if i % 2 else two).run("pool", workflows.invert(c, width=2, height=2))
            for i, c in enumerate(colors)
        ]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for result, color in zip(results, colors, strict=True):
            assert isinstance(result, DispatchResult), result
            assert inverted(result, color, await result.images[0].read())
        assert one.coordination is not None
        await one.coordination.executor.beat()  # who lives, as of now
        described = one.coordination.describe()
    assert {p.max_concurrent_seen for p in peers} == {1}  # max_in_flight held by both
    assert sum(one.counts.values()) and sum(two.counts.values())  # both took jobs
    assert one.counts["completed"] + two.counts["completed"] == len(colors)
    assert described["backend"] == "redis" and len(described["processes"]) == 2
    assert described["same_config"] is True


@contextlib.asynccontextmanager
async def submitter_and_taker(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Dispatcher, Dispatcher]]:
    """Two dispatchers on one Redis: the first takes no job, and learns of its jobs' ends
    on its own channel alone (no heartbeat's check of the jobs it waits for)."""
    async with Dispatcher(config) as one, Dispatcher(config) as two:
        assert one.coordination is not None
        monkeypatch.setattr(one.coordination.executor, "_offered", lambda ending=None: [])
        monkeypatch.setattr(one.coordination, "check_waiting", _nothing)
        yield one, two


async def test_a_job_run_elsewhere_is_told_to_its_submitter_alone_and_records_to_listeners(
    redis_url: str, peers: list[FakePeer], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with submitter_and_taker(shared_config(peers, redis_url), monkeypatch) as (one, two):
        assert one.coordination is not None and two.coordination is not None
        records: list[dict[str, Any]] = []
        two.coordination.on_record = records.append  # two's panel listens; one's library not
        await asyncio.sleep(0.2)  # two's subscription to every job's records is made
        async with asyncio.timeout(10):
            result = await one.run("pool", workflows.invert(0x445566, width=2, height=2))
        assert inverted(result, 0x445566, await result.images[0].read())
        assert two.counts["completed"] == 1 and one.counts["completed"] == 0  # ran by two
        states = [r["state"] for r in records]  # the one job of this Redis
        assert states[0] == "queued" and states[-1] == "done", states
        assert set(one.coordination.events._tasks) == {"control"}  # one hears no records
        assert set(two.coordination.events._tasks) == {"control", "records"}


async def test_a_message_that_is_not_the_queues_leaves_the_process_listening(
    redis_url: str, peers: list[FakePeer], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with submitter_and_taker(shared_config(peers, redis_url), monkeypatch) as (one, two):
        assert one.coordination is not None and two.coordination is not None
        await asyncio.sleep(0.2)  # both are listening
        channel = f"{one.coordination.prefix}ends:{one.coordination.process}"
        for junk in (b"not json", b"[1, 2]", b'{"t": "job", "state": "done", "id": []}'):
            await one.coordination.client.publish(one.coordination.prefix + "control", junk)
            await one.coordination.client.publish(channel, junk)
        async with asyncio.timeout(10):  # its end still reaches it, on the same channel
            result = await one.run("pool", workflows.invert(0x112233, width=2, height=2))
        assert inverted(result, 0x112233, await result.images[0].read())
        assert two.counts["completed"] == 1


async def _nothing() -> None:
    return None


async def test_each_process_shows_the_prompts_every_process_has_on_a_server(
    redis_url: str, peers: list[FakePeer]
) -> None:
    config = shared_config(peers, redis_url)
    peers[0].job_seconds = 30  # held until let go
    async with Dispatcher(config) as one, Dispatcher(config) as two:
        job = asyncio.create_task(one.run("first", workflows.invert(0x123456, width=2, height=2)))
        while not peers[0].prompts_received:  # noqa: ASYNC110 - waits for the fake
            await asyncio.sleep(0.01)
        seen = await two.status()
        peers[0].job_seconds = 0
        await job
    assert (seen["p0"].in_flight, seen["p1"].in_flight) == (1, 0)  # two sent none itself


async def test_a_busy_server_is_handed_its_next_job_by_the_end_of_the_last(
    redis_url: str, peers: list[FakePeer]
) -> None:
    config = shared_config(peers[:1], redis_url)
    async with Dispatcher(config) as dispatcher:
        colors = list(range(0x300000, 0x300000 + 12))
        jobs = [dispatcher.run("pool", workflows.invert(c, width=2, height=2)) for c in colors]
        results = await asyncio.gather(*jobs)
        assert dispatcher.coordination is not None
        takes = dispatcher.coordination.executor.takes
        for result, color in zip(results, colors, strict=True):
            assert inverted(result, color, await result.images[0].read())
    assert peers[0].max_concurrent_seen == 1
    # A take for the first job, and a few looks while the queue is empty (at the start,
    # at the end, every half heartbeat): every other job was handed over by a FINISH.
    assert takes < len(colors) / 2, takes


async def test_a_repeated_request_attaches_whichever_dispatcher_sent_it(
    redis_url: str, peers: list[FakePeer]
) -> None:
    config = shared_config(peers, redis_url)
    workflow = workflows.invert(0x123456, width=2, height=2)
    async with Dispatcher(config) as one, Dispatcher(config) as two:
        first = await one.run("first", workflow)
        again = await two.run("first", workflow)
    assert again.prompt_id == first.prompt_id
    assert len(peers[0].prompts_received) == 1
    assert two.counts["attached"] == 1


async def test_without_redis_a_new_job_fails_at_once_naming_the_url(
    peers: list[FakePeer],
) -> None:
    need_redis()
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with Dispatcher(shared_config(peers, url)) as dispatcher:
        began = time.monotonic()
        with pytest.raises(QueueUnreachable) as caught:
            await dispatcher.run("pool", workflows.invert(1, width=2, height=2))
    assert url in str(caught.value) and caught.value.field == "queue.url"
    assert time.monotonic() - began < 10  # not the job's timeout (30 s)


async def test_any_service_answers_for_a_job_and_every_panel_hears_of_it(
    redis_url: str, peers: list[FakePeer], tmp_path: Path
) -> None:
    config = shared_config(peers, redis_url).to_dict()
    heard: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    done = asyncio.Event()

    def listen(name: str) -> Any:
        def notify(event: str, data: dict[str, Any]) -> None:
            if event == "dispatch.job":
                heard[name].append(data)
                if name == "b" and data["state"] == "done":
                    done.set()

        return notify

    services = []
    async with AsyncExitStack() as stack:
        for name in ("a", "b"):
            folder = tmp_path / name
            folder.mkdir()
            (folder / "config.json").write_text(json.dumps(config))
            service = DispatchService(folder, status_interval=0, notify=listen(name))
            services.append(await stack.enter_async_context(service))
        a, b = services
        record, handle = await a.jobs.submit(
            a.jobs.spec("pool", workflow=workflows.invert(0x0000FF, width=2, height=2))
        )
        result = await handle.result(timeout=30)
        await done.wait()
        seen = b.jobs.record(record.id)
        assert b.queue_view()["backend"] == "redis"
    assert seen.state == "done" and seen.prompt_id == result.prompt_id
    assert [f.filename for f in seen.files] == [f.filename for f in result.files]
    assert [r["state"] for r in heard["b"]][-1] == "done"


async def test_without_redis_the_run_route_refuses_a_job_naming_the_url(
    tmp_path: Path, peers: list[FakePeer]
) -> None:
    need_redis()
    url = f"redis://127.0.0.1:{free_port()}/0"
    (tmp_path / "config.json").write_text(json.dumps(shared_config(peers, url).to_dict()))
    async with DispatchService(tmp_path, status_interval=0) as service:
        runner, base = await local_http.serve_routes(service)
        try:
            async with aiohttp.ClientSession() as session:
                body = {"route": "pool", "workflow": workflows.invert(1, width=2, height=2)}
                status, answer = await local_http.call_json(
                    session, "POST", f"{base}/dispatch/run", body
                )
        finally:
            await runner.cleanup()
        assert service.queue_view()["connected"] is False
    assert status == 502 and url in answer["error"], answer


async def test_a_redis_restarted_without_persistence_loses_no_job(
    tmp_path: Path, peers: list[FakePeer]
) -> None:
    need_redis()
    with RedisServer(tmp_path / "redis") as redis:
        for peer in peers:
            peer.job_seconds = 0.2
        async with Dispatcher(shared_config(peers, redis.url)) as dispatcher:
            all_queued, queued = asyncio.Event(), set()

            def count(job_id: str) -> None:
                queued.add(job_id)
                if len(queued) == 12:
                    all_queued.set()

            assert dispatcher.coordination is not None
            dispatcher.coordination.on_queued = count
            colors = list(range(0x200000, 0x200000 + 12))
            jobs = [dispatcher.run("pool", workflows.invert(c, width=2, height=2)) for c in colors]
            running = asyncio.gather(*jobs, return_exceptions=True)
            await all_queued.wait()
            await asyncio.to_thread(redis.restart)  # the queue is gone: its submitter has it
            results = await running
            for result, color in zip(results, colors, strict=True):
                assert isinstance(result, DispatchResult), result
                assert inverted(result, color, await result.images[0].read())
