"""How a worker's process is started and stopped so that it never outlives the dispatcher.

Linux and macOS: a few lines of Python run first in the child, then `exec` ComfyUI, so
that the PID we track is the worker's own. On Linux they first ask for a parent-death
signal, which survives `exec`: a dispatcher killed even with SIGKILL takes its workers
down. A stop is SIGTERM, then SIGKILL after a grace period.

Windows: there `exec` starts a new process and exits (CPython issue 101191), which would
leave us tracking a dead PID and unable to stop the real worker. So ComfyUI is started
directly, without a console window of its own, and put at once into a job object of its
own that kills every process in it when its last handle closes
(`JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`). Only the dispatcher holds that handle, and Windows
closes it when the dispatcher ends, however it ends; the worker and every process it
started go with it. (Between the start and the assignment there is only the interpreter's
start-up: ComfyUI has not started anything of its own yet.) A stop terminates the job:
the whole tree, at once, as Windows gives no gentler signal to a process without a
console. A venv's `python.exe` on Windows is itself a launcher that starts the real
interpreter as its child: the job takes both.

`launcher_for(platform)` picks one; the job-object calls are a parameter, so that the
Windows path is tested anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import subprocess
import sys
from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["JobObjects", "Launcher", "ProcessTree", "Win32Jobs", "launcher_for"]

_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "if sys.platform.startswith('linux'):\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)
"""Run first in the child: no code of ours runs between fork and exec in the dispatcher."""


class ProcessTree(Protocol):
    """A started worker and whatever it starts, as one thing to stop."""

    async def stop(self, grace: float) -> None:
        """Stop all of it, and release what was held to do so."""
        ...

    def close(self) -> None:
        """Release what was held, the processes having ended."""
        ...


class Launcher(Protocol):
    creationflags: int
    """For `subprocess`: 0 but on Windows."""

    def argv(self, command: Sequence[str]) -> list[str]:
        """The command line that runs `command` as a worker."""
        ...

    def adopt(self, process: asyncio.subprocess.Process) -> ProcessTree:
        """Tie a just-started process to the dispatcher's life; OSError if that fails."""
        ...


class JobObjects(Protocol):
    """The Windows job-object calls the launcher needs; handles are plain integers."""

    def create(self) -> int:
        """A new job that kills its processes when its last handle closes."""
        ...

    def assign(self, job: int, pid: int) -> None: ...

    def terminate(self, job: int) -> None:
        """End every process in the job."""
        ...

    def close(self, job: int) -> None: ...


def launcher_for(platform: str = sys.platform, *, jobs: JobObjects | None = None) -> Launcher:
    """The launcher for `platform` (`sys.platform`'s values); `jobs` for Windows' calls."""
    if platform == "win32":
        return WindowsLauncher(jobs if jobs is not None else Win32Jobs())
    return PosixLauncher()


class PosixLauncher:
    creationflags = 0

    def argv(self, command: Sequence[str]) -> list[str]:
        return [sys.executable, "-c", _LAUNCHER, *command]

    def adopt(self, process: asyncio.subprocess.Process) -> ProcessTree:
        return _Signalled(process)


