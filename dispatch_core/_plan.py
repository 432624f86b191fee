"""Where the waiting jobs that need models should run: a plan over the known queue.

Each server (a lane here) finishes what it has in hand, then runs the jobs the plan gives
it in their order of arrival; a job costs the server's warm run time, plus the load of
each of its model files the server would not hold by then. Every way of spreading the
first jobs of the queue over the servers each may use is tried (as many as `BUDGET`
allows), and the plan that finishes the whole known queue soonest wins, counting the
switch back: a model that jobs keep asking for and that the plan leaves on no server
costs its load once more, weighted by how likely it is to be asked for soon; and every
load costs a share of its time again, spread over the servers (`_LOAD_SHARE`). The queue
in sight is short (a client keeps a few jobs in flight), and over a few jobs a load on an
idle server looks free: it is not, since the jobs that will come later would have had
that server's time, whichever server they run on. A server's first load is the exception:
it evicts nothing and the server can serve nothing without it, so it costs no share, and a
plan that leaves an empty server idle loses to one as good that puts it to work. Other
ties go to the plan with fewer loads, then to the one whose jobs finish earlier on the
whole, then to the one that starts more jobs now.

Only the first job of each free server's share starts now; the rest is planned again at
the next event, when more is known. So a free server may stay idle, when every job waiting
is better run, models and all, on a busy one that holds its models.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["BUDGET", "LaneState", "Wanted", "plan"]

BUDGET = 512
"""Most assignments tried per decision: the known queue is cut to fit."""
_LOAD_SHARE = 0.6
"""Share of a load's time counted again, over the number of servers, for the jobs beyond
the queue in sight. Tried from 0.3 to 1 on seeded sequences of each benchmark kind
(`tools/simulate_affinity.py`, 60 sequences a kind): less loads more often and finishes
later with bursts (0.5: 1.103 times the optimum's makespan), more leaves servers idle with
70/30 (0.7: 1.116); at 0.6 every kind was within 1.10 of the optimum, with 0.26 to 0.50
times least-busy's loads."""
_BACK_WEIGHT = 0.85
"""Weight of the switch back. At 1 (a load back charged in full, at its chance), a server
stayed on the minority model through runs of the other with 70/30 (1.15 times the
optimum's makespan over 20 sequences); at 0.75 bursts made 0.55 times least-busy's loads;
0.85 kept every kind within 1.09 of the optimum on 40 sequences a kind not used to choose
it, with 0.28 to 0.49 times least-busy's loads."""
_FLOW_WEIGHT = 0.01
"""Weight of the jobs' summed finish times: among equal makespans, finish jobs early."""


@dataclass(frozen=True)
class LaneState:
    """One server as the plan sees it."""

    free: bool
    """It has a slot for a job now."""
    ready_in: float
    """Seconds until the jobs it has in hand are done."""
    history: tuple[frozenset[str], ...]
    """Model sets of its jobs, the most recent first (after those in hand)."""
    keeps: int
    """Model sets it holds besides the last one's."""
    run: float
    """Seconds a job takes with its models loaded."""
    load: Mapping[str, float]
    """Seconds to load each model file the waiting jobs name."""


@dataclass(frozen=True)
class Wanted:
    """One waiting job: its model files and the lanes (indices) it may run on."""

    models: frozenset[str]
    lanes: tuple[int, ...]


def plan(
    lanes: Sequence[LaneState], jobs: Sequence[Wanted], asked: Mapping[str, float]
) -> dict[int, int]:
    """Free lane → index of the waiting job to start on it now (free lanes left out idle).

    `asked` is, per model file, the chance that a job will ask for it soon: what leaving
    it on no server costs is its load, that much of the time.
    """
    known = _known(jobs)
    best: tuple[float, int, int, float, int] | None = None
    first: dict[int, int] = {}
    for choice in itertools.product(*(jobs[j].lanes for j in known)):
        makespan, loads, flow = _cost(lanes, jobs, known, choice, asked)
        idle = [lane for i, lane in enumerate(lanes) if lane.free and i not in choice]
        empty = sum(1 for lane in idle if not lane.history)
        cost = (makespan, empty, loads, flow, len(idle))
        if best is None or cost < best:
            best = cost
            first = {}
            for j, lane in zip(known, choice, strict=True):
                first.setdefault(lane, j)
    starts = {lane: j for lane, j in first.items() if lanes[lane].free}
    return _earliest(starts, jobs)


def _earliest(starts: dict[int, int], jobs: Sequence[Wanted]) -> dict[int, int]:
    """The same plan, each job started now swapped for the longest-waiting one like it
    (same models, same servers): jobs alike keep their order of arrival."""
    taken: set[int] = set()
    for lane, j in sorted(starts.items(), key=lambda item: item[1]):
        like = (jobs[j].models, jobs[j].lanes)
        starts[lane] = next(
            i for i in range(j + 1) if i not in taken and (jobs[i].models, jobs[i].lanes) == like
        )
        taken.add(starts[lane])
    return starts


def _known(jobs: Sequence[Wanted]) -> list[int]:
    """The first jobs of the queue whose every assignment fits in `BUDGET`."""
    known: list[int] = []
    count = 1
    for index, job in enumerate(jobs):
        count *= max(len(job.lanes), 1)
        if count > BUDGET and known:
            break
        if job.lanes:
            known.append(index)
    return known


def _cost(
    lanes: Sequence[LaneState],
    jobs: Sequence[Wanted],
    known: Sequence[int],
    choice: Sequence[int],
    asked: Mapping[str, float],
) -> tuple[float, int, float]:
    """(makespan with the switch-back and the loads' share, loads, summed finish times)
    of one assignment."""
    ends = [lane.ready_in for lane in lanes]
    history = [lane.history for lane in lanes]
    loads, flow, spent = 0, 0.0, 0.0
    for j, index in zip(known, choice, strict=True):
        lane, models = lanes[index], jobs[j].models
        missing = models - _held(history[index], lane.keeps)
        loading = sum(lane.load[f] for f in missing)
        ends[index] += lane.run + loading
        if history[index]:  # a first load evicts nothing: no share
            spent += loading
        loads += len(missing)
        flow += ends[index]
        history[index] = (models, *(m for m in history[index] if m != models))
    pairs = zip(history, lanes, strict=True)
    held = frozenset().union(*(_held(h, lane.keeps) for h, lane in pairs))
    back = _BACK_WEIGHT * sum(
        chance * _mean(lane.load.get(f) for lane in lanes)
        for f, chance in asked.items()
        if f not in held
    )
    taken = _LOAD_SHARE * spent / len(lanes)
    makespan = max(ends, default=0.0) + back + taken + _FLOW_WEIGHT * flow
    return (round(makespan, 9), loads, round(flow, 9))


def _held(history: tuple[frozenset[str], ...], keeps: int) -> frozenset[str]:
    return frozenset().union(*history[: 1 + keeps])


def _mean(values: Iterable[float | None]) -> float:
    known = [v for v in values if v is not None and math.isfinite(v)]
    return sum(known) / len(known) if known else 0.0
