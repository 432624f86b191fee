"""`python -m dispatch_core.bench`: the dispatcher against its baselines, side by side.

Fake ComfyUI peers run in their own processes on loopback (so their work does not share
the dispatcher's event loop); each row measures the dispatcher and its baseline in the
same run and prints medians and a ratio. `--quick` runs a few jobs a row, for tests.
`--peers URL …` measures the user's own ComfyUI servers instead (see `_own`).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
from collections.abc import Awaitable, Callable, Sequence

from ._own import run_on_peers
from ._rows import (
    Row,
    row_detection,
    row_fuzzy,
    row_images,
    row_latency,
    row_loop_lag,
    row_makespan,
    row_slow_fast,
)
from ._shared import rows_shared
from ._swaps import SEQUENCES, row_swaps

__all__ = ["main"]


async def run(quick: bool, only: str | None = None) -> list[Row]:
    if only == "shared":  # the shared queue's rows alone (they start a redis-server)
        return await _shared(quick)
    q = quick
    swaps: list[Callable[[], Awaitable[Row]]] = [
        functools.partial(row_swaps, mix, 8 if q else 24, 0.02 if q else 0.2, 1 if q else 3)
        for mix in SEQUENCES
    ]
    if only == "routing":  # the rows of jobs that need models alone
        return await _each(swaps)
    steps: list[Callable[[], Awaitable[Row]]] = [
        lambda: row_latency(5 if q else 200),
        lambda: row_detection(2 if q else 10, poll=0.2 if q else 1.2),
        lambda: row_makespan(20 if q else 1000),
        lambda: row_slow_fast(12 if q else 300),
        lambda: row_loop_lag(200 if q else 10_000, 20 if q else 500),
        lambda: asyncio.to_thread(row_fuzzy, 1_000 if q else 100_000, 20 if q else 200),
        lambda: row_images(64 if q else 1024, 2 if q else 10),
    ]
    return await _each(steps + swaps) + await _shared(q)


async def _each(steps: Sequence[Callable[[], Awaitable[Row]]]) -> list[Row]:
    rows = []
    for step in steps:
        rows.append(await step())
        print(f"  done: {rows[-1].name}", file=sys.stderr, flush=True)
    return rows


async def _shared(quick: bool) -> list[Row]:
    if quick:
        return await rows_shared(20, peers=4, repeats=1)
    return await rows_shared(2000, peers=8, repeats=3)


def render(rows: Sequence[Row]) -> str:
    lines = [
        "| row | dispatcher | baseline | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        met = "yes" if r.met else "NO"
        lines.append(f"| {r.name} | {r.ours} | {r.baseline} | {r.ratio} | {r.target} | {met} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dispatch_core.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a few jobs a row (a smoke test)")
    parser.add_argument(
        "--peers",
        nargs="+",
        metavar="URL",
        default=None,
        help="measure these ComfyUI servers of yours instead of fake peers: per-job overhead "
        "and completion detection on the first, the pool's makespan on all",
    )
    parser.add_argument(
        "--jobs", type=int, default=20, help="jobs a row with --peers (default: 20)"
    )
    parser.add_argument(
        "--job",
        default="calibration",
        metavar="tiny|calibration|FILE",
        help="the pool row's job with --peers: tiny (8×8, all overhead), calibration (blur "
        "and invert a 1024² batch, the default), or your API-format workflow (seeds varied)",
    )
    parser.add_argument("--only", choices=["shared", "routing"], help="only these rows")
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}", file=sys.stderr)
    if args.peers:
        rows = asyncio.run(run_on_peers(args.peers, max(args.jobs, 2), args.job))
    else:
        rows = asyncio.run(run(args.quick, args.only))
    print(render(rows))
    return 0
