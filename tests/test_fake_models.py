"""FakePeer's model memory: what it holds, what it loads and when, as ComfyUI swaps
checkpoints (its loads are counted, as real peers' logs show them; times are the bench's)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import aiohttp
import pytest

from dispatch_core.testing import FakePeer

import workflows

pytestmark = pytest.mark.timeout(10)
CHECKPOINTS = {"checkpoints": ["a.safetensors", "b.safetensors", "c.safetensors"]}


def txt2img(checkpoint: str, seed: int) -> dict[str, Any]:
    workflow = workflows.txt2img(seed=seed)
    workflow["4"]["inputs"]["ckpt_name"] = checkpoint
    return workflow


async def run_all(peer: FakePeer, checkpoints: list[str]) -> list[str]:
    """Run one prompt per checkpoint, in order; the files the peer loaded meanwhile."""
    loaded: list[str] = []
    peer.on_load = loaded.append
    async with aiohttp.ClientSession() as session:
        for seed, name in enumerate(checkpoints):
            body = {"prompt": txt2img(name + ".safetensors", seed)}
            async with session.post(peer.url + "/prompt", json=body) as response:
                assert response.status == 200, await response.text()
            await peer.idle()
    return [name.removesuffix(".safetensors") for name in loaded]


async def test_by_default_each_model_is_loaded_once_and_kept() -> None:
    async with FakePeer(models=CHECKPOINTS) as peer:
        assert await run_all(peer, ["a", "b", "a", "c", "b"]) == ["a", "b", "c"]
        assert peer.loads == 3


async def test_one_slot_swaps_like_comfyuis_default_cache() -> None:
    async with FakePeer(models=CHECKPOINTS, memory_slots=1, load_seconds=0.01) as peer:
        assert await run_all(peer, ["a", "a", "b", "a", "a"]) == ["a", "b", "a"]
        assert peer.loads == 3


async def test_more_slots_evict_the_least_recently_used() -> None:
    async with FakePeer(models=CHECKPOINTS, memory_slots=2) as peer:
        # a, b held; a used again; c evicts b (least recent); b evicts a
        assert await run_all(peer, ["a", "b", "a", "c", "a", "b"]) == ["a", "b", "c", "b"]


async def test_a_restart_or_free_memory_forgets_what_was_held() -> None:
    async with FakePeer(models=CHECKPOINTS, memory_slots=2) as peer:
        await run_all(peer, ["a", "b"])
        await peer.restart()
        assert await run_all(peer, ["b"]) == ["b"]
        async with aiohttp.ClientSession() as session:
            async with session.post(peer.url + "/free", json={"free_memory": True}):
                pass
        assert await run_all(peer, ["b"]) == ["b"]
        assert peer.loads == 4


async def test_per_model_load_times_and_the_cold_start_are_settings() -> None:
    async with FakePeer(models=CHECKPOINTS, load_seconds={"a.safetensors": 0.02}) as peer:
        peer.cold_seconds = 0.01
        assert peer._load_model("a.safetensors") == pytest.approx(0.03)  # cold: once
        assert peer._load_model("b.safetensors") == 0.0  # no time given for b
        assert peer._load_model("a.safetensors") == 0.0  # held
        await peer.restart()
        assert peer._load_model("a.safetensors") == pytest.approx(0.03)


async def test_the_command_line_prints_each_load() -> None:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "dispatch_core.testing", "--port", "0", "--job-seconds", "0"),
        *("--checkpoint", "a.safetensors", "--checkpoint", "b.safetensors"),
        *("--load-seconds", "0.01", "--memory-slots", "1"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        url = (await process.stdout.readline()).decode().split()[4]
        async with aiohttp.ClientSession() as session:
            for seed, name in enumerate(["a", "b", "b"]):
                body = {"prompt": txt2img(name + ".safetensors", seed)}
                async with session.post(url + "/prompt", json=body):
                    pass
        lines = [(await process.stdout.readline()).decode().strip() for _ in range(2)]
        assert lines == ["loaded a.safetensors", "loaded b.safetensors"]
    finally:
        process.send_signal(2)
        assert await process.wait() == 0
