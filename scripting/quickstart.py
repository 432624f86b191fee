"""Generate on one GPU server, edit the result on another, then fan out over both.

    python3 scripting/quickstart.py [scripting/dispatch.json]

Needs the two ComfyUI servers the config names (or two fake ones:
`python3 -m dispatch_core.testing --port 8188 & python3 -m dispatch_core.testing --port 8189 &`).
"""

import asyncio
import json
import sys
from pathlib import Path

from dispatch_core import Dispatcher, JobSpec, Progress, WorkflowBuilder, load_config

HERE = Path(__file__).parent


def show_progress(progress: Progress) -> None:
    if progress.node is not None:  # a sampler's steps; node-less reports count whole nodes
        print(f"  {progress.server} node {progress.node}: step {progress.value:g}/{progress.max:g}")


async def main(config_path: str) -> None:
    config = load_config(config_path)
    txt2img = json.loads((HERE / "txt2img_api.json").read_text())  # Workflow → Export (API)

    async with Dispatcher(config) as dispatcher:
        made = await dispatcher.run(
            "generate",
            txt2img,
            {"Positive Prompt": {"text": "a red jacket, studio light"}, "KSampler": {"seed": 7}},
            cache_key="a red jacket, studio light",
            on_progress=show_progress,
        )
        print("generated on", made.server, made.images[0].url)

        # The edit GPU works on what the generation GPU made (fetched from A, uploaded to B).
        edit = WorkflowBuilder.from_file(HERE / "edit_api.json").set_image("Input", made.images[0])
        edited = await dispatcher.run("edit", edit)
        print("edited on", edited.server, edited.images[0].url)

        again = await dispatcher.run("generate", txt2img, cache_key="a red jacket, studio light")
        print("asked again: cached =", again.cached)

        seeds = [WorkflowBuilder(txt2img).set("KSampler", "seed", s) for s in range(4)]
        results = await dispatcher.run_parallel([JobSpec("any", w) for w in seeds])
        print(
            "fan-out ran on",
            [r.server if not isinstance(r, BaseException) else repr(r) for r in results],
        )

        for name, state in (await dispatcher.status()).items():
            latency = state.latency_ms
            print(f"{name}: online={state.online} queue={state.queue_depth} latency={latency} ms")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else str(HERE / "dispatch.json")))
