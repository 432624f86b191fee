"""The machine's GPUs, and one worker per GPU in one call.

`nvidia-smi` is a fake on PATH (a small script in a temp folder); torch is a stand-in put
in `sys.modules`, as the host would have imported it. Workers are fake ComfyUI peers.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from local_http import call_json, serve_routes
from test_workers import FAKE, alive, free_port

from dispatch_core.service import DispatchService, _gpus
from dispatch_core.service._gpus import QUERY, Gpu, GpuProbe, Gpus, parse_nvidia_smi

TWO_GPUS = "0, NVIDIA GeForce RTX 4090, 24564 MiB\n1, NVIDIA RTX A4000, 16376 MiB\n"


def fake_nvidia_smi(folder: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """`nvidia-smi` on PATH, first: checks it is asked the query we mean, then runs `body`."""
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(
        f"#!{sys.executable}\nimport sys, time\n"
        f"assert sys.argv[1:] == {QUERY!r}, sys.argv\n{body}\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")


def listing(text: str) -> str:
    return f"sys.stdout.write({text!r})"


def no_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)


def fake_torch(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    def properties(index: int) -> Any:
        return SimpleNamespace(name=f"Fake GPU {index}", total_memory=8 * 2**30)

    cuda = SimpleNamespace(
        is_available=lambda: count > 0,
        device_count=lambda: count,
        get_device_properties=properties,
    )
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))


async def test_nvidia_smi_lists_the_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, listing(TWO_GPUS))
    fake_torch(monkeypatch, 1)  # nvidia-smi comes first
    found = await GpuProbe().detect()
    assert found == Gpus(
        (Gpu(0, "NVIDIA GeForce RTX 4090", 24564), Gpu(1, "NVIDIA RTX A4000", 16376)),
        "nvidia-smi",
    )


@pytest.mark.parametrize(
    ("visible", "indexes"),
    [(None, [0, 1]), ("2,3", [2, 3]), ("GPU-5b1c,GPU-77aa", [0, 1])],
)
async def test_without_nvidia_smi_the_hosts_torch_lists_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, visible: str | None, indexes: list[int]
) -> None:
    """Numbered as the host's torch sees them, mapped back through its CUDA_VISIBLE_DEVICES."""
    monkeypatch.setenv("PATH", str(tmp_path))
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    fake_torch(monkeypatch, 2)
    found = await GpuProbe().detect()
    assert found.source == "torch"
    assert [gpu.index for gpu in found.gpus] == indexes
    assert found.gpus[1] == Gpu(indexes[1], "Fake GPU 1", 8192)


