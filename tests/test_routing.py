"""Model-aware routing against fake peers that have different models: inventory, refusal of
what no server can run, affinity across a mixed job stream, calibration."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from dispatch_core import Config, Dispatcher, JobSpec, RoutingError
from dispatch_core._inventory import Inventory, needs_of
from dispatch_core.testing import FakePeer

import workflows

BOTH = {"checkpoints": ["sd15.safetensors", "sdxl.safetensors"], "loras": ["ink.safetensors"]}


def txt2img(checkpoint: str, seed: int = 1) -> dict[str, Any]:
    workflow = workflows.txt2img(seed=seed)
    workflow["4"]["inputs"]["ckpt_name"] = checkpoint
    return workflow


def pool(peers: dict[str, FakePeer], route: Any = "auto") -> Config:
    return Config.from_dict(
        {"servers": {n: p.url for n, p in peers.items()}, "routes": {"gen": route}}
    )


@pytest.fixture
async def peers() -> AsyncIterator[dict[str, FakePeer]]:
    async with AsyncExitStack() as stack:
        yield {
            "xl": await stack.enter_async_context(
                FakePeer(models={"checkpoints": ["sdxl.safetensors"]})
            ),
            "sd": await stack.enter_async_context(
                FakePeer(models={"checkpoints": ["sd15.safetensors"]})
            ),
        }


def test_needs_and_inventory_from_object_info() -> None:
    needs = needs_of(txt2img("sdxl.safetensors"))
    assert needs.model_files == {"sdxl.safetensors"}
    assert needs.node_classes["KSampler"] == "3"
    info = {
        "CheckpointLoaderSimple": {
            "input": {"required": {"ckpt_name": [["a.safetensors", "sdxl.safetensors"], {}]}}
        },
        "DualCLIPLoader": {
            "input": {"required": {"clip_name1": ["COMBO", {"options": ["t5.safetensors"]}]}}
        },
        "KSampler": {"input": {"required": {"seed": ["INT", {}]}}},
    }
    inventory = Inventory.from_object_info(info)
    assert inventory.models() == {
        "checkpoints": ["a.safetensors", "sdxl.safetensors"],
        "text_encoders": ["t5.safetensors"],
    }
    assert inventory.missing(needs) == [
        "node class EmptyLatentImage (node 5)",
        "node class CLIPTextEncode (node 6)",
        "node class VAEDecode (node 8)",
        "node class SaveImage (node 9)",
    ]


async def test_a_pool_sends_each_job_where_its_model_is(peers: dict[str, FakePeer]) -> None:
    async with Dispatcher(pool(peers)) as dispatcher:
        for checkpoint, server in [("sdxl.safetensors", "xl"), ("sd15.safetensors", "sd")] * 2:
            result = await dispatcher.run("gen", txt2img(checkpoint))
            assert result.server == server
        inventory = dispatcher.inventories["xl"]
        assert inventory.models()["checkpoints"] == ["sdxl.safetensors"]
    assert len(peers["xl"].prompts_received) == len(peers["sd"].prompts_received) == 2


async def test_what_no_server_can_run_is_refused_before_dispatch(
    peers: dict[str, FakePeer],
) -> None:
    async with Dispatcher(pool(peers)) as dispatcher:
        with pytest.raises(RoutingError) as caught:
            await dispatcher.run("gen", txt2img("flux.safetensors"))
    message = str(caught.value)
    assert message.startswith("no server of route 'gen' can run this workflow: ")
    assert "xl lacks checkpoints/flux.safetensors (node 4)" in message
    assert "sd lacks checkpoints/flux.safetensors (node 4)" in message
    assert peers["xl"].prompts_received == peers["sd"].prompts_received == []


async def test_an_unreachable_servers_inventory_does_not_block_the_others(
    peers: dict[str, FakePeer],
) -> None:
    await peers["sd"].stop()
    async with Dispatcher(pool(peers)) as dispatcher:
        result = await dispatcher.run("gen", txt2img("sdxl.safetensors"))
    assert result.server == "xl"


async def mixed_stream(peers: dict[str, FakePeer], *, affinity: bool, jobs: int = 100) -> int:
    """Checkpoint loads over `jobs` jobs, two checkpoints at random, four in flight, on
    peers restarted cold."""
    chooser = random.Random(7)
    for peer in peers.values():
        await peer.restart()
    before = sum(peer.loads for peer in peers.values())
    async with Dispatcher(pool(peers)) as dispatcher:
        dispatcher.affinity = affinity
        slots = asyncio.Semaphore(4)

        async def one(index: int) -> None:
            async with slots:
                checkpoint = chooser.choice(["sd15.safetensors", "sdxl.safetensors"])
                await dispatcher.run("gen", txt2img(checkpoint, seed=index))

        await asyncio.gather(*(one(i) for i in range(jobs)))
    return sum(peer.loads for peer in peers.values()) - before


async def test_affinity_keeps_models_where_they_are_across_a_mixed_stream() -> None:
    # Peers that swap as ComfyUI does: a switch takes 2.1 warm jobs, a cold start 4.7.
    swapping = {"job_seconds": 0.02, "load_seconds": 0.022, "cold_seconds": 0.052}
    async with AsyncExitStack() as stack:
        peers = {
            n: await stack.enter_async_context(FakePeer(models=BOTH, memory_slots=1, **swapping))
            for n in ("a", "b")
        }
        with_affinity = await mixed_stream(peers, affinity=True)
        least_busy = await mixed_stream(peers, affinity=False)
    print(f"checkpoint loads per 100 jobs: affinity {with_affinity}, least-busy {least_busy}")
    assert with_affinity * 2 <= least_busy


async def test_the_result_says_why_its_server_was_chosen() -> None:
    async with AsyncExitStack() as stack:
        peers = {n: await stack.enter_async_context(FakePeer(models=BOTH)) for n in ("a", "b")}
        async with Dispatcher(pool(peers)) as dispatcher:
            first = await dispatcher.run("gen", txt2img("sdxl.safetensors"))
            again = await dispatcher.run("gen", txt2img("sdxl.safetensors", seed=2))
            named = await dispatcher.run("gen", txt2img("sd15.safetensors"), server="b")
    assert first.reason == "'a' was the first free of 2 servers able to run it"
    assert again.reason == "'a' had sdxl.safetensors loaded already"
    assert named.reason == "the job named server 'b'"
    assert first.to_dict()["reason"] == first.reason


async def test_calibration_weights_a_pool() -> None:
    async with AsyncExitStack() as stack:
        slow = await stack.enter_async_context(FakePeer(job_seconds=0.3))
        fast = await stack.enter_async_context(FakePeer(job_seconds=0.03))
        peers = {"slow": slow, "fast": fast}  # the slow one first: config order would pick it
        async with Dispatcher(pool(peers, ["slow", "fast"])) as dispatcher:
            slow_seconds = await dispatcher.calibrate("slow", runs=2)
            fast_seconds = await dispatcher.calibrate("fast", runs=2)
            status = await dispatcher.status()  # kept, and shown, before any real job
            assert status["slow"].calibrated_seconds == round(slow_seconds, 3)
            assert status["fast"].calibrated_seconds == round(fast_seconds, 3)
            servers = [(await dispatcher.run("gen", workflows.invert(i))).server for i in range(4)]
        assert servers == ["fast"] * 4
        # each calibration run was computed, not answered by a cache
        assert len(slow.prompts_received) == len(fast.prompts_received) - 4 == 3


async def test_a_server_named_auto_is_refused() -> None:
    from dispatch_core import ConfigError

    with pytest.raises(ConfigError, match=r"servers\.auto: 'auto' means every server"):
        Config.from_dict({"servers": {"auto": "http://h:1"}, "routes": {}})


def test_only_loaders_name_model_files() -> None:
    workflow = txt2img("sdxl.safetensors")
    workflow["20"] = {
        "class_type": "KlingImageGenerationNode",
        "inputs": {"model_name": "kling-v2"},
    }
    assert needs_of(workflow).model_files == {"sdxl.safetensors"}
    info = {
        "UpscaleModelLoader": {"input": {"required": {"model_name": [["4x.pth"], {}]}}},
        "KlingImageGenerationNode": {"input": {"required": {"model_name": [["kling-v2"], {}]}}},
    }
    assert Inventory.from_object_info(info).models() == {"upscale_models": ["4x.pth"]}


def test_inventory_of_a_real_comfyuis_object_info() -> None:
    from dispatch_core._workflow_checks import shipped_object_info

    inventory = Inventory.from_object_info(shipped_object_info())  # recorded from 0.3.64
    assert {"CheckpointLoaderSimple", "KSampler", "SaveImage"} <= inventory.node_classes
    assert "checkpoints" in inventory.models()


async def test_a_hung_servers_inventory_does_not_hold_pool_jobs(
    peers: dict[str, FakePeer],
) -> None:
    peers["sd"].hang = True  # accepts, never answers
    config = pool(peers)
    config = dataclasses.replace(config, timeouts=dataclasses.replace(config.timeouts, request=1))
    async with Dispatcher(config) as dispatcher:
        result = await dispatcher.run("gen", txt2img("sdxl.safetensors"))
        assert result.server == "xl"
        assert "sd" not in dispatcher.inventories  # its read was still going on
        peers["sd"].hang = False


async def test_a_job_avoids_the_servers_it_names() -> None:
    """The ComfyUI whose node sends a job is in its route: the job goes to the others."""
    async with AsyncExitStack() as stack:
        peers = {n: await stack.enter_async_context(FakePeer(models=BOTH)) for n in ("a", "b")}
        async with Dispatcher(pool(peers, ["a", "b"])) as dispatcher:
            for seed in (1, 2, 3):
                spec = JobSpec("gen", txt2img("sdxl.safetensors", seed), avoid=frozenset({"a"}))
                assert (await dispatcher.run(spec)).server == "b"
            every = JobSpec("gen", txt2img("sdxl.safetensors"), avoid=frozenset({"a", "b"}))
            with pytest.raises(RoutingError, match="no server is left to run it: a, b must be"):
                await dispatcher.run(every)
        assert peers["a"].prompts_received == [] and len(peers["b"].prompts_received) == 3
