"""FakePeer: a ComfyUI stand-in on loopback that speaks ComfyUI's real HTTP and WS protocol.

It has one executor and a queue, sends the frames a real ComfyUI 0.3.64 sends in the same
order (held to recorded transcripts by a conformance test), writes real PNGs that depend on
the inputs, validates prompts against real `object_info`, and can be made slow, hung,
restarted or silent, so that pipelines can be tested without a GPU. `HostilePeer` is one
that can also misbehave as a compromised server would (echo our headers, redirect, drip,
nest, send frames that cannot be read), and `BannerServer` a port that is not HTTP at all.
A test can add custom node classes (`CustomNode`) and prompt handlers to a FakePeer, as a
custom node pack adds them to ComfyUI:

    async with FakePeer(job_seconds=0.1, models={"checkpoints": ["sd15.safetensors"]}) as peer:
        ...  # point a Dispatcher or any ComfyUI client at peer.url

`python -m dispatch_core.testing --port 8188` runs one until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from ._custom import CustomNode, PromptHandler
from ._hostile import BannerServer, HostilePeer
from ._peer import FakePeer

__all__ = ["BannerServer", "CustomNode", "FakePeer", "HostilePeer", "PromptHandler", "main"]


def main(argv: list[str] | None = None) -> None:
    """Run a fake peer until Ctrl-C, for trying the tools without ComfyUI."""
    parser = argparse.ArgumentParser(
        prog="python -m dispatch_core.testing", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--job-seconds", type=float, default=0.5)
    for flag, folder in (("checkpoint", "checkpoints"), ("lora", "loras")):
        parser.add_argument(f"--{flag}", action="append", default=[], dest=folder)
    parser.add_argument("--upscale-model", action="append", default=[], dest="upscale_models")
    parser.add_argument("--load-seconds", type=float, default=0.0, help="to load a model")
    parser.add_argument("--cold-seconds", type=float, default=0.0, help="more, the first time")
    parser.add_argument("--memory-slots", type=int, default=None, help="models held at once")
    parser.add_argument(
        "--cache-lru", type=int, default=None, help="only reported in /system_stats' argv"
    )
    args = parser.parse_args(argv)
    models = {
        "checkpoints": args.checkpoints or ["sd15.safetensors"],
        "loras": args.loras,
        "upscale_models": args.upscale_models or ["4x-fake.safetensors"],
    }

    async def serve() -> None:
        async with FakePeer(
            host=args.host,
            port=args.port,
            job_seconds=args.job_seconds,
            models=models,
            load_seconds=args.load_seconds,
            cold_seconds=args.cold_seconds,
            memory_slots=args.memory_slots,
            flags=["--cache-lru", str(args.cache_lru)] if args.cache_lru else [],
        ) as peer:
            peer.on_load = lambda name: print(f"loaded {name}", flush=True)
            print(f"fake ComfyUI peer on {peer.url} (Ctrl-C to stop)", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
