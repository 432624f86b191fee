"""Stand-in for `comfy_api.latest`: the VIDEO type a file makes (`InputImpl.VideoFromFile`),
which ComfyUI reads only when a node uses it, from the path it was given."""

from __future__ import annotations

from pathlib import Path


class _VideoFromFile:
    def __init__(self, file: str):
        self.file = file

    def get_stream_source(self) -> str:
        return self.file

    def read(self) -> bytes:
        """What a node using the video would read: the file as it is on disk then."""
        return Path(self.file).read_bytes()


class InputImpl:
    VideoFromFile = _VideoFromFile
