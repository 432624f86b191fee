"""The peer's sampler previews reach the job's progress callback: read from ComfyUI's
binary frames (type 4 with metadata, type 1 without), checked, and throttled."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from dispatch_core import Config, Dispatcher, Progress, _peer_socket, _watch
from dispatch_core._previews import MAX_METADATA_BYTES, read_preview
from dispatch_core.testing import FakePeer
from dispatch_core.testing._preview import PREVIEW_JPEG, legacy_frame, metadata_frame

import workflows

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def frame4(metadata: Any, image: bytes = PREVIEW_JPEG) -> bytes:
    raw = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
    return struct.pack(">II", 4, len(raw)) + raw + image


GOOD = {"node_id": "3", "prompt_id": "p", "display_node_id": "3", "image_type": "image/jpeg"}


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (b"", "empty"),
        (b"\x00\x00\x00\x04\x00", "shorter than its header"),
        (struct.pack(">II", 3, 0) + b"text", "type 3: progress text, not a picture"),
        (struct.pack(">II", 1, 7) + PREVIEW_JPEG, "legacy with an unknown image type"),
        (struct.pack(">II", 1, 1) + PNG, "legacy labelled JPEG, holding a PNG"),
        (struct.pack(">II", 1, 1) + b"<svg onload=alert(1)>", "not a picture at all"),
        (frame4(GOOD | {"image_type": "image/svg+xml"}), "a type we never show"),
        (frame4(GOOD | {"image_type": "image/png"}), "labelled PNG, holding a JPEG"),
        (frame4(GOOD, b""), "no picture"),
        (frame4(b"{not json"), "metadata not JSON"),
        (frame4(b"\xff\xfe"), "metadata not UTF-8"),
        (frame4([GOOD]), "metadata not an object"),
        (frame4(GOOD | {"prompt_id": 7}), "prompt id not a string"),
        (frame4({"a": "x" * MAX_METADATA_BYTES}), "metadata too long"),
        (struct.pack(">II", 4, 2**32 - 1) + PREVIEW_JPEG, "a length past the frame"),
    ],
)
def test_a_frame_that_is_not_a_well_formed_preview_is_refused(frame: bytes, why: str) -> None:
    assert read_preview(frame) is None, why


def test_both_of_comfyuis_preview_frames_are_read() -> None:
    found = read_preview(metadata_frame("prompt-1", "3"))
    assert found is not None
    assert (found.prompt_id, found.node, found.mime) == ("prompt-1", "3", "image/jpeg")
    assert found.image == PREVIEW_JPEG
    legacy = read_preview(legacy_frame())
    assert legacy is not None and legacy.prompt_id is None and legacy.image == PREVIEW_JPEG


async def sampled_previews(steps: int) -> list[Progress]:
    models = {"checkpoints": ["sd15.safetensors"]}
    async with FakePeer(
        models=models, preview_method="latent2rgb", job_seconds=0.05 * steps
    ) as peer:
        config = Config.from_dict({"servers": {"gpu": peer.url}, "routes": {"gen": "gpu"}})
        reports: list[Progress] = []
        async with Dispatcher(config) as dispatcher:
            await dispatcher.run("gen", workflows.txt2img(steps=steps), on_progress=reports.append)
    return [r for r in reports if r.preview is not None]


@pytest.mark.parametrize("metadata", [True, False], ids=["type 4", "type 1"])
async def test_every_preview_reaches_the_job_when_unthrottled(
    monkeypatch: pytest.MonkeyPatch, metadata: bool
) -> None:
    monkeypatch.setattr(_watch, "PREVIEW_INTERVAL", 0.0)
    if not metadata:  # a ComfyUI older than 0.3.45 ignores the flags: legacy frames
        monkeypatch.setattr(_peer_socket, "FEATURE_FLAGS", {"type": "hello", "data": {}})
    previews = await sampled_previews(4)
    assert [(p.node, p.value, p.max) for p in previews] == [("3", s, 4) for s in (1, 2, 3, 4)]
    assert all(p.preview == PREVIEW_JPEG and p.preview_type == "image/jpeg" for p in previews)


async def test_previews_closer_than_the_interval_are_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_watch, "PREVIEW_INTERVAL", 3600.0)
    previews = await sampled_previews(5)
    assert [(p.node, p.value) for p in previews] == [("3", 1)]  # the first, then none
