"""The benchmark runs end to end and prints every row; its numbers are not judged here."""

from __future__ import annotations

import asyncio
import shutil
import sys

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


@pytest.mark.timeout(120)  # about 60 s on a busy 2-core machine; the shared rows start Redis
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
