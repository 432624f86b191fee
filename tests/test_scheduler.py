"""The scheduler's parts: the plan over the known queue, what a server's jobs teach, and the
dispatcher routing jobs between fake peers that swap checkpoints as ComfyUI does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from dispatch_core import Config, Dispatcher
from dispatch_core._lanes import Lane
from dispatch_core._plan import BUDGET, LaneState, Wanted, plan
from dispatch_core._residency import Residency, cached_results
from dispatch_core._scheduler import Scheduler
from dispatch_core.config import ServerConfig
from dispatch_core.testing import FakePeer

import workflows

A, B = frozenset({"a.safetensors"}), frozenset({"b.safetensors"})
LOAD = {"a.safetensors": 1.0, "b.safetensors": 1.0}


def lane(
    held: frozenset[str] = frozenset(),
    *,
    free: bool = True,
    ready_in: float = 0.0,
    run: float = 1.0,
    load: float = 1.0,
) -> LaneState:
    loads = dict.fromkeys(LOAD, load)
    return LaneState(free, ready_in, (held,) if held else (), 0, run, loads)


def jobs(*models: frozenset[str], lanes: tuple[int, ...] = (0, 1)) -> list[Wanted]:
    return [Wanted(m, lanes) for m in models]


# -- the plan ---------------------------------------------------------------------------


def test_a_job_goes_where_its_model_is() -> None:
    assert plan([lane(B), lane(A)], jobs(A), {}) == {1: 0}


def test_a_free_server_stays_idle_rather_than_load_what_a_busy_one_will_soon_run() -> None:
    lanes = [lane(A, free=False, ready_in=0.2), lane(B)]
    assert plan(lanes, jobs(A), {}) == {}


def test_a_free_server_loads_when_the_warm_ones_queue_outgrows_the_load() -> None:
    lanes = [lane(A, free=False, ready_in=0.5), lane(B)]
    assert plan(lanes, jobs(A, A, A), {}) == {1: 0}


def test_the_switch_back_is_counted_while_jobs_still_ask_for_the_evicted_model() -> None:
    lanes = [lane(A, free=False, ready_in=0.5), lane(B)]
    # Loading a on the free server would finish the queue 0.5 s sooner, but leave b
    # on no server while jobs keep asking for it: a load back later.
    assert plan(lanes, jobs(A, A), {"b.safetensors": 1.0}) == {}
    assert plan(lanes, jobs(A, A), {"b.safetensors": 0.1}) == {1: 0}


def test_a_load_counts_against_every_later_job_not_only_its_own_server() -> None:
    # A warm job 0.2 s, a load 0.22 s. Loading a on the idle server would end this queue
    # a little sooner, even with b's load back counted; but the load takes time that
    # later jobs would have had, wherever they run.
    lanes = [lane(A, free=False, ready_in=0.2, run=0.2, load=0.22), lane(B, run=0.2, load=0.22)]
    assert plan(lanes, jobs(A, A, A), {"b.safetensors": 0.9}) == {}
    # With one more job for a, the load pays for itself.
    assert plan(lanes, jobs(A, A, A, A), {"b.safetensors": 0.9}) == {1: 0}


def test_jobs_run_only_where_they_may_and_each_free_server_starts_its_first() -> None:
    wanted = [Wanted(A, (1,)), Wanted(B, (0, 1)), Wanted(A, (1,))]
    assert plan([lane(), lane()], wanted, {}) == {1: 0, 0: 1}


def test_an_empty_server_is_put_to_work_rather_than_left_idle() -> None:
    # Both plans end when the second job of a does, on the first server; the one that
    # loads b on the empty third server now, rather than after the busy second's job,
    # is as good and starts it at once. A first load evicts nothing.
    lanes = [lane(A, free=False, ready_in=2.0), lane(B, free=False, ready_in=2.0), lane()]
    assert plan(lanes, jobs(A, B, lanes=(0, 1, 2)), {}) == {2: 1}


def test_a_long_queue_is_cut_to_the_budget() -> None:
    lanes = [lane(A), lane(B), lane()]
    found = plan(lanes, jobs(*[A, B] * 50, lanes=(0, 1, 2)), {})
    assert found == {0: 0, 1: 1, 2: 2}
    assert 3**5 <= BUDGET < 3**7  # a handful of jobs, whatever the queue


async def test_a_job_is_booked_on_its_server_the_moment_its_slot_is_granted() -> None:
    lanes: dict[str, Lane] = {}
    scheduler = Scheduler(lanes, clock=lambda: 0.0)
    for name in ("p", "q"):
        lanes[name] = Lane(ServerConfig(name, f"http://{name}.invalid"), scheduler.dispatch)
        lanes[name].in_flight = 1
    servers = list(lanes.values())
    waiting = [asyncio.ensure_future(scheduler.acquire(servers, m)) for m in (A, B)]
    await asyncio.sleep(0)  # one turn of the loop: both are waiting for a slot
    for lane in servers:
        lane.in_flight = 0
    scheduler.dispatch()  # both slots granted in one call, before either job resumes
    # The second grant already saw the first server busy with its job's models.
    assert {lane.residency.held for lane in servers} == {A, B}
    for lane, booking in await asyncio.gather(*waiting):
        assert lane.residency.running == [booking]


async def test_jobs_submitted_together_are_placed_together() -> None:
    lanes: dict[str, Lane] = {}
    scheduler = Scheduler(lanes, clock=lambda: 0.0)
    for name in ("p", "q"):
        lanes[name] = Lane(ServerConfig(name, f"http://{name}.invalid"), scheduler.dispatch)
    servers = list(lanes.values())
    # Placed one by one, the second a would take the other empty server, and b would
    # wait for a server to load it; placed together, b takes it and the second a waits
    # for the server loading a.
    granted = [asyncio.ensure_future(scheduler.acquire(servers, m)) for m in (A, A, B)]
    await asyncio.sleep(0)  # each job arrives
    await asyncio.sleep(0)  # and the loop's next turn places them
    assert [lane.residency.held for lane in servers] == [A, B]
    for job in granted:
        job.cancel()
    await asyncio.gather(*granted, return_exceptions=True)


async def test_a_fault_in_placing_jobs_ends_them_rather_than_leaving_them_waiting() -> None:
    lanes: dict[str, Lane] = {}
    scheduler = Scheduler(lanes, clock=lambda: 0.0)
    lanes["p"] = Lane(ServerConfig("p", "http://p.invalid"), scheduler.dispatch)

    def broken() -> None:
        raise RuntimeError("a fault in the plan")

    scheduler.dispatch = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="a fault in the plan"):
        await asyncio.wait_for(scheduler.acquire(list(lanes.values()), A), 5)


class Moment:
    """The scheduler's clock and timers, moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.timers.append((self.now + delay, callback))

    async def advance(self, to: float) -> None:
        """Move the clock to `to`, calling each timer due on the way (and what it starts)."""
        while due := [timer for timer in self.timers if timer[0] <= to + 1e-9]:
            timer = min(due, key=lambda t: t[0])
            self.timers.remove(timer)
            self.now = timer[0]
            timer[1]()
            await asyncio.sleep(0)
        self.now = to


