"""`comfyui-dispatch run|status|serve` (or `python -m dispatch_core …`): the engine from a
shell, without ComfyUI."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .._logs import FORMATS
from ..errors import DispatchError
from . import _commands

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """`prog` names the command in help and errors: by default the script's own name."""
    args = _parser(prog).parse_args(argv)
    try:
        return asyncio.run(args.handler(args))
    except DispatchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser(prog: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
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
    _add_logging(run)
    run.set_defaults(handler=_commands.run)

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
    serve.add_argument(
        "--webhooks-internal",
        action="store_true",
        default=os.environ.get("DISPATCH_WEBHOOKS_INTERNAL", "") == "1",
        help="let webhooks reach loopback and private addresses (a receiver on this machine "
        "or the LAN); by default only public ones (also $DISPATCH_WEBHOOKS_INTERNAL=1)",
    )
    _add_logging(serve)
    serve.set_defaults(handler=_commands.serve)

    _add_keys(commands)

    status = commands.add_parser("status", help="show every server's state")
    _add_target(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_commands.status)
    return parser


def _add_keys(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="the gateway's named API keys: create, list, revoke")
    keys.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the gateway's config file; its keys.json lies beside it (default: "
        "~/.config/comfyui-dispatch)",
    )
    actions = keys.add_subparsers(required=True, dest="action", metavar="ACTION")
    create = actions.add_parser(
        "create", help="make a key; it is printed once, then only its hash is kept"
    )
    create.add_argument("name", help="letters, digits, '.', '_', '-'; shown in logs and metrics")
    create.add_argument(
        "--rate", default=None, metavar="N/min", help="requests a minute (default: no limit)"
    )
    actions.add_parser("list", help="every key's name, rate and creation time (never the key)")
    revoke = actions.add_parser("revoke", help="delete a key: the gateway refuses it at once")
    revoke.add_argument("name")
    keys.set_defaults(handler=_commands.keys)


def _add_logging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default="human",
        help="log lines for people (default) or one JSON object a line, with the job id, "
        "route, server and prompt id as keys",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="info: one line a job when it ends; debug: every step (default: info)",
    )


def _add_target(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--config", type=Path, help="a config JSON file")
    group.add_argument(
        "--server",
        default=None,
        help=f"one ComfyUI URL instead of a config (default {_commands.DEFAULT_SERVER})",
    )
