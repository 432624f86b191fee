"""Managed local workers: ComfyUI processes this machine starts, one per GPU and port.

Each worker runs `main.py` of a ComfyUI checkout with `CUDA_VISIBLE_DEVICES` set to its
GPU (numbered as `nvidia-smi` numbers them: `CUDA_DEVICE_ORDER=PCI_BUS_ID` unless the
operator chose an order), on loopback, with its own input, output, temp and user folders
(a ComfyUI wipes its temp folder when it starts, and two writing one output folder could
pick the same file name), after the operator's own ComfyUI flags (inside ComfyUI, the
host's `--base-directory` and the like: see `nodes/host.py`). Its output goes to a log
file. Workers never outlive the dispatcher: `close()` stops them, and each is tied to the
dispatcher's life when started (a parent-death signal on Linux, a job object on Windows:
`_launch`), so that even a dispatcher killed outright takes its workers down with it.
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
from typing import Any, BinaryIO

import aiohttp

from ..errors import NotFound, WorkerError
from ._launch import Launcher, ProcessTree, launcher_for
from ._worker_args import check_args

__all__ = ["Worker", "WorkerError", "WorkerManager", "WorkerSpec", "check_name"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
_GPU = re.compile(r"[0-9]{1,3}(,[0-9]{1,3}){0,15}")
_LOG_TAIL_BYTES = 256 * 1024
"""How much of a log's end is read at most: a worker's log can grow to gigabytes."""
_MAX_LOG_LINES = 5000


def check_name(name: object) -> str:
    """A worker's name, which also names its folder and log file: never a path."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name)[:60]
        raise WorkerError(
            f"worker name {shown}: use letters, digits, _ . - (up to 40)", field="name"
        )
    return name


@dataclass(frozen=True)
class WorkerSpec:
    """How to start one worker. Checked when built: every mistake names its field.

    The ComfyUI folder it runs is not part of it: that is the operator's choice, given to
    the WorkerManager (inside ComfyUI its own checkout; standalone `serve --comfyui`).
    """

    name: str
    port: int
    gpu: str | None = None
    """`CUDA_VISIBLE_DEVICES` for it: `"0"`, `"1"`, `"0,1"`; None leaves it as it is."""
    args: tuple[str, ...] = ()
    """More ComfyUI flags, such as `--lowvram`: only allow-listed ones (`_worker_args`)."""

    def __post_init__(self) -> None:
        name = check_name(self.name)
        port = self.port
        if not isinstance(port, int) or isinstance(port, bool) or not 1024 <= port <= 65535:
            raise WorkerError(
                f"worker {name}: 'port' must be a number from 1024 to 65535", field="port"
            )
        gpu = self.gpu
        if gpu is not None and not (isinstance(gpu, str) and _GPU.fullmatch(gpu)):
            raise WorkerError(
                f'worker {name}: \'gpu\' must be a GPU index such as "0" or "0,1"', field="gpu"
            )
        try:
            check_args(self.args)
        except ValueError as error:
            raise WorkerError(f"worker {name}: {error}", field="args") from None

    def to_dict(self) -> dict[str, Any]:
        return {"port": self.port, "gpu": self.gpu, "args": list(self.args)}

    @classmethod
    def from_dict(cls, name: str, data: Any) -> WorkerSpec:
        """From a request or `workers.json`: only `port`, `gpu` and `args`."""
        name = check_name(name)
        if not isinstance(data, dict):
            raise WorkerError(f"worker {name}: expected an object", field="body")
        if "comfyui" in data:
            raise WorkerError(
                f"worker {name}: 'comfyui' cannot be set per worker: the ComfyUI folder is "
                "the operator's choice (inside ComfyUI its own checkout; standalone, "
                "`serve --comfyui FOLDER`)",
                field="comfyui",
            )
        unknown = sorted(set(data) - {"port", "gpu", "args"})
        if unknown:
            key = str(unknown[0])[:40]
            raise WorkerError(
                f"worker {name}: unknown field {key!r} (a worker takes port, gpu, args)",
                field=key,
            )
        args = data.get("args")
        args = [] if args is None else args
        if not isinstance(args, list):
            raise WorkerError(
                f"worker {name}: 'args' must be a list of ComfyUI flags", field="args"
            )
        port: Any = data.get("port")  # checked when built
        return cls(name, port, data.get("gpu"), tuple(args))


