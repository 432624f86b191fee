"""`--log-format json`: one JSON object a line, each job's lines carrying its id, route,
server and prompt id; the human format stays the default."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatch_core._logs import configure
from dispatch_core.job import JobSpec
from dispatch_core.service import DispatchService
from dispatch_core.testing import FakePeer

import workflows

EXAMPLES = Path(__file__).resolve().parents[1] / "scripting"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure("json", level=logging.DEBUG, stream=stream)
    yield stream
    logger = logging.getLogger("dispatch_core")
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


async def test_each_step_of_a_job_is_a_json_line_with_its_ids(
    tmp_path: Path, captured: io.StringIO
) -> None:
    async with FakePeer() as peer:
        config = {"servers": {"a": peer.url}, "routes": {"gen": "a"}}
        (tmp_path / "config.json").write_text(json.dumps(config))
        async with DispatchService(tmp_path, status_interval=0, journal=False) as service:
            record, handle = await service.jobs.submit(JobSpec("gen", workflows.invert(1)))
            await handle.wait()
            failing = JobSpec("gen", workflows.fails_at_runtime())
            bad, handle = await service.jobs.submit(failing)
            await handle.wait()
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    mine = [line for line in lines if line.get("job") == record.id]
    assert [line["state"] for line in mine] == ["queued", "running", "done"]
    done = mine[-1]
    assert (done["route"], done["server"], done["level"]) == ("gen", "a", "INFO")
    assert done["prompt_id"] == service.jobs.record(record.id).prompt_id
    assert done["message"].startswith(f"job {record.id} done on 'a'")
    failed = [line for line in lines if line.get("job") == bad.id][-1]
    assert failed["level"] == "WARNING" and failed["state"] == "failed" and failed["error"]


async def test_the_command_line_logs_json_on_request_and_draws_no_bar(tmp_path: Path) -> None:
    async with FakePeer() as peer:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dispatch_core", "run", "--server", peer.url,
            "--log-format", "json", str(EXAMPLES / "invert_api.json"), "--out", str(tmp_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await process.communicate()
    assert process.returncode == 0, err
    lines = [json.loads(line) for line in err.decode().splitlines()]
    assert lines[-1]["server"] == "local" and lines[-1]["prompt_id"]
