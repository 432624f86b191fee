"""Every `/dispatch/*` route over a real socket, with fake peers behind the service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from local_http import serve_routes

from dispatch_core.service import MASK, DispatchService
from dispatch_core.testing import FakePeer
from dispatch_core.testing._png import decode_png

import workflows


@dataclass
class Api:
    """A client of the routes, and what the service announced."""

    base: str
    session: aiohttp.ClientSession
    service: DispatchService
    peers: dict[str, FakePeer]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def call(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body) if not isinstance(body, str) else body
        async with self.session.request(
            method, self.base + path, data=data, headers=headers
        ) as response:
            raw = await response.read()
            try:
                return response.status, json.loads(raw)
            except ValueError:
                return response.status, raw


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with AsyncExitStack() as stack:
        peers = {n: await stack.enter_async_context(FakePeer()) for n in ("a", "b")}
        folder = tmp_path / "dispatch"
        folder.mkdir()
        config = {
            "servers": {
                "a": {"url": peers["a"].url, "headers": {"Authorization": "Bearer s3cret"}},
                "b": peers["b"].url,
            },
            "routes": {"gen": "a", "edit": ["a", "b"]},
        }
        (folder / "config.json").write_text(json.dumps(config))
        events: list[tuple[str, dict[str, Any]]] = []
        service = DispatchService(
            folder, notify=lambda e, d: events.append((e, d)), status_interval=0
        )
        await stack.enter_async_context(service)
        runner, base = await serve_routes(service)
        stack.push_async_callback(runner.cleanup)
        session = await stack.enter_async_context(aiohttp.ClientSession())
        yield Api(base, session, service, peers, events)


async def test_config_is_read_with_secrets_masked(api: Api) -> None:
    status, body = await api.call("GET", "/dispatch/config")
    assert status == 200
    assert body["config"]["servers"]["a"]["headers"] == {"Authorization": MASK}
    assert "s3cret" not in json.dumps(body)
    assert body["version"] and body["error"] is None
    status, servers = await api.call("GET", "/dispatch/servers")
    assert [s["name"] for s in servers] == ["a", "b"]
    assert "s3cret" not in json.dumps(servers)


async def test_put_config_keeps_masked_secrets_and_checks_the_version(api: Api) -> None:
    _, view = await api.call("GET", "/dispatch/config")
    config = view["config"]
    config["servers"]["a"]["max_in_flight"] = 2
    status, body = await api.call(
        "PUT", "/dispatch/config", {"config": config, "version": view["version"]}
    )
    assert status == 200, body
    assert api.service.config.servers["a"].headers == {"Authorization": "Bearer s3cret"}
    assert api.service.config.servers["a"].max_in_flight == 2
    saved = json.loads(api.service.config_path.read_text())
    assert saved["servers"]["a"]["headers"]["Authorization"] == "Bearer s3cret"
    # a second tab still holding the old version is refused, and loses nothing
    status, body = await api.call(
        "PUT", "/dispatch/config", {"config": view["config"], "version": view["version"]}
    )
    assert status == 409 and body["field"] == "version"
    assert "reload" in body["error"] and body["current_version"] != view["version"]
    assert api.service.config.servers["a"].max_in_flight == 2
    assert any(event == "dispatch.config" for event, _ in api.events)


async def test_renaming_a_server_keeps_its_masked_secret(api: Api) -> None:
    body = {"name": "gpu-a", "headers": {"Authorization": MASK, "X-Team": "blue"}}
    status, answer = await api.call("PUT", "/dispatch/servers/a", body)
    assert status == 200, answer
    headers = api.service.config.servers["gpu-a"].headers
    assert headers == {"Authorization": "Bearer s3cret", "X-Team": "blue"}
    assert answer["config"]["servers"]["gpu-a"]["headers"] == {
        "Authorization": MASK,
        "X-Team": MASK,
    }


async def test_if_match_header_is_a_version_check_too(api: Api) -> None:
    status, _body = await api.call(
        "POST", "/dispatch/servers/b/disable", headers={"If-Match": '"stale"'}
    )
    assert status == 409
    assert api.service.config.servers["b"].enabled


async def test_add_update_rename_disable_and_remove_a_server(api: Api) -> None:
    url = api.peers["b"].url
    status, body = await api.call("POST", "/dispatch/servers", {"name": "c", "url": url})
    assert status == 201, body
    assert "c" in body["config"]["servers"]
    status, body = await api.call("PUT", "/dispatch/servers/c", {"weight": 2, "name": "gpu-c"})
    assert status == 200, body
    assert api.service.config.servers["gpu-c"].weight == 2
    status, body = await api.call("PUT", "/dispatch/routes/edit", {"servers": ["gpu-c", "a"]})
    assert status == 200
    status, body = await api.call("POST", "/dispatch/servers/gpu-c/disable")
    assert status == 200 and not api.service.config.servers["gpu-c"].enabled
    assert body["warnings"] == ["route 'edit': server gpu-c is disabled"]
    status, body = await api.call("POST", "/dispatch/servers/gpu-c/enable")
    assert api.service.config.servers["gpu-c"].enabled
    status, body = await api.call("DELETE", "/dispatch/servers/gpu-c")
    assert status == 200
    assert api.service.config.routes["edit"] == ("a",)


async def test_test_and_free_a_server(api: Api) -> None:
    status, body = await api.call("POST", "/dispatch/servers/b/test")
    assert status == 200
    assert body["online"] and body["comfyui_version"] and body["queue_depth"] == 0
    status, body = await api.call("POST", "/dispatch/servers/b/free")
    assert status == 200
    assert ("POST", "/free") in [tuple(r[:2]) for r in api.peers["b"].requests]


async def test_status_of_every_server_and_an_offline_one(api: Api) -> None:
    await api.peers["b"].stop()
    status, body = await api.call("GET", "/dispatch/status?refresh=1")
    assert status == 200
    found = {s["name"]: s for s in body["servers"]}
    assert found["a"]["online"] and not found["b"]["online"]
    assert "b" in found["b"]["error"] or "connect" in found["b"]["error"].lower()


async def test_templates_save_list_read_rename_delete(api: Api) -> None:
    status, body = await api.call(
        "PUT",
        "/dispatch/templates/gen",
        {"output": workflows.txt2img(), "parameters": {"prompt": "6.text"}},
    )
    assert status == 201, body
    assert body["parameters"] == {"prompt": ["6.text"]}
    status, listing = await api.call("GET", "/dispatch/templates")
    assert [t["name"] for t in listing] == ["gen"]
    status, body = await api.call("GET", "/dispatch/templates/gen")
    assert body["workflow"]["6"]["inputs"]["text"] == "a red jacket"
    status, body = await api.call(
        "PUT", "/dispatch/templates/gen", {"workflow": workflows.invert()}
    )
    assert status == 409
    status, body = await api.call(
        "PUT", "/dispatch/templates/gen", {"workflow": workflows.invert(), "overwrite": True}
    )
    assert status == 200 and body["nodes"] == 3
    status, body = await api.call("POST", "/dispatch/templates/gen/rename", {"name": "inv"})
    assert status == 200 and body["name"] == "inv"
    status, body = await api.call("DELETE", "/dispatch/templates/inv")
    assert status == 200
    assert api.service.templates.names() == []
    assert [e for e, _ in api.events].count("dispatch.templates") == 4


async def test_jobs_are_listed_with_their_files(api: Api) -> None:
    api.service.templates.save("inv", workflows.invert(0x000000))
    result = await api.service.jobs.run(api.service.jobs.spec("gen", template="inv"))
    status, jobs = await api.call("GET", "/dispatch/jobs")
    assert status == 200
    (job,) = jobs
    assert job["state"] == "done" and job["server"] == "a" and job["label"] == "inv"
    assert job["prompt_id"] == result.prompt_id and job["duration"] >= 0
    status, body = await api.call("GET", f"/dispatch/jobs/{job['id']}")
    assert body["files"][0]["filename"] == result.files[0].filename
    status, png = await api.call("GET", f"/dispatch/jobs/{job['id']}/files/0")
    assert status == 200 and decode_png(png).pixels[:3] == b"\xff\xff\xff"
    states = [d["state"] for e, d in api.events if e == "dispatch.job"]
    assert states[0] == "queued" and states[-1] == "done"


BAD_REQUESTS = [
    ("PUT", "/dispatch/config", "not json", 400, "body", "not valid JSON"),
    ("PUT", "/dispatch/config", [1], 400, "body", "JSON object"),
    (
        "PUT",
        "/dispatch/config",
        {"config": {"servers": {"x": "ftp://h"}}},
        400,
        "servers.x",
        "http",
    ),
    ("PUT", "/dispatch/config", {"config": {"servrs": {}}}, 400, "servrs", "unknown"),
    ("PUT", "/dispatch/config", {"config": 3}, 400, "config", "must be an object"),
    ("PUT", "/dispatch/settings", {"timeouts": {"job": -1}}, 400, "timeouts.job", ""),
    ("PUT", "/dispatch/settings", {"colour": 1}, 400, "colour", "settings"),
    ("PUT", "/dispatch/settings", {"cache": 1}, 400, "cache", "must be an object"),
    ("POST", "/dispatch/servers", {"url": "http://h:1"}, 400, "name", "name"),
    ("POST", "/dispatch/servers", {"name": "a", "url": "http://h:1"}, 409, "name", "exists"),
    ("POST", "/dispatch/servers", {"name": "c", "url": "h:1"}, 400, "servers.c.url", "http"),
    ("POST", "/dispatch/servers", {"name": "c", "url": "http://h", "x": 1}, 400, "servers.c.x", ""),
    ("PUT", "/dispatch/servers/zz", {"weight": 2}, 404, "name", "no server 'zz'"),
    ("PUT", "/dispatch/servers/a", {"name": "b"}, 409, "name", "exists"),
    ("PUT", "/dispatch/servers/a", {"max_in_flight": 0}, 400, "servers.a.max_in_flight", ""),
    ("PUT", "/dispatch/servers/a", {"headers": {"X": MASK}}, 400, "servers.a.headers.X", "mask"),
    ("DELETE", "/dispatch/servers/zz", None, 404, "name", "no server"),
    ("POST", "/dispatch/servers/zz/test", None, 404, "name", "no server"),
    ("POST", "/dispatch/servers/zz/free", None, 404, "name", "no server"),
    ("PUT", "/dispatch/routes/gen", {"servers": []}, 400, "servers", "name one server"),
    ("PUT", "/dispatch/routes/gen", {"servers": ["nope"]}, 400, "routes.gen", "nope"),
    ("DELETE", "/dispatch/routes/nope", None, 404, "route", "no route"),
    ("GET", "/dispatch/templates/nope", None, 404, "name", "no template"),
    ("GET", "/dispatch/templates/..%2Fconfig", None, 400, "name", "bad template name"),
    ("PUT", "/dispatch/templates/x", {"workflow": {"nodes": [], "links": []}}, 400, None, "API"),
    ("PUT", "/dispatch/templates/x", {}, 400, "workflow", "workflow"),
    ("PUT", "/dispatch/templates/x", {"workflow": {"1": {}}}, 400, "1", "class_type"),
    ("PUT", "/dispatch/templates/x", {"workflow": {"1": 2}, "description": 3}, 400, None, "text"),
    ("GET", "/dispatch/jobs?limit=x", None, 400, "limit", "whole number"),
    ("GET", "/dispatch/jobs/nope", None, 404, "id", "no job"),
    ("GET", "/dispatch/jobs/nope/files/0", None, 404, "id", "no job"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "field", "message"), BAD_REQUESTS)
async def test_bad_requests_name_the_field_and_change_nothing(
    api: Api, method: str, path: str, body: Any, status: int, field: str | None, message: str
) -> None:
    before = api.service.config_path.read_bytes()
    got, answer = await api.call(method, path, body)
    assert got == status, answer
    assert message in answer["error"]
    if field is not None:
        assert answer["field"] == field
    assert api.service.config_path.read_bytes() == before


async def test_removing_the_only_server_of_a_route_is_refused(api: Api) -> None:
    status, body = await api.call("DELETE", "/dispatch/servers/a")
    assert status == 409 and "route gen" in body["error"]
    assert "a" in api.service.config.servers


async def test_a_broken_config_file_is_kept_aside_and_reported(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"servers": {"a": "http://h:1"},}')
    service = DispatchService(tmp_path, status_interval=0, journal=False)
    async with service:
        runner, base = await serve_routes(service)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(base + "/dispatch/config") as response:
                    body = await response.json()
        finally:
            await runner.cleanup()
    assert "line 1, column 33" in body["error"] and "config.json.bad" in body["error"]
    assert body["config"]["servers"] == {}
    assert (tmp_path / "config.json.bad").read_text().startswith('{"servers"')
    assert not (tmp_path / "config.json").exists()


async def test_changes_from_another_site_are_refused(api: Api) -> None:
    evil = {"Origin": "http://evil.example", "Content-Type": "application/json"}
    body = {"name": "spy", "url": "http://evil.example:8188"}
    status, answer = await api.call("POST", "/dispatch/servers", body, headers=evil)
    assert status == 403 and answer["field"] == "Origin"
    assert "spy" not in api.service.config.servers
    status, _ = await api.call("GET", "/dispatch/config", headers=evil)
    assert status == 200


async def test_inventory_calibration_and_an_auto_route(api: Api) -> None:
    status, inventory = await api.call("GET", "/dispatch/inventory?refresh=1")
    assert status == 200
    assert set(inventory) == {"a", "b"} and inventory["a"]["node_classes"] > 10
    assert "checkpoints" in inventory["a"]["models"]
    status, body = await api.call("POST", "/dispatch/servers/b/calibrate")
    assert status == 200 and body["calibrated_seconds"] > 0
    saved = json.loads((api.service.folder / "calibration.json").read_text())
    assert saved == {"b": body["calibrated_seconds"]}
    status, servers = await api.call("GET", "/dispatch/status")
    found = {s["name"]: s for s in servers["servers"]}
    assert found["b"]["calibrated_seconds"] == pytest.approx(body["calibrated_seconds"], abs=1e-3)
    status, body = await api.call("PUT", "/dispatch/routes/any", {"servers": "auto"})
    assert status == 200 and body["config"]["routes"]["any"] == "auto"
    api.service.templates.save("inv", workflows.invert())
    result = await api.service.jobs.run(api.service.jobs.spec("any", template="inv"))
    assert result.server in ("a", "b") and "able to run it" in result.reason
    status, body = await api.call("POST", "/dispatch/servers/zz/calibrate")
    assert status == 404


async def test_delete_cancels_a_running_job_and_interrupts_it_on_the_peer(api: Api) -> None:
    peer = api.peers["a"]
    peer.job_seconds = 5
    api.service.templates.save("inv", workflows.invert())
    status, started = await api.call("POST", "/dispatch/run", {"route": "gen", "template": "inv"})
    assert status == 202
    job = f"/dispatch/jobs/{started['id']}"
    while (await api.call("GET", job))[1]["state"] != "running":  # noqa: ASYNC110 - polls the route
        await asyncio.sleep(0.02)
    status, record = await api.call("DELETE", job)
    assert status == 200 and record["state"] == "cancelled"
    for _ in range(250):  # the dispatcher takes the prompt back beside the answer
        if ("POST", "/interrupt") in peer.requests:
            break
        await asyncio.sleep(0.02)
    assert ("POST", "/queue") in peer.requests and ("POST", "/interrupt") in peer.requests
    assert (await api.call("GET", job))[1]["state"] == "cancelled"
    assert [e for e, d in api.events if e == "dispatch.job"][-1:] == ["dispatch.job"]
    status, again = await api.call("DELETE", job)
    assert status == 409 and again["field"] == "id"


async def test_a_repeated_run_is_served_from_the_cache(api: Api) -> None:
    api.service.templates.save("inv", workflows.invert())
    body = {"route": "gen", "template": "inv", "values": {"1.color": 7}}
    records = []
    for _ in range(2):
        _, started = await api.call("POST", "/dispatch/run", body)
        record = api.service.jobs.activity.get(started["id"])
        assert record is not None
        while not record.terminal:  # noqa: ASYNC110 - polls the record
            await asyncio.sleep(0.02)
        records.append(record)
    assert [r.state for r in records] == ["done", "done"]
    assert records[0].prompt_id == records[1].prompt_id
    assert len(api.peers["a"].prompts_received) == 1
