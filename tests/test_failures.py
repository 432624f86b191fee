"""Each failure reaches the caller as its own exception, carrying the peer's own message."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from dispatch_core import (
    BadResponse,
    Config,
    Dispatcher,
    DispatchResult,
    DispatchTimeout,
    ExecutionFailed,
    Interrupted,
    Progress,
    PromptRejected,
)
from dispatch_core.testing import FakePeer

import workflows


@pytest.fixture
async def peer() -> AsyncIterator[FakePeer]:
    async with FakePeer(models={"checkpoints": ["sd15.safetensors"]}) as fake:
        yield fake


def config_for(url: str, **timeouts: float) -> Config:
    return Config.from_dict(
        {"servers": {"gpu": url}, "routes": {"gen": "gpu"}, "timeouts": timeouts}
    )


async def test_validation_error_names_node_class_and_message(peer: FakePeer) -> None:
    workflow = workflows.invert()
    workflow["1"]["inputs"]["width"] = 999999
    async with Dispatcher(config_for(peer.url)) as dispatcher:
        with pytest.raises(PromptRejected) as caught:
            await dispatcher.run("gen", workflow)
    error = caught.value
    assert error.server == "gpu" and error.error_type == "prompt_outputs_failed_validation"
    assert [(e.node_id, e.class_type) for e in error.node_errors] == [("1", "EmptyImage")]
    assert "Value 999999 bigger than max of 16384: width" in str(error)


async def test_unknown_node_class_is_rejected(peer: FakePeer) -> None:
    workflow = workflows.invert()
    workflow["2"]["class_type"] = "NoSuchNode"
    async with Dispatcher(config_for(peer.url)) as dispatcher:
        with pytest.raises(PromptRejected, match=r"NoSuchNode does not exist.*Node ID '#2'"):
            await dispatcher.run("gen", workflow)


async def test_ok_answer_with_node_errors_is_the_users_error(peer: FakePeer) -> None:
    workflow = workflows.invert()
    workflow["4"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["1", 0], "filename_prefix": "x"},
    }
    workflow["5"] = {
        "class_type": "EmptyImage",
        "inputs": {"width": -1, "height": 1, "batch_size": 1, "color": 0},
    }
    workflow["6"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["5", 0], "filename_prefix": "y"},
    }
    async with Dispatcher(config_for(peer.url)) as dispatcher:
        with pytest.raises(PromptRejected, match="dropped outputs") as caught:
            await dispatcher.run("gen", workflow)
    assert caught.value.node_errors[0].node_id == "5"
    queue = await peer_queue(peer)
    assert queue == ([], [])


async def test_runtime_error_carries_node_and_exception(peer: FakePeer) -> None:
    async with Dispatcher(config_for(peer.url)) as dispatcher:
        with pytest.raises(ExecutionFailed) as caught:
            await dispatcher.run("gen", workflows.fails_at_runtime())
    error = caught.value
    assert (error.node_id, error.node_type, error.exception_type) == (
        "2",
        "ImageToMask",
        "IndexError",
    )
    assert "out of bounds" in error.exception_message
    assert "node 2 (ImageToMask) failed on the peer: IndexError" in str(error)
    assert error.traceback


async def test_interrupt_on_the_peer_reaches_the_caller(peer: FakePeer) -> None:
    peer.job_seconds = 5
    async with Dispatcher(config_for(peer.url)) as dispatcher:
        job = await start_slow_job(dispatcher)
        async with aiohttp.ClientSession() as session:
            await session.post(peer.url + "/interrupt")
        with pytest.raises(Interrupted, match="interrupted on the peer"):
            await job


async def test_cancelling_the_caller_interrupts_the_peer(peer: FakePeer) -> None:
    peer.job_seconds = 5
    async with Dispatcher(config_for(peer.url)) as dispatcher:
        job = await start_slow_job(dispatcher)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
    # The dispatcher waited for its clean-up on close: the peer was told.
    assert ("POST", "/interrupt") in peer.requests
    await peer.idle()
    entry = await peer_history(peer, peer.prompts_received[0])
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"


async def test_an_unreachable_lone_peer_is_waited_for_then_named() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    async with Dispatcher(config_for(url, request=2)) as dispatcher:
        with pytest.raises(DispatchTimeout) as caught:
            await dispatcher.run("gen", workflows.invert(), timeout=1)
        states = await dispatcher.status()
    error = caught.value
    assert error.server == "gpu" and f"POST /prompt to {url} failed" in error.waited_for
    assert states["gpu"].circuit_open and states["gpu"].failures >= 3


async def test_a_peer_that_comes_back_within_the_timeout_gets_the_job(peer: FakePeer) -> None:
    await peer.stop()
    async with Dispatcher(config_for(peer.url, request=1)) as dispatcher:
        job = asyncio.create_task(dispatcher.run("gen", workflows.invert(), timeout=30))
        while not dispatcher.servers.lane("gpu").failures:  # noqa: ASYNC110 - a test may peek
            await asyncio.sleep(0.01)
        await peer.start()
        result = await job
    assert result.server == "gpu" and peer.prompts_received == [result.prompt_id]


async def test_a_server_error_is_not_retried(peer: FakePeer) -> None:
    peer.fail_http = {"/prompt": 500}
    async with Dispatcher(config_for(peer.url)) as dispatcher:
        with pytest.raises(BadResponse, match="POST /prompt answered HTTP 500") as caught:
            await dispatcher.run("gen", workflows.invert())
    assert caught.value.status == 500
    assert peer.requests.count(("POST", "/prompt")) == 1


async def test_a_gateway_error_is_retried_until_the_timeout(peer: FakePeer) -> None:
    peer.fail_http = {"/prompt": 502}
    async with Dispatcher(config_for(peer.url)) as dispatcher:
        with pytest.raises(DispatchTimeout, match="POST /prompt answered HTTP 502"):
            await dispatcher.run("gen", workflows.invert(), timeout=1)
    assert peer.requests.count(("POST", "/prompt")) >= 3


async def test_users_errors_are_never_retried(peer: FakePeer) -> None:
    async with Dispatcher(config_for(peer.url)) as dispatcher:
        with pytest.raises(ExecutionFailed):
            await dispatcher.run("gen", workflows.fails_at_runtime())
    assert len(peer.prompts_received) == 1


async def test_timeout_says_what_it_waited_for(peer: FakePeer) -> None:
    peer.job_seconds = 5
    async with Dispatcher(config_for(peer.url)) as dispatcher:
        with pytest.raises(DispatchTimeout) as caught:
            await dispatcher.run("gen", workflows.txt2img(steps=50), timeout=0.3)
        error = caught.value
        assert isinstance(error, TimeoutError)
        assert "to finish prompt" in error.waited_for and error.prompt_id
        assert "no result within 0.3 s" in str(error)


async def test_hung_peer_is_bounded_by_the_request_timeout(peer: FakePeer) -> None:
    peer.hang = True
    async with Dispatcher(config_for(peer.url, request=0.3)) as dispatcher:
        with pytest.raises(DispatchTimeout, match=r"no answer within 0\.3 s"):
            await dispatcher.run("gen", workflows.invert(), timeout=1.5)
    peer.hang = False


async def test_a_lost_prompt_is_resubmitted_once(peer: FakePeer) -> None:
    peer.job_seconds = 5
    async with Dispatcher(config_for(peer.url, poll_interval=0.05)) as dispatcher:
        job = await start_slow_job(dispatcher)
        await peer.restart()
        peer.job_seconds = 0
        result = await job
    first, second = peer.prompts_received  # the peer forgot the first one
    assert second == result.prompt_id != first


async def test_every_loss_is_resubmitted(peer: FakePeer) -> None:
    peer.job_seconds = 5
    prompts: list[str] = []
    started = asyncio.Event()

    def seen(progress: Progress) -> None:
        if progress.prompt_id not in prompts:
            prompts.append(progress.prompt_id)
            started.set()

    async with Dispatcher(config_for(peer.url, poll_interval=0.05)) as dispatcher:
        job = asyncio.create_task(
            dispatcher.run("gen", workflows.txt2img(steps=50), on_progress=seen)
        )
        for _ in range(2):
            await started.wait()
            started.clear()
            await peer.restart()
        peer.job_seconds = 0
        result = await job
        assert dispatcher.counts["resubmitted"] == 2
    assert len(prompts) == 3 and result.prompt_id == prompts[-1] == peer.prompts_received[-1]


async def test_websocket_drop_mid_job_still_completes(peer: FakePeer) -> None:
    peer.job_seconds = 0.3
    dropped = asyncio.Event()

    async def drop_once(progress: Progress) -> None:
        if not dropped.is_set():
            dropped.set()
            await peer.drop_websockets()

    async with Dispatcher(config_for(peer.url, poll_interval=0.05)) as dispatcher:
        result = await dispatcher.run("gen", workflows.txt2img(steps=6), on_progress=drop_once)
    assert dropped.is_set() and len(result.images) == 1


async def test_silent_websocket_is_caught_by_the_recheck(peer: FakePeer) -> None:
    async with Dispatcher(config_for(peer.url)) as dispatcher:
        dispatcher.peer("gpu").recheck_interval = 0.1
        await dispatcher.peer("gpu").start()
        peer.ws_silent = True
        result = await dispatcher.run("gen", workflows.invert())
    assert len(result.images) == 1


async def start_slow_job(dispatcher: Dispatcher) -> asyncio.Task[DispatchResult]:
    """A long job on route `gen`, returned once the peer reports progress on it."""
    started = asyncio.Event()
    job = asyncio.create_task(
        dispatcher.run("gen", workflows.txt2img(steps=50), on_progress=lambda _: started.set())
    )
    await started.wait()
    return job


async def peer_history(peer: FakePeer, prompt_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{peer.url}/history/{prompt_id}") as response:
            body: dict[str, Any] = await response.json()
    return body[prompt_id]


async def peer_queue(peer: FakePeer) -> tuple[list[object], list[object]]:
    async with aiohttp.ClientSession() as session, session.get(peer.url + "/queue") as response:
        body = await response.json()
    return body["queue_running"], body["queue_pending"]


async def test_a_timed_out_job_keeps_its_slot_until_the_peer_lets_go(peer: FakePeer) -> None:
    peer.job_seconds = 5
    async with Dispatcher(config_for(peer.url, poll_interval=0.05)) as dispatcher:
        with pytest.raises(DispatchTimeout):
            await dispatcher.run("gen", workflows.txt2img(steps=50), timeout=0.3)
        peer.job_seconds = 0
        result = await dispatcher.run("gen", workflows.invert())
    assert len(result.files) == 1
    assert peer.max_concurrent_seen == 1


async def test_run_parallel_settles_every_job_in_order(peer: FakePeer) -> None:
    async with Dispatcher(config_for(peer.url)) as dispatcher:
        results = await dispatcher.run_parallel(
            [
                {"route": "gen", "workflow": workflows.invert()},
                {"route": "gen", "workflow": workflows.fails_at_runtime()},
                {"route": "nowhere", "workflow": workflows.invert()},
            ]
        )
    assert [type(r).__name__ for r in results] == [
        "DispatchResult",
        "ExecutionFailed",
        "NotFound",
    ]


async def test_a_cut_connection_after_submit_asks_the_peer_before_resubmitting(
    peer: FakePeer,
) -> None:
    peer.cut_after_handling = {"/prompt"}
    async with Dispatcher(config_for(peer.url)) as dispatcher:
        result = await dispatcher.run("gen", workflows.invert())
    assert peer.prompts_received == [result.prompt_id]  # asked, not sent twice
    assert peer.requests[1:3] == [("POST", "/prompt"), ("GET", f"/history/{result.prompt_id}")]


async def test_a_download_is_retried_through_a_passing_gateway_error(peer: FakePeer) -> None:
    async with Dispatcher(config_for(peer.url)) as dispatcher:
        result = await dispatcher.run("gen", workflows.invert())
        peer.fail_http = {"/view": 503}
        reading = asyncio.create_task(result.images[0].read())
        while ("GET", "/view") not in peer.requests:  # noqa: ASYNC110 - a test may peek
            await asyncio.sleep(0.01)
        peer.fail_http = {}
        assert (await reading).startswith(b"\x89PNG")
    assert peer.requests.count(("GET", "/view")) >= 2
