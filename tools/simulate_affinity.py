"""The benchmark's model-routing rows in simulated time, over as many seeds as wanted.

The dispatcher's own scheduler (`dispatch_core._scheduler`) decides, on lanes of its own,
with a clock that only moves when the next simulated event comes: a job ends on a peer
that swaps checkpoints as the benchmark's fake peers do (a warm job, a load of 1.1 warm
jobs, 2.6 more for the first), and the client sends the next of its sequence, keeping
four in flight. No sockets, no peers: a row of twenty sequences takes seconds and gives
the same figures on every run, where the benchmark's real rows vary by a few percent from
one run to the next. Each job also takes `--overhead` seconds of round trip, twice (the
prompt, then the history fetch before the client sends the next).

    PYTHONPATH=. python3 tools/simulate_affinity.py --seeds 20
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import heapq
import itertools
from collections.abc import Callable, Sequence

from dispatch_core._lanes import Lane
from dispatch_core._scheduler import Scheduler
from dispatch_core.bench._optimum import Costs, Schedule, optimum
from dispatch_core.bench._swaps import COLD, LOAD, SEQUENCES, WINDOW, Mix, txt2img
from dispatch_core.config import ServerConfig


class SwappingPeer:
    """What a fake peer that swaps checkpoints charges for a job: LRU, cold first load."""

    def __init__(self, slots: int, run: float):
        self.held: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.slots, self.run, self.loads = slots, run, 0

    def seconds(self, model: str) -> float:
        if model in self.held:
            self.held.move_to_end(model)
            return self.run
        cold = not self.held and self.loads == 0
        self.held[model] = None
        while len(self.held) > self.slots:
            self.held.popitem(last=False)
        self.loads += 1
        return self.run * (1 + LOAD + (COLD if cold else 0.0))


class Simulation:
    """Simulated time: each pending event is a future that resolves when its time comes."""

    def __init__(self) -> None:
        self.now = 0.0
        self._events: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def at(self, when: float) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._events, (when, next(self._order), future))
        return future

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.at(self.now + delay).add_done_callback(lambda _: callback())

    async def run(self, tasks: Sequence[asyncio.Future[None]]) -> None:
        """Let every task go as far as it can, then move the clock to the next event."""
        while not all(task.done() for task in tasks):
            for _ in range(50):
                await asyncio.sleep(0)  # the tasks' own steps, none of them timed
            if self._events:
                self.now, _, future = heapq.heappop(self._events)
                future.set_result(None)
        await asyncio.gather(*tasks)


async def simulate(
    mix: Mix, picks: Sequence[str], run: float, overhead: float, affinity: bool
) -> Schedule:
    """The sequence through the scheduler, on fresh cold peers: makespan and loads."""
    sim = Simulation()
    lanes: dict[str, Lane] = {}
    scheduler = Scheduler(lanes, clock=lambda: sim.now, call_later=sim.call_later)
    nodes = len(txt2img("a", 0))
    for i in range(mix.peers):
        lanes[f"p{i}"] = Lane(ServerConfig(f"p{i}", f"http://p{i}"), scheduler.slot_freed)
        if mix.slots > 1:  # as the benchmark's peers say they were started (`--cache-lru`)
            lanes[f"p{i}"].residency.cached_results = mix.slots * nodes
    peers = {name: SwappingPeer(mix.slots, run) for name in lanes}
    window = asyncio.Semaphore(WINDOW)

    async def job(model: str) -> None:
        async with window:
            files = frozenset({f"{model}.safetensors"})
            lane, booking = await scheduler.acquire(
                list(lanes.values()), files, planned=affinity, nodes=nodes
            )
            await sim.at(sim.now + peers[lane.name].seconds(model) + overhead)
            seconds = sim.now - booking.began
            lane.residency.finish(booking, seconds, lambda f: scheduler.load_cost(lane, f))
            lane.release()
            await sim.at(sim.now + overhead)

    await sim.run([asyncio.ensure_future(job(model)) for model in picks])
    return Schedule(sim.now, sum(peer.loads for peer in peers.values()))


def row(mix: Mix, seeds: Sequence[int], run: float, overhead: float) -> str:
    totals = [Schedule(0.0, 0)] * 3
    costs = Costs(run + overhead, LOAD * run, COLD * run)  # as the dispatcher measures one
    for seed in seeds[:1] if mix.name == "alternating" else seeds:
        picks = mix.sequence(24, seed)
        found = (
            asyncio.run(simulate(mix, picks, run, overhead, True)),
            asyncio.run(simulate(mix, picks, run, overhead, False)),
            optimum(picks, mix.peers, mix.slots, costs, WINDOW),
        )
        totals = [
            Schedule(t.makespan + f.makespan, t.loads + f.loads)
            for t, f in zip(totals, found, strict=True)
        ]
    ours, base, best = totals
    return (
        f"| {mix.name} | {ours.loads} loads, {ours.makespan:.2f} s | {base.loads} loads, "
        f"{base.makespan:.2f} s | {best.loads} loads, {best.makespan:.2f} s | "
        f"{ours.makespan / best.makespan:.3f}× | {ours.makespan / base.makespan:.3f}× | "
        f"{ours.loads / max(base.loads, 1):.2f}× |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="sequences of each kind")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--run", type=float, default=0.2, help="seconds of a warm job")
    parser.add_argument("--overhead", type=float, default=0.003, help="seconds a round trip")
    args = parser.parse_args()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    print(
        "| sequence | affinity | least-busy | optimum | affinity / optimum "
        "| affinity / least-busy | loads / least-busy's |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for mix in SEQUENCES:
        print(row(mix, seeds, args.run, args.overhead), flush=True)


if __name__ == "__main__":
    main()
