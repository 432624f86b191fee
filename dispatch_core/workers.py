"""Managed local workers: ComfyUI processes this machine starts, one per GPU and port.

Each worker runs `main.py` of a ComfyUI checkout with `CUDA_VISIBLE_DEVICES` set to its
GPU, on loopback, with its own input, output, temp and user folders (a ComfyUI wipes its
temp folder when it starts, and two writing one output folder could pick the same file
name). Its output goes to a log file. Workers never outlive the dispatcher: `close()`
stops them, and on Linux each is started with a parent-death signal, so that even a
dispatcher killed outright takes its workers down with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from .errors import InputError

__all__ = ["Worker", "WorkerError", "WorkerManager", "WorkerSpec"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
_ARG = re.compile(r"--[a-z0-9][a-z0-9-]*(=.*)?|[^-].*")
# Run first in the child: ask Linux to SIGTERM it when its parent dies, then become the
# worker. The signal survives exec, so no code runs between fork and exec in our process.
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "if sys.platform.startswith('linux'):\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)


class WorkerError(InputError):
    """A worker cannot be started, or is not there."""


@dataclass(frozen=True)
class WorkerSpec:
    """How to start one worker."""

    name: str
    port: int
    gpu: str | None = None
    """`CUDA_VISIBLE_DEVICES` for it: `"0"`, `"1"`, `"0,1"`; None leaves it as it is."""
    comfyui: str = ""
    """The ComfyUI folder (holding main.py)."""
    args: tuple[str, ...] = ()
    """More ComfyUI flags, such as `--lowvram`."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "gpu": self.gpu,
            "comfyui": self.comfyui,
            "args": list(self.args),
        }

    @classmethod
    def from_dict(cls, name: str, data: Any) -> WorkerSpec:
        """Checked: every mistake names the field."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise WorkerError(f"worker name {name!r}: use letters, digits, _ . - (up to 40)")
        if not isinstance(data, dict):
            raise WorkerError(f"worker {name}: expected an object")
        port = data.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 1024 <= port <= 65535:
            raise WorkerError(f"worker {name}: 'port' must be a number from 1024 to 65535")
        gpu = data.get("gpu")
        if gpu is not None and not (isinstance(gpu, str) and re.fullmatch(r"\d+(,\d+)*", gpu)):
            raise WorkerError(f'worker {name}: \'gpu\' must be a GPU index such as "0" or "0,1"')
        args = data.get("args") or []
        if not isinstance(args, list) or not all(
            isinstance(a, str) and _ARG.fullmatch(a) for a in args
        ):
            raise WorkerError(f"worker {name}: 'args' must be a list of ComfyUI flags")
        comfyui = data.get("comfyui") or ""
        if not isinstance(comfyui, str):
            raise WorkerError(f"worker {name}: 'comfyui' must be a folder")
        return cls(name, port, gpu, comfyui, tuple(args))


@dataclass
class Worker:
    """A started worker."""

    spec: WorkerSpec
    process: asyncio.subprocess.Process
    log_path: Path
    started_at: float = field(default_factory=time.time)
    stopping: bool = False

    @property
    def state(self) -> str:
        """running, stopped (as asked) or exited (on its own, see the log)."""
        if self.process.returncode is None:
            return "running"
        return "stopped" if self.stopping else "exited"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.spec.port}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            **self.spec.to_dict(),
            "url": self.url,
            "state": self.state,
            "pid": self.process.pid,
            "exit_code": self.process.returncode,
            "started_at": self.started_at,
            "log": str(self.log_path),
        }


class WorkerManager:
    """Starts, stops and watches workers. Use as `async with WorkerManager(folder)`."""

    def __init__(self, folder: str | os.PathLike[str], *, command: Sequence[str] | None = None):
        self.folder = Path(folder)
        self.workers: dict[str, Worker] = {}
        self._command = tuple(command) if command else None
        """Overrides ComfyUI's command (tests start fake peers); `{port}` is filled in."""

    async def __aenter__(self) -> WorkerManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def command(self, spec: WorkerSpec) -> tuple[list[str], Path | None]:
        """The command line and working folder of a worker."""
        home = self.folder / spec.name
        if self._command is not None:
            return [part.replace("{port}", str(spec.port)) for part in self._command], None
        comfyui = Path(spec.comfyui).expanduser()
        if not (comfyui / "main.py").is_file():
            raise WorkerError(f"worker {spec.name}: no ComfyUI in {comfyui} (main.py not found)")
        return [
            sys.executable,
            "main.py",
            "--listen",
            "127.0.0.1",
            "--port",
            str(spec.port),
            "--input-directory",
            str(home / "input"),
            "--output-directory",
            str(home / "output"),
            "--temp-directory",
            str(home),
            "--user-directory",
            str(home / "user"),
            *spec.args,
        ], comfyui

    async def start(self, spec: WorkerSpec) -> Worker:
        running = self.workers.get(spec.name)
        if running is not None and running.state == "running":
            raise WorkerError(f"worker {spec.name} is running already (pid {running.process.pid})")
        for other in self.workers.values():
            if other.state == "running" and other.spec.port == spec.port:
                raise WorkerError(f"port {spec.port} is taken by worker {other.spec.name}")
        argv, cwd = self.command(spec)
        env = dict(os.environ)
        if spec.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = spec.gpu
        for sub in ("input", "output", "user"):  # ComfyUI refuses a --user-directory not there
            (self.folder / spec.name / sub).mkdir(parents=True, exist_ok=True)
        log_path = self.folder / f"{spec.name}.log"
        log = await asyncio.to_thread(log_path.open, "wb")
        with log:  # the child keeps its own copy of the handle
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _LAUNCHER,
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        worker = Worker(spec, process, log_path)
        self.workers[spec.name] = worker
        return worker

    async def wait_ready(self, name: str, timeout: float = 120.0) -> None:
        """Until the worker answers `/system_stats`; its log tail if it dies or times out."""
        worker = self._worker(name)
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                if worker.process.returncode is not None:
                    raise WorkerError(
                        f"worker {name} exited with code {worker.process.returncode}:\n"
                        + self.log(name, 20)
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(worker.url + "/system_stats") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise WorkerError(
            f"worker {name} did not answer within {timeout:g} s:\n" + self.log(name, 20)
        )

    async def stop(self, name: str, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        worker = self._worker(name)
        worker.stopping = True
        if worker.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                worker.process.terminate()
            try:
                await asyncio.wait_for(worker.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
                await worker.process.wait()

    def log(self, name: str, lines: int = 200) -> str:
        """The last `lines` of a worker's log."""
        path = self._worker(name).log_path if name in self.workers else self.folder / f"{name}.log"
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            raise WorkerError(f"no log for worker {name}", missing=True) from None
        return "\n".join(text.splitlines()[-lines:])

    def forget(self, name: str) -> None:
        worker = self._worker(name)
        if worker.state == "running":
            raise WorkerError(f"worker {name} is running: stop it first")
        del self.workers[name]

    async def close(self) -> None:
        """Stop every worker: none outlives its dispatcher."""
        await asyncio.gather(*(self.stop(name) for name in list(self.workers)))

    def _worker(self, name: str) -> Worker:
        if name not in self.workers:
            known = ", ".join(self.workers) or "none started"
            raise WorkerError(f"no worker {name!r} (workers: {known})", missing=True)
        return self.workers[name]
