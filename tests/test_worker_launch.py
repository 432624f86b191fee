"""How a worker's process is started and stopped on each platform (`_launch`).

The Windows path runs here too: the platform is a parameter, and the job-object calls are
a fake that records them and ends the processes it was given, as Windows would.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_workers import alive, free_port

from dispatch_core.service._launch import (
    _LAUNCHER,
    PosixLauncher,
    WindowsLauncher,
    _ExtendedLimits,
    launcher_for,
)
from dispatch_core.service._workers import (
    WorkerError,
    WorkerManager,
    WorkerSpec,
    interpreter_flags,
)

SLEEP = [sys.executable, "-c", "import time; print('worker up', flush=True); time.sleep(60)"]


class FakeJobs:
    """Records the job-object calls; `terminate` ends every process assigned, as Windows
    ends every process in a job."""

    def __init__(self, *, refuse: bool = False):
        self.calls: list[tuple[object, ...]] = []
        self.members: dict[int, list[int]] = {}
        self.refuse = refuse

    def create(self) -> int:
        job = 1000 + len(self.members)
        self.members[job] = []
        self.calls.append(("create", job))
        return job

    def assign(self, job: int, pid: int) -> None:
        self.calls.append(("assign", job, pid))
        if self.refuse:
            raise OSError(5, "Access is denied")
        self.members[job].append(pid)

    def terminate(self, job: int) -> None:
        self.calls.append(("terminate", job))
        for pid in self.members[job]:
            os.kill(pid, signal.SIGKILL)

    def close(self, job: int) -> None:
        self.calls.append(("close", job))


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


@pytest.mark.parametrize(
    ("platform", "kind"),
    [("win32", WindowsLauncher), ("linux", PosixLauncher), ("darwin", PosixLauncher)],
)
def test_the_launcher_follows_the_platform(platform: str, kind: type) -> None:
    assert isinstance(launcher_for(platform, jobs=FakeJobs()), kind)


def test_on_windows_comfyui_is_started_as_is_without_exec() -> None:
    """`exec` on Windows starts another process and exits: the PID tracked would be dead."""
    command = [sys.executable, "main.py", "--port", "8200"]
    assert launcher_for("win32", jobs=FakeJobs()).argv(command) == command
    wrapped = launcher_for("linux").argv(command)
    assert wrapped[:3] == [sys.executable, "-c", _LAUNCHER] and "execvp" in _LAUNCHER


async def test_a_windows_worker_is_put_in_a_job_and_stopped_with_its_tree(
    tmp_path: Path,
) -> None:
    jobs = FakeJobs()
    manager = WorkerManager(tmp_path, command=SLEEP, launcher=launcher_for("win32", jobs=jobs))
    async with manager:
        worker = await manager.start(WorkerSpec("gpu0", free_port(), gpu="0"))
        pid = worker.process.pid
        assert cmdline(pid) == SLEEP, "the tracked process is the worker itself"
        assert jobs.calls == [("create", 1000), ("assign", 1000, pid)]
        await manager.stop("gpu0")
        assert jobs.calls[2:] == [("terminate", 1000), ("close", 1000)]
        assert worker.state == "stopped" and not alive(pid)
        restarted = await manager.start(WorkerSpec("gpu0", free_port(), gpu="0"))
        assert jobs.calls[4:] == [("create", 1001), ("assign", 1001, restarted.process.pid)]
    # closing the manager stops what still runs: the job is ended, then let go of
    assert jobs.calls[6:] == [("terminate", 1001), ("close", 1001)]
    assert not alive(restarted.process.pid)


async def test_a_windows_worker_that_exited_lets_go_of_its_job(tmp_path: Path) -> None:
    jobs = FakeJobs()
    quick = [sys.executable, "-c", "pass"]
    manager = WorkerManager(tmp_path, command=quick, launcher=launcher_for("win32", jobs=jobs))
    async with manager:
        worker = await manager.start(WorkerSpec("w", free_port()))
        await worker.process.wait()
        await manager.start(WorkerSpec("w", free_port()))  # the old job is closed
        assert ("close", 1000) in jobs.calls and ("terminate", 1000) not in jobs.calls


@pytest.mark.parametrize("fake", [True, False], ids=["refused", "no Windows"])
async def test_a_worker_that_cannot_be_tied_to_the_dispatcher_is_not_left_running(
    tmp_path: Path, fake: bool
) -> None:
    """Never a worker that could outlive us: on a failed assignment it is killed at once.
    Without the fake, the real calls run, which fail anywhere but on Windows."""
    jobs = FakeJobs(refuse=True) if fake else None
    manager = WorkerManager(tmp_path, command=SLEEP, launcher=launcher_for("win32", jobs=jobs))
    with pytest.raises(WorkerError, match="could not be tied to this process's life"):
        await manager.start(WorkerSpec("w", free_port()))
    assert manager.workers == {}
    if jobs is not None:
        pid = jobs.calls[1][2]
        assert isinstance(pid, int) and not alive(pid)
        assert jobs.calls[-1] == ("close", 1000)


def test_the_job_limits_have_windows_layout() -> None:
    """JOBOBJECT_EXTENDED_LIMIT_INFORMATION: 144 bytes on 64-bit Windows, 112 on 32-bit."""
    pointer = ctypes.sizeof(ctypes.c_void_p)
    assert ctypes.sizeof(_ExtendedLimits) == {8: 144, 4: 112}[pointer]
    assert _ExtendedLimits.io.offset == {8: 64, 4: 48}[pointer]


def test_the_operators_flags_come_before_a_workers_own(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("")
    operator = ("--base-directory", "/data", "--extra-model-paths-config", "/data/x.yaml")
    manager = WorkerManager(tmp_path / "workers", comfyui=tmp_path, comfyui_args=operator)
    argv, _ = manager.command(WorkerSpec("a", 8200, args=("--lowvram",)))
    after_main = argv[argv.index("main.py") + 1 :]
    assert tuple(after_main[:4]) == operator
    assert after_main[4:8] == ["--listen", "127.0.0.1", "--port", "8200"]
    assert after_main[-1] == "--lowvram"


def test_a_worker_keeps_the_interpreters_no_user_site_flag() -> None:
    """The Windows portable build runs `python -s main.py`: its workers do too."""
    assert interpreter_flags(SimpleNamespace(no_user_site=1)) == ["-s"]
    assert interpreter_flags(SimpleNamespace(no_user_site=0)) == []
