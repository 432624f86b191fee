"""The dispatcher over real sockets against fake ComfyUI peers: routing, limits, cache, chaining."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from dispatch_core import (
    Config,
    Dispatcher,
    DispatcherClosed,
    DispatchResult,
    JobSpec,
    NotFound,
    Progress,
    RoutingError,
    WorkflowBuilder,
    WorkflowError,
)
from dispatch_core.testing import FakePeer
from dispatch_core.testing._png import decode_png

import workflows

MODELS = {"checkpoints": ["sd15.safetensors"]}


@pytest.fixture
async def peers() -> AsyncIterator[dict[str, FakePeer]]:
    async with AsyncExitStack() as stack:
        found = {}
        for name in ("a", "b", "c"):
            found[name] = await stack.enter_async_context(FakePeer(models=MODELS))
        yield found


def make_config(peers: dict[str, FakePeer], **extra: Any) -> Config:
    servers: dict[str, Any] = {name: {"url": peer.url} for name, peer in peers.items()}
    for name, settings in extra.pop("server_settings", {}).items():
        servers[name].update(settings)
    routes = {name: name for name in peers} | {"pool": list(peers)}
    return Config.from_dict({"servers": servers, "routes": routes, **extra})


async def pixels(result: DispatchResult, index: int = 0) -> tuple[int, int, bytes]:
    image = decode_png(await result.images[index].read())
    return image.width, image.height, image.pixels


def solid(color: int, width: int, height: int) -> bytes:
    return bytes(((color >> 16) & 255, (color >> 8) & 255, color & 255)) * (width * height)


async def test_parallel_jobs_on_three_peers(peers: dict[str, FakePeer]) -> None:
    async with Dispatcher(make_config(peers)) as dispatcher:
        jobs = [JobSpec(name, workflows.invert(0x102030 * (i + 1))) for i, name in enumerate("abc")]
        results = await dispatcher.run_parallel(jobs)
        for i, (name, result) in enumerate(zip("abc", results, strict=True)):
            assert isinstance(result, DispatchResult), result
            assert result.server == name
            assert peers[name].prompts_received == [result.prompt_id]
            assert await pixels(result) == (16, 8, solid(0xFFFFFF - 0x102030 * (i + 1), 16, 8))
            assert result.timings.finished and result.timings.finished >= result.timings.queued


async def test_reading_outputs_after_close_says_so(peers: dict[str, FakePeer]) -> None:
    async with Dispatcher(make_config(peers)) as dispatcher:
        result = await dispatcher.run("a", workflows.invert())
    with pytest.raises(DispatcherClosed, match="read outputs before closing"):
        await result.images[0].read()


async def test_pool_spreads_work_and_never_exceeds_max_in_flight(
    peers: dict[str, FakePeer],
) -> None:
    for peer in peers.values():
        peer.job_seconds = 0.02
    config = make_config(peers, server_settings={"c": {"max_in_flight": 2}})
    async with Dispatcher(config) as dispatcher:
        results = await dispatcher.run_parallel(
            [JobSpec("pool", workflows.invert(i)) for i in range(12)]
        )
        assert dispatcher.in_flight() == {"a": 0, "b": 0, "c": 0}
    assert all(isinstance(r, DispatchResult) for r in results), results
    counts = {name: len(peer.prompts_received) for name, peer in peers.items()}
    assert sum(counts.values()) == 12 and min(counts.values()) >= 2, counts
    assert peers["a"].max_concurrent_seen == 1
    assert peers["b"].max_concurrent_seen == 1
    assert peers["c"].max_concurrent_seen == 2


async def test_outputs_are_listed_with_urls_and_batches(peers: dict[str, FakePeer]) -> None:
    async with Dispatcher(make_config(peers)) as dispatcher:
        result = await dispatcher.run("a", workflows.invert(0, batch=3))
    assert len(result.images) == 3 and result.images == result.files
    first = result.images[0]
    assert first.url.startswith(peers["a"].url + "/view?filename=")
    assert first.node_id == "3" and first.type == "output"
    assert result.to_dict()["files"][0]["filename"] == first.filename


async def test_overrides_by_id_and_title(peers: dict[str, FakePeer]) -> None:
    async with Dispatcher(make_config(peers)) as dispatcher:
        result = await dispatcher.run(
            "b",
            workflows.invert(0),
            {"Canvas": {"color": 0x0000FF, "width": 4}, "1": {"height": 2}},
        )
        assert await pixels(result) == (4, 2, solid(0xFFFF00, 4, 2))


async def test_exact_and_fuzzy_cache_hits_touch_no_peer(peers: dict[str, FakePeer]) -> None:
    config = make_config(peers, cache={"fuzzy": True, "max_distance": 3})
    async with Dispatcher(config) as dispatcher:
        first = await dispatcher.run(
            "a", workflows.invert(), cache_key="a red jacket, studio light"
        )
        data = await first.images[0].read()
        exact = await dispatcher.run(
            "a", workflows.invert(), cache_key="a red jacket, studio light"
        )
        fuzzy = await dispatcher.run(
            "a", workflows.invert(), cache_key="a red jacket, studio lights"
        )
        other_route = await dispatcher.run(
            "b", workflows.invert(), cache_key="a red jacket, studio light"
        )
        miss = await dispatcher.run("a", workflows.invert(), cache_key="a blue hat")
    assert not first.cached and exact.cached and fuzzy.cached
    assert exact.prompt_id == fuzzy.prompt_id == first.prompt_id
    assert await fuzzy.images[0].read() == data
    assert not other_route.cached and not miss.cached
    assert len(peers["a"].prompts_received) == 2


async def test_exact_cache_only_when_not_fuzzy(peers: dict[str, FakePeer]) -> None:
    async with Dispatcher(make_config(peers)) as dispatcher:
        await dispatcher.run("a", workflows.invert(), cache_key="key")
        near = await dispatcher.run("a", workflows.invert(), cache_key="kez")
    assert not near.cached and len(peers["a"].prompts_received) == 2


async def test_set_image_uploads_to_the_chosen_peer(peers: dict[str, FakePeer]) -> None:
    async with Dispatcher(make_config(peers)) as dispatcher:
        source = await dispatcher.run("a", workflows.invert(0x00FF00, width=6, height=5))
        png = await source.images[0].read()
        builder = WorkflowBuilder(workflows.load_invert()).set_image("Input", png)
        result = await dispatcher.run("b", builder)
        assert await pixels(result) == (6, 5, solid(0x00FF00, 6, 5))
    assert len(peers["b"].uploads) == 1


async def test_chaining_an_output_of_a_into_a_job_on_b(peers: dict[str, FakePeer]) -> None:
    async with Dispatcher(make_config(peers)) as dispatcher:
        made = await dispatcher.run("a", workflows.txt2img("a red jacket", seed=7))
        edit = WorkflowBuilder(workflows.load_invert()).set_image("LoadImage", made.images[0])
        edited = await dispatcher.run("c", edit)
        width, height, original = await pixels(made)
        assert await pixels(edited) == (width, height, bytes(255 - v for v in original))
    assert peers["b"].prompts_received == []


async def test_progress_reaches_the_caller(peers: dict[str, FakePeer]) -> None:
    seen: list[Progress] = []
    async with Dispatcher(make_config(peers)) as dispatcher:
        await dispatcher.run("a", workflows.txt2img(steps=5), on_progress=seen.append)
    steps = [p for p in seen if p.node == "3"]
    assert [p.value for p in steps][-1] == 5 and steps[-1].max == 5
    assert seen[-1].nodes_done >= 1 and seen[-1].nodes_total >= seen[-1].nodes_done


async def test_async_progress_callbacks_are_awaited(peers: dict[str, FakePeer]) -> None:
    seen: list[float] = []

    async def record(progress: Progress) -> None:
        await asyncio.sleep(0)
        seen.append(progress.value)

    async with Dispatcher(make_config(peers)) as dispatcher:
        await dispatcher.run("a", workflows.txt2img(steps=3), on_progress=record)
    assert 3.0 in seen


async def test_different_seeds_give_different_pixels(peers: dict[str, FakePeer]) -> None:
    async with Dispatcher(make_config(peers)) as dispatcher:
        one, two = await asyncio.gather(
            dispatcher.run("pool", workflows.txt2img(seed=1)),
            dispatcher.run("pool", workflows.txt2img(seed=2)),
        )
        assert (await pixels(one))[2] != (await pixels(two))[2]


@pytest.mark.parametrize(
    ("kwargs", "kind", "words"),
    [
        ({"route": "nope"}, NotFound, "unknown route 'nope' (known: a, b, c, off, pool)"),
        ({"route": "a", "server": "zz"}, NotFound, "unknown server 'zz'"),
        ({"route": "off"}, RoutingError, "every server of route 'off' is disabled"),
        ({"route": "a", "server": "d"}, RoutingError, "server 'd' is disabled"),
    ],
)
async def test_routing_errors(
    peers: dict[str, FakePeer], kwargs: dict[str, Any], kind: type[Exception], words: str
) -> None:
    config = Config.from_dict(
        {
            "servers": {n: p.url for n, p in peers.items()}
            | {"d": {"url": peers["a"].url, "enabled": False}},
            "routes": {"a": "a", "b": "b", "c": "c", "pool": ["a", "b", "c"], "off": "d"},
        }
    )
    async with Dispatcher(config) as dispatcher:
        with pytest.raises(kind, match=words.replace("(", r"\(").replace(")", r"\)")):
            await dispatcher.run(workflow=workflows.invert(), **kwargs)


async def test_output_node_picks_one_nodes_files(peers: dict[str, FakePeer]) -> None:
    workflow = workflows.invert(batch=2)
    workflow["4"] = {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
    async with Dispatcher(make_config(peers)) as dispatcher:
        everything = await dispatcher.run("a", workflow)
        preview = await dispatcher.run("a", workflow, output_node="PreviewImage")
    assert len(everything.images) == 4
    assert [f.type for f in preview.images] == ["temp", "temp"]
    assert {f.node_id for f in preview.files} == {"4"}
    async with Dispatcher(make_config(peers)) as dispatcher:
        with pytest.raises(WorkflowError, match="no node 'Nope'"):
            await dispatcher.run("a", workflow, output_node="Nope")
    assert len(peers["a"].prompts_received) == 2


async def test_server_override_bypasses_the_route(peers: dict[str, FakePeer]) -> None:
    async with Dispatcher(make_config(peers)) as dispatcher:
        result = await dispatcher.run("a", workflows.invert(), server="c")
    assert result.server == "c" and peers["a"].prompts_received == []


async def test_status_and_health(peers: dict[str, FakePeer]) -> None:
    async with Dispatcher(make_config(peers)) as dispatcher:
        await peers["b"].stop()
        states = await dispatcher.status()
        assert await dispatcher.health_check("a") and not await dispatcher.health_check("b")
    assert states["a"].online and states["a"].queue_depth == 0
    assert states["a"].vram_total and states["a"].latency_ms is not None
    assert not states["b"].online and "b" in (states["b"].error or "")


async def test_closing_fails_waiting_jobs(peers: dict[str, FakePeer]) -> None:
    peers["a"].job_seconds = 5
    started = asyncio.Event()
    dispatcher = Dispatcher(make_config(peers))
    async with dispatcher:
        job = asyncio.create_task(
            dispatcher.run("a", workflows.txt2img(), on_progress=lambda _: started.set())
        )
        await started.wait()
    with pytest.raises(DispatcherClosed):
        await job
    with pytest.raises(DispatcherClosed):
        await dispatcher.run("a", workflows.invert())


async def test_a_pool_fails_over_and_a_probe_brings_the_server_back(
    peers: dict[str, FakePeer],
) -> None:
    await peers["a"].stop()
    async with Dispatcher(make_config(peers, timeouts={"request": 1})) as dispatcher:
        servers = [(await dispatcher.run("pool", workflows.invert(i))).server for i in range(4)]
        states = await dispatcher.status()
        assert "a" not in servers
        assert states["a"].circuit_open and not states["b"].circuit_open
        await peers["a"].start()
        dispatcher.servers.lane("a").retry_at = 0.0  # as if the cooldown were over
        back = await dispatcher.run_parallel(
            [JobSpec("pool", workflows.invert(i)) for i in range(3)]
        )
        assert {r.server for r in back if isinstance(r, DispatchResult)} == {"a", "b", "c"}
        assert not (await dispatcher.status())["a"].circuit_open


async def test_two_uploads_in_one_job_each_reach_their_node(peers: dict[str, FakePeer]) -> None:
    from dispatch_core.testing._png import Image, encode_png

    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "b.png"}},
        "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "two"}},
    }
    red, blue = (encode_png(Image.solid(2, 2, c)) for c in [(255, 0, 0), (0, 0, 255)])
    builder = WorkflowBuilder(workflow).set_image("1", red, filename="red.png")
    builder.set_image("2", blue, filename="blue.png")
    async with Dispatcher(make_config(peers)) as dispatcher:
        result = await dispatcher.run("a", builder)
        assert [decode_png(await f.read()).pixels[:3] for f in result.images] == [
            b"\xff\x00\x00",
            b"\x00\x00\xff",
        ]
    assert {u["name"] for u in peers["a"].uploads} == {"red.png", "blue.png"}


async def test_reconfigure_keeps_jobs_in_flight_and_takes_new_servers(
    peers: dict[str, FakePeer],
) -> None:
    peers["a"].job_seconds = 0.3
    only_a = {k: v for k, v in peers.items() if k == "a"}
    async with Dispatcher(make_config(only_a)) as dispatcher:
        running = asyncio.create_task(dispatcher.run("a", workflows.invert(0x112233)))
        while not peers["a"].prompts_received:  # noqa: ASYNC110 - waits for the fake
            await asyncio.sleep(0.01)
        moved = make_config({"a": peers["b"], "c": peers["c"]})  # a now points at b's URL
        await dispatcher.reconfigure(moved)
        assert (await pixels(await running))[2] == solid(0xFFFFFF - 0x112233, 16, 8)
        after = await dispatcher.run("a", workflows.invert())
        assert after.server == "a" and len(peers["b"].prompts_received) == 1
        assert (await dispatcher.run("c", workflows.invert())).server == "c"


async def test_reconfigure_removes_a_server_and_widens_a_lane(peers: dict[str, FakePeer]) -> None:
    peers["a"].job_seconds = 0.2
    async with Dispatcher(make_config(peers)) as dispatcher:
        jobs = [asyncio.create_task(dispatcher.run("a", workflows.invert())) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert dispatcher.in_flight()["a"] == 1  # the second waits for a slot
        wider = make_config(
            {k: v for k, v in peers.items() if k != "c"},
            server_settings={"a": {"max_in_flight": 2}},
        )
        await dispatcher.reconfigure(wider)
        assert dispatcher.in_flight() == {"a": 2, "b": 0}
        await asyncio.gather(*jobs)
        with pytest.raises(NotFound, match="unknown route 'c'"):
            await dispatcher.run("c", workflows.invert())
