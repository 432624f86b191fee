"""`python -m dispatch_core run|status|serve`: the engine from a shell, without ComfyUI."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..config import Config, load_config
from ..dispatcher import Dispatcher, ServerStatus
from ..errors import DispatchError
from ..result import Progress
from ..workflow import WorkflowBuilder

__all__ = ["main"]

_DEFAULT_SERVER = "http://127.0.0.1:8188"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(args.handler(args))
    except DispatchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dispatch_core",
        description="Send ComfyUI API-format workflows to the right ComfyUI server.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run one workflow and save its outputs")
    _add_target(run)
    run.add_argument("workflow", type=Path, help="an API-format workflow (Workflow → Export (API))")
    run.add_argument("--route", default=None, help="workflow type from the config's routes")
    run.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="NODE.INPUT=VALUE",
        help="override an input; NODE is an id, a title or a class; VALUE is JSON or text",
    )
    run.add_argument("--out", type=Path, default=Path("."), help="folder for the outputs")
    run.add_argument("--timeout", type=float, default=None, help="seconds (default: config)")
    run.set_defaults(handler=_run)

    serve = commands.add_parser(
        "serve", help="serve the /dispatch/* routes and the panel at /dispatch/ui/"
    )
    serve.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config file (default: config.json in ~/.config/comfyui-dispatch, made on first "
        "start); templates live in a 'templates' folder beside it",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    serve.add_argument("--port", type=int, default=8190)
    serve.add_argument(
        "--token",
        default=os.environ.get("DISPATCH_TOKEN"),
        help="required from clients; needed to bind beyond loopback (default: $DISPATCH_TOKEN)",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name browsers may reach this server by, besides its IP addresses and "
        "this machine's name (repeatable; also $DISPATCH_ALLOWED_HOSTS, comma-separated)",
    )
    serve.add_argument(
        "--status-every",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how often every server's status is checked for the panel (default: 5)",
    )
    serve.add_argument(
        "--comfyui",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="the ComfyUI checkout that managed workers run (main.py in it)",
    )
    serve.set_defaults(handler=_serve)

    status = commands.add_parser("status", help="show every server's state")
    _add_target(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_status)
    return parser


def _add_target(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--config", type=Path, help="a config JSON file")
    group.add_argument(
        "--server",
        default=None,
        help=f"one ComfyUI URL instead of a config (default {_DEFAULT_SERVER})",
    )


def _config(args: argparse.Namespace) -> Config:
    if args.config is not None:
        return load_config(args.config)
    return Config.single(args.server or _DEFAULT_SERVER)


async def _run(args: argparse.Namespace) -> int:
    config = _config(args)
    route = args.route or (next(iter(config.routes)) if len(config.routes) == 1 else None)
    if route is None:
        known = ", ".join(config.routes) or "none"
        print(f"error: say which route with --route (configured: {known})", file=sys.stderr)
        return 2
    builder = WorkflowBuilder.from_file(args.workflow)
    for assignment in args.sets:
        path, _, value = assignment.partition("=")
        if not _:
            print(f"error: --set {assignment!r}: expected NODE.INPUT=VALUE", file=sys.stderr)
            return 2
        builder.set_path(path, _parse_value(value))
    bar = _ProgressBar(sys.stderr)
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
    print(f"done on {result.server} in {took:.1f} s (prompt {result.prompt_id})", file=sys.stderr)
    return 0


async def _serve(args: argparse.Namespace) -> int:
    from ..http.standalone import serve  # the server's imports are only needed here

    await serve(
        config=args.config,
        host=args.host,
        port=args.port,
        token=args.token,
        status_every=args.status_every,
        comfyui=args.comfyui,
        allow_hosts=tuple(args.allow_host),
    )
    return 0


async def _status(args: argparse.Namespace) -> int:
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

    def __init__(self, stream: TextIO, width: int = 30):
        self.stream = stream
        self.width = width
        self.drawn = False

    def update(self, progress: Progress) -> None:
        fraction = progress.value / progress.max if progress.max else 0.0
        filled = int(self.width * min(max(fraction, 0.0), 1.0))
        bar = "█" * filled + "░" * (self.width - filled)
        node = f" node {progress.node}" if progress.node else ""
        counts = f"{progress.nodes_done}/{progress.nodes_total} nodes"
        self.stream.write(f"\r{progress.server}: {bar} {fraction:4.0%}{node} ({counts})  ")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
