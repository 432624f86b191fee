"""Which waiting job takes a server slot, and when: in turn, or by a plan that counts loads.

A job that needs no model, or any job while affinity is off, waits in turn on every server
it may use and takes the first free slot (least foreign work queued, then fastest). A job
that names model files waits for the plan (`_plan`): every time a job arrives or a slot
frees, the jobs waiting for models are spread over the servers by the expected finish of
the whole known queue, each server's warm run time, the load cost of each model on it and
the models it holds, all measured on its own jobs (`_residency`), with a switch back
counted for each model in demand that the plan would leave on no server. Free servers take
the first job of their share; a free server with no share stays idle. A start that evicts
a model waits a moment first, for the jobs that other servers' ends are about to bring.

Models get no fixed homes: a model's home is wherever it is loaded, and it stays there
because moving it costs a load now and, while jobs still ask for it, a load back later.
Homes learned from demand would say the same where it is steady, and be wrong right after
it changes, which the measured costs see at once. (Planning with the jobs that recent
demand says will come, in its mix and at its rate, was tried: on two servers it cut loads
further, but with three models on three servers that hold two each it left servers idle,
1.25 times the best makespan against 1.14.)
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence

from ._lanes import Lane, Waiter, arrival, insert_in_order, preferred, speeds
from ._plan import LaneState, Wanted, plan
from ._residency import LOAD_RUNS, Booking

__all__ = ["Scheduler"]

_log = logging.getLogger(__name__)

_DEMAND_DECAY = 0.95
"""Per arrival, how much of a model's share of demand carries over (about twenty jobs).
Over ten (0.9), a few jobs of the majority model in a row made the minority one look
rare: a server gave it up and another loaded it back moments later (two servers swapping
models), and with 70/30 loads were 0.39 times least-busy's but the makespan 1.11 times
the optimum's; over twenty, 1.06 with 0.44 times the loads (with `_plan._BACK_WEIGHT`)."""
_FORGET_SHARE = 0.01
"""A model asked for by less than this share of recent jobs is no longer in demand."""
_SWITCH_PATIENCE = 0.05
"""Share of a load's time that a switch waits before it starts, counted from the last
job's end (or from when the plan first wanted it, if later). A client sends its next job
when one returns, so the end of a job sets off an arrival moments later, and a switch
decided before it arrives cannot be taken back: with 70/30, a server that had just run
the majority model gave it up for the two jobs of the other in sight, a few milliseconds
before the next job for the majority model came. Sixty sequences a kind
(`tools/simulate_affinity.py`), none waiting → 0.05: 70/30 1.056 → 1.057 times the
optimum's makespan with 0.45 → 0.43 times least-busy's loads, bursts 1.088 → 1.085 with
0.47 → 0.45, 50/50 1.060 → 1.056; 0.1 finished later (bursts 1.093). A load into a
server's free room evicts nothing and does not wait."""
_LONGEST_WAIT = 1.0
"""Share of its load that a switch waits at most: all of it while another server that may
run the same jobs is past its expected end, and never longer, however often jobs end on a
large pool. A late server's end, and the job it sets off, may come at any moment; a
cold start is where this shows (a server's first job takes five to ten warm jobs' time on
ComfyUI, and the first server to end it knows little of the others'). On real ComfyUI,
with `babbbaaaaaaaabaabaaaaaba`, the server that had run the cold `a` ended first, saw
three `b` waiting while the other's cold `b` ran past its estimate, and loaded `b`; that
server ended half a second later, the next `a` came, and it loaded `a`: two loads, and
the servers had swapped models. Simulated with one server 5 % slower, the same sequence
took 5.32 s, 4.65 s with this wait; sixty sequences a kind at the usual costs, and forty
with each job's time ±15 % at random, read the same as without it."""
_SETTLED = 1e-3
"""Seconds within which a switch's wait counts as over (a timer may fire that early)."""
_HORIZON = 64
"""Waiting jobs the plan looks at (it tries assignments of the first few only)."""


