"""Measure model routing on real ComfyUI peers: loads and makespan, affinity vs least-busy.

Each run starts its own ComfyUI peers cold (one per port, each pinned to one CPU core with
`taskset`, as each GPU is its own device), sends them a known sequence of one-step 64×64
txt2img jobs through a pool of the dispatcher, keeping `--window` jobs in flight as a
client does, then stops them. Checkpoint loads are counted from the peers' own logs (one
"model_type" line per checkpoint ComfyUI loads). Make the checkpoints first with
tools/make_checkpoint.py.

    python tools/affinity_on_comfyui.py --comfyui /path/to/ComfyUI \
        --python /path/to/ComfyUI/venv/bin/python --models /path/to/checkpoints \
        --checkpoints rand-1.safetensors rand-2.safetensors \
        --sequence random --runs 3

Run it with a Python that has dispatch_core (from this repository) and aiohttp; the peers
run with `--python`. Every run prints one line of JSON.

The first run on a machine pays for what the system reads from disk once (the
checkpoints, the libraries ComfyUI loads on its first prompt): a cold start took 18 to 27 s
there against 13 to 18 s in the run after it. So an untimed warm-up (one job of each
checkpoint on fresh peers) comes first, and with `--policy both` the two policies take
turns going first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from dispatch_core import Config, Dispatcher

LOAD_LINE = b"model_type "
"""What ComfyUI logs once per checkpoint it loads (load_checkpoint_guess_config)."""


def txt2img(checkpoint: str, seed: int) -> dict[str, Any]:
    """The issue's job: CheckpointLoaderSimple, one euler step at 64×64, decode, save."""
    sampler = {"seed": seed, "steps": 1, "cfg": 7.0, "sampler_name": "euler"}
    sampler |= {"scheduler": "normal", "denoise": 1.0, "model": ["4", 0]}
    sampler |= {"positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": sampler},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "aff", "images": ["8", 0]}},
    }


def sequence(kind: str, checkpoints: Sequence[str], jobs: int, seed: int) -> list[str]:
    """`alternating`, or `random`: 17 of 24 jobs for the first checkpoint, shuffled."""
    first, second = checkpoints
    if kind == "alternating":
        return [(first, second)[i % 2] for i in range(jobs)]
    many = round(jobs * 17 / 24)
    picks = [first] * many + [second] * (jobs - many)
    random.Random(seed).shuffle(picks)
    return picks


class Peer:
    """One ComfyUI process on a port and a core, its log counted as it comes."""

    def __init__(self, args: argparse.Namespace, port: int, core: int, folder: Path):
        self.args, self.port, self.core, self.folder = args, port, core, folder
        self.url = f"http://127.0.0.1:{port}"
        self.loads = 0
        self.log = folder / f"comfyui-{port}.log"
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        paths = self.folder / "extra_model_paths.yaml"
        paths.write_text(f"bench:\n  base_path: {self.args.models}\n  checkpoints: .\n")
        dirs = []
        for kind in ("user", "output", "input", "temp"):
            (self.folder / f"{kind}-{self.port}").mkdir(exist_ok=True)
            dirs += [f"--{kind}-directory", str(self.folder / f"{kind}-{self.port}")]
        self._process = await asyncio.create_subprocess_exec(
            *("taskset", "-c", str(self.core), str(self.args.python), "main.py", "--cpu"),
            *("--listen", "127.0.0.1", "--port", str(self.port), *dirs),
            *("--database-url", f"sqlite:///{self.folder}/user-{self.port}/comfyui.db"),
            *("--extra-model-paths-config", str(paths), "--disable-all-custom-nodes"),
            cwd=self.args.comfyui,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        await self._ready()

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        with self.log.open("wb") as log:
            async for line in self._process.stdout:
                log.write(line)
                if line.startswith(LOAD_LINE):
                    self.loads += 1

    async def _ready(self) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(600):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.url + "/system_stats") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.25)
        raise RuntimeError(f"ComfyUI on port {self.port} did not start (see {self.log})")

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 20)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        if self._reader is not None:
            await self._reader