async def switching(
    now: float = 0.0,
) -> tuple[Scheduler, Moment, Lane, Lane, list[asyncio.Future[Any]]]:
    """p free and warm on a, q busy on b since 0 (1 s a job), and three jobs for b coming
    at `now`: the plan wants p to switch."""
    moment, lanes = Moment(), {}
    scheduler = Scheduler(lanes, clock=lambda: moment.now, call_later=moment.call_later)
    for name, models in (("p", A), ("q", B)):
        lanes[name] = Lane(ServerConfig(name, f"http://{name}.invalid"), scheduler.dispatch)
        residency = lanes[name].residency
        residency.finish(residency.start(models), 10.0, cost)  # cold
        residency.finish(residency.start(models), 1.0, cost)  # warm: 1 s a job
    lanes["q"].in_flight = 1
    lanes["q"].residency.start(B, moment.now)
    moment.now = now
    servers = list(lanes.values())
    waiting = [asyncio.ensure_future(scheduler.acquire(servers, B)) for _ in range(3)]
    await asyncio.sleep(0)  # they arrive
    await asyncio.sleep(0)  # and are planned
    return scheduler, moment, lanes["p"], lanes["q"], waiting


async def given_up(jobs: list[asyncio.Future[Any]]) -> None:
    for job in jobs:
        job.cancel()
    await asyncio.gather(*jobs, return_exceptions=True)


def granted(jobs: list[asyncio.Future[Any]]) -> list[Lane]:
    return [job.result()[0] for job in jobs if job.done()]


async def test_a_switch_waits_a_moment_for_the_job_the_last_one_sets_off() -> None:
    scheduler, moment, p, q, waiting = await switching()
    assert not granted(waiting)  # p would load b: it waits first
    assert [when for when, _ in moment.timers] == [pytest.approx(0.05 * 1.1)]
    moment.now = 0.01  # a job for a comes before the wait is over: p runs it warm
    warm = asyncio.ensure_future(scheduler.acquire([p, q], A))
    for _ in range(3):  # it arrives, is planned, and resumes
        await asyncio.sleep(0)
    assert granted([warm]) == [p] and p.residency.held == A and not granted(waiting)
    await given_up(waiting)


