"""Webhooks: a receiver on loopback gets one signed delivery per job, a second one after it
answered 500 once, and none when the policy refuses its address."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from local_http import call_json, serve_routes, start

from dispatch_core._outbound import is_internal, reachable
from dispatch_core.job import JobSpec
from dispatch_core.service import DispatchService
from dispatch_core.testing import FakePeer

import workflows

SECRET = "test-secret"


class Receiver:
    """A webhook receiver on loopback: answers each delivery with the next status given."""

    def __init__(self, statuses: list[int] | None = None):
        self.statuses = list(statuses or [])
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Queue[int]()

    async def handle(self, request: web.Request) -> web.Response:
        self.deliveries.append((dict(request.headers), await request.read()))
        status = self.statuses.pop(0) if self.statuses else 204
        self.arrived.put_nowait(status)
        return web.Response(status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    runner, base = await start(app)
    yield found, base + "/hook"
    await runner.cleanup()


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_WEBHOOK_SECRET", SECRET)


def service_of(tmp_path: Path, peer: FakePeer, **webhooks: Any) -> DispatchService:
    config: dict[str, Any] = {"servers": {"a": peer.url}, "routes": {"gen": "a"}}
    if webhooks:
        config["webhooks"] = webhooks
    (tmp_path / "config.json").write_text(json.dumps(config))
    # Loopback is internal: the test receiver is reachable only because the operator says so.
    service = DispatchService(tmp_path, status_interval=0, journal=False, webhooks_internal=True)
    service.webhooks.first_retry = 0.01
    return service


async def until_settled(
    service: DispatchService,
    job_id: str,
    states: tuple[str, ...] = ("delivered", "failed", "refused"),
) -> dict[str, Any]:
    """The job's webhook once its delivery is in one of `states`, awaited through the
    job's events."""
    settled = asyncio.Event()

    def listen(event: str, data: dict[str, Any]) -> None:
        if data.get("id") == job_id and (data.get("webhook") or {}).get("state") in states:
            settled.set()

    service._events.listen(listen)
    if (service.jobs.record(job_id).webhook or {}).get("state") not in states:
        await asyncio.wait_for(settled.wait(), 20)
    return dict(service.jobs.record(job_id).webhook or {})


def valid(headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("X-Dispatch-Signature", ""), expected)


