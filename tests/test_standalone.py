"""The standalone server: jobs over HTTP, the panel page, events, origin and token guards."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from local_http import start

from dispatch_core.http.standalone import _first_config, create_app, serve
from dispatch_core.service import DispatchService
from dispatch_core.testing import FakePeer
from dispatch_core.testing._png import decode_png

import workflows


@pytest.fixture
async def peer() -> AsyncIterator[FakePeer]:
    async with FakePeer() as fake:
        yield fake


async def standalone(
    tmp_path: Path, peer: FakePeer, token: str | None = None
) -> tuple[web.AppRunner, str, DispatchService]:
    (tmp_path / "config.json").write_text(
        json.dumps({"servers": {"a": peer.url}, "routes": {"gen": "a"}})
    )
    service = DispatchService(tmp_path, status_interval=0)
    runner, base = await start(create_app(service, token=token))
    return runner, base, service


async def test_a_job_posted_over_http_runs_and_its_files_are_reachable(
    tmp_path: Path, peer: FakePeer
) -> None:
    runner, base, service = await standalone(tmp_path, peer)
    service.templates.save("invert", workflows.invert(0x000000))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(base + "/dispatch/ws") as socket:
                body = {"route": "gen", "template": "invert", "values": {"Canvas.width": 4}}
                async with session.post(base + "/dispatch/run", json=body) as response:
                    assert response.status == 202
                    job_id = (await response.json())["id"]
                states = []
                while "done" not in states:
                    message = json.loads((await socket.receive(timeout=10)).data)
                    if message["type"] == "dispatch.job" and message["data"]["id"] == job_id:
                        states.append(message["data"]["state"])
                assert states[0] == "queued" and states[-1] == "done"
            async with session.get(f"{base}/dispatch/jobs/{job_id}") as response:
                job = await response.json()
            assert job["state"] == "done" and job["server"] == "a"
            async with session.get(base + job["files"][0]["download"]) as response:
                image = decode_png(await response.read())
            assert (image.width, image.pixels[:3]) == (4, b"\xff\xff\xff")
            async with session.get(base + "/dispatch/ui/") as response:
                assert response.status == 200 and "createPanel" in await response.text()
            async with session.get(base + "/dispatch/ui/panel.js") as response:
                assert response.status == 200
            async with session.get(base + "/dispatch/ui/../config.json") as response:
                assert response.status in (403, 404)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"template": "x"}, 400, "route"),
        ({"route": "gen"}, 400, "template"),
        ({"route": "gen", "template": "x", "workflow": {}}, 400, "template"),
        ({"route": "nope", "template": "invert"}, 400, "route"),
        ({"route": "gen", "template": "invert", "values": [1]}, 400, "values"),
        ({"route": "gen", "template": "invert", "colour": 1}, 400, "colour"),
        ({"route": "gen", "template": "missing"}, 404, "name"),
        ({"route": "gen", "template": "invert", "values": {"9.x": 1}}, 400, "9"),
    ],
)
async def test_bad_jobs_are_refused_before_they_start(
    tmp_path: Path, peer: FakePeer, body: dict[str, Any], status: int, field: str
) -> None:
    runner, base, service = await standalone(tmp_path, peer)
    service.templates.save("invert", workflows.invert())
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(base + "/dispatch/run", json=body) as response:
                answer = await response.json()
        assert response.status == status, answer
        assert answer["field"] == field
        assert service.jobs.activity.recent() == []
    finally:
        await runner.cleanup()


async def test_cross_origin_changes_are_refused(tmp_path: Path, peer: FakePeer) -> None:
    runner, base, service = await standalone(tmp_path, peer)
    try:
        async with aiohttp.ClientSession() as session:
            evil = {"Origin": "http://evil.example"}
            body = {"name": "b", "url": peer.url}
            async with session.post(base + "/dispatch/servers", json=body, headers=evil) as r:
                assert r.status == 403
            async with session.get(base + "/dispatch/config", headers=evil) as r:
                assert r.status == 200  # reading is harmless and the browser hides it anyway
            same = {"Origin": base}
            async with session.post(base + "/dispatch/servers", json=body, headers=same) as r:
                assert r.status == 201
        assert set(service.config.servers) == {"a", "b"}
    finally:
        await runner.cleanup()


async def test_a_token_guards_every_route_but_the_panel_page(
    tmp_path: Path, peer: FakePeer
) -> None:
    runner, base, _ = await standalone(tmp_path, peer, token="s3cret")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/dispatch/config") as response:
                assert response.status == 401
                assert "token" in (await response.json())["error"]
            bearer = {"Authorization": "Bearer s3cret"}
            async with session.get(base + "/dispatch/config", headers=bearer) as response:
                assert response.status == 200
            async with session.get(base + "/dispatch/config?token=s3cret") as response:
                assert response.status == 401  # a token never travels in a URL
                assert "URL" in (await response.json())["error"]
            async with session.get(base + "/dispatch/ui/") as response:
                assert response.status == 200
        jar = aiohttp.CookieJar(unsafe=True)  # keeps cookies of an IP address, as browsers do
        async with aiohttp.ClientSession(cookie_jar=jar) as browser:  # the panel: a cookie
            async with browser.post(base + "/dispatch/session") as response:
                assert response.status == 401
            async with browser.post(base + "/dispatch/session", headers=bearer) as response:
                assert response.status == 200
                cookie = response.headers["Set-Cookie"]
                assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
                assert "s3cret" not in cookie
            async with browser.get(base + "/dispatch/config") as response:
                assert response.status == 200
    finally:
        await runner.cleanup()


async def test_first_start_finds_a_local_comfyui_or_starts_empty(tmp_path: Path) -> None:
    message = await _first_config(tmp_path / "none")
    saved = json.loads((tmp_path / "none" / "config.json").read_text())
    # a ComfyUI may or may not answer on this machine's 8188; either way the file is valid
    assert saved["servers"] in ({}, {"local": "http://127.0.0.1:8188"})
    assert "created" in message


def test_serve_refuses_the_network_without_a_token() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dispatch_core", "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
    )
    assert done.returncode != 0
    assert "give it a token with --token" in done.stderr


async def test_serve_prints_where_the_panel_is(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatch_core",
        "serve",
        "--config",
        str(tmp_path / "config.json"),
        "--port",
        "0",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        line = (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
        assert "panel on http://127.0.0.1:" in line and "/dispatch/ui/" in line
    finally:
        process.terminate()
        await process.wait()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
async def test_the_default_folder_is_made_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "comfyui-dispatch"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    (folder / "config.json").write_text(json.dumps({"servers": {}, "routes": {}}))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    up = asyncio.Event()
    task = asyncio.create_task(serve(port=0, status_every=0, ready=lambda _: up.set()))
    try:
        await asyncio.wait_for(up.wait(), 20)
        assert folder.stat().st_mode & 0o777 == 0o700
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
