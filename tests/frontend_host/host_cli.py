"""The command line both test hosts share: a frontend's static/ folder and a port, served
until SIGINT or SIGTERM (the browser tests kill the host when they are done)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

Serve = Callable[[Path, int, asyncio.Event], Awaitable[None]]
"""serve(frontend's static/, port or 0, stop): serve until `stop` is set."""


def main(description: str, serve: Serve) -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--frontend",
        type=Path,
        required=True,
        help="the static/ folder of an unpacked comfyui-frontend-package wheel",
    )
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if not (args.frontend / "index.html").is_file():
        parser.error(f"no index.html in {args.frontend}")

    async def run() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await serve(args.frontend.resolve(), args.port, stop)

    asyncio.run(run())
