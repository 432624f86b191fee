"""The queue's Lua scripts one step at a time, against a real Redis, with two processes
(`a` and `b`) sharing one server whose `max_in_flight` is 1: what each step answers, and
which slots it leaves leased. And the scripts' own connections (`_link`): calls made at
once sent together, a call cut off sent again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dispatch_core.redis import _scripts

PREFIX = "t:"
ROUTE = "pool"
STARTED = '{"state": "running", "server": "{{server}}", "prompt_id": "{{prompt_id}}"}'


def offer(prompt_id: str) -> str:
    """What a process with p0 free asks for, its prompt to be sent as `prompt_id`."""
    take = {"lease": 60_000, "queues": [ROUTE], "servers": [["p0", 1]], "keep": 60}
    return json.dumps(take | {"prompt_id": prompt_id})


class Queue:
    """The scripts as one process would send them."""

    def __init__(self, client: Any):
        self.client = client
        self.scripts = {n: client.register_script(getattr(_scripts, n)) for n in _scripts.__all__}

    async def enqueue(self, job_id: str, origin: str = "a") -> None:
        args = [PREFIX, job_id, ROUTE, f"spec of {job_id}", '["p0"]', "[]", "{}", 0, 100]
        await self.scripts["ENQUEUE"](args=[*args, f"request {job_id}", "0", STARTED, origin])

    async def take(self, process: str, prompt_id: str = "") -> Any:
        return await self.scripts["TAKE"](args=[PREFIX, process, offer(prompt_id)])

    async def finish(self, job_id: str, process: str, *, take: bool, prompt_id: str = "") -> Any:
        args = [PREFIX, job_id, process, "done", "{}", "", "{}", "", "", 60]
        return await self.scripts["FINISH"](args=args + ([offer(prompt_id)] if take else []))

    async def leased(self) -> list[bytes]:
        return list(await self.client.zrange(PREFIX + "slots:p0", 0, -1))


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[Queue]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        yield Queue(client)
    finally:
        await client.aclose()


async def test_finish_hands_the_freed_slot_to_the_next_job_in_the_same_move(
    queue: Queue,
) -> None:
    for i in range(3):
        await queue.enqueue(f"j{i}")
    assert (await queue.take("a"))[:2] == [b"j0", b"p0"]
    handed = await queue.finish("j0", "a", take=True, prompt_id="P1")
    assert handed == [b"j1", b"p0", b"spec of j1", b"P1"]  # the next job, on the freed slot
    assert await queue.leased() == [b"j1"]
    assert await queue.client.hget(PREFIX + "job:j1", "owner") == b"a"
    assert await queue.client.smembers(PREFIX + "running:a") == {b"j1"}


async def test_a_take_records_where_the_prompt_goes_for_a_repeat_and_a_takeover(
    queue: Queue,
) -> None:
    await queue.enqueue("j0")
    assert await queue.take("a", prompt_id="P0") == [b"j0", b"p0", b"spec of j0", b"P0"]
    job = await queue.client.hgetall(PREFIX + "job:j0")
    assert (job[b"state"], job[b"prompt_id"]) == (b"running", b"P0")
    assert json.loads(job[b"record"]) == {"state": "running", "server": "p0", "prompt_id": "P0"}
    sent = await queue.client.get(PREFIX + "journal:request j0")
    assert sent.split(b"\n")[:2] == [b"p0", b"P0"]


async def test_finish_never_takes_past_max_in_flight_over_every_process(queue: Queue) -> None:
    for i in range(4):
        await queue.enqueue(f"j{i}")
    assert (await queue.take("a"))[:2] == [b"j0", b"p0"]
    assert await queue.take("b") is None  # p0's one slot is a's
    assert (await queue.finish("j0", "a", take=True))[0] == b"j1"
    assert await queue.take("b") is None  # handed over, not freed: still a's
    assert await queue.finish("j0", "a", take=True) == 0  # ended once: takes nothing
    assert await queue.finish("j1", "b", take=True) == 0  # not b's: neither ends nor takes
    assert await queue.leased() == [b"j1"]
    assert await queue.finish("j1", "a", take=False) == 1  # ended without asking for more
    assert (await queue.take("b"))[:2] == [b"j2", b"p0"]  # so the slot is b's to take
    assert (await queue.finish("j2", "b", take=True))[0] == b"j3"
    assert await queue.leased() == [b"j3"]


async def test_finish_with_nothing_queued_frees_the_slot_and_wakes_every_process(
    queue: Queue,
) -> None:
    await queue.enqueue("j0")
    await queue.take("a")
    async with queue.client.pubsub() as pubsub:
        await pubsub.subscribe(PREFIX + "events")
        assert await queue.finish("j0", "a", take=True) == 1
        _, end, wake = [await pubsub.get_message(timeout=5) for _ in range(3)]
    # The end carries what a caller in another process needs: no read of the job after.
    told = json.loads(end["data"])
    assert (told["id"], told["state"], told["result"], told["error"]) == ("j0", "done", {}, None)
    assert wake["data"] == b'{"t":"wake"}'
    assert await queue.leased() == []


async def test_calls_made_at_once_go_in_few_writes_each_caller_its_own_answer(
    redis_url: str,
) -> None:
    import redis.asyncio as aioredis
    from redis.exceptions import ResponseError

    from dispatch_core.redis._link import Link, LinkedScript

    pool = aioredis.ConnectionPool.from_url(redis_url)
    link = Link(pool, most=100)
    script = LinkedScript(
        link, "if ARGV[1] == '7' then return redis.error_reply('not seven') end return ARGV[1] * 2"
    )
    calls = 250
    try:  # the script is loaded as the link connects, before the calls go
        answers = await asyncio.gather(
            *(script(args=[i]) for i in range(calls)), return_exceptions=True
        )
        trips = link.round_trips
        await link.call("SCRIPT", "FLUSH")  # forgotten by Redis: loaded again, then run
        again = await asyncio.gather(
            *(script(args=[i]) for i in range(calls)), return_exceptions=True
        )
    finally:
        await link.close()
        await pool.aclose()
    assert isinstance(answers[7], ResponseError) and "not seven" in str(answers[7])
    assert [a for i, a in enumerate(answers) if i != 7] == [2 * i for i in range(calls) if i != 7]
    assert trips == 1 + 3  # the scripts loaded, then at most 100 calls on their way a write
    assert again[:7] == [2 * i for i in range(7)] and again[8:] == [2 * i for i in range(8, calls)]


async def test_a_link_cut_off_sends_its_calls_again_on_a_new_connection(redis_url: str) -> None:
    import redis.asyncio as aioredis

    from dispatch_core.redis._link import Link

    pool = aioredis.ConnectionPool.from_url(redis_url)
    client = aioredis.Redis(connection_pool=pool)
    link = Link(pool)
    try:
        assert await link.call("SET", "t:k", "1") == b"OK"
        await client.client_kill_filter(skipme=True)  # every connection but the client's
        assert await link.call("INCR", "t:k") == 2  # cut off, sent again
    finally:
        await link.close()
        await client.aclose()
        await pool.aclose()


async def test_a_job_queued_into_an_empty_queue_is_one_event_that_also_wakes(
    queue: Queue,
) -> None:
    from dispatch_core.redis._events import QUEUED, WAKE

    async with queue.client.pubsub() as pubsub, queue.client.pubsub() as control:
        await pubsub.subscribe(PREFIX + "events")
        await control.subscribe(PREFIX + "control")
        await queue.enqueue("j0")
        await queue.enqueue("j1")  # behind j0: whoever could take it was woken by j0
        _, first, second = [await pubsub.get_message(timeout=5) for _ in range(3)]
        _, wake = [await control.get_message(timeout=5) for _ in range(2)]
        assert await control.get_message(timeout=0.2) is None  # j1 woke nobody
    assert json.loads(first["data"]) == {"t": "job", "id": "j0", "record": {}, "wake": True}
    assert first["data"].endswith(QUEUED) and not second["data"].endswith(QUEUED)
    assert json.loads(second["data"]) == {"t": "job", "id": "j1", "record": {}}
    assert wake["data"] == WAKE


async def test_a_job_s_end_is_told_to_the_process_that_submitted_it_when_another_ran_it(
    queue: Queue,
) -> None:
    await queue.enqueue("j0", origin="a")
    await queue.enqueue("j1", origin="b")
    async with queue.client.pubsub() as ends:
        await ends.subscribe(PREFIX + "ends:a", PREFIX + "ends:b")
        await ends.get_message(timeout=5)
        await ends.get_message(timeout=5)  # the two subscriptions
        assert (await queue.take("a"))[0] == b"j0"
        assert await queue.finish("j0", "a", take=True) == [b"j1", b"p0", b"spec of j1", b""]
        assert await queue.finish("j1", "a", take=False) == 1
        told = await ends.get_message(timeout=5)
        assert await ends.get_message(timeout=0.2) is None  # j0 ran where it was submitted
    assert told["channel"] == (PREFIX + "ends:b").encode()
    assert json.loads(told["data"])["id"] == "j1" and json.loads(told["data"])["state"] == "done"