class _Signalled:
    """SIGTERM, then SIGKILL after the grace period."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process

    async def stop(self, grace: float) -> None:
        process = self.process
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def close(self) -> None:
        pass


class WindowsLauncher:
    creationflags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    """No console window pops up when the dispatcher has none (the Desktop app)."""

    def __init__(self, jobs: JobObjects):
        self.jobs = jobs

    def argv(self, command: Sequence[str]) -> list[str]:
        return list(command)

    def adopt(self, process: asyncio.subprocess.Process) -> ProcessTree:
        job = self.jobs.create()
        try:
            self.jobs.assign(job, process.pid)
        except OSError:
            self.jobs.close(job)
            raise
        return _Job(process, self.jobs, job)


class _Job:
    """A worker in its job object: stopping it ends the job, so the whole tree."""

    def __init__(self, process: asyncio.subprocess.Process, jobs: JobObjects, job: int):
        self.process = process
        self._jobs = jobs
        self._job: int | None = job

    async def stop(self, grace: float) -> None:
        if self._job is not None and self.process.returncode is None:
            try:
                self._jobs.terminate(self._job)
            except OSError:  # the worker at least, if not its tree
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
        await self.process.wait()
        self.close()

    def close(self) -> None:
        if self._job is not None:
            job, self._job = self._job, None
            self._jobs.close(job)


# -- the Win32 calls ----------------------------------------------------------------------

_JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
_JOB_OBJECT_EXTENDED_LIMIT_INFORMATION = 9
_PROCESS_TERMINATE = 0x0001
_PROCESS_SET_QUOTA = 0x0100


class _BasicLimits(ctypes.Structure):
    """JOBOBJECT_BASIC_LIMIT_INFORMATION."""

    _fields_ = [
        ("per_process_user_time_limit", ctypes.c_int64),
        ("per_job_user_time_limit", ctypes.c_int64),
        ("limit_flags", ctypes.c_uint32),
        ("minimum_working_set_size", ctypes.c_size_t),
        ("maximum_working_set_size", ctypes.c_size_t),
        ("active_process_limit", ctypes.c_uint32),
        ("affinity", ctypes.c_size_t),
        ("priority_class", ctypes.c_uint32),
        ("scheduling_class", ctypes.c_uint32),
    ]


class _IoCounters(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in ("reads", "writes", "others", "read_bytes", "written_bytes", "other_bytes")
    ]


class _ExtendedLimits(ctypes.Structure):
    """JOBOBJECT_EXTENDED_LIMIT_INFORMATION."""

    _fields_ = [
        ("basic", _BasicLimits),
        ("io", _IoCounters),
        ("process_memory_limit", ctypes.c_size_t),
        ("job_memory_limit", ctypes.c_size_t),
        ("peak_process_memory_used", ctypes.c_size_t),
        ("peak_job_memory_used", ctypes.c_size_t),
    ]


class Win32Jobs:
    """Job objects through kernel32, loaded on first use (Windows only)."""

    def __init__(self) -> None:
        self._kernel32: Any = None

    def create(self) -> int:
        kernel32 = self._load()
        job = kernel32.CreateJobObjectW(None, None)  # not inheritable: ours alone
        if not job:
            raise _last_error("CreateJobObjectW")
        limits = _ExtendedLimits()
        limits.basic.limit_flags = _JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        size = ctypes.sizeof(limits)
        kind = _JOB_OBJECT_EXTENDED_LIMIT_INFORMATION
        if not kernel32.SetInformationJobObject(job, kind, ctypes.byref(limits), size):
            error = _last_error("SetInformationJobObject")
            kernel32.CloseHandle(job)
            raise error
        return int(job)

    def assign(self, job: int, pid: int) -> None:
        kernel32 = self._load()
        process = kernel32.OpenProcess(_PROCESS_SET_QUOTA | _PROCESS_TERMINATE, False, pid)
        if not process:
            raise _last_error("OpenProcess")
        try:
            if not kernel32.AssignProcessToJobObject(job, process):
                raise _last_error("AssignProcessToJobObject")
        finally:
            kernel32.CloseHandle(process)

    def terminate(self, job: int) -> None:
        if not self._load().TerminateJobObject(job, 1):
            raise _last_error("TerminateJobObject")

    def close(self, job: int) -> None:
        self._load().CloseHandle(job)

    def _load(self) -> Any:
        if self._kernel32 is None:
            self._kernel32 = _kernel32()
        return self._kernel32


def _kernel32() -> Any:
    if sys.platform != "win32":
        raise OSError("job objects exist on Windows only")
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    handle, flag, dword = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32
    signatures = {  # handles are pointer-sized: never let ctypes cut them to an int
        "CreateJobObjectW": (handle, [ctypes.c_void_p, ctypes.c_wchar_p]),
        "SetInformationJobObject": (flag, [handle, ctypes.c_int, ctypes.c_void_p, dword]),
        "OpenProcess": (handle, [dword, flag, dword]),
        "AssignProcessToJobObject": (flag, [handle, handle]),
        "TerminateJobObject": (flag, [handle, ctypes.c_uint]),
        "CloseHandle": (flag, [handle]),
    }
    for name, (result, arguments) in signatures.items():
        function = getattr(kernel32, name)
        function.restype, function.argtypes = result, arguments
    return kernel32


def _last_error(call: str) -> OSError:
    if sys.platform == "win32":
        code = ctypes.get_last_error()
        return OSError(code, f"{call} failed: {ctypes.FormatError(code)}")
    return OSError(f"{call} failed")
