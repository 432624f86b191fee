"""Bad input, table-driven: each case gets its own error and a message naming the cause.

The engine's share of the reliability issue's list; the node and the routes add theirs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from dispatch_core import (
    BadResponse,
    Config,
    ConfigError,
    Dispatcher,
    DispatchError,
    ExecutionFailed,
    NotFound,
    PromptRejected,
    RoutingError,
    WorkflowBuilder,
    WorkflowError,
    load_config,
)
from dispatch_core.testing import FakePeer

import workflows

Case = Callable[[FakePeer, Path], Awaitable[object]]


@pytest.fixture
async def peer() -> AsyncIterator[FakePeer]:
    async with FakePeer() as fake:
        yield fake


def dispatcher_for(peer: FakePeer, **extra: Any) -> Dispatcher:
    servers: dict[str, Any] = {"gpu": peer.url, "off": {"url": peer.url, "enabled": False}}
    config = {"servers": servers, "routes": {"gen": "gpu", "dead": "off"}, **extra}
    return Dispatcher(Config.from_dict(config))


def run(workflow: Any, route: str = "gen", **kwargs: Any) -> Case:
    async def case(peer: FakePeer, _: Path) -> object:
        async with dispatcher_for(peer) as dispatcher:
            return await dispatcher.run(route, workflow, **kwargs)

    return case


def edit(change: Callable[[WorkflowBuilder], object]) -> Case:
    async def case(_: FakePeer, __: Path) -> object:
        return change(WorkflowBuilder(workflows.txt2img()))

    return case


def config(data: Any) -> Case:
    async def case(_: FakePeer, __: Path) -> object:
        return Config.from_dict(data, path="dispatch.json")

    return case


def config_file(text: str) -> Case:
    async def case(_: FakePeer, tmp_path: Path) -> object:
        path = tmp_path / "dispatch.json"
        path.write_text(text)
        return load_config(path)

    return case


def faulty_peer(setup: Callable[[FakePeer], None], workflow: Any = None) -> Case:
    async def case(peer: FakePeer, _: Path) -> object:
        setup(peer)
        async with dispatcher_for(peer, timeouts={"job": 1, "request": 0.5}) as dispatcher:
            result = await dispatcher.run("gen", workflow or workflows.invert())
            return await result.images[0].read()

    return case


def upload(data: bytes) -> Case:
    async def case(peer: FakePeer, _: Path) -> object:
        builder = WorkflowBuilder(workflows.load_invert()).set_image("Input", data)
        async with dispatcher_for(peer) as dispatcher:
            return await dispatcher.run("gen", builder)

    return case


def small_download_limit() -> Case:
    async def case(peer: FakePeer, _: Path) -> object:
        async with dispatcher_for(peer) as dispatcher:
            dispatcher.peer("gpu").max_download_bytes = 10
            result = await dispatcher.run("gen", workflows.invert())
            return await result.images[0].read()

    return case


def image_of(data: Any) -> Case:
    async def case(_: FakePeer, __: Path) -> object:
        return WorkflowBuilder(workflows.load_invert()).set_image("Input", data)

    return case


def wrong_shape() -> Case:
    async def case(peer: FakePeer, _: Path) -> object:
        peer.canned["/system_stats"] = (200, "[1, 2]")
        async with dispatcher_for(peer) as dispatcher:
            assert not await dispatcher.health_check("gpu")
            assert "did not answer a JSON object" in str((await dispatcher.status())["gpu"].error)
            return await dispatcher.peer("gpu").system_stats()

    return case


UI_FORMAT = {"version": 0.4, "nodes": [{"id": 3, "type": "KSampler"}], "links": []}
MISSING_CLASS = {"1": {"inputs": {}}, "2": {"class_type": "SaveImage", "inputs": {}}}
DANGLING = {"2": {"class_type": "SaveImage", "inputs": {"images": ["9", 0]}}}


def wrong(field: str, value: Any) -> dict[str, Any]:
    workflow = workflows.invert()
    workflow["1"]["inputs"][field] = value
    return workflow


CASES: list[tuple[str, Case, type[Exception], str]] = [
    ("ui-format workflow", run(UI_FORMAT), WorkflowError, "Export (API)"),
    ("workflow is a list", run([1, 2]), WorkflowError, "expected an object"),
    ("node without class_type", run(MISSING_CLASS), WorkflowError, "node 1 has no class_type"),
    ("dangling link", run(DANGLING), WorkflowError, "dangling link to missing node 9"),
    ("empty workflow", run({}), WorkflowError, "empty"),
    (
        "override of a missing node",
        run(workflows.invert(), values={"Nope": {"a": 1}}),
        WorkflowError,
        "no node 'Nope'",
    ),
    (
        "override of a missing input",
        run(workflows.invert(), values={"1": {"widht": 1}}),
        WorkflowError,
        "has no input 'widht'",
    ),
    (
        "a value for a node, not an input",
        run(workflows.invert(), values={"1": 5}),
        WorkflowError,
        "name an input as NODE.INPUT",
    ),
    (
        "ambiguous node name",
        edit(lambda b: b.set("CLIPTextEncode", "text", "x")),
        WorkflowError,
        "matches nodes 6, 7",
    ),
    (
        "bad NODE.INPUT path",
        edit(lambda b: b.set_path("seed", 1)),
        WorkflowError,
        "expected NODE.INPUT",
    ),
    (
        "set_image on a node without that input",
        edit(lambda b: b.set_image("5", b"png")),
        WorkflowError,
        "has no input 'image'",
    ),
    ("set_image with a number", image_of(3), WorkflowError, "set_image takes bytes"),
    (
        "image url not http",
        edit(lambda b: b.set_image_url("6", "ftp://x/y.png", input="text")),
        WorkflowError,
        "not an http",
    ),
    (
        "value of the wrong type",
        run(wrong("width", "wide")),
        PromptRejected,
        "Failed to convert an input value to a INT value",
    ),
    ("value above max", run(wrong("width", 10**9)), PromptRejected, "bigger than max of 16384"),
    (
        "unknown node class",
        run({**workflows.invert(), "2": {"class_type": "Nope", "inputs": {}}}),
        PromptRejected,
        "node Nope does not exist",
    ),
    (
        "unknown route",
        run(workflows.invert(), route="nowhere"),
        NotFound,
        "unknown route 'nowhere'",
    ),
    ("unknown server", run(workflows.invert(), server="zz"), NotFound, "unknown server 'zz'"),
    ("route to a disabled server", run(workflows.invert(), route="dead"), RoutingError, "disabled"),
    (
        "server URL not http",
        config({"servers": {"a": "file:///etc"}}),
        ConfigError,
        "servers.a: 'file:///etc' is not an http",
    ),
    (
        "server URL without host",
        config({"servers": {"a": "http://:80"}}),
        ConfigError,
        "has no host",
    ),
    (
        "route to an unknown server",
        config({"routes": {"gen": "x"}}),
        ConfigError,
        "routes.gen: unknown server 'x'",
    ),
    ("unknown config key", config({"server": {}}), ConfigError, "server: unknown key"),
    (
        "negative timeout",
        config({"timeouts": {"job": -5}}),
        ConfigError,
        "timeouts.job: must be greater than 0",
    ),
    (
        "header with a line break",
        config({"servers": {"a": {"url": "http://a", "headers": {"X": "a\nb"}}}}),
        ConfigError,
        "line break",
    ),
    (
        "config that is not JSON",
        config_file("{servers: }"),
        ConfigError,
        "dispatch.json: not valid JSON at line 1",
    ),
    ("config that is a list", config_file("[]"), ConfigError, "expected an object"),
    (
        "peer answers 500 with HTML",
        faulty_peer(lambda p: p.fail_http.update({"/prompt": 500})),
        BadResponse,
        "POST /prompt answered HTTP 500",
    ),
    (
        "peer answers truncated JSON",
        faulty_peer(lambda p: p.canned.update({"/prompt": (200, '{"prompt_id": "x", "numb')})),
        BadResponse,
        "not JSON",
    ),
    (
        "peer answers JSON of the wrong shape",
        wrong_shape(),
        BadResponse,
        "GET /system_stats did not answer a JSON object",
    ),
    (
        "peer answers 503 for good",
        faulty_peer(lambda p: p.fail_http.update({"/prompt": 503})),
        DispatchError,
        "answered HTTP 503",
    ),
    (
        "truncated PNG upload",
        upload(b"\x89PNG\r\n\x1a\n\x00\x00"),
        ExecutionFailed,
        "UnidentifiedImageError",
    ),
    (
        "upload that is not a PNG",
        upload(b"GIF89a..."),
        ExecutionFailed,
        "cannot identify image file",
    ),
    ("download over the size limit", small_download_limit(), BadResponse, "over the 10 byte limit"),
]


@pytest.mark.parametrize(("cause", "case", "error", "words"), CASES, ids=[c[0] for c in CASES])
async def test_bad_input_gets_a_clear_error(
    cause: str, case: Case, error: type[Exception], words: str, peer: FakePeer, tmp_path: Path
) -> None:
    with pytest.raises(error) as caught:
        await case(peer, tmp_path)
    assert words in str(caught.value), f"{cause}: {caught.value}"


async def test_websocket_garbage_is_ignored(peer: FakePeer) -> None:
    async with dispatcher_for(peer) as dispatcher:
        await dispatcher.peer("gpu").start()
        peer.send_garbage()
        result = await dispatcher.run("gen", workflows.invert())
    assert len(result.images) == 1


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30 and json.dumps([c[0] for c in CASES])
