"""The machine's GPUs, for one worker per GPU: from `nvidia-smi`, else from torch, else none.

`nvidia-smi` comes with NVIDIA's driver (on Windows too) and numbers the GPUs by PCI bus,
as workers do (`CUDA_DEVICE_ORDER=PCI_BUS_ID`, see `_workers`). Without it, torch is asked
only when the host has imported it already (ComfyUI has; the standalone gateway never
imports it): its numbers are those the host sees, mapped back through the host's own
`CUDA_VISIBLE_DEVICES` when that lists plain numbers. The answer is kept a few seconds,
and one probe runs at a time: a panel's reloads never pile up `nvidia-smi` processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Gpu", "GpuProbe", "Gpus", "parse_nvidia_smi"]

QUERY = ["--query-gpu=index,name,memory.total", "--format=csv,noheader"]
_TIMEOUT = 10.0
_MAX_OUTPUT = 64 * 1024
_MAX_GPUS = 64
_KEEP_SECONDS = 10.0
_log = logging.getLogger("dispatch_core.service")


@dataclass(frozen=True)
class Gpu:
    index: int
    """As `CUDA_VISIBLE_DEVICES` takes it for a worker."""
    name: str
    memory_mb: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "memory_mb": self.memory_mb}


@dataclass(frozen=True)
class Gpus:
    gpus: tuple[Gpu, ...] = ()
    source: str | None = None
    """`nvidia-smi`, `torch`, or None when none was found."""


class GpuProbe:
    """Detects the GPUs on demand; `clock` for tests."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock: asyncio.Lock | None = None
        self._found: tuple[float, Gpus] | None = None

    async def detect(self) -> Gpus:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            now = self._clock()
            if self._found is not None and now - self._found[0] < _KEEP_SECONDS:
                return self._found[1]
            found = await _detect()
            self._found = (self._clock(), found)
            return found


async def _detect() -> Gpus:
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        listed = await _nvidia_smi(smi)
        if listed:
            return Gpus(listed, "nvidia-smi")
    listed = _torch()
    return Gpus(listed, "torch") if listed else Gpus()


async def _nvidia_smi(path: str) -> tuple[Gpu, ...]:
    try:
        process = await asyncio.create_subprocess_exec(
            path,
            *QUERY,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError as error:
        _log.warning("ComfyUI-Dispatch: cannot run %s: %s", path, error)
        return ()
    try:
        assert process.stdout is not None
        output = await asyncio.wait_for(_read(process.stdout, _MAX_OUTPUT), _TIMEOUT)
    except TimeoutError:
        _log.warning("ComfyUI-Dispatch: %s did not answer within %g s", path, _TIMEOUT)
        return ()
    finally:
        await _end(process)
    return parse_nvidia_smi(output.decode(errors="replace"))


async def _end(process: asyncio.subprocess.Process) -> None:
    """Kill the probe and let its pipe close: a pipe with unread output left (a flood cut
    at the limit) never reaches its end, and `wait()` would wait for it forever."""
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    assert process.stdout is not None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_TIMEOUT):
            while await process.stdout.read(1 << 16):
                pass  # what the killed probe left in the pipe
            await process.wait()


async def _read(stream: asyncio.StreamReader, limit: int) -> bytes:
    """Until the end, or `limit` bytes."""
    data = b""
    while len(data) < limit:
        chunk = await stream.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return data


def parse_nvidia_smi(text: str) -> tuple[Gpu, ...]:
    """`0, NVIDIA GeForce RTX 4090, 24564 MiB` a line; lines of another shape are skipped."""
    gpus = []
    for line in text.splitlines()[:_MAX_GPUS]:
        index, _, rest = line.partition(",")
        name, _, memory = rest.rpartition(",")
        index, name, memory = index.strip(), name.strip(), memory.strip()
        if not (index.isascii() and index.isdigit() and len(index) <= 3 and name):
            continue
        amount, _, unit = memory.partition(" ")
        megabytes = int(amount) if amount.isascii() and amount.isdigit() else None
        if megabytes is not None and unit not in ("", "MiB"):
            megabytes = None
        gpus.append(Gpu(int(index), name[:100], megabytes))
    return tuple(gpus)


def _torch() -> tuple[Gpu, ...]:
    """The host's torch, if it imported one: never imported here."""
    cuda = getattr(sys.modules.get("torch"), "cuda", None)
    try:
        if cuda is None or not cuda.is_available():
            return ()
        count = min(int(cuda.device_count()), _MAX_GPUS)
        properties = [cuda.get_device_properties(i) for i in range(count)]
    except Exception as error:  # a broken driver: no GPUs, said in the log
        _log.warning("ComfyUI-Dispatch: torch cannot list the GPUs: %s", error)
        return ()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
    numbers = [int(v) for v in visible if v.isascii() and v.strip().isdigit()]
    mapped = len(numbers) == len(visible) and len(numbers) >= count
    return tuple(
        Gpu(
            numbers[i] if mapped else i,
            str(getattr(p, "name", "GPU"))[:100],
            int(getattr(p, "total_memory", 0)) // 2**20 or None,
        )
        for i, p in enumerate(properties)
    )
