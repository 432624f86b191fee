"""What `run`, `serve` and `status` do, once their arguments are parsed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from .._dispatcher import Dispatcher, ServerStatus
from .._logs import configure
from ..config import Config, load_config
from ..result import Progress
from ..workflow import WorkflowBuilder

__all__ = ["DEFAULT_SERVER", "run", "serve", "status"]

DEFAULT_SERVER = "http://127.0.0.1:8188"
_log = logging.getLogger("dispatch_core.cli")


def _config(args: argparse.Namespace) -> Config:
    if args.config is not None:
        return load_config(args.config)
    return Config.single(args.server or DEFAULT_SERVER)


async def run(args: argparse.Namespace) -> int:
    config = _config(args)
    route = args.route or (next(iter(config.routes)) if len(config.routes) == 1 else None)
    if route is None:
        known = ", ".join(config.routes) or "none"
        print(f"error: say which route with --route (configured: {known})", file=sys.stderr)
        return 2
    _logging(args)
    builder = WorkflowBuilder.from_file(args.workflow)
    for assignment in args.sets:
        path, _, value = assignment.partition("=")
        if not _:
            print(f"error: --set {assignment!r}: expected NODE.INPUT=VALUE", file=sys.stderr)
            return 2
        builder.set_path(path, _parse_value(value))
    bar = _ProgressBar(sys.stderr if args.log_format == "human" else None)
    async with Dispatcher(config) as dispatcher:
        result = await dispatcher.run(route, builder, timeout=args.timeout, on_progress=bar.update)
        bar.close()
        args.out.mkdir(parents=True, exist_ok=True)
        for file in result.files:
            target = args.out / Path(file.filename).name
            target.write_bytes(await file.read())
            print(target)
        for text in result.text:
            print(text)
    took = result.timings.duration or 0.0
    if args.log_format == "json":
        fields = {"route": route, "server": result.server, "prompt_id": result.prompt_id}
        _log.info("done in %.1f s", took, extra={"dispatch": fields | {"duration": took}})
    else:
        done = f"done on {result.server} in {took:.1f} s (prompt {result.prompt_id})"
        print(done, file=sys.stderr)
    return 0


def _logging(args: argparse.Namespace) -> None:
    configure(args.log_format, level=getattr(logging, args.log_level.upper()))


async def serve(args: argparse.Namespace) -> int:
    from ..http.standalone import serve as serve_http  # the server's imports: only here

    _logging(args)
    say = _say if args.log_format == "human" else _log.info  # JSON owns stderr: lines only
    stop = asyncio.Event()
    with _stopped_by_signals(stop):
        await serve_http(
            config=args.config,
            host=args.host,
            port=args.port,
            token=args.token,
            status_every=args.status_every,
            comfyui=args.comfyui,
            allow_hosts=tuple(args.allow_host),
            webhooks_internal=args.webhooks_internal,
            ready=say,
            stop=stop,
        )
    say("ComfyUI-Dispatch stopped: workers stopped, journal closed")
    return 0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def keys(args: argparse.Namespace) -> int:
    from ..http.standalone import default_folder
    from ..service._keys import ApiKeys, parse_rate

    folder = args.config.parent if args.config is not None else default_folder()
    store = ApiKeys(folder / "keys.json")
    if args.action == "create":
        folder.mkdir(parents=True, exist_ok=True)
        print(store.create(args.name, parse_rate(args.rate)))
        print(f"key {args.name!r} created: it is shown this once", file=sys.stderr)
    elif args.action == "list":
        for key in store.list():
            rate = f"{key['rate']}/min" if key["rate"] else "no limit"
            made = time.strftime("%Y-%m-%d %H:%M", time.localtime(key["created"]))
            print(f"{key['name']:<24} {rate:<12} created {made}")
    else:
        store.revoke(args.name)
        print(f"key {args.name!r} revoked", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _stopped_by_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM (systemd, docker) and SIGINT (Ctrl-C) both end `serve` cleanly, exit code 0.

    Where the loop cannot take signals (Windows), Ctrl-C still cancels `serve`, whose
    cleanup then runs as it unwinds.
    """
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):
            continue
        handled.append(signum)
    try:
        yield
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


async def status(args: argparse.Namespace) -> int:
    async with Dispatcher(_config(args)) as dispatcher:
        states = await dispatcher.status()
    if args.json:
        print(json.dumps({name: vars(s) for name, s in states.items()}, indent=2))
    else:
        for state in states.values():
            print(_status_line(state))
    return 0 if all(s.online or not s.enabled for s in states.values()) else 1


def _status_line(state: ServerStatus) -> str:
    if not state.enabled:
        return f"{state.name:<12} disabled  {state.url}"
    if not state.online:
        return f"{state.name:<12} offline   {state.url}  {state.error}"
    vram = ""
    if state.vram_total:
        used = (state.vram_total - (state.vram_free or 0)) / 2**30
        vram = f"  VRAM {used:.1f}/{state.vram_total / 2**30:.1f} GiB"
    busy = "busy   " if state.queue_depth else "online "
    return (
        f"{state.name:<12} {busy}  {state.url}  {state.latency_ms:.0f} ms  "
        f"queue {state.queue_depth}  in flight {state.in_flight}{vram}"
    )


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


class _ProgressBar:
    """One line on stderr, redrawn in place."""

    def __init__(self, stream: TextIO | None, width: int = 30):
        """Without a stream (JSON logs own stderr) it draws nothing."""
        self.stream = stream
        self.width = width
        self.drawn = False

    def update(self, progress: Progress) -> None:
        if self.stream is None:
            return
        fraction = progress.value / progress.max if progress.max else 0.0
        filled = int(self.width * min(max(fraction, 0.0), 1.0))
        bar = "█" * filled + "░" * (self.width - filled)
        node = f" node {progress.node}" if progress.node else ""
        counts = f"{progress.nodes_done}/{progress.nodes_total} nodes"
        self.stream.write(f"\r{progress.server}: {bar} {fraction:4.0%}{node} ({counts})  ")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn and self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()
