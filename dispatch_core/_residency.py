"""What one server holds and what its jobs cost it, learned from its own jobs.

ComfyUI keeps the models of its last prompt loaded, and more of them when its cache is
told to (`--cache-lru`, `--cache-ram`); a job whose model files are not held loads them
first, which can take longer than the job itself. So a server's run time is measured on
its warm jobs only (the median, so that one cold start cannot make it look slow), and the
cost of loading a model is measured per server and file: what a job that had to load it
took beyond that server's warm median. How many earlier jobs' models the server keeps is
learned as well: a job back to a model we took for evicted that runs warm shows the server
kept it; one we took for held that runs cold shows it did not. Until a job shows it, a
server started with `--cache-lru N` (its `/system_stats` argv says so) is believed to keep
the models of as many recent prompts as N node results hold; any other, its last one's.
"""

from __future__ import annotations

import collections
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Booking", "Residency", "cached_results"]

_WARM_SAMPLES = 15
"""Warm job durations kept for the median."""
_LOAD_SAMPLES = 5
"""Load measurements kept per model file for the median."""
COLD_RUNS = 4.7
"""A cold first job takes about this many warm ones (ComfyUI 0.3.64, SD1.5, one core)."""
LOAD_RUNS = 1.1
"""A model load takes about this many warm jobs (the same measurement: a switch, 2.1)."""
_COLD_SHARE = 0.5
"""A job runs cold when it takes longer than warm plus this share of the loads expected."""
_MAX_KEPT = 8
"""Most earlier jobs' models a server is ever believed to keep besides the last one's."""


@dataclass
class Booking:
    """One job on the server, as predicted when it started."""

    models: frozenset[str]
    loads: frozenset[str]
    """The files it was expected to load (none: warm)."""
    depth: int | None
    """How many other jobs' models were used since the server last had these, if it had."""
    first: bool = False
    """The first job we sent it: its time includes the server's own cold start."""
    held: frozenset[str] = frozenset()
    """What the server held before it, as far as its jobs showed."""
    began: float = field(default_factory=time.monotonic)


class Residency:
    """One server's models held, its warm run time and its load cost per model file."""

    def __init__(self) -> None:
        self.history: list[frozenset[str]] = []
        """Distinct model sets of its jobs, the most recent first."""
        self.keeps = 0
        """How many model sets it holds besides its last job's (ComfyUI's default: none)."""
        self.cached_results: int | None = None
        """Node results its cache keeps (`--cache-lru N`), if it said; None: the last
        prompt's only, ComfyUI's default."""
        self._shown_keeps = False
        """Whether a job has shown how many it keeps: `cached_results` no longer guides."""
        self.loads: dict[str, collections.deque[float]] = {}
        """Model file → its recent load times measured on this server."""
        self.cold: float | None = None
        """Seconds of the first job we sent it, which loaded its models on a cold server."""
        self.running: list[Booking] = []
        self._warm: collections.deque[float] = collections.deque(maxlen=_WARM_SAMPLES)
        self._unresolved: list[tuple[Booking, float]] = []
        """Jobs that loaded models before any warm job was timed: measured once one is."""

    @property
    def held(self) -> frozenset[str]:
        """The model files it holds now, as far as its jobs show."""
        return frozenset().union(*self.history[: 1 + self.keeps])

    @property
    def run_seconds(self) -> float | None:
        """Its time for a job whose models are loaded (the median of recent ones)."""
        return statistics.median(self._warm) if self._warm else None

    @property
    def load_seconds(self) -> dict[str, float]:
        """Model file → seconds to load it here: the median of its recent loads."""
        return {name: statistics.median(times) for name, times in self.loads.items()}

    @property
    def run_guess(self) -> float | None:
        """Its warm time if measured, else its cold first job's in the usual ratio."""
        warm = self.run_seconds
        return warm if warm is not None else self.cold / COLD_RUNS if self.cold else None

    @property
    def load_bound(self) -> float | None:
        """At most what a load costs it: its cold first job's time beyond a warm one (that
        job loaded its models, and warmed the server up besides)."""
        if self.cold is None:
            return None
        return max(self.cold - (self.run_guess or 0.0), 0.0)

    def forget(self) -> None:
        """The server moved or restarted: nothing is known to be held any more."""
        self.history.clear()
        self.running.clear()

    def start(self, models: frozenset[str], now: float | None = None, nodes: int = 1) -> Booking:
        """A job of `nodes` nodes with these model files starts on the server (at `now`, by
        the scheduler's clock): what it should load."""
        if not self._shown_keeps and self.cached_results is not None:
            prompts = self.cached_results // max(nodes, 1)
            self.keeps = min(max(prompts - 1, 0), _MAX_KEPT)
        loads = models - self.held
        depth = self.history.index(models) if models in self.history else None
        first = not self.history and not self._warm and self.cold is None
        booking = Booking(models, loads, depth, first=first, held=self.held)
        if now is not None:
            booking.began = now
        if models:
            self.history = [models, *(m for m in self.history if m != models)]
            del self.history[_MAX_KEPT + 1 :]
        self.running.append(booking)
        return booking

    def drop(self, booking: Booking) -> None:
        """The job ended (or failed): it is no longer in hand."""
        if booking in self.running:
            self.running.remove(booking)

    def finish(self, booking: Booking, seconds: float, load: Callable[[str], float]) -> None:
        """The job is done after `seconds`: learn what it shows of the server. `load` is
        the expected cost of loading a file there."""
        self.drop(booking)
        if booking.first and booking.loads:
            self.cold = seconds  # neither a warm time nor a model's load cost
            return
        warm = self.run_seconds
        if warm is None:
            if not booking.loads and not booking.depth:  # warm for sure: its models were last
                self._warm.append(seconds)
                self._resolve(load)
            elif len(self._unresolved) < 4:
                self._unresolved.append((booking, seconds))
            return
        ran_cold = seconds > warm + _COLD_SHARE * sum(load(f) for f in booking.models)
        if not booking.loads:
            if ran_cold and booking.depth:  # it was evicted sooner than we thought
                self.keeps = min(self.keeps, booking.depth - 1)
                self._shown_keeps = True
            elif not ran_cold:
                self._warm.append(seconds)
        elif not ran_cold and booking.depth is not None:
            self.keeps = max(self.keeps, min(booking.depth, _MAX_KEPT))  # it was still held
            self._shown_keeps = True
            self._warm.append(seconds)
        else:
            self._measure(booking, seconds - warm)

    def _measure(self, booking: Booking, extra: float) -> None:
        share = max(extra, 0.0) / len(booking.loads)
        for name in booking.loads:
            self.loads.setdefault(name, collections.deque(maxlen=_LOAD_SAMPLES)).append(share)

    def _resolve(self, load: Callable[[str], float]) -> None:
        waiting, self._unresolved = self._unresolved, []
        for booking, seconds in waiting:
            self.finish(booking, seconds, load)


def cached_results(system_stats: object) -> int | None:
    """N of the `--cache-lru N` a server's `/system_stats` shows it was started with, if any."""
    system = system_stats.get("system") if isinstance(system_stats, dict) else None
    argv = system.get("argv") if isinstance(system, dict) else None
    if not isinstance(argv, list):
        return None
    for flag, value in zip(argv, [*argv[1:], None], strict=True):
        if not isinstance(flag, str) or not flag.startswith("--cache-lru"):
            continue
        number = flag.partition("=")[2] if "=" in flag else value
        if isinstance(number, str) and number.isdigit() and len(number) < 10:
            return int(number) or None
    return None
