"""The best schedule of a known job sequence, to hold the dispatcher's routing against.

The jobs come as the benchmark's client sends them: `window` at once, the next each time
one finishes. Each peer runs its jobs one at a time in the order they came; a job takes
`run` seconds, plus `load` when the peer does not hold its model (the first load on a
peer costs `cold` more), and a peer holds the models of its last `slots` distinct jobs.
The search tries every peer for every job, in order, keeping one schedule per distinct
state (what each peer holds and when it is free, and when the jobs in flight finish), and
drops those that cannot beat a known schedule. It returns the least makespan, and the
fewest loads among the schedules that reach it. Knowing the whole sequence, it is a bound
no router that learns the sequence as it comes can beat (one that reorders jobs on a peer
could, a little).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Costs", "Schedule", "optimum", "simulate_least_busy"]

_BEAM = 300
"""Schedules kept per step by the quick search that bounds the full one."""
_State = tuple[tuple[tuple[float, tuple[str, ...]], ...], tuple[float, ...]]


@dataclass(frozen=True)
class Costs:
    """Seconds a peer takes for a job, to load a model, and once more for its first load."""

    run: float
    load: float
    cold: float


@dataclass(frozen=True)
class Schedule:
    makespan: float
    loads: int


def _job(
    held: tuple[str, ...], model: str, slots: int, costs: Costs
) -> tuple[float, int, tuple[str, ...]]:
    """Seconds, loads and what the peer holds after it runs a job of `model`."""
    kept = tuple(m for m in held if m != model)
    after = (*kept[-(slots - 1) :], model) if slots > 1 else (model,)
    if model in held:
        return costs.run, 0, after
    return costs.run + costs.load + (costs.cold if not held else 0.0), 1, after


def optimum(sequence: Sequence[str], peers: int, slots: int, costs: Costs, window: int) -> Schedule:
    """The least makespan of the sequence, and the fewest loads that reach it."""
    bound = simulate_least_busy(sequence, peers, slots, costs, window).makespan
    bound = _search(sequence, peers, slots, costs, window, bound, _BEAM).makespan
    return _search(sequence, peers, slots, costs, window, bound, None)


def _search(
    sequence: Sequence[str],
    peers: int,
    slots: int,
    costs: Costs,
    window: int,
    bound: float,
    beam: int | None,
) -> Schedule:
    """Every schedule that may end by `bound`; with `beam`, only that many of the most
    promising at each step (a quick, good bound for the full search)."""
    states: dict[_State, int] = {(((0.0, ()),) * peers, ()): 0}
    for index, model in enumerate(sequence):
        later = len(sequence) - index - 1
        found: dict[_State, int] = {}
        for (lanes, pending), loads in states.items():
            finishes = list(pending)
            released = heapq.heappop(finishes) if index >= window else 0.0
            for slot, (free, held) in enumerate(lanes):
                if (free, held) in lanes[:slot]:
                    continue  # the same as an earlier peer: the same schedules
                seconds, loaded, after = _job(held, model, slots, costs)
                done = round(max(free, released) + seconds, 9)
                new = tuple(sorted((*lanes[:slot], (done, after), *lanes[slot + 1 :])))
                if _lower_bound(new, released, later, costs.run) > bound + 1e-9:
                    continue
                key = (new, tuple(sorted((*finishes, done))))
                if found.get(key, loads + loaded + 1) > loads + loaded:
                    found[key] = loads + loaded
        if beam is not None and len(found) > beam:
            ranked = sorted(
                found, key=lambda k: (_lower_bound(k[0], 0.0, later, costs.run), found[k])
            )
            found = {k: found[k] for k in ranked[:beam]}
        states = found
    return min(
        (Schedule(max(free for free, _ in lanes), loads) for (lanes, _), loads in states.items()),
        key=lambda s: (s.makespan, s.loads),
    )


def _lower_bound(
    lanes: Sequence[tuple[float, tuple[str, ...]]], released: float, later: int, run: float
) -> float:
    """No schedule from here ends sooner: the busiest peer, or all the work left spread
    evenly over every peer from when the next job can start."""
    spread = (sum(max(free, released) for free, _ in lanes) + later * run) / len(lanes)
    return max(max(free for free, _ in lanes), spread)


def simulate_least_busy(
    sequence: Sequence[str], peers: int, slots: int, costs: Costs, window: int
) -> Schedule:
    """Each job, in order, to the peer that frees first (a schedule the search must beat)."""
    lanes: list[tuple[float, tuple[str, ...]]] = [(0.0, ())] * peers
    finishes: list[float] = []
    loads = 0
    for index, model in enumerate(sequence):
        released = heapq.heappop(finishes) if index >= window else 0.0
        slot = min(range(peers), key=lambda i: (max(lanes[i][0], released), i))
        free, held = lanes[slot]
        seconds, loaded, after = _job(held, model, slots, costs)
        lanes[slot] = (round(max(free, released) + seconds, 9), after)
        heapq.heappush(finishes, lanes[slot][0])
        loads += loaded
    return Schedule(max(free for free, _ in lanes), loads)
