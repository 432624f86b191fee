"""Two benchmark rows measured for an earlier revision and this tree, taking turns in one process.

On a shared machine absolute times move by tens of percent from one minute to the next;
running both versions in turn, in the same process and over the same keys or peers,
leaves ratios that hold. The earlier revision's `dispatch_core` is extracted with
`git archive` into a temporary folder as the package `dispatch_core_before`.

    PYTHONPATH=. python3 tools/compare_revisions.py fuzzy --before main --rounds 3
    PYTHONPATH=. python3 tools/compare_revisions.py lag --before main --rounds 4
    PYTHONPATH=. python3 tools/compare_revisions.py shared --before main --rounds 5

`fuzzy`: 100,000 keys as the row makes them; the p50 of 200 lookups for each kind of
asked key, the time of 100,000 puts, and the memory they take (`tracemalloc`).
`lag`: 10,000 jobs queued (`--queued`) and 500 in flight on fresh fake peers for each
run; the loop's lag p99 as the 500 are posted and once they are, the bytes and the
objects the garbage collector tracks per queued job, and the time of a full collection
with them parked.
`shared`: the shared queue's row for each revision in turn, on 8 fresh fake peers a round:
2,000 jobs of 20 ms on the local backend, then from one process on a fresh redis-server;
the makespan's ratio, and the CPU a job of the dispatcher, the peers and Redis (`/proc`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import io
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from dispatch_core.bench._peers import cpu_of, cpu_spent, pool_config, spawn_peers, tiny
from dispatch_core.bench._rows import _loop_lags, _p99_ms, _prompts
from dispatch_core.bench._shared import redis_server

Figures = dict[str, float]


def before_package(revision: str, folder: Path) -> ModuleType:
    """`dispatch_core` as it was at `revision`, importable as `dispatch_core_before`."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "dispatch_core"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "dispatch_core").rename(folder / "dispatch_core_before")
    sys.path.insert(0, str(folder))
    return importlib.import_module("dispatch_core_before")


def edited(key: str, edits: int, rng: random.Random) -> str:
    """`key` after `edits` insertions, replacements or deletions, each anywhere."""
    for _ in range(edits):
        at = rng.randrange(len(key))
        letter = rng.choice("abcdefghijklmnopqrstuvwxyz ")
        kind = rng.choice(("insert", "replace", "delete"))
        after = key[at:] if kind == "insert" else key[at + 1 :]
        key = key[:at] + ("" if kind == "delete" else letter) + after
    return key


def asked_keys(keys: list[str], rng: random.Random) -> dict[str, list[str]]:
    pick = lambda: rng.choice(keys)  # noqa: E731
    return {
        "a letter added (the row)": [pick() + "s" for _ in range(200)],
        "1 random edit": [edited(pick(), 1, rng) for _ in range(200)],
        "3 random edits": [edited(pick(), 3, rng) for _ in range(200)],
        "a miss (6 edits)": [edited(pick(), 6, rng) for _ in range(200)],
    }


def filled(package: ModuleType, keys: list[str]) -> tuple[Any, float]:
    """A cache holding `keys`, and the seconds its puts took."""
    gc.collect()
    began = time.perf_counter()
    cache = package.ResultCache(len(keys), fuzzy=True, max_distance=3)
    for value, key in enumerate(keys):
        cache.put("gen", key, value)
    return cache, time.perf_counter() - began


def memory_of(package: ModuleType, keys: list[str]) -> float:
    """The bytes a cache holding `keys` takes (filled again: tracing slows the puts)."""
    tracemalloc.start()
    cache = filled(package, keys)
    memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del cache
    return memory


def p50_ms(lookup: Callable[[str], object], asked: list[str]) -> float:
    times = []
    for key in asked:
        began = time.perf_counter()
        lookup(key)
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def fuzzy_round(package: ModuleType, keys: list[str], asked: dict[str, list[str]]) -> Figures:
    cache, put_seconds = filled(package, keys)
    found = {kind: p50_ms(lambda k: cache.get("gen", k), keys_) for kind, keys_ in asked.items()}
    memory = memory_of(package, keys)
    return found | {"100,000 puts (s)": put_seconds, "memory (MiB)": memory / 2**20}


