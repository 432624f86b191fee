"""Rows for routing jobs that need models: affinity, least-busy and the offline optimum.

Fake peers that swap checkpoints as ComfyUI does (a load takes 1.1 jobs' time, the first
2.6 more: a switch is 2.1 warm jobs, a cold start 4.7, the ratios measured on real
ComfyUI) run a known job sequence sent by a client that keeps four jobs in flight. Each
policy gets fresh, cold peers; loads are counted from the peers' own output, as from a
real peer's log. The optimum is the search of `_optimum` over the same sequence, costs and
client, a warm job taking the time the dispatcher measured for one in the same run (the
peer's own seconds plus the round trip and the machine's load, which no routing avoids;
the lesser of the two policies'). A row sums a few seeded sequences of its kind.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._dispatcher import Dispatcher
from ._optimum import Costs, Schedule, optimum
from ._peers import counted_peers, pool_config, stream
from ._rows import Row

__all__ = ["SEQUENCES", "Mix", "row_swaps"]

LOAD = 1.1
"""Seconds to load a checkpoint, in warm jobs (switch 2.1× a warm job, less the job)."""
COLD = 2.6
"""Seconds more for a peer's first load, in warm jobs (a cold first job: 4.7×)."""
WINDOW = 4
"""Jobs the client keeps in flight."""


@dataclass(frozen=True)
class Mix:
    """A job sequence and the pool it runs on."""

    name: str
    models: tuple[str, ...]
    peers: int = 2
    slots: int = 1
    """Checkpoints each peer holds at once."""

    def sequence(self, jobs: int, seed: int) -> list[str]:
        rng = random.Random(seed)
        a, b, *_ = self.models
        if self.name == "alternating":
            return [self.models[i % 2] for i in range(jobs)]
        if self.name == "random 70/30":
            picks = [a] * round(jobs * 0.7) + [b] * (jobs - round(jobs * 0.7))
            rng.shuffle(picks)
            return picks
        if self.name.startswith("bursts"):
            picks = []
            for burst in range(jobs):  # one model, then the other, 3 to 8 jobs each
                picks += [self.models[burst % 2]] * rng.randint(3, 8)
            return picks[:jobs]
        return [rng.choice(self.models) for _ in range(jobs)]


SEQUENCES = (
    Mix("alternating", ("a", "b")),
    Mix("random 70/30", ("a", "b")),
    Mix("random 50/50", ("a", "b")),
    Mix("bursts of 3 to 8", ("a", "b")),
    Mix("three models, room for two", ("a", "b", "c"), peers=3, slots=2),
)


def txt2img(checkpoint: str, seed: int) -> dict[str, Any]:
    """The smallest chain that makes a peer load its checkpoint."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["1", 1]}},
        "3": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "4": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["2", 0],
                "negative": ["2", 0],
                "latent_image": ["3", 0],
                "seed": seed,
                "steps": 1,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "5": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 2]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "s"}},
    }


async def measure(
    mix: Mix, picks: Sequence[str], seconds: float, affinity: bool
) -> tuple[Schedule, float]:
    """Run the sequence on fresh peers; its makespan and the peers' loads, and the time a
    warm job took there as the dispatcher measured it (the median over the peers)."""
    flags = [f for name in mix.models for f in ("--checkpoint", f"{name}.safetensors")]
    flags += ["--load-seconds", str(LOAD * seconds), "--cold-seconds", str(COLD * seconds)]
    flags += ["--memory-slots", str(mix.slots)]
    if mix.slots > 1:  # what a ComfyUI that keeps that many checkpoints was started with
        flags += ["--cache-lru", str(mix.slots * len(txt2img("a", 0)))]
    async with counted_peers(mix.peers, seconds, *flags) as (urls, loads):
        async with Dispatcher(pool_config(urls)) as dispatcher:
            dispatcher.affinity = affinity
            await dispatcher.refresh_inventory()
            workflows = [txt2img(f"{name}.safetensors", i) for i, name in enumerate(picks)]
            began = time.perf_counter()
            await stream(dispatcher, workflows, WINDOW)
            took = time.perf_counter() - began
            status = await dispatcher.status()
        warm = [s.seconds_per_job for s in status.values() if s.seconds_per_job is not None]
        return Schedule(took, sum(loads)), statistics.median(warm) if warm else seconds


async def row_swaps(mix: Mix, jobs: int, seconds: float, sequences: int = 3) -> Row:
    """Affinity, least-busy and the optimum over a few sequences of the kind (seeded),
    their loads and makespans summed."""
    runs: list[tuple[Schedule, Schedule, Schedule]] = []
    warm: list[float] = []
    for seed in range(1 if mix.name == "alternating" else sequences):
        picks = mix.sequence(jobs, seed)
        ours, ours_warm = await measure(mix, picks, seconds, affinity=True)
        base, base_warm = await measure(mix, picks, seconds, affinity=False)
        # The optimum runs each job in the warm time measured in the same run (the peer's
        # `seconds` plus the round trip and the machine's load, which no routing avoids).
        warm.append(min(ours_warm, base_warm))
        costs = Costs(warm[-1], LOAD * seconds, COLD * seconds)
        runs.append((ours, base, optimum(picks, mix.peers, mix.slots, costs, WINDOW)))
    ours, base, best = (_total([run[i] for run in runs]) for i in range(3))
    met = ours.makespan <= 1.10 * best.makespan and ours.makespan <= base.makespan
    met = met and (2 * ours.loads <= base.loads or ours.loads <= best.loads)
    jobs_shown = f"{len(runs)} × {jobs} jobs" if len(runs) > 1 else f"{jobs} jobs"
    return Row(
        f"{mix.name}: {jobs_shown}, {mix.peers} peers holding {mix.slots} model(s) each",
        f"affinity: {ours.loads} loads, {ours.makespan:.2f} s",
        f"least-busy: {base.loads} loads, {base.makespan:.2f} s; "
        f"optimum: {best.loads} loads, {best.makespan:.2f} s "
        f"(a warm job {statistics.mean(warm):.3f} s, measured)",
        f"{ours.makespan / best.makespan:.2f}× optimum's makespan, "
        f"{ours.makespan / base.makespan:.2f}× least-busy's; "
        f"{ours.loads / max(base.loads, 1):.2f}× least-busy's loads",
        "makespan ≤ 1.10× optimum and ≤ least-busy; loads ≤ 0.5× least-busy (or the optimum's)",
        met,
    )


def _total(schedules: Sequence[Schedule]) -> Schedule:
    return Schedule(sum(s.makespan for s in schedules), sum(s.loads for s in schedules))