class Scheduler:
    """The waiting jobs of every server, and where each starts."""

    def __init__(
        self,
        lanes: Mapping[str, Lane],
        clock: Callable[[], float] = time.monotonic,
        call_later: Callable[[float, Callable[[], None]], object] | None = None,
    ):
        self._lanes = lanes
        """The live lanes of the dispatcher's servers, by name."""
        self._clock = clock
        """Seconds, for how long the jobs in hand have run (a simulation runs its own)."""
        self._call_later = call_later or _call_later
        """Calls back after that many of `clock`'s seconds (the event loop's timer)."""
        self.switch_seconds: float | None = None
        """Seconds a model load is assumed to take until one has been measured; None: 1.1
        warm jobs there (the ratio measured on ComfyUI), whatever the GPU's scale."""
        self._planned: list[Waiter] = []
        self._share: dict[str, float] = {}
        """Model file → decayed count of the jobs that named it."""
        self._arrivals = 0.0
        """Decayed count of all the jobs that named models."""
        self._pending: asyncio.Handle | None = None
        """The decision that arrivals call for, at the loop's next turn."""
        self._switch_wanted: dict[Lane, float] = {}
        """Free lanes whose switch waits (`_SWITCH_PATIENCE`), and since when."""
        self._freed_at = -math.inf
        """When a slot was last given back: a job ended (or failed, or gave up)."""
        self._overdue: set[Lane] = set()
        """Busy lanes whose jobs in hand are past their expected end, at the last plan."""
        self._recheck_at: float | None = None
        """When the timer set for the switches that wait will plan again."""

    async def acquire(
        self,
        lanes: Sequence[Lane],
        models: frozenset[str] = frozenset(),
        *,
        planned: bool = True,
        nodes: int = 1,
        order: int | None = None,
    ) -> tuple[Lane, Booking]:
        """A slot on one of `lanes` and the job's booking there, made as the slot is granted
        so that the next decision of the same moment sees it. With `models` (and `planned`,
        which affinity off clears), the plan puts the job; without, it waits in turn.
        `nodes`: the size of its workflow, against a server's result cache; `order`: its
        place in the order of arrival (`_lanes.arrival()`, taken now if not given)."""
        order = arrival() if order is None else order
        waiter = Waiter(lanes, models, order, planned, nodes)
        if waiter.planned:
            self._note_demand(models)
            insert_in_order(self._planned, waiter)
            for lane in lanes:
                lane.planned += 1
        else:
            for lane in lanes:
                lane.queue(waiter)
        self._dispatch_soon()
        try:
            lane = await waiter.future
        except BaseException:
            if waiter.future.done() and not waiter.future.cancelled():
                _give_back(waiter)  # a slot was handed over just as we gave up
            raise
        finally:
            self._forget(waiter)
        assert waiter.booking is not None
        return lane, waiter.booking

    def _dispatch_soon(self) -> None:
        """Decide at the loop's next turn, not now: jobs submitted together (a client's
        batch, a fan-out) each arrive in that same turn, and the plan that sees them all
        places them better than one that places the first alone. At a cold start with
        `a c a b` on three servers, the second `a` took the third server (nothing else was
        known), and `b`, which came a moment later, waited for a server to free and load
        it."""
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_soon(self._dispatch_pending)

    def _dispatch_pending(self) -> None:
        self._pending = None
        try:
            self.dispatch()
        except Exception as error:  # a fault here must end the waiting jobs, not hang them
            _log.exception("placing the waiting jobs failed")
            for waiter in self._planned:
                if not waiter.future.done():
                    waiter.future.set_exception(error)

    def slot_freed(self) -> None:
        """A lane gave a slot back (its `on_free`): hand it on, and note when."""
        self._freed_at = self._clock()
        self.dispatch()

    def dispatch(self) -> None:
        """Hand free slots to waiting jobs, one at a time, planning again after each."""
        while self._grant_one():
            pass

    def _grant_one(self) -> bool:
        free = [lane for lane in self._lanes.values() if lane.has_free_slot()]
        if not free:
            return False
        planned = self._plan(free)
        self._switch_wanted = {x: t for x, t in self._switch_wanted.items() if x in planned}
        for lane in preferred(free):
            chosen = self._chosen(lane, planned.get(lane))
            if chosen is not None:
                self._switch_wanted.pop(lane, None)
                lane.in_flight += 1
                self._forget(chosen)
                chosen.booking = lane.residency.start(chosen.models, self._clock(), chosen.nodes)
                chosen.future.set_result(lane)
                return True
        return False

    def _chosen(self, lane: Lane, planned: Waiter | None) -> Waiter | None:
        """The job a free lane starts now: the one waiting in turn there if it came first,
        else the plan's, unless that is a switch still waiting."""
        in_turn = lane.first_waiting()
        if in_turn is not None and (planned is None or in_turn.order < planned.order):
            return in_turn
        if planned is None or self._switch_waits(lane, planned.models):
            return None
        return planned

    def _switch_waits(self, lane: Lane, models: frozenset[str]) -> bool:
        """Whether the plan's switch of a free lane to `models` waits a little longer: a
        twentieth of its load after the last job's end (`_SWITCH_PATIENCE`), the whole
        load while another server is past its expected end, and never more than that
        since the plan first wanted it (`_LONGEST_WAIT`). A timer plans again when the
        wait is over."""
        residency = lane.residency
        if models <= residency.held or len(residency.history) <= residency.keeps:
            return False  # no load, or a load into free room: nothing is evicted
        now = self._clock()
        since = self._switch_wanted.setdefault(lane, now)
        load = sum(self.load_cost(lane, name) for name in models - residency.held)
        longest = since + _LONGEST_WAIT * load
        until = max(since, self._freed_at) + _SWITCH_PATIENCE * load
        until = longest if self._overdue - {lane} else min(until, longest)
        wait = until - now
        if wait <= _SETTLED:
            return False
        self._recheck_in(wait)
        return True

    def _recheck_in(self, delay: float) -> None:
        """Plan again in `delay` seconds, unless a timer will sooner (one at a time)."""
        due = self._clock() + delay
        if self._recheck_at is None or due < self._recheck_at:
            self._recheck_at = due
            self._call_later(delay, self._recheck)

    def _recheck(self) -> None:
        self._recheck_at = None
        self._dispatch_soon()

    def _forget(self, waiter: Waiter) -> None:
        if waiter in self._planned:
            self._planned.remove(waiter)
            for lane in waiter.lanes:
                lane.planned -= 1

    def _plan(self, free: Sequence[Lane]) -> dict[Lane, Waiter]:
        waiting = list(
            itertools.islice((w for w in self._planned if not w.future.done()), _HORIZON)
        )
        if not waiting:
            return {}
        lanes = list({lane: None for w in waiting for lane in w.lanes})
        index = {lane: i for i, lane in enumerate(lanes)}
        files = set(self._share).union(*(w.models for w in waiting))
        states = self._states(lanes, set(free), files)
        jobs = [Wanted(w.models, tuple(index[lane] for lane in w.lanes)) for w in waiting]
        chances = self._chances(len(lanes))
        starts = plan(states, jobs, chances)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("plan %s", _shown(lanes, states, waiting, chances, starts))
        return {lanes[i]: waiting[j] for i, j in starts.items()}

    def _states(self, lanes: Sequence[Lane], free: set[Lane], files: set[str]) -> list[LaneState]:
        run = speeds(lanes)
        now = self._clock()
        states = []
        self._overdue = set()
        for lane in lanes:
            load = {f: self.load_cost(lane, f, lanes) for f in files}
            residency = lane.residency
            in_hand = sum(
                max(run[lane] + sum(load.get(f, 0.0) for f in b.loads) - (now - b.began), 0.0)
                for b in residency.running
            )
            if residency.running and in_hand == 0:
                self._overdue.add(lane)
            states.append(
                LaneState(
                    free=lane in free,
                    ready_in=in_hand + lane.external_queue * run[lane],
                    history=tuple(residency.history),
                    keeps=residency.keeps,
                    run=run[lane],
                    load=load,
                )
            )
        return states

    def load_cost(self, lane: Lane, name: str, lanes: Sequence[Lane] = ()) -> float:
        """Seconds to load a file on a lane: the median of its loads measured there (else
        on the other servers, else of its other files there), with what is assumed until
        a load is measured counted as one more measurement."""
        lanes = lanes or list(self._lanes.values())
        measured = list(lane.residency.loads.get(name, ()))
        if not measured:
            measured = [t for x in lanes for t in x.residency.loads.get(name, ())]
        if not measured:
            measured = [t for times in lane.residency.loads.values() for t in times]
        return statistics.median([*measured, self._assumed_load(lane, lanes)])

    def _assumed_load(self, lane: Lane, lanes: Sequence[Lane]) -> float:
        """`switch_seconds`, else a warm job's time there in the usual ratio; at most what
        its cold first job took beyond a warm one (that job loaded models too)."""
        assumed = self.switch_seconds
        if assumed is None:
            run = speeds(lanes)[lane] if lane in lanes else speeds([lane])[lane]
            assumed = LOAD_RUNS * run
        bound = lane.residency.load_bound
        return min(assumed, bound) if bound is not None else assumed

    def _note_demand(self, models: frozenset[str]) -> None:
        self._arrivals = self._arrivals * _DEMAND_DECAY + (1 - _DEMAND_DECAY)
        for name in list(self._share):
            self._share[name] *= _DEMAND_DECAY
            if self._share[name] < _FORGET_SHARE * self._arrivals:
                del self._share[name]
        for name in models:
            self._share[name] = self._share.get(name, 0.0) + (1 - _DEMAND_DECAY)

    def _chances(self, servers: int) -> dict[str, float]:
        """Per model file, the chance a job asks for it among the next few (two a server)."""
        asked = {f: min(s / self._arrivals, 1.0) for f, s in self._share.items()}
        return {f: 1 - (1 - share) ** (2 * servers) for f, share in asked.items()}