async def lag_round(package: ModuleType, queued: int = 10_000, in_flight: int = 500) -> Figures:
    async with spawn_peers(5, 10.0) as urls:
        config = pool_config(
            urls, server={"max_in_flight": in_flight // 5}, timeouts={"request": 2}
        ).to_dict()
        async with package.Dispatcher(config) as dispatcher:
            await dispatcher.refresh_inventory()
            return await _parked(dispatcher, queued, in_flight)


async def _parked(dispatcher: Any, queued: int, in_flight: int) -> Figures:
    gc.collect()
    objects = len(gc.get_objects())
    tracemalloc.start()
    jobs = [asyncio.create_task(dispatcher.run("pool", tiny(i))) for i in range(queued + in_flight)]
    while sum(dispatcher.in_flight().values()) < in_flight:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    objects = len(gc.get_objects()) - objects
    starting = await _loop_lags(400)
    while dispatcher.counts["submitted"] < in_flight:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    parked = await _loop_lags(400)
    collection = min(_timed(gc.collect) for _ in range(3))
    for job in jobs:
        job.cancel()
    await asyncio.gather(*jobs, return_exceptions=True)
    count = queued + in_flight
    return {
        f"lag p99 as the {in_flight} are posted (ms)": _p99_ms(starting),
        "lag p99 once posted (ms)": _p99_ms(parked),
        "KiB per queued job": memory / count / 1024,
        "gc-tracked objects per queued job": objects / count,
        "a full collection (ms)": collection * 1000,
    }


async def shared_round(package: ModuleType, jobs: int = 2000) -> Figures:
    async with spawn_peers(8, 0.02) as urls:
        local, _ = await _makespan(package, urls, {}, jobs)
        async with redis_server() as (url, pid):
            before = cpu_of(pid)
            queue = {"queue": {"backend": "redis", "url": url}}
            shared, busy = await _makespan(package, urls, queue, jobs)
            redis_cpu = cpu_of(pid) - before
    return {
        "ratio to the local backend": shared / local,
        "dispatcher CPU a job (ms)": busy.own / jobs * 1000,
        "peers CPU a job (ms)": busy.peers / jobs * 1000,
        "Redis CPU a job (ms)": redis_cpu / jobs * 1000,
    }


async def _makespan(
    package: ModuleType, urls: list[str], extra: dict[str, Any], jobs: int
) -> tuple[float, Any]:
    specs = [package.JobSpec("pool", tiny(i)) for i in range(jobs)]
    async with package.Dispatcher(pool_config(urls, **extra).to_dict()) as dispatcher:
        for name in dispatcher.config.servers:
            await dispatcher.peer(name).start()
        await dispatcher.refresh_inventory()
        with cpu_spent(urls) as busy:
            began = time.perf_counter()
            results = await dispatcher.run_parallel(specs)
            took = time.perf_counter() - began
    assert not [r for r in results if isinstance(r, BaseException)]
    return took, busy


def _timed(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def report(rounds: list[tuple[Figures, Figures]]) -> None:
    for name in rounds[0][0]:
        pairs = [(before[name], after[name]) for before, after in rounds]
        shown = ", ".join(f"{b:.3g} → {a:.3g}" for b, a in pairs)
        ratios = " ".join(f"{a / b:.2f}" for b, a in pairs if b)
        print(f"{name}: {shown} (after / before: {ratios})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("row", choices=("fuzzy", "lag", "shared"))
    parser.add_argument("--before", default="main", help="the git revision to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queued", type=int, default=10_000, help="lag: jobs queued")
    args = parser.parse_args()
    import dispatch_core as after

    with tempfile.TemporaryDirectory() as folder:
        before = before_package(args.before, Path(folder))
        rounds = []
        if args.row == "fuzzy":
            keys = _prompts(100_000, random.Random(7))
            asked = asked_keys(keys, random.Random(8))
            run = lambda package: fuzzy_round(package, keys, asked)  # noqa: E731
        elif args.row == "shared":
            run = lambda package: asyncio.run(shared_round(package))  # noqa: E731
        else:
            run = lambda package: asyncio.run(lag_round(package, args.queued))  # noqa: E731
        for number in range(args.rounds):
            order = (before, after) if number % 2 == 0 else (after, before)
            figures = {package: run(package) for package in order}
            rounds.append((figures[before], figures[after]))
            print(f"round {number + 1} done", flush=True)
        report(rounds)


if __name__ == "__main__":
    main()