async def test_a_switch_still_wanted_when_its_wait_is_over_goes_ahead() -> None:
    _, moment, p, _, waiting = await switching()
    await moment.advance(0.05 * 1.1)  # the timer plans again, and the job granted resumes
    await asyncio.sleep(0)
    assert granted(waiting) == [p] and p.residency.held == B
    await given_up(waiting)


async def test_a_switch_waits_again_after_a_job_ends() -> None:
    scheduler, moment, p, _, waiting = await switching()
    await moment.advance(0.05)  # another job ends: its follower may be on its way
    scheduler.slot_freed()
    await moment.advance(0.05 * 1.1)
    assert not granted(waiting)
    await moment.advance(0.05 + 0.05 * 1.1)
    await asyncio.sleep(0)
    assert granted(waiting) == [p]
    await given_up(waiting)


async def test_a_switch_waits_no_longer_than_its_load_however_often_jobs_end() -> None:
    scheduler, moment, p, _, waiting = await switching()
    for tick in range(1, 22):  # a job ends somewhere every 50 ms, up to 1.05 s
        await moment.advance(tick * 0.05)
        scheduler.slot_freed()
        assert not granted(waiting)
    await moment.advance(1.1)  # the switch's whole load (1.1 s) since it was wanted
    await asyncio.sleep(0)
    assert granted(waiting) == [p]
    await given_up(waiting)


async def test_a_switch_waits_its_whole_load_while_another_server_is_overdue() -> None:
    scheduler, moment, p, q, waiting = await switching(now=5.0)  # q's job is 4 s late
    assert [when for when, _ in moment.timers] == [pytest.approx(5.0 + 1.1)]
    q.residency.drop(q.residency.running[0])  # it ends at last; its follower is for a
    q.in_flight = 0
    moment.now = 5.5
    follower = asyncio.ensure_future(scheduler.acquire([p, q], A))
    scheduler.slot_freed()
    for _ in range(3):
        await asyncio.sleep(0)
    assert granted([follower]) == [p] and p.residency.held == A
    await given_up(waiting)


# -- what a server's jobs teach ---------------------------------------------------------


def cost(_: str) -> float:
    return 1.0


def test_the_run_time_leaves_the_cold_start_and_the_loads_out() -> None:
    server = Residency()
    server.finish(server.start(A), 9.4, cost)  # cold: neither a run time nor a load
    assert server.run_seconds is None
    assert (server.run_guess, server.load_bound) == pytest.approx((2.0, 7.4))  # ratio 4.7
    for seconds in (2.0, 2.2, 2.1):
        server.finish(server.start(A), seconds, cost)
    server.finish(server.start(B), 4.6, cost)  # a switch: 2.5 s over the warm median
    assert server.run_seconds == 2.1
    assert server.load_seconds == {"b.safetensors": pytest.approx(2.5)}
    assert server.load_bound == pytest.approx(7.3)
    assert server.held == B


def test_a_load_measured_before_any_warm_job_is_kept_for_later() -> None:
    server = Residency()
    server.finish(server.start(frozenset()), 1.0, cost)  # a job without models: warm
    assert server.run_seconds == 1.0
    other = Residency()
    first = other.start(A)
    switch = other.start(B)
    other.finish(first, 9.0, cost)
    other.finish(switch, 3.0, cost)  # no warm time yet: measured once there is one
    assert other.load_seconds == {}
    other.finish(other.start(B), 1.0, cost)
    assert other.load_seconds == {"b.safetensors": pytest.approx(2.0)}


def test_how_many_models_a_server_keeps_is_learned() -> None:
    server = Residency()
    server.finish(server.start(A), 10.0, cost)
    server.finish(server.start(A), 1.0, cost)
    server.finish(server.start(B), 2.0, cost)
    assert (server.keeps, server.held) == (0, B)
    server.finish(server.start(A), 1.05, cost)  # back to a, and it ran warm: a was kept
    assert (server.keeps, server.held) == (1, A | B)
    server.finish(server.start(frozenset({"c.safetensors"})), 2.0, cost)
    server.finish(server.start(A), 2.1, cost)  # held, we thought: it ran cold
    assert server.keeps == 0


def test_a_server_started_with_an_lru_cache_is_believed_to_keep_that_many_prompts() -> None:
    server = Residency()
    server.cached_results = 12  # `--cache-lru 12`: two prompts of six nodes
    server.finish(server.start(A, nodes=6), 10.0, cost)
    server.finish(server.start(A, nodes=6), 1.0, cost)
    server.finish(server.start(B, nodes=6), 2.0, cost)
    assert (server.keeps, server.held) == (1, A | B)
    server.finish(server.start(frozenset({"c.safetensors"}), nodes=6), 2.0, cost)
    server.finish(server.start(B, nodes=6), 2.1, cost)  # held, it said: it ran cold
    assert server.keeps == 0
    server.start(B, nodes=6)
    assert server.keeps == 0  # what a job showed outweighs what the command line said


