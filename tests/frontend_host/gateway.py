"""ComfyUI's real frontend served by the gateway itself, over two fake GPU servers.

    python tests/frontend_host/fetch.py 1.58.1
    python tests/frontend_host/gateway.py \
        --frontend test-output/frontend/1.58.1/comfyui_frontend_package/static --port 8190

What `python -m dispatch_core serve` does with the `[frontend]` extra installed, with a
given build of the page (`DISPATCH_FRONTEND`) and two FakePeers, `gpu-a` and `gpu-b`, that
also list the core nodes the page looks up at start (`object_info_more.json`). It prints
its URL, then serves until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: dispatch_core from this checkout
    sys.path.insert(0, str(ROOT))

import host_cli  # noqa: E402  (beside this file)

from dispatch_core.http.standalone import create_app  # noqa: E402
from dispatch_core.service import DispatchService  # noqa: E402
from dispatch_core.testing import FakePeer  # noqa: E402

SERVERS = ("gpu-a", "gpu-b")
MORE_NODES = json.loads((Path(__file__).with_name("object_info_more.json")).read_text())


class PagePeer(FakePeer):
    """A fake GPU server that also lists the core nodes the page asks for at start."""

    def object_info(self) -> dict[str, Any]:
        return {**copy.deepcopy(MORE_NODES), **super().object_info()}


async def serve(frontend: Path, port: int, stop: asyncio.Event) -> None:
    from aiohttp import web

    os.environ["DISPATCH_FRONTEND"] = str(frontend)
    folder = Path(tempfile.mkdtemp(prefix="dispatch-gateway-page-"))
    try:
        async with contextlib.AsyncExitStack() as stack:
            peers = [await stack.enter_async_context(PagePeer(job_seconds=0.3)) for _ in SERVERS]
            config = {"servers": {n: p.url for n, p in zip(SERVERS, peers, strict=True)}}
            (folder / "config.json").write_text(json.dumps(config))
            service = DispatchService(folder, status_interval=0.5)
            runner = web.AppRunner(create_app(service))
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, "127.0.0.1", port).start()
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            print(f"gateway on {base}/ (frontend {frontend})", flush=True)
            await stop.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    host_cli.main(__doc__.split("\n")[0], serve)
