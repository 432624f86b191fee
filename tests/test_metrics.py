"""`GET /dispatch/metrics`: a run of jobs over fake peers, read back with prometheus-client's
own parser; each service counts only its own jobs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from local_http import serve_routes, start

from dispatch_core.http.standalone import create_app
from dispatch_core.job import JobSpec
from dispatch_core.service import DispatchService
from dispatch_core.testing import FakePeer

import workflows

parser = pytest.importorskip("prometheus_client.parser")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the page, keyed by name and sorted labels."""
    found = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def service_of(tmp_path: Path, config: dict[str, Any]) -> DispatchService:
    tmp_path.mkdir()
    (tmp_path / "config.json").write_text(json.dumps(config))
    return DispatchService(tmp_path, status_interval=0, journal=False)


async def run_all(service: DispatchService, specs: list[JobSpec]) -> None:
    handles = [(await service.jobs.submit(spec))[1] for spec in specs]
    await asyncio.gather(*(handle.wait() for handle in handles))


async def test_the_page_counts_a_run_of_jobs_by_route_server_and_outcome(tmp_path: Path) -> None:
    async with FakePeer() as a, FakePeer() as b:
        config = {"servers": {"a": a.url, "b": b.url}, "routes": {"gen": "a", "edit": "b"}}
        async with service_of(tmp_path / "one", config) as service:
            other = service_of(tmp_path / "two", config)  # its own registry, never shared
            ok = [JobSpec("gen", workflows.invert(i)) for i in range(3)]
            ok.append(JobSpec("edit", workflows.invert(9)))
            await run_all(service, [*ok, JobSpec("edit", workflows.fails_at_runtime())])
            await service.monitor.status(refresh=True)  # what a status round would do
            runner, base = await serve_routes(service)
            try:
                async with aiohttp.ClientSession() as session:
                    async with session.get(base + "/dispatch/metrics") as response:
                        assert response.status == 200
                        assert response.headers["Content-Type"].startswith("text/plain")
                        page = samples(await response.text())
            finally:
                await runner.cleanup()
                await other.close()
    labels = (("key", ""), ("outcome", "done"), ("route", "gen"), ("server", "a"))
    assert page[("dispatch_jobs_total", labels)] == 3
    failed = (("key", ""), ("outcome", "failed"), ("route", "edit"), ("server", "b"))
    assert page[("dispatch_jobs_total", failed)] == 1
    for phase in ("queued", "running", "fetching"):
        phase_labels = (("key", ""), ("phase", phase), ("route", "gen"), ("server", "a"))
        assert page[("dispatch_job_phase_seconds_count", phase_labels)] == 3
    assert page[("dispatch_submitted_total", ())] == 5
    assert page[("dispatch_completed_total", ())] == 4  # the failure did not complete
    assert page[("dispatch_peer_latency_seconds", (("server", "a"),))] > 0
    assert page[("dispatch_in_flight", (("server", "a"),))] == 0
    assert page[("dispatch_circuit_open", (("server", "b"),))] == 0


async def test_without_metrics_the_route_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"servers": {}, "routes": {}}))
    async with DispatchService(tmp_path, status_interval=0, metrics=False) as service:
        runner, base = await serve_routes(service)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(base + "/dispatch/metrics") as response:
                    assert response.status == 503
                    answer = await response.json()
        finally:
            await runner.cleanup()
    assert answer["field"] == "metrics" and "pip install prometheus-client" in answer["error"]


async def test_the_gateway_serves_metrics_at_the_usual_path_behind_its_token(
    tmp_path: Path,
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"servers": {}, "routes": {}}))
    service = DispatchService(tmp_path, status_interval=0, journal=False)
    runner, base = await start(create_app(service, token="s3cret"))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/metrics") as response:
                assert response.status == 401
            headers = {"Authorization": "Bearer s3cret"}
            async with session.get(base + "/metrics", headers=headers) as response:
                assert response.status == 200
                assert "dispatch_submitted_total 0.0" in await response.text()
    finally:
        await runner.cleanup()
