"""The bridge to ComfyUI's server: one DispatchService on the server's loop, for every node.

ComfyUI runs each prompt in a fresh event loop on its worker thread, while the routes and
the engine's session and WebSockets live on the server's loop. A node therefore hands its
job to the server's loop (`asyncio.run_coroutine_threadsafe`) and waits for it from its own
loop, watching ComfyUI's interrupt flag and feeding its progress bar meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..dispatch_core.http import HostPolicy, add_routes
from ..dispatch_core.service import DispatchService, adopt_folder

T = TypeVar("T")
PromptHandler = Callable[[dict[str, Any]], dict[str, Any]]
_log = logging.getLogger("ComfyUI-Dispatch")
_service: DispatchService | None = None
_joining: asyncio.Task[None] | None = None
"""The start of the dispatcher at ComfyUI's start, with a shared queue."""
_STATE_NAME = "dispatch"
_POLL_SECONDS = 0.1
"""How often a waiting node looks at ComfyUI's interrupt flag and at progress reports."""


def _prompt_server() -> Any:
    """ComfyUI's PromptServer, or None when this package is imported outside ComfyUI."""
    server = sys.modules.get("server")
    return getattr(getattr(server, "PromptServer", None), "instance", None)


def data_folder() -> Path:
    """`<ComfyUI user dir>/__dispatch`: config, templates, journal, workers.

    Out of reach of ComfyUI's `/userdata` routes, which serve `<user dir>/<user>/` only:
    newer ComfyUI refuses every user starting with `__` (its "system users", whose folder
    `get_system_user_directory` gives), and 0.3.64 knows only `default` and the users it
    made itself, each `<name>_<uuid>`. Our config holds peer tokens.
    """
    import folder_paths  # ComfyUI's; imported late so that this module loads anywhere

    system_folder = getattr(folder_paths, "get_system_user_directory", None)
    if callable(system_folder):
        return Path(system_folder(_STATE_NAME))
    return Path(folder_paths.get_user_directory()) / f"__{_STATE_NAME}"


def legacy_folder() -> Path:
    """Where older versions kept it, readable through `/api/userdata`."""
    import folder_paths

    return Path(folder_paths.get_user_directory()) / "default" / "dispatch"


def state_folder() -> Path:
    """The folder to use, moved from the old place on first start.

    If the move fails (another disk, permissions), everything stays in the old folder and
    is used from there, with an error in ComfyUI's log: nothing is lost.
    """
    wanted = data_folder()
    folder = adopt_folder(legacy_folder(), wanted)
    if folder != wanted:
        _log.error(
            "ComfyUI-Dispatch: using %s, which ComfyUI's /api/userdata serves to anyone "
            "who reaches this ComfyUI: move its contents to %s by hand",
            folder,
            wanted,
        )
    return folder


def service() -> DispatchService:
    global _service
    if _service is None:
        server = _prompt_server()
        notify = server.send_sync if server is not None else None
        _service = DispatchService(
            state_folder(),
            notify=notify,
            comfyui=comfyui_folder(),  # workers run this same ComfyUI, as it was started
            comfyui_args=worker_flags(),
        )
    return _service


def comfyui_folder() -> Path | None:
    """The folder of the `main.py` this ComfyUI runs, found from its own modules.

    Not `folder_paths.base_path`: with `--base-directory`, as in the Desktop app (which
    runs ComfyUI from its resources folder with the user's folder as base), that is the
    user-data folder, which has no `main.py`. `folder_paths.py` and `comfy/` always sit
    beside `main.py` (ComfyUI's own default base is `folder_paths.py`'s folder); the
    script ComfyUI was started as comes last, as a launcher may have run it another way.
    None when none of them is beside a `main.py`: workers then say so when started.
    """
    for folder in _candidate_folders():
        if (folder / "main.py").is_file():
            return folder
    return None


def _candidate_folders() -> list[Path]:
    found = []
    for name, up in (("folder_paths", 1), ("comfy.cli_args", 2), ("__main__", 1)):
        path = getattr(sys.modules.get(name), "__file__", None)
        if isinstance(path, str) and path:
            found.append(Path(os.path.abspath(path)).parents[up - 1])
    return found


def worker_flags() -> tuple[str, ...]:
    """The flags of the host's own command line that its workers need too.

    `--base-directory` and `--extra-model-paths-config`, so that they see its models
    (and custom nodes); `--windows-standalone-build`, as the portable build starts
    ComfyUI with it, with `--disable-auto-launch`, as it would open a browser tab for
    each worker. Paths are made absolute: a worker runs in the ComfyUI folder. These come
    from the operator's command line, never from a request, which the allow-list of
    `_worker_args` keeps to flags about computing.
    """
    try:
        from comfy.cli_args import args
    except Exception:  # an older or unusual ComfyUI: workers get our own flags only
        return ()
    flags: list[str] = []
    if getattr(args, "base_directory", None):
        import folder_paths  # its base_path is the same folder, made absolute at start

        flags += ["--base-directory", os.path.abspath(folder_paths.base_path)]
    for group in getattr(args, "extra_model_paths_config", None) or ():
        paths = group if isinstance(group, list | tuple) else [group]
        flags += ["--extra-model-paths-config", *(os.path.abspath(p) for p in paths)]
    if getattr(args, "windows_standalone_build", False):
        flags += ["--windows-standalone-build", "--disable-auto-launch"]
    return tuple(flags)


