"""The benchmark runs end to end and prints every row; its numbers are not judged here."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

ROWS = [
    "added latency per job",
    "completion detection",
    "makespan of",
    "pool of one fast",
    "queued and",
    "fuzzy cache lookup",
    "PNG peer → caller",
    "alternating: ",
    "random 70/30: ",
    "random 50/50: ",
    "bursts of 3 to 8: ",
    "three models, room for two: ",
]
SHARED = [  # where Debian's redis-server is installed
    "shared queue, 1 dispatcher process: ",
    "shared queue, 2 dispatcher processes: ",
    "shared queue, 4 dispatcher processes: ",
    "Redis round trips per job",
]


@pytest.mark.timeout(300)  # the whole quick benchmark: about a minute, more on a busy machine
async def test_quick_benchmark_prints_every_row() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatch_core.bench",
        "--quick",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    table = out.decode().splitlines()
    assert table[0].startswith("| row |")
    for row in ROWS + (SHARED if shutil.which("redis-server") else []):
        assert sum(row in line for line in table) == 1, row


async def test_the_routing_rows_run_alone() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dispatch_core.bench", "--quick", "--only", "routing",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    rows = out.decode().splitlines()[2:]
    assert [next(k for k in ROWS[-5:] if k in row) for row in rows] == ROWS[-5:]


async def test_the_benchmark_measures_servers_it_is_given() -> None:
    from dispatch_core.testing import FakePeer

    async with FakePeer(job_seconds=0.02) as one, FakePeer(job_seconds=0.04) as two:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dispatch_core.bench", "--peers", one.url, two.url,
            "--jobs", "4", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    table = out.decode().splitlines()
    for row in ("added latency per job", "completion detection", "pool of 2 servers, 4 "):
        assert sum(row in line for line in table) == 1, row


async def test_the_simulated_model_rows_print_every_kind() -> None:
    root = Path(__file__).parent.parent
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(root / "tools" / "simulate_affinity.py"),
        "--seeds",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(root)},  # this checkout's dispatch_core
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    for kind in ROWS[-5:]:
        assert (
            sum(line.startswith(f"| {kind.rstrip(': ')} |") for line in out.decode().splitlines())
            == 1
        )
