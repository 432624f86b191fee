"""A snapshot of one server's state, for a status line or a panel, asked of it now.

Asking never raises for what the server does: one that answers late (past
`timeouts.request`, at most 10 s), wrongly, or with hostile bytes is shown offline with a
reason in our words, so that one server can neither hold up nor fail a status round.
Beside it, the small workflow a calibration times: what a server can do, asked of it now.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._lanes import Lane
from ._peer import PeerClient
from ._peer_http import shown_url
from .errors import DispatchError

__all__ = ["ServerStatus", "calibration_workflow", "server_status"]

_DEADLINE = 10.0
"""Longest a status round waits for any server, whatever `timeouts.request` says."""
_log = logging.getLogger("dispatch_core._dispatcher")


@dataclass(frozen=True)
class ServerStatus:
    """A snapshot of one server, for a status line or a panel."""

    name: str
    url: str
    enabled: bool
    online: bool
    latency_ms: float | None = None
    queue_depth: int | None = None
    in_flight: int = 0
    vram_free: int | None = None
    vram_total: int | None = None
    comfyui_version: str | None = None
    error: str | None = None
    failures: int = 0
    """Consecutive failures seen by jobs; a success resets it."""
    circuit_open: bool = False
    """Too many failures in a row: new jobs avoid this server until a probe succeeds."""
    seconds_per_job: float | None = None
    """Measured on recent jobs that found their models loaded (the median)."""
    calibrated_seconds: float | None = None
    """Measured by `calibrate`, before any job."""
    loaded_models: tuple[str, ...] = ()
    """The model files its recent jobs used that it still holds, as far as they show."""
    model_slots: int = 1
    """How many jobs' models it was seen to hold at once (ComfyUI's default cache: 1)."""
    load_seconds: Mapping[str, float] = dataclasses.field(default_factory=dict)
    """Model file → seconds measured to load it there (a job's time beyond a warm one)."""
    dropped_frames: int = 0
    """WebSocket frames from this server that could not be read, since we connected."""


async def server_status(lane: Lane, peer: PeerClient, request_timeout: float) -> ServerStatus:
    """One server's state, asked now: reachable, latency, queue, VRAM, version."""
    base = ServerStatus(
        name=lane.name,
        url=shown_url(lane.server.url),
        enabled=lane.server.enabled,
        online=False,
        in_flight=lane.in_flight,
        failures=lane.failures,
        circuit_open=lane.tripped,
        seconds_per_job=_rounded(lane.seconds_per_job),
        calibrated_seconds=_rounded(lane.calibrated),
        loaded_models=tuple(sorted(lane.loaded)),
        model_slots=1 + lane.residency.keeps,
        load_seconds={k: round(v, 3) for k, v in sorted(lane.residency.load_seconds.items())},
        dropped_frames=peer.dropped_frames,
    )
    deadline = min(request_timeout, _DEADLINE)
    try:
        async with asyncio.timeout(deadline):
            return await _probe(peer, base)
    except DispatchError as error:
        return dataclasses.replace(base, error=str(error))
    except TimeoutError:
        return dataclasses.replace(base, error=f"no answer within {deadline:g} s")
    except Exception as error:  # whatever a hostile answer breaks: never the whole round
        _log.warning("server %r: status failed (%s)", lane.name, type(error).__name__)
        reason = f"its answer could not be read ({type(error).__name__})"
        return dataclasses.replace(base, error=reason)


async def _probe(peer: PeerClient, base: ServerStatus) -> ServerStatus:
    """`base` filled from the server's `/system_stats` and `/prompt`, each field checked."""
    began = time.monotonic()
    stats = await peer.system_stats()
    latency = (time.monotonic() - began) * 1000
    queue = await peer.get_json("/prompt")
    devices = stats.get("devices")
    device = devices[0] if isinstance(devices, list) and devices else {}
    device = device if isinstance(device, Mapping) else {}
    system = stats.get("system")
    version = system.get("comfyui_version") if isinstance(system, Mapping) else None
    exec_info = queue.get("exec_info") if isinstance(queue, Mapping) else None
    remaining = exec_info.get("queue_remaining") if isinstance(exec_info, Mapping) else None
    return dataclasses.replace(
        base,
        online=True,
        latency_ms=round(latency, 1),
        queue_depth=_int_or_none(remaining),
        vram_free=_int_or_none(device.get("vram_free")),
        vram_total=_int_or_none(device.get("vram_total")),
        comfyui_version=peer.scrub(str(version), 100) if version is not None else None,
    )


def calibration_workflow() -> dict[str, Any]:
    """Image work every ComfyUI has, no model needed: blur and invert a 1024² batch."""
    color = random.randrange(0x1000000)
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 1024, "height": 1024, "batch_size": 2, "color": color},
        },
        "2": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["1", 0], "blur_radius": 9, "sigma": 3.0},
        },
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
