"""The same request issued again attaches to its prompt on the peer instead of running twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from dispatch_core import Config, Dispatcher, JobSpec
from dispatch_core._job import JobRun
from dispatch_core._journal import Journal
from dispatch_core.testing import FakePeer

import workflows


@pytest.fixture
async def peer() -> AsyncIterator[FakePeer]:
    async with FakePeer() as fake:
        yield fake


def config_for(peer: FakePeer) -> Config:
    return Config.from_dict(
        {
            "servers": {"gpu": peer.url},
            "routes": {"gen": "gpu"},
            "timeouts": {"poll_interval": 0.05},
        }
    )


async def test_a_finished_request_is_not_run_again(peer: FakePeer, tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    async with Journal(path) as journal, Dispatcher(config_for(peer), journal=journal) as first:
        done = await first.run("gen", workflows.invert(0x123456))
    async with Journal(path) as journal, Dispatcher(config_for(peer), journal=journal) as again:
        repeat = await again.run("gen", workflows.invert(0x123456))
        assert again.counts["attached"] == 1 and len(await repeat.images[0].read()) > 0
        other = await again.run("gen", workflows.invert(0x654321))
    assert repeat.prompt_id == done.prompt_id != other.prompt_id
    assert peer.prompts_received == [done.prompt_id, other.prompt_id]


async def test_a_running_request_is_attached_to(peer: FakePeer, tmp_path: Path) -> None:
    peer.job_seconds = 0.5
    workflow = workflows.invert(0xABCDEF)
    async with Journal(tmp_path / "journal.sqlite") as journal:
        # As if a local ComfyUI had submitted it, then restarted.
        body = {"prompt": workflow, "prompt_id": "earlier-run", "client_id": "gone"}
        async with aiohttp.ClientSession() as session:
            async with session.post(peer.url + "/prompt", json=body) as response:
                assert response.status == 200
        key = JobRun(JobSpec("gen", workflow)).request_key
        await journal.record(key, "gpu", "earlier-run")
        async with Dispatcher(config_for(peer), journal=journal) as dispatcher:
            result = await dispatcher.run("gen", workflow)
    assert result.prompt_id == "earlier-run" and len(result.images) == 1
    assert peer.prompts_received == ["earlier-run"]


async def test_a_forgotten_prompt_is_run_anew(peer: FakePeer, tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    async with Journal(path) as journal, Dispatcher(config_for(peer), journal=journal) as first:
        done = await first.run("gen", workflows.invert())
    await peer.restart()
    async with Journal(path) as journal, Dispatcher(config_for(peer), journal=journal) as again:
        fresh = await again.run("gen", workflows.invert())
        assert again.counts["attached"] == 0
    assert fresh.prompt_id != done.prompt_id


async def test_old_entries_are_pruned(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    async with Journal(path) as journal:
        await journal.record("key", "gpu", "p1")
        assert (await journal.find("key")) is not None
    async with Journal(path, keep_days=0) as journal:
        assert await journal.find("key") is None
    with pytest.raises(RuntimeError, match="not open"):
        await Journal(path).find("key")