@contextlib.asynccontextmanager
async def cold_peers(args: argparse.Namespace, folder: Path) -> AsyncIterator[list[Peer]]:
    peers = [
        Peer(args, port, core, folder) for port, core in zip(args.ports, args.cores, strict=True)
    ]
    try:
        await asyncio.gather(*(peer.start() for peer in peers))
        yield peers
    finally:
        await asyncio.gather(*(peer.stop() for peer in peers))


async def one_run(args: argparse.Namespace, picks: list[str], affinity: bool) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="affinity-comfyui-"))
    async with cold_peers(args, folder) as peers:
        servers = {f"p{i}": {"url": peer.url} for i, peer in enumerate(peers)}
        config = Config.from_dict({"servers": servers, "routes": {"pool": list(servers)}})
        async with Dispatcher(config) as dispatcher:
            dispatcher.affinity = affinity
            await dispatcher.refresh_inventory()
            going = asyncio.Semaphore(args.window)
            placed: list[str] = [""] * len(picks)
            ended: list[float] = [0.0] * len(picks)

            async def job(index: int, checkpoint: str) -> None:
                async with going:
                    result = await dispatcher.run("pool", txt2img(checkpoint, index))
                    placed[index] = result.server
                    ended[index] = round(time.monotonic() - began, 1)

            began = time.monotonic()
            await asyncio.gather(*(job(i, c) for i, c in enumerate(picks)))
            took = time.monotonic() - began
            switches = dispatcher.counts["model_switches"]
        loads = [peer.loads for peer in peers]
    if not args.keep_logs:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "policy": "affinity" if affinity else "least-busy",
        "loads": sum(loads),
        "loads_per_peer": loads,
        "makespan_s": round(took, 1),
        "model_switches": switches,
        "servers": "".join(name[1:] for name in placed),
        "ended_s": ended,
        "logs": str(folder) if args.keep_logs else None,
    }


async def main_async(args: argparse.Namespace) -> None:
    await one_run(args, list(args.checkpoints), affinity=False)  # the warm-up
    policies = {"affinity": [True], "least-busy": [False], "both": [True, False]}[args.policy]
    for run in range(args.runs):
        picks = sequence(args.sequence, args.checkpoints, args.jobs, args.seed + run)
        for affinity in policies if run % 2 == 0 else policies[::-1]:
            found = await one_run(args, picks, affinity)
            shown = "".join("ab"[args.checkpoints.index(c)] for c in picks)
            print(json.dumps({"sequence": shown, **found}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="a ComfyUI checkout")
    parser.add_argument("--python", type=Path, required=True, help="the Python that runs it")
    parser.add_argument("--models", type=Path, required=True, help="folder of the checkpoints")
    parser.add_argument("--checkpoints", nargs=2, required=True, metavar="FILE")
    parser.add_argument("--ports", nargs="+", type=int, default=[8301, 8302])
    parser.add_argument("--cores", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--sequence", choices=["random", "alternating"], default="random")
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--window", type=int, default=4, help="jobs kept in flight")
    parser.add_argument("--seed", type=int, default=1, help="of the first random sequence")
    parser.add_argument("--runs", type=int, default=1, help="sequences (seeds) to run")
    parser.add_argument("--policy", choices=["affinity", "least-busy", "both"], default="both")
    parser.add_argument("--keep-logs", action="store_true", help="keep the peers' folders")
    parser.add_argument("--debug", type=Path, help="write the scheduler's decisions here")
    args = parser.parse_args(argv)
    if args.debug is not None:
        handler = logging.FileHandler(args.debug)
        handler.setFormatter(logging.Formatter("%(relativeCreated)9.0f ms %(message)s"))
        logging.getLogger("dispatch_core._scheduler").addHandler(handler)
        logging.getLogger("dispatch_core._scheduler").setLevel(logging.DEBUG)
    if len(args.ports) != len(args.cores):
        parser.error("give one core per port")
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