def install(prompt_handlers: Sequence[PromptHandler] = ()) -> None:
    """Register the `/dispatch/*` routes, the shutdown hook and our prompt handlers (which
    see every queued prompt first) on ComfyUI's server."""
    server = _prompt_server()
    if server is None:
        return  # imported by a tool or a test, not by ComfyUI: nothing to hook into
    try:
        add_routes(server.routes, service(), policy=host_policy())
    except Exception:  # a broken install must not take ComfyUI down with it
        _log.exception("ComfyUI-Dispatch: could not register the /dispatch routes")
        return

    async def close(app: Any) -> None:
        if _service is not None:
            await _service.close()

    server.app.on_startup.append(_join_shared_queue)
    server.app.on_shutdown.append(close)
    for handler in prompt_handlers:
        server.add_on_prompt_handler(handler)


async def _join_shared_queue(app: Any) -> None:
    """With a shared queue, this ComfyUI takes jobs from its start, as a `serve` does, not
    once something here has run. In the background: Redis being down must not hold up
    ComfyUI's start (the dispatcher starts again on first use)."""
    global _joining
    if service().config.queue.backend != "local":
        _joining = asyncio.create_task(_start_dispatcher(), name="dispatch-join-queue")


async def _start_dispatcher() -> None:
    try:
        await service().ready()
    except Exception as error:  # said in the log; the first job will say it again
        _log.warning("ComfyUI-Dispatch: could not join the shared queue: %s", error)


def host_policy() -> HostPolicy:
    """The Host names our routes answer, from the address ComfyUI listens on (`--listen`)."""
    try:
        from comfy.cli_args import args

        listen = str(args.listen)
    except Exception:  # an older or unusual ComfyUI: answer loopback names only
        listen = "127.0.0.1"
    return HostPolicy.for_listen(listen)


def client_id() -> str | None:
    """The browser tab that queued the running prompt: UI messages go to it alone."""
    server = _prompt_server()
    return getattr(server, "client_id", None)


def running_prompt_id() -> str | None:
    """The prompt this ComfyUI is running now: the one a node runs in (ComfyUI's prompt
    worker sets it before it executes a prompt)."""
    return getattr(_prompt_server(), "last_prompt_id", None)


def send_progress_text(text: str, node_id: str) -> None:
    server = _prompt_server()
    if server is not None and hasattr(server, "send_progress_text"):
        server.send_progress_text(text, node_id, client_id())


async def on_server_loop(
    work: Callable[[], Coroutine[Any, Any, T]],
    *,
    on_tick: Callable[[], None] | None = None,
) -> T:
    """Run `work()` on the server's loop and wait for it here, interruptibly.

    An interrupt in ComfyUI cancels the work, which interrupts the prompt on the peer, then
    raises ComfyUI's own InterruptProcessingException.
    """
    import comfy.model_management as model_management

    server = _prompt_server()
    loop = server.loop if server is not None else asyncio.get_running_loop()
    if loop is asyncio.get_running_loop():
        return await work()  # already on the server's loop (a route, a test)
    future = asyncio.run_coroutine_threadsafe(work(), loop)
    waiting = asyncio.wrap_future(future)
    while True:
        done, _ = await asyncio.wait({waiting}, timeout=_POLL_SECONDS)
        if on_tick is not None:
            try:
                on_tick()  # ComfyUI's progress hook raises there on an interrupt
            except BaseException:
                future.cancel()
                raise
        if done:
            return waiting.result()
        if model_management.processing_interrupted():
            future.cancel()  # cancels the job's task, which interrupts the prompt on the peer
            model_management.throw_exception_if_processing_interrupted()


def send_node_progress(node_id: str, value: float, total: float) -> None:
    """ComfyUI's `executing` and `progress` messages for a node of the running prompt that
    runs elsewhere: the frontend lights it and fills its bar as it does for its own."""
    server = _prompt_server()
    if server is not None:
        prompt_id = getattr(server, "last_prompt_id", None)
        frame = {"node": node_id, "display_node": node_id, "prompt_id": prompt_id}
        server.send_sync("executing", frame, client_id())
        progress = {"value": value, "max": total, "prompt_id": prompt_id, "node": node_id}
        server.send_sync("progress", progress, client_id())


def send_executed(node_id: str, output: dict[str, Any]) -> None:
    """ComfyUI's `executed` message for a node of the running prompt, to its browser tab."""
    server = _prompt_server()
    if server is not None:
        message = {
            "node": node_id,
            "display_node": node_id,
            "output": output,
            "prompt_id": getattr(server, "last_prompt_id", None),
        }
        server.send_sync("executed", message, client_id())