def _stats(*argv: object) -> dict[str, Any]:
    return {"system": {"argv": ["main.py", *argv]}}


@pytest.mark.parametrize(
    ("stats", "expected"),
    [
        (_stats("--cache-lru", "12"), 12),
        (_stats("--listen", "--cache-lru=30"), 30),
        (_stats(), None),
        (_stats("--cache-lru"), None),
        (_stats("--cache-lru", "0"), None),
        (_stats("--cache-lru", "-3"), None),
        (_stats("--cache-lru", "lots"), None),
        (_stats("--cache-lru", "9" * 40), None),
        (_stats("--cache-lru", 12), None),
        ({"system": {"argv": "--cache-lru 12"}}, None),
        ({"system": []}, None),
        ([], None),
        (None, None),
    ],
)
def test_the_cache_size_is_read_from_the_command_line_or_not_at_all(
    stats: object, expected: int | None
) -> None:
    assert cached_results(stats) == expected


# -- the dispatcher with peers that swap ------------------------------------------------


def txt2img(checkpoint: str, seed: int) -> dict[str, Any]:
    workflow = workflows.txt2img(seed=seed)
    workflow["4"]["inputs"]["ckpt_name"] = checkpoint
    return workflow


@pytest.fixture
async def swapping() -> AsyncIterator[dict[str, FakePeer]]:
    models = {"checkpoints": ["a.safetensors", "b.safetensors"]}
    async with AsyncExitStack() as stack:
        yield {
            name: await stack.enter_async_context(
                FakePeer(models=models, job_seconds=0.02, load_seconds=0.3, memory_slots=1)
            )
            for name in ("p", "q")
        }


def pool(peers: dict[str, FakePeer]) -> Config:
    servers = {name: peer.url for name, peer in peers.items()}
    return Config.from_dict({"servers": servers, "routes": {"gen": list(servers)}})


async def test_each_model_finds_a_home_and_stays_there(swapping: dict[str, FakePeer]) -> None:
    async with Dispatcher(pool(swapping)) as dispatcher:
        results = [
            await dispatcher.run("gen", txt2img(f"{'ab'[i % 2]}.safetensors", i)) for i in range(8)
        ]
        status = await dispatcher.status()
    assert [r.server for r in results] == ["p", "q"] * 4
    assert results[1].reason == "'q' was the first free of 2 servers able to run it"
    assert results[2].reason == "'p' had a.safetensors loaded already"
    assert swapping["p"].loads == swapping["q"].loads == 1
    assert status["p"].loaded_models == ("a.safetensors",)
    assert status["p"].seconds_per_job is not None and status["p"].model_slots == 1


async def test_least_busy_routing_is_still_there(swapping: dict[str, FakePeer]) -> None:
    async with Dispatcher(pool(swapping)) as dispatcher:
        dispatcher.affinity = False
        servers = [
            (await dispatcher.run("gen", txt2img(f"{'ab'[i % 2]}.safetensors", i))).server
            for i in range(4)
        ]
    assert servers == ["p"] * 4  # the first free server, whatever it holds
    assert swapping["p"].loads == 4


async def test_a_measured_switch_shows_in_the_status(swapping: dict[str, FakePeer]) -> None:
    async with Dispatcher(pool(swapping)) as dispatcher:
        for i, name in enumerate("aab"):
            await dispatcher.run("gen", txt2img(f"{name}.safetensors", i), server="p")
        status = await dispatcher.status()
    assert list(status["p"].load_seconds) == ["b.safetensors"]
    assert status["p"].loaded_models == ("b.safetensors",)


async def test_a_server_with_room_for_two_models_is_planned_so_from_its_first_job() -> None:
    models = {"checkpoints": ["a.safetensors", "b.safetensors"]}
    async with (
        FakePeer(models=models, memory_slots=2, flags=["--cache-lru", "14"]) as roomy,
        FakePeer(models=models, memory_slots=1) as plain,
    ):
        peers = {"roomy": roomy, "plain": plain}
        async with Dispatcher(pool(peers)) as dispatcher:
            await dispatcher.refresh_inventory()
            for name in peers:
                await dispatcher.run("gen", txt2img("a.safetensors", 1), server=name)
            status = await dispatcher.status()
    assert (status["roomy"].model_slots, status["plain"].model_slots) == (2, 1)
