"""Hostile requests to the worker routes: each refused with a 4xx naming the field, and
nothing started, read or written.

A worker is a process this machine runs, so every part of its command line is either the
operator's (the ComfyUI folder, where it listens, its folders) or an allow-listed flag; and
its name, which also names its folder and log, is never a path.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from local_http import call_json, serve_routes
from test_workers import FAKE, free_port
from yarl import URL

from dispatch_core.service import DispatchService

SAVED = {"gpu1": {"port": 18301, "gpu": "0", "args": ["--lowvram"]}}


@dataclass
class Stand:
    base: str
    session: aiohttp.ClientSession
    service: DispatchService
    folder: Path

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        url = URL(self.base + path, encoded=True)  # hostile paths go out exactly as written
        return await call_json(self.session, method, url, body)

    def state(self) -> dict[str, bytes]:
        """Every file of the folder: a refused request changes none."""
        return {
            str(path.relative_to(self.folder)): path.read_bytes()
            for path in sorted(self.folder.rglob("*"))
            if path.is_file()
        }

    def assert_untouched(self, before: dict[str, bytes]) -> None:
        assert self.state() == before
        assert self.service.fleet.manager.workers == {}, "nothing is started"


@pytest.fixture
async def stand(tmp_path: Path) -> AsyncIterator[Stand]:
    folder = tmp_path / "dispatch"
    folder.mkdir()
    (folder / "workers.json").write_text(json.dumps(SAVED))
    (folder / "config.json").write_text(json.dumps({"servers": {}, "routes": {}}))
    service = DispatchService(folder, status_interval=0, worker_command=FAKE)
    runner, base = await serve_routes(service)
    try:
        async with aiohttp.ClientSession() as session:
            yield Stand(base, session, service, folder)
    finally:
        await runner.cleanup()
        await service.close()


REFUSED_ARGS = [
    ["--listen"],
    ["--listen=0.0.0.0"],
    ["--listen", "0.0.0.0"],
    ["--port=8188"],
    ["--port", "9999"],
    ["--tls-keyfile=/tmp/k.pem"],
    ["--tls-certfile=/tmp/c.pem"],
    ["--enable-cors-header"],
    ["--enable-cors-header=*"],
    ["--max-upload-size=100000"],
    ["--base-directory=/"],
    ["--input-directory=/"],
    ["--output-directory=/etc"],
    ["--temp-directory=/"],
    ["--user-directory=/"],
    ["--extra-model-paths-config=/tmp/x.yaml"],
    ["--front-end-root=/"],
    ["--front-end-version=evil/frontend@1.0.0"],
    ["--database-url=sqlite:////tmp/x.db"],
    ["--comfy-api-base=http://evil.example"],
    ["--whitelist-custom-nodes", "x"],
    ["--multi-user"],
    ["--auto-launch"],
    ["--windows-standalone-build"],
    ["--cuda-device=1"],
    ["--lis"],  # argparse would expand an abbreviation to --listen
    ["--LOWVRAM"],
    ["--lowvram=1"],  # a switch takes no value
    ["--cache-lru"],  # a value is needed
    ["--cache-lru=abc"],
    ["--cache-lru=1e9"],
    ["--cache-lru=١٢"],  # digits of another script
    ["--reserve-vram=-1"],
    ["--preview-method=evil"],
    ["--verbose=TRACE"],
    ["--fast=a b"],
    ["--cache-lru=1\n--listen"],
    ["--lowvram", "main.py"],  # positional
    ["-c", "import os"],
    ["--"],
    ["-"],
    [""],
    ["@/tmp/args.txt"],
    ["--lowvram" + "x" * 10_000],
    ["--lowvram"] * 33,
]


@pytest.mark.parametrize("args", REFUSED_ARGS, ids=lambda a: repr(a)[:40])
async def test_a_flag_outside_the_allow_list_is_refused(stand: Stand, args: list[str]) -> None:
    before = stand.state()
    body = {"name": "w", "port": free_port(), "args": args}
    status, answer = await stand.call("POST", "/dispatch/workers", body)
    assert status == 400, answer
    assert answer["field"] == "args"
    stand.assert_untouched(before)


@pytest.mark.parametrize(
    "args",
    [{"x": 1}, "--lowvram", [1], [None], [["--lowvram"]]],
    ids=["object", "text", "number", "null", "nested"],
)
async def test_args_of_the_wrong_shape_are_refused(stand: Stand, args: Any) -> None:
    before = stand.state()
    status, answer = await stand.call(
        "POST", "/dispatch/workers", {"name": "w", "port": free_port(), "args": args}
    )
    assert (status, answer["field"]) == (400, "args")
    stand.assert_untouched(before)


def test_the_refusal_names_the_flag() -> None:
    from dispatch_core.service._workers import WorkerError, WorkerSpec

    with pytest.raises(WorkerError, match="--front-end-root is not allowed") as error:
        WorkerSpec.from_dict("w", {"port": 8200, "args": ["--lowvram", "--front-end-root=/"]})
    assert error.value.field == "args"


@pytest.mark.parametrize("folder", ["/tmp/evil", "", None, ["/tmp"]])
async def test_the_comfyui_folder_is_never_taken_from_a_request(stand: Stand, folder: Any) -> None:
    before = stand.state()
    body = {"name": "w", "port": free_port(), "comfyui": folder}
    status, answer = await stand.call("POST", "/dispatch/workers", body)
    assert (status, answer["field"]) == (400, "comfyui")
    assert "operator" in answer["error"] and "--comfyui" in answer["error"]
    stand.assert_untouched(before)


async def test_other_fields_are_refused_by_name(stand: Stand) -> None:
    before = stand.state()
    for key in ("cwd", "command", "env", "python"):
        body = {"name": "w", "port": free_port(), key: "x"}
        status, answer = await stand.call("POST", "/dispatch/workers", body)
        assert (status, answer["field"]) == (400, key)
    stand.assert_untouched(before)


BAD_NAMES = [
    "../x",
    "..",
    ".hidden",
    "/etc/passwd",
    "/var/log/dpkg",
    "a/b",
    "a\\b",
    "..\\..\\x",
    "a\x00b",
    "C:\\Windows",
    "%2F",
    "a b",
    "",
    "x" * 41,
    "x" * 10_000,
    None,
    42,
    ["a"],
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n)[:30])
async def test_a_bad_name_in_the_body_is_refused(stand: Stand, name: Any) -> None:
    before = stand.state()
    status, answer = await stand.call(
        "POST", "/dispatch/workers", {"name": name, "port": free_port()}
    )
    assert (status, answer["field"]) == (400, "name")
    assert len(answer["error"]) < 200, "a 10 kB name is not echoed back whole"
    stand.assert_untouched(before)


PATH_NAMES = [
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%2Fvar%2Flog%2Fdpkg",
    "%2e%2e",
    "%2E%2E%2F",
    "..",
    "a%5Cb",
    "..%5C..%5Cwindows",
    "a%00b",
    "%252F",
    "gpu1%2F..%2F..%2Fx",
    "x" * 4000,
]
ACTIONS = [("GET", "/log"), ("POST", "/start"), ("POST", "/stop"), ("DELETE", "")]


@pytest.mark.parametrize(("method", "suffix"), ACTIONS, ids=[a[1] or "delete" for a in ACTIONS])
@pytest.mark.parametrize("name", PATH_NAMES, ids=lambda n: n[:24])
async def test_traversal_names_in_the_path_are_refused(
    stand: Stand, name: str, method: str, suffix: str
) -> None:
    before = stand.state()
    status, answer = await stand.call(method, f"/dispatch/workers/{name}{suffix}")
    assert status == 400, answer
    assert answer["field"] == "name" and "root:" not in answer["error"]
    stand.assert_untouched(before)


async def test_an_absolute_path_does_not_reach_the_routes(stand: Stand) -> None:
    before = stand.state()
    for method, suffix in ACTIONS:
        status, _ = await stand.call(method, f"/dispatch/workers//etc/passwd{suffix}")
        assert status == 404
    stand.assert_untouched(before)


async def test_the_log_of_an_unknown_worker_is_a_404(stand: Stand) -> None:
    workers = stand.folder / "workers"
    workers.mkdir()
    (workers / "ghost.log").write_text("not a worker of ours\n")
    for name in ("nobody", "ghost"):
        status, answer = await stand.call("GET", f"/dispatch/workers/{name}/log")
        assert (status, answer["field"]) == (404, "name")
    status, answer = await stand.call("GET", "/dispatch/workers/gpu1/log")  # saved, never run
    assert (status, answer["field"]) == (404, "name")
    assert "no log" in answer["error"]


async def test_a_log_that_links_outside_the_folder_is_not_read(stand: Stand) -> None:
    secret = stand.folder.parent / "secret.log"
    secret.write_text("TOKEN=s3cret\n")
    workers = stand.folder / "workers"
    workers.mkdir()
    os.symlink(secret, workers / "gpu1.log")
    status, answer = await stand.call("GET", "/dispatch/workers/gpu1/log")
    assert (status, answer["field"]) == (400, "name")
    assert "s3cret" not in json.dumps(answer)


@pytest.mark.parametrize("lines", ["0", "-1", "100000", "abc", "1" * 5000, "1.5"])
async def test_the_log_length_is_bounded(stand: Stand, lines: str) -> None:
    workers = stand.folder / "workers"
    workers.mkdir()
    (workers / "gpu1.log").write_text("hello\n")
    status, answer = await stand.call("GET", f"/dispatch/workers/gpu1/log?lines={lines}")
    assert (status, answer["field"]) == (400, "lines")


async def test_only_the_end_of_a_huge_log_is_read(stand: Stand) -> None:
    workers = stand.folder / "workers"
    workers.mkdir()
    with (workers / "gpu1.log").open("w") as log:
        for index in range(400_000):  # about 6 MB
            log.write(f"line {index:07d}\n")
    status, answer = await stand.call("GET", "/dispatch/workers/gpu1/log?lines=5000")
    assert status == 200
    lines = answer["log"].splitlines()
    assert lines[-1] == "line 0399999"
    assert 1000 < len(lines) <= 5000 and all(line.startswith("line ") for line in lines)
    assert len(answer["log"]) <= 256 * 1024


async def test_no_operator_folder_refuses_with_how_to_fix_it(tmp_path: Path) -> None:
    service = DispatchService(tmp_path, status_interval=0)  # no comfyui, no fake command
    runner, base = await serve_routes(service)
    try:
        async with aiohttp.ClientSession() as session:
            body = {"name": "w", "port": free_port()}
            async with session.post(base + "/dispatch/workers", json=body) as response:
                answer = await response.json()
            assert (response.status, answer["field"]) == (400, "comfyui")
            assert "--comfyui" in answer["error"]
    finally:
        await runner.cleanup()
        await service.close()
    assert not (tmp_path / "workers.json").exists()
    assert service.fleet.manager.workers == {}


async def test_a_saved_folder_from_an_older_version_is_ignored(tmp_path: Path) -> None:
    port = free_port()
    old = {"old": {"port": port, "gpu": None, "comfyui": "/tmp/evil", "args": []}}
    (tmp_path / "workers.json").write_text(json.dumps(old))
    async with DispatchService(tmp_path, status_interval=0, worker_command=FAKE) as service:
        assert "comfyui" not in service.fleet.list()[0]
        worker = await service.fleet.start("old")
        assert "comfyui" not in worker
        saved = json.loads((tmp_path / "workers.json").read_text())
        assert saved == {"old": {"port": port, "gpu": None, "args": []}}
        await service.fleet.stop("old")
