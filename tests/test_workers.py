"""Managed local workers, with fake ComfyUI peers as the worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import pytest
from local_http import serve_routes

from dispatch_core.service import DispatchService
from dispatch_core.service._workers import WorkerError, WorkerManager, WorkerSpec

import workflows

FAKE = [sys.executable, "-m", "dispatch_core.testing", "--port", "{port}", "--job-seconds", "0"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too: it only waits for its parent to read its status
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split()[2] == "Z")


async def test_start_wait_stop_and_log(tmp_path: Path) -> None:
    async with WorkerManager(tmp_path, command=FAKE) as manager:
        spec = WorkerSpec("gpu1", free_port(), gpu="1")
        worker = await manager.start(spec)
        await manager.wait_ready("gpu1", timeout=20)
        assert worker.state == "running"
        for sub in (
            "input",
            "output",
            "user",
        ):  # a real ComfyUI exits if --user-directory is not there
            assert (tmp_path / "gpu1" / sub).is_dir()
        async with aiohttp.ClientSession() as session:
            async with session.get(worker.url + "/system_stats") as response:
                assert response.status == 200
        assert "fake ComfyUI peer on" in manager.log("gpu1")
        with pytest.raises(WorkerError, match="running already"):
            await manager.start(spec)
        with pytest.raises(WorkerError, match=f"port {spec.port} is taken by worker gpu1"):
            await manager.start(WorkerSpec("other", spec.port))
        await manager.stop("gpu1")
        assert worker.state == "stopped" and not alive(worker.process.pid)


SHOW_GPU = (
    "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES'), os.environ.get('CUDA_DEVICE_ORDER'))"
)


@pytest.mark.parametrize(
    ("operator", "gpu", "seen"),
    [
        (None, "0,1", "0,1 PCI_BUS_ID"),  # numbered as nvidia-smi numbers them
        ("FASTEST_FIRST", "1", "1 FASTEST_FIRST"),  # the operator's choice stays
        (None, None, "None None"),
    ],
)
async def test_the_gpu_reaches_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operator: str | None, gpu: str, seen: str
) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    if operator:
        monkeypatch.setenv("CUDA_DEVICE_ORDER", operator)
    async with WorkerManager(tmp_path, command=[sys.executable, "-c", SHOW_GPU]) as manager:
        worker = await manager.start(WorkerSpec("w", free_port(), gpu=gpu))
        await worker.process.wait()
        assert manager.log("w") == seen
        assert worker.state == "exited"
        with pytest.raises(WorkerError, match="exited with code 0"):
            await manager.wait_ready("w")


def test_a_comfyui_worker_gets_folders_of_its_own(tmp_path: Path) -> None:
    (tmp_path / "ComfyUI").mkdir()
    (tmp_path / "ComfyUI" / "main.py").write_text("")
    manager = WorkerManager(tmp_path / "workers", comfyui=tmp_path / "ComfyUI")
    argv, cwd = manager.command(WorkerSpec("a", 8200, args=("--lowvram",)))
    assert cwd == tmp_path / "ComfyUI"
    main = argv.index("main.py")
    assert argv[main : main + 5] == ["main.py", "--listen", "127.0.0.1", "--port", "8200"]
    for flag in ("--input-directory", "--output-directory", "--temp-directory", "--user-directory"):
        assert str(tmp_path / "workers" / "a") in argv[argv.index(flag) + 1]
    assert argv[-1] == "--lowvram"
    with pytest.raises(WorkerError, match="no ComfyUI in") as error:
        WorkerManager(tmp_path / "workers", comfyui=tmp_path).command(WorkerSpec("b", 8201))
    assert error.value.field == "comfyui"


@pytest.mark.parametrize(
    "args",
    [
        ["--lowvram", "--fp16-vae", "--use-sage-attention", "--disable-smart-memory"],
        ["--preview-method", "auto", "--reserve-vram=1.5", "--cache-lru", "10"],
        ["--fast"],
        ["--fast", "fp16_accumulation", "autotune", "--verbose"],
        ["--verbose", "DEBUG", "--cache-none", "--fp8_e4m3fn-unet", "--directml"],
    ],
)
def test_flags_that_change_how_comfyui_computes_reach_it(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "main.py").write_text("")
    manager = WorkerManager(tmp_path / "workers", comfyui=tmp_path)
    argv, _ = manager.command(WorkerSpec.from_dict("a", {"port": 8200, "args": args}))
    assert argv[-len(args) :] == args
    assert argv.count("--listen") == 1 and argv.count("--port") == 1


def test_without_an_operator_folder_a_worker_says_how_to_give_one(tmp_path: Path) -> None:
    with pytest.raises(WorkerError, match="--comfyui FOLDER") as error:
        WorkerManager(tmp_path).command(WorkerSpec("a", 8200))
    assert error.value.field == "comfyui"


@pytest.mark.parametrize(
    ("name", "data", "message", "field"),
    [
        ("../x", {"port": 8200}, "worker name", "name"),
        ("a", {"port": 80}, "'port' must be a number from 1024", "port"),
        ("a", {"port": "8200"}, "'port' must be a number", "port"),
        ("a", {"port": 8200, "gpu": "cuda:0"}, "'gpu' must be a GPU index", "gpu"),
        ("a", {"port": 8200, "args": ["-c", "x"]}, "'-c' is not a flag", "args"),
        ("a", {"port": 8200, "args": "--lowvram"}, "'args' must be a list", "args"),
        ("a", {"port": 8200, "comfyui": "/x"}, "the operator's choice", "comfyui"),
        ("a", {"port": 8200, "cwd": "/x"}, "unknown field 'cwd'", "cwd"),
        ("a", [], "expected an object", "body"),
    ],
)
def test_bad_worker_specs_name_the_field(name: str, data: object, message: str, field: str) -> None:
    with pytest.raises(WorkerError, match=message) as error:
        WorkerSpec.from_dict(name, data)
    assert error.value.field == field


def test_workers_die_with_a_dispatcher_killed_outright(tmp_path: Path) -> None:
    """The parent-death signal: no orphan even after SIGKILL, where no cleanup code runs."""
    port = free_port()
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from dispatch_core.service._workers import WorkerManager, WorkerSpec

        async def main():
            manager = WorkerManager({str(tmp_path)!r}, command={FAKE!r})
            worker = await manager.start(WorkerSpec("w", {port}))
            await manager.wait_ready("w", timeout=20)
            print(worker.process.pid, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child)


async def test_workers_through_the_routes_become_servers(tmp_path: Path) -> None:
    service = DispatchService(tmp_path, status_interval=0, worker_command=FAKE)
    runner, base = await serve_routes(service)
    port = free_port()
    try:
        async with aiohttp.ClientSession() as session:

            async def call(method: str, path: str, body: object = None) -> tuple[int, dict]:
                async with session.request(method, base + path, json=body) as response:
                    return response.status, await response.json()

            status, worker = await call(
                "POST", "/dispatch/workers", {"name": "gpu1", "port": port, "gpu": "1"}
            )
            assert status == 201, worker
            assert worker["state"] == "running" and worker["url"] == f"http://127.0.0.1:{port}"
            assert service.config.servers["gpu1"].url == worker["url"]
            await service.fleet.manager.wait_ready("gpu1", timeout=20)
            service.templates.save("inv", workflows.invert())
            result = await service.jobs.run(service.jobs.spec("x", template="inv", server="gpu1"))
            assert result.server == "gpu1"
            status, listing = await call("GET", "/dispatch/workers")
            assert [w["name"] for w in listing] == ["gpu1"] and listing[0]["gpu"] == "1"
            status, log = await call("GET", "/dispatch/workers/gpu1/log?lines=5")
            assert "fake ComfyUI peer on" in log["log"]
            status, _ = await call("POST", "/dispatch/workers/gpu1/stop")
            assert status == 200 and not service.config.servers["gpu1"].enabled
            assert service.fleet.list()[0]["state"] == "stopped"
            status, _ = await call("POST", "/dispatch/workers/gpu1/start")
            assert status == 200 and service.config.servers["gpu1"].enabled
            saved = json.loads((tmp_path / "workers.json").read_text())
            assert saved["gpu1"]["port"] == port
            status, body = await call("POST", "/dispatch/workers", {"name": "bad", "port": 1})
            assert status == 400 and "port" in body["error"]
            status, body = await call("POST", "/dispatch/workers/nope/stop")
            assert status == 404
            status, _ = await call("DELETE", "/dispatch/workers/gpu1")
            assert status == 200 and service.fleet.list() == []
            pid = worker["pid"]
    finally:
        await runner.cleanup()
        await service.close()
    assert not alive(pid)


async def test_closing_the_service_stops_its_workers(tmp_path: Path) -> None:
    async with DispatchService(tmp_path, status_interval=0, worker_command=FAKE) as service:
        worker = await service.fleet.start("w", {"port": free_port()})
    await asyncio.sleep(0)
    assert not alive(worker["pid"])


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_serve_stopped_by_a_signal_stops_its_workers_and_closes_the_journal(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """As systemd or docker stop it (SIGTERM), or Ctrl-C: a clean exit 0, nothing left."""
    port = free_port()
    config = {"servers": {"gpu1": f"http://127.0.0.1:{port}"}, "routes": {"gen": "gpu1"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    fake_comfyui = Path(__file__).parent / "browser" / "fake-comfyui"
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "dispatch_core", "serve", "--config", tmp_path / "config.json"],
        *["--port", "0", "--status-every", "0", "--comfyui", fake_comfyui],
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        line = (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
        base = line.split(" on ", 1)[1].split("/dispatch/ui/")[0]
        async with aiohttp.ClientSession() as session:
            body = {"name": "gpu1", "port": port}
            async with session.post(base + "/dispatch/workers", json=body) as response:
                assert response.status == 201, await response.text()
                pid = (await response.json())["pid"]
            async with session.ws_connect(base + "/dispatch/ws") as events:
                run = {"route": "gen", "workflow": workflows.invert(), "timeout": 20}
                async with session.post(base + "/dispatch/run", json=run) as response:
                    assert response.status == 202, await response.text()
                    job_id = (await response.json())["id"]
                state = ""
                while state not in ("done", "failed", "cancelled"):
                    message = json.loads((await events.receive(timeout=20)).data)
                    if message["type"] == "dispatch.job" and message["data"]["id"] == job_id:
                        state = message["data"]["state"]
                assert state == "done", message["data"]
        assert alive(pid)
        process.send_signal(signum)
        rest = (await asyncio.wait_for(process.stderr.read(), 30)).decode()
        assert await process.wait() == 0, rest
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert "stopped: workers stopped, journal closed" in rest
    assert not alive(pid)
    # SQLite folds its write-ahead log back and removes it when the last connection closes
    for name in ("journal.sqlite", "jobs.sqlite"):
        assert (tmp_path / name).is_file()
        assert not (tmp_path / f"{name}-wal").exists(), name
    with sqlite3.connect(tmp_path / "journal.sqlite") as journal:
        assert journal.execute("SELECT count(*) FROM jobs").fetchone() == (1,)