def _call_later(delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
    return asyncio.get_running_loop().call_later(delay, callback)


def _give_back(waiter: Waiter) -> None:
    """The job gave up just as it was granted a slot: undo the grant."""
    lane = waiter.future.result()
    if waiter.booking is not None:
        lane.residency.drop(waiter.booking)
    lane.release()


def _shown(
    lanes: Sequence[Lane],
    states: Sequence[LaneState],
    waiting: Sequence[Waiter],
    chances: Mapping[str, float],
    starts: Mapping[int, int],
) -> str:
    """One decision, for the debug log: each server's state, the queue, what starts."""
    servers = [
        f"{lane.name}: {'free' if s.free else 'busy'} in {s.ready_in:.2f}s, "
        f"run {s.run:.2f}s, holds {sorted(lane.loaded)}, loads "
        + ", ".join(f"{f} {t:.2f}s" for f, t in sorted(s.load.items()))
        for lane, s in zip(lanes, states, strict=True)
    ]
    queue = [",".join(sorted(w.models)) for w in waiting[:8]]
    asked = {f: round(c, 2) for f, c in chances.items()}
    begin = {lanes[i].name: queue[j] if j < len(queue) else j for i, j in starts.items()}
    return f"{'; '.join(servers)} | queue {queue} | asked {asked} | start {begin}"