@dataclass
class Worker:
    """A started worker."""

    spec: WorkerSpec
    process: asyncio.subprocess.Process
    tree: ProcessTree
    """The process and all it starts, tied to the dispatcher's life: what a stop ends."""
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

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        comfyui: str | os.PathLike[str] | None = None,
        comfyui_args: Sequence[str] = (),
        command: Sequence[str] | None = None,
        launcher: Launcher | None = None,
    ):
        self.folder = Path(folder)
        self.comfyui = Path(comfyui).expanduser() if comfyui else None
        """The ComfyUI checkout every worker runs: the operator's, never a request's."""
        self.comfyui_args = tuple(comfyui_args)
        """ComfyUI flags every worker gets, from the operator's own command line (inside
        ComfyUI the host's `--base-directory`, `--extra-model-paths-config`...), never from
        a request: they are not allow-listed, so only the operator's code may give them."""
        self.workers: dict[str, Worker] = {}
        self._command = tuple(command) if command else None
        """Overrides ComfyUI's command (tests start fake peers); `{port}` is filled in."""
        self.launcher = launcher if launcher is not None else launcher_for(sys.platform)
        """How a worker is started and stopped on this platform (`_launch`)."""

    async def __aenter__(self) -> WorkerManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def command(self, spec: WorkerSpec) -> tuple[list[str], Path | None]:
        """The command line and working folder of a worker."""
        home = self.folder / spec.name
        if self._command is not None:
            return [part.replace("{port}", str(spec.port)) for part in self._command], None
        comfyui = self.comfyui
        if comfyui is None:
            raise WorkerError(
                "no ComfyUI folder to run workers from: start the standalone server with "
                "`serve --comfyui FOLDER` (inside ComfyUI, its own checkout is used)",
                field="comfyui",
            )
        if not (comfyui / "main.py").is_file():
            raise WorkerError(
                f"no ComfyUI in {comfyui} (main.py not found): give `serve --comfyui` the "
                "folder of a ComfyUI checkout",
                field="comfyui",
            )
        return [
            sys.executable,
            *interpreter_flags(),
            "main.py",
            *self.comfyui_args,  # before ours: where a worker listens and writes stays ours
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
        previous = self.workers.get(spec.name)
        if previous is not None and previous.state == "running":
            raise WorkerError(
                f"worker {spec.name} is running already (pid {previous.process.pid})",
                field="name",
            )
        for other in self.workers.values():
            if other.state == "running" and other.spec.port == spec.port:
                raise WorkerError(
                    f"port {spec.port} is taken by worker {other.spec.name}", field="port"
                )
        argv, cwd = self.command(spec)
        env = dict(os.environ)
        if spec.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = spec.gpu
            env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # CUDA's own is fastest first
        for sub in ("input", "output", "user"):  # ComfyUI refuses a --user-directory not there
            (self.folder / spec.name / sub).mkdir(parents=True, exist_ok=True)
        log_path = self.log_path(spec.name)
        log = await asyncio.to_thread(_open_log, log_path)
        with log:  # the child keeps its own copy of the handle
            process = await asyncio.create_subprocess_exec(
                *self.launcher.argv(argv),
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                creationflags=self.launcher.creationflags,
            )
        try:
            tree = self.launcher.adopt(process)
        except OSError as error:  # it could outlive us: never leave it running
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            message = f"worker {spec.name} could not be tied to this process's life: {error}"
            raise WorkerError(message) from None
        if previous is not None:
            previous.tree.close()  # it has exited: what held it is no longer needed
        worker = Worker(spec, process, tree, log_path)
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
        """Stop the worker: SIGTERM, then SIGKILL after `grace` seconds (on Windows, its
        whole process tree at once)."""
        worker = self._worker(name)
        worker.stopping = True
        await worker.tree.stop(grace)

    def log_path(self, name: str) -> Path:
        """Where a worker's log is: checked to be inside this manager's folder."""
        name = check_name(name)
        folder = self.folder.resolve()
        path = (folder / f"{name}.log").resolve()
        if path.parent != folder or not path.is_relative_to(folder):
            raise WorkerError(f"the log of worker {name} is not in {folder}", field="name")
        return path

    def log(self, name: str, lines: int = 200) -> str:
        """The last `lines` of a worker's log, from at most its last 256 kB.

        Callers that take names from outside (the routes, through the service) also check
        the worker is known: saved or started.
        """
        if isinstance(lines, bool) or not isinstance(lines, int):
            raise WorkerError("'lines' must be a whole number", field="lines")
        if not 1 <= lines <= _MAX_LOG_LINES:
            raise WorkerError(f"'lines' must be from 1 to {_MAX_LOG_LINES}", field="lines")
        path = self.log_path(name)
        try:
            text = _tail(path, _LOG_TAIL_BYTES)
        except FileNotFoundError:
            raise NotFound(f"no log for worker {name}", field="name") from None
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
            shown = repr(name)[:60]
            raise NotFound(f"no worker {shown} (workers: {known})", field="name")
        return self.workers[name]


def interpreter_flags(flags: Any = sys.flags) -> list[str]:
    """The dispatcher's own interpreter flags that a worker, on the same interpreter, keeps:
    `-s` (no user site-packages), which the Windows portable build starts ComfyUI with."""
    return ["-s"] if flags.no_user_site else []


def _open_log(path: Path) -> BinaryIO:
    """Truncate or create a log for writing, owner-only, never through a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    return os.fdopen(os.open(path, flags, 0o600), "wb")


def _tail(path: Path, size: int) -> str:
    """The end of a text file, at most `size` bytes of it, from a whole line on."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(path, flags), "rb") as file:
        end = file.seek(0, os.SEEK_END)
        start = max(0, end - size)
        file.seek(start)
        data = file.read(size)
    if start > 0:
        data = data.partition(b"\n")[2]  # the first line was cut
    return data.decode(errors="replace")