async def test_torch_is_never_imported_to_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The standalone gateway never imported torch: then there are no GPUs to offer."""
    monkeypatch.setenv("PATH", str(tmp_path))
    no_torch(monkeypatch)
    assert await GpuProbe().detect() == Gpus((), None)
    assert "torch" not in sys.modules


@pytest.mark.parametrize(
    "body",
    [
        "sys.exit(9)",  # no driver
        listing("NVIDIA-SMI has failed because it couldn't communicate with the driver\n"),
        "time.sleep(30)",  # hung: bounded in time, then killed
        "sys.stdout.write('0, X, 1 MiB\\n' * 10**6)",  # bounded in size
    ],
    ids=["fails", "no driver", "hangs", "floods"],
)
async def test_a_broken_nvidia_smi_falls_back_to_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    monkeypatch.setattr(_gpus, "_TIMEOUT", 1.0)
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, body)
    fake_torch(monkeypatch, 1)
    found = await GpuProbe().detect()
    if body.startswith("sys.stdout.write('0"):
        assert found.source == "nvidia-smi" and len(found.gpus) == 64
    else:
        assert found == Gpus((Gpu(0, "Fake GPU 0", 8192),), "torch")


def test_odd_lines_of_nvidia_smi_are_skipped() -> None:
    text = (
        "0, Tesla V100-SXM2-16GB, 16160 MiB\n"
        "1, A name, with a comma, 8000 MiB\n"
        "2, No memory, [N/A]\n"
        "x, Not a number, 1 MiB\n"
        "٣, Another script's digit, 1 MiB\n"
        "\n"
        "garbage\n"
    )
    assert parse_nvidia_smi(text) == (
        Gpu(0, "Tesla V100-SXM2-16GB", 16160),
        Gpu(1, "A name, with a comma", 8000),
        Gpu(2, "No memory", None),
    )


async def test_one_probe_at_a_time_kept_a_few_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = tmp_path / "runs"
    body = f"open({str(count)!r}, 'a').write('x')\n" + listing(TWO_GPUS)
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, body)
    now = [100.0]
    probe = GpuProbe(clock=lambda: now[0])
    await probe.detect()
    await probe.detect()
    assert count.read_text() == "x"
    now[0] += 11
    await probe.detect()
    assert count.read_text() == "xx"


# -- one worker per GPU, through the routes -------------------------------------------------


@dataclass
class Stand:
    base: str
    session: aiohttp.ClientSession
    service: DispatchService
    folder: Path

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await call_json(self.session, method, self.base + path, body)


@pytest.fixture
async def stand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stand]:
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, listing(TWO_GPUS))
    folder = tmp_path / "dispatch"
    folder.mkdir()
    service = DispatchService(folder, status_interval=0, worker_command=FAKE)
    runner, base = await serve_routes(service)
    try:
        async with aiohttp.ClientSession() as session:
            yield Stand(base, session, service, folder)
    finally:
        await runner.cleanup()
        await service.close()


async def test_the_gpus_route_lists_them_with_their_workers(stand: Stand) -> None:
    status, body = await stand.call("GET", "/dispatch/gpus")
    assert status == 200
    assert body["source"] == "nvidia-smi"
    assert body["gpus"] == [
        {"index": 0, "name": "NVIDIA GeForce RTX 4090", "memory_mb": 24564, "workers": []},
        {"index": 1, "name": "NVIDIA RTX A4000", "memory_mb": 16376, "workers": []},
    ]
    await stand.service.fleet.start("both", {"port": free_port(), "gpu": "0,1"})
    status, body = await stand.call("GET", "/dispatch/gpus")
    assert [gpu["workers"] for gpu in body["gpus"]] == [["both"], ["both"]]


async def test_one_worker_per_gpu_in_one_call(stand: Stand) -> None:
    base = free_port()
    with socket.socket() as busy:  # something else listens on the base port
        busy.bind(("127.0.0.1", base))
        busy.listen()
        status, body = await stand.call(
            "POST", "/dispatch/workers/per-gpu", {"base_port": base, "args": ["--lowvram"]}
        )
    assert status == 200, body
    started = body["started"]
    assert [(w["name"], w["gpu"], w["args"]) for w in started] == [
        ("gpu0", "0", ["--lowvram"]),
        ("gpu1", "1", ["--lowvram"]),
    ]
    ports = [w["port"] for w in started]
    assert base not in ports and len(set(ports)) == 2 and min(ports) > base
    servers = stand.service.config.servers
    assert servers["gpu0"].url == f"http://127.0.0.1:{ports[0]}" and servers["gpu1"].enabled
    for worker in started:
        await stand.service.fleet.manager.wait_ready(worker["name"], timeout=20)
    status, again = await stand.call("POST", "/dispatch/workers/per-gpu")
    assert (status, again["started"]) == (200, []), "every GPU has its worker"
    status, body = await stand.call("GET", "/dispatch/gpus")
    assert [gpu["workers"] for gpu in body["gpus"]] == [["gpu0"], ["gpu1"]]


async def test_a_gpu_taken_by_a_saved_worker_is_left_and_names_do_not_clash(
    stand: Stand,
) -> None:
    """GPU 0 has a (stopped) worker; a server is named gpu1 already: `gpu1-2` it is."""
    fleet = stand.service.fleet
    await fleet.start("mine", {"port": free_port(), "gpu": "0"})
    await fleet.stop("mine")
    edit = stand.service.edits.add_server("gpu1", {"url": "http://10.0.0.5:8188"})
    await stand.service.edit_config(edit)
    status, body = await stand.call("POST", "/dispatch/workers/per-gpu", {})
    assert status == 200, body
    assert [(w["name"], w["gpu"]) for w in body["started"]] == [("gpu1-2", "1")]
    assert stand.service.config.servers["gpu1"].url == "http://10.0.0.5:8188"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"base_port": 80}, "base_port"),
        ({"base_port": "8189"}, "base_port"),
        ({"base_port": True}, "base_port"),
        ({"args": ["--listen", "0.0.0.0"]}, "args"),
        ({"args": ["--base-directory=/"]}, "args"),
        ({"args": "--lowvram"}, "args"),
        ({"comfyui": "/tmp/evil"}, "comfyui"),
        ({"gpu": "0"}, "gpu"),
        ([1], "body"),
    ],
)
async def test_bad_options_start_nothing(stand: Stand, body: Any, field: str) -> None:
    status, answer = await stand.call("POST", "/dispatch/workers/per-gpu", body)
    assert (status, answer["field"]) == (400, field), answer
    assert stand.service.fleet.manager.workers == {}
    assert not (stand.folder / "workers.json").exists()


async def test_without_gpus_nothing_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    no_torch(monkeypatch)
    async with DispatchService(tmp_path, status_interval=0, worker_command=FAKE) as service:
        assert await service.fleet.gpus() == {"gpus": [], "source": None}
        assert await service.fleet.start_per_gpu({}) == {"started": [], "source": None}


async def test_workers_started_per_gpu_stop_with_the_service(stand: Stand) -> None:
    status, body = await stand.call("POST", "/dispatch/workers/per-gpu")
    pids = [worker["pid"] for worker in body["started"]]
    assert status == 200 and len(pids) == 2 and all(alive(pid) for pid in pids)
    await stand.service.close()
    assert not any(alive(pid) for pid in pids)
