"""What a finished job hands back: the peer's output files, text, and timings."""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._peer_http import Download

__all__ = ["DispatchResult", "OutputFile", "Progress", "Timings"]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
_VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif"}
_AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a"}

Reader = Callable[["OutputFile"], Awaitable[bytes]]
Opener = Callable[["OutputFile"], AbstractAsyncContextManager["Download"]]


@dataclass(eq=False)
class OutputFile:
    """One file a peer wrote. `read()` fetches it once through `/view` and keeps the bytes;
    `open()` streams it without holding it (to pass it on, say to a browser).

    `filename`, `subfolder` and `type` are the peer's words: never a local path as they are.
    """

    filename: str
    subfolder: str
    type: str
    url: str
    server: str = ""
    node_id: str = ""
    _reader: Reader | None = field(default=None, repr=False)
    _opener: Opener | None = field(default=None, repr=False)
    _data: bytes | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        """`image`, `video`, `audio` or `file`, judged by the file's suffix."""
        suffix = posixpath.splitext(self.filename)[1].lower()
        if suffix in _IMAGE_SUFFIXES:
            return "image"
        if suffix in _VIDEO_SUFFIXES:
            return "video"
        if suffix in _AUDIO_SUFFIXES:
            return "audio"
        return "file"

    async def read(self) -> bytes:
        if self._data is None:
            if self._reader is None:
                raise RuntimeError(f"{self.filename}: no reader attached to this output file")
            self._data = await self._reader(self)
        return self._data

    def open(self) -> AbstractAsyncContextManager[Download]:
        """Stream the file from its server, each time anew:

            async with output.open() as download:
                download.content_type, download.size  # the peer's: not to be trusted
                async for chunk in download.chunks():
                    ...

        A BadResponse if the server has no such file (status 404) or the file grows past
        the download limit while it streams; PeerUnreachable if the server cannot be read.
        """
        if self._opener is None:
            raise RuntimeError(f"{self.filename}: no opener attached to this output file")
        return self._opener(self)

    def to_dict(self) -> dict[str, str]:
        return {
            "filename": self.filename,
            "subfolder": self.subfolder,
            "type": self.type,
            "url": self.url,
            "server": self.server,
            "node_id": self.node_id,
        }


@dataclass(frozen=True)
class Timings:
    """Wall-clock instants (seconds since the epoch) of one job's life."""

    queued: float
    """When the dispatcher accepted the job."""
    started: float | None = None
    """When the peer began executing it (`execution_start`), or when it was submitted."""
    finished: float | None = None
    """When the result was in hand."""
    executed: float | None = None
    """When the peer said the prompt was over: `finished` minus this is the fetching."""

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else self.finished - self.queued


@dataclass(frozen=True)
class Progress:
    """A progress report from the peer for one prompt."""

    server: str
    prompt_id: str
    node: str | None
    value: float
    max: float
    nodes_done: int = 0
    nodes_total: int = 0
    preview: bytes | None = field(default=None, repr=False)
    """A preview picture of the step (JPEG or PNG bytes, as the peer's sampler sent it), when
    the peer runs with `--preview-method`; at most two a second are handed on."""
    preview_type: str = ""
    """`image/jpeg` or `image/png` when there is a preview."""


@dataclass(frozen=True)
class DispatchResult:
    """The outcome of one job: every output file, text outputs, where and when it ran."""

    server: str
    prompt_id: str
    files: tuple[OutputFile, ...]
    text: tuple[str, ...] = ()
    outputs: dict[str, Any] = field(default_factory=dict)
    cached: bool = False
    timings: Timings = field(default_factory=lambda: Timings(queued=0.0))
    reason: str = ""
    """Why this server was chosen, in words."""

    def without_data(self) -> DispatchResult:
        """The same result with no file's bytes kept: what a cache or a record holds."""
        files = tuple(dataclasses.replace(f, _data=None) for f in self.files)
        return dataclasses.replace(self, files=files)

    @property
    def images(self) -> tuple[OutputFile, ...]:
        return tuple(f for f in self.files if f.kind == "image")

    @property
    def videos(self) -> tuple[OutputFile, ...]:
        return tuple(f for f in self.files if f.kind == "video")

    @property
    def audio(self) -> tuple[OutputFile, ...]:
        return tuple(f for f in self.files if f.kind == "audio")

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "prompt_id": self.prompt_id,
            "cached": self.cached,
            "reason": self.reason,
            "files": [f.to_dict() for f in self.files],
            "text": list(self.text),
            "timings": {
                "queued": self.timings.queued,
                "started": self.timings.started,
                "finished": self.timings.finished,
                "executed": self.timings.executed,
            },
        }
