"""The engine tells a relay every frame of a job's prompt, previews included (`on_frame`)."""

from __future__ import annotations

import struct
from typing import Any

from dispatch_core import Config, Dispatcher, JobSpec
from dispatch_core.testing import FakePeer
from dispatch_core.testing._png import Image, encode_png
from dispatch_core.testing._ws import SocketHub

import workflows


class PreviewHub(SocketHub):
    """Sends a legacy preview after each progress frame, as ComfyUI does."""

    def send(self, sid: str | None, kind: str, data: Any) -> None:
        super().send(sid, kind, data)
        if kind == "progress":
            png = encode_png(Image.solid(1, 1, (int(data["value"]), 0, 0)))
            self.send_binary(sid, struct.pack(">II", 1, 2) + png)


async def test_every_frame_of_the_prompt_reaches_on_frame_previews_included() -> None:
    heard: list[tuple[str, Any]] = []
    async with FakePeer(models={"checkpoints": ["sd15.safetensors"]}) as peer:
        peer._hub = PreviewHub(peer._greeting)
        async with Dispatcher(Config.single(peer.url)) as dispatcher:
            spec = JobSpec("default", workflows.txt2img(steps=2))
            handle = dispatcher.submit(spec, on_frame=lambda k, d: heard.append((k, d)))
            result = await handle.result(timeout=30)
            peer._hub.send_binary(None, struct.pack(">II", 1, 2) + b"late")  # no prompt runs
            await dispatcher.run("default", workflows.invert())  # its frames: not this job's
    kinds = [k for k, _ in heard]
    assert kinds[0] == "execution_start" and kinds[-1] == "executing"
    assert kinds.count("binary") == 2 and kinds.count("progress") == 2
    assert kinds.index("progress") < kinds.index("binary")
    ids = {d.get("prompt_id") for k, d in heard if k != "binary"}
    assert ids == {result.prompt_id}, "only this prompt's frames, under the engine's id"
    assert all(not d.endswith(b"late") for k, d in heard if k == "binary")
