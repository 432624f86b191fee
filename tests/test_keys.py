"""The gateway's named API keys: made, listed and revoked by the CLI and the routes;
stored hashed; a revoked key 401, a key over its rate 429 with Retry-After; hostile cases."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from local_http import call_json, start

from dispatch_core.http.standalone import create_app
from dispatch_core.service import DispatchService
from dispatch_core.testing import FakePeer

import workflows

TOKEN = "gateway-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


async def keys_cli(config: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dispatch_core", "keys", "--config", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[str, DispatchService]]:
    async with FakePeer() as peer:
        (tmp_path / "config.json").write_text(
            json.dumps({"servers": {"a": peer.url}, "routes": {"gen": "a"}})
        )
        service = DispatchService(tmp_path, status_interval=0, journal=False)
        runner, base = await start(create_app(service, token=TOKEN))
        yield base, service
        await runner.cleanup()


async def request(
    session: aiohttp.ClientSession, method: str, url: str, key: str, body: Any = None
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    headers = {"Authorization": f"Bearer {key}"}
    async with session.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json(), response.headers


async def test_a_key_made_by_the_cli_runs_jobs_under_its_name_until_revoked(
    tmp_path: Path, gateway: tuple[str, DispatchService]
) -> None:
    base, service = gateway
    config = tmp_path / "config.json"
    code, out, err = await keys_cli(config, "create", "app-one", "--rate", "100/min")
    assert code == 0, err
    key = out.strip()
    assert key.startswith("dk_") and key not in (tmp_path / "keys.json").read_text()
    code, out, _ = await keys_cli(config, "list")
    assert "app-one" in out and "100/min" in out and key not in out
    async with aiohttp.ClientSession() as session:
        body = {"route": "gen", "workflow": workflows.invert(1)}
        status, answer, _ = await request(session, "POST", base + "/dispatch/run", key, body)
        assert status == 202
        await service.jobs._handles[answer["id"]].wait()
        status, job, _ = await request(session, "GET", f"{base}{answer['url']}", key)
        assert (status, job["key"], job["state"]) == (200, "app-one", "done")
        async with session.get(base + "/metrics", headers=ADMIN) as response:
            assert 'key="app-one",outcome="done"' in await response.text()
        assert (await keys_cli(config, "revoke", "app-one"))[0] == 0
        status, answer, _ = await request(session, "GET", base + "/dispatch/jobs", key)
    assert (status, answer["field"]) == (401, "key")


async def test_a_key_over_its_rate_gets_429_with_retry_after(
    gateway: tuple[str, DispatchService],
) -> None:
    base, _ = gateway
    async with aiohttp.ClientSession() as session:
        slow = {"name": "slow", "rate": "2/min"}
        status, made = await call_json_as(session, "POST", base + "/dispatch/keys", ADMIN, slow)
        assert status == 201
        key = made["key"]
        answers = [await request(session, "GET", base + "/dispatch/jobs", key) for _ in range(3)]
        status, listed = await call_json_as(session, "GET", base + "/dispatch/keys", ADMIN)
    assert [a[0] for a in answers] == [200, 200, 429]
    assert answers[2][1]["field"] == "key" and int(answers[2][2]["Retry-After"]) >= 1
    assert listed == [{"name": "slow", "rate": 2, "created": listed[0]["created"]}]


async def call_json_as(
    session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str], body: Any = None
) -> tuple[int, Any]:
    async with session.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json()


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda key: key + "x", 401),  # one character more
        (lambda key: key[:-1], 401),  # one fewer
        (lambda key: "dk_" + "A" * 43, 401),  # the right shape, never made
        (lambda key: "dk_" + "A" * 5_000, 401),  # far too long (aiohttp refuses 8 kB itself)
        (lambda key: key.upper(), 401),
        (lambda key: "", 401),  # no key, a gateway with a token
        (lambda key: TOKEN + key, 401),
    ],
)
async def test_keys_that_are_not_ours_are_refused(
    gateway: tuple[str, DispatchService], make: Any, status: int
) -> None:
    base, _ = gateway
    async with aiohttp.ClientSession() as session:
        _, made = await call_json_as(session, "POST", base + "/dispatch/keys", ADMIN, {"name": "k"})
        got, answer, _ = await request(session, "GET", base + "/dispatch/jobs", make(made["key"]))
    assert got == status and answer["field"] in ("key", "token")


async def test_a_key_in_the_url_or_managing_keys_is_refused(
    gateway: tuple[str, DispatchService],
) -> None:
    base, _ = gateway
    async with aiohttp.ClientSession() as session:
        _, made = await call_json_as(session, "POST", base + "/dispatch/keys", ADMIN, {"name": "k"})
        key = made["key"]
        async with session.get(f"{base}/dispatch/jobs?token={key}") as response:
            assert response.status == 401
        for method, path, body in [
            ("GET", "/dispatch/keys", None),
            ("POST", "/dispatch/keys", {"name": "mine"}),
            ("DELETE", "/dispatch/keys/k", None),
        ]:
            status, answer, _ = await request(session, method, base + path, key, body)
            assert (status, answer["field"]) == (403, "key")
        status, listed = await call_json_as(session, "GET", base + "/dispatch/keys", ADMIN)
    assert [k["name"] for k in listed] == ["k"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({}, 400, "name"),
        ({"name": ""}, 400, "name"),
        ({"name": "a/b"}, 400, "name"),
        ({"name": "../keys"}, 400, "name"),
        ({"name": "x" * 65}, 400, "name"),
        ({"name": "a\nb"}, 400, "name"),
        ({"name": 7}, 400, "name"),
        ({"name": "k", "rate": "0"}, 400, "rate"),
        ({"name": "k", "rate": "-1/min"}, 400, "rate"),
        ({"name": "k", "rate": "1e9"}, 400, "rate"),
        ({"name": "k", "rate": 10**12}, 400, "rate"),
        ({"name": "k", "rate": True}, 400, "rate"),
        ({"name": "k", "rate": [1]}, 400, "rate"),
        ({"name": "k", "admin": True}, 400, "admin"),
        ({"name": "taken"}, 409, "name"),
    ],
)
async def test_bad_key_requests_name_the_field_and_change_nothing(
    gateway: tuple[str, DispatchService], body: dict[str, Any], status: int, field: str
) -> None:
    base, _ = gateway
    async with aiohttp.ClientSession() as session:
        await call_json_as(session, "POST", base + "/dispatch/keys", ADMIN, {"name": "taken"})
        got, answer = await call_json_as(session, "POST", base + "/dispatch/keys", ADMIN, body)
        _, listed = await call_json_as(session, "GET", base + "/dispatch/keys", ADMIN)
    assert (got, answer["field"]) == (status, field)
    assert [k["name"] for k in listed] == ["taken"]


async def test_without_a_token_a_revoked_key_still_gets_401(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"servers": {}, "routes": {}}))
    service = DispatchService(tmp_path, status_interval=0, journal=False)
    runner, base = await start(create_app(service))
    try:
        async with aiohttp.ClientSession() as session:
            status, made = await call_json(session, "POST", base + "/dispatch/keys", {"name": "k"})
            assert status == 201
            status, _, _ = await request(session, "GET", base + "/dispatch/jobs", made["key"])
            assert status == 200
            status, _ = await call_json(session, "DELETE", base + "/dispatch/keys/k")
            assert status == 200
            status, answer, _ = await request(session, "GET", base + "/dispatch/jobs", made["key"])
    finally:
        await runner.cleanup()
    assert (status, answer["field"]) == (401, "key")


async def test_inside_comfyui_there_are_no_keys(tmp_path: Path) -> None:
    from local_http import serve_routes

    (tmp_path / "config.json").write_text(json.dumps({"servers": {}, "routes": {}}))
    async with DispatchService(tmp_path, status_interval=0, journal=False) as service:
        runner, base = await serve_routes(service)
        try:
            async with aiohttp.ClientSession() as session:
                status, answer = await call_json(session, "GET", base + "/dispatch/keys")
        finally:
            await runner.cleanup()
    assert (status, answer["field"]) == (404, "keys")