async def test_each_job_gets_exactly_one_valid_signed_delivery(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    found, url = receiver
    async with FakePeer() as peer, service_of(tmp_path, peer, url=url) as service:
        records = []
        for spec in (JobSpec("gen", workflows.invert(1)), JobSpec("gen", workflows.invert(2))):
            record, handle = await service.jobs.submit(spec)
            await handle.wait()
            records.append(record)
        hooks = [await until_settled(service, r.id) for r in records]
    assert [h["state"] for h in hooks] == ["delivered", "delivered"]
    assert [h["attempts"] for h in hooks] == [1, 1] and hooks[0]["status"] == 204
    assert len(found.deliveries) == 2
    bodies = [json.loads(body) for _, body in found.deliveries]
    assert sorted(b["id"] for b in bodies) == sorted(r.id for r in records)
    assert all(b["state"] == "done" and b["server"] == "a" for b in bodies)
    assert all(valid(headers, body) for headers, body in found.deliveries)
    assert not valid(found.deliveries[0][0], found.deliveries[0][1] + b" ")


async def test_a_500_is_retried_and_the_delivery_recorded(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    found, url = receiver
    found.statuses = [500]
    async with FakePeer() as peer, service_of(tmp_path, peer, routes={"gen": url}) as service:
        record, handle = await service.jobs.submit(JobSpec("gen", workflows.invert(1)))
        await handle.wait()
        hook = await until_settled(service, record.id)
        assert service.metrics is not None
        page = service.metrics.exposition()[0].decode()
        runner, base = await serve_routes(service)
        try:
            async with aiohttp.ClientSession() as session:
                _, shown = await call_json(session, "GET", f"{base}/dispatch/jobs/{record.id}")
        finally:
            await runner.cleanup()
    assert (hook["state"], hook["attempts"], hook["status"]) == ("delivered", 2, 204)
    assert shown["webhook"]["state"] == "delivered" and shown["webhook"]["attempts"] == 2
    assert 'dispatch_webhook_deliveries_total{outcome="delivered"} 1.0' in page
    assert "dispatch_webhook_attempts_total 2.0" in page
    assert [found.arrived.get_nowait() for _ in range(2)] == [500, 204]
    first, second = found.deliveries
    assert first[1] == second[1] and all(valid(h, b) for h, b in found.deliveries)
    assert first[0]["X-Dispatch-Delivery"] == second[0]["X-Dispatch-Delivery"] == record.id


async def test_a_job_that_failed_is_delivered_too(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    found, url = receiver
    async with FakePeer() as peer, service_of(tmp_path, peer) as service:
        spec = JobSpec("gen", workflows.fails_at_runtime(), webhook=url)
        record, handle = await service.jobs.submit(spec)
        await handle.wait()
        await until_settled(service, record.id)
    (body,) = [json.loads(b) for _, b in found.deliveries]
    assert body["state"] == "failed" and body["error"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/hook",
        "http://localhost:{port}/hook",
        "http://[::1]:{port}/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/hook",
        "http://[::ffff:127.0.0.1]:{port}/hook",
    ],
)
async def test_internal_addresses_are_refused_by_default(
    tmp_path: Path, receiver: tuple[Receiver, str], url: str
) -> None:
    found, good = receiver
    url = url.format(port=good.rsplit(":", 1)[1].split("/")[0])
    status, answer, service = await _post_run_with_webhook(tmp_path, url)
    assert (status, answer["field"]) == (400, "webhook")
    assert service.jobs.activity.recent() == [] and found.deliveries == []


async def test_a_name_resolving_to_an_internal_address_is_refused_when_sent(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    found, good = receiver
    port = good.rsplit(":", 1)[1].split("/")[0]
    name = socket.gethostname()  # a name, not an address: refused only once resolved
    addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    if not all(is_internal(a) for a in addresses):
        pytest.skip(f"{name} resolves to a public address here: {addresses}")
    url = f"http://{name}:{port}/hook"
    async with FakePeer() as peer:
        (tmp_path / "config.json").write_text(json.dumps(
            {"servers": {"a": peer.url}, "routes": {"gen": "a"}, "webhooks": {"url": url}}
        ))  # fmt: skip
        async with DispatchService(tmp_path, status_interval=0, journal=False) as service:
            record, handle = await service.jobs.submit(JobSpec("gen", workflows.invert(1)))
            await handle.wait()
            hook = await until_settled(service, record.id)
    assert hook["state"] == "refused" and "internal addresses" in hook["error"]
    assert found.deliveries == []


async def _post_run_with_webhook(
    tmp_path: Path, webhook: Any
) -> tuple[int, dict[str, Any], DispatchService]:
    """`POST /dispatch/run` naming `webhook`, against a service of one fake peer."""
    async with FakePeer() as peer:
        (tmp_path / "config.json").write_text(
            json.dumps({"servers": {"a": peer.url}, "routes": {"gen": "a"}})
        )
        async with DispatchService(tmp_path, status_interval=0, journal=False) as service:
            runner, base = await serve_routes(service)
            try:
                async with aiohttp.ClientSession() as session:
                    body = {"route": "gen", "workflow": workflows.invert(1), "webhook": webhook}
                    status, answer = await call_json(session, "POST", base + "/dispatch/run", body)
            finally:
                await runner.cleanup()
    return status, answer, service


@pytest.mark.parametrize(
    ("webhook", "words"),
    [
        ("ftp://example.com/x", "http"),
        ("http://user:pw@example.com/x", "password"),
        ("http://example.com/a b", "spaces"),
        ("x" * 3000, "2048"),
        (7, "wrong type"),
    ],
)
async def test_bad_webhook_urls_are_a_400_naming_the_field(
    tmp_path: Path, webhook: Any, words: str
) -> None:
    status, answer, _ = await _post_run_with_webhook(tmp_path, webhook)
    assert (status, answer["field"]) == (400, "webhook") and words in answer["error"]


async def test_a_delivery_cut_short_by_a_restart_is_sent_on_the_next_start(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    found, url = receiver
    found.statuses = [503]
    async with FakePeer() as peer:
        service = service_of(tmp_path, peer, url=url)
        service.webhooks.first_retry = 3600  # still waiting to retry when the process ends
        async with service:
            record, handle = await service.jobs.submit(JobSpec("gen", workflows.invert(1)))
            await handle.wait()
            hook = await until_settled(service, record.id, ("sending",))
            assert (hook["attempts"], hook["status"]) == (1, 503)
        async with service_of(tmp_path, peer, url=url) as again:
            hook = await until_settled(again, record.id)
    assert (hook["state"], hook["attempts"], hook["status"]) == ("delivered", 2, 204)
    assert [json.loads(b)["id"] for _, b in found.deliveries] == [record.id, record.id]


@pytest.mark.parametrize(
    ("address", "by_default", "allowed_internal"),
    [
        ("93.184.216.34", True, True),
        ("2606:4700::1111", True, True),
        ("127.0.0.1", False, True),
        ("::1", False, True),
        ("10.1.2.3", False, True),
        ("192.168.0.9", False, True),
        ("100.64.0.1", False, True),  # carrier-grade NAT
        ("::ffff:10.0.0.1", False, True),
        ("169.254.169.254", False, False),  # cloud metadata: never
        ("fe80::1", False, False),
        ("0.0.0.0", False, False),
        ("224.0.0.1", False, False),
        ("240.0.0.1", False, False),
    ],
)
def test_which_addresses_a_webhook_may_reach(
    address: str, by_default: bool, allowed_internal: bool
) -> None:
    assert reachable(address, allow_internal=False) is by_default
    assert reachable(address, allow_internal=True) is allowed_internal


async def test_the_metadata_address_is_refused_even_when_internal_ones_are_allowed(
    tmp_path: Path,
) -> None:
    async with FakePeer() as peer, service_of(tmp_path, peer) as service:
        runner, base = await serve_routes(service)
        try:
            async with aiohttp.ClientSession() as session:
                body = {
                    "route": "gen",
                    "workflow": workflows.invert(1),
                    "webhook": "http://169.254.169.254/latest/meta-data/",
                }
                status, answer = await call_json(session, "POST", base + "/dispatch/run", body)
        finally:
            await runner.cleanup()
    assert (status, answer["field"]) == (400, "webhook")
