"""One job's life inside the dispatcher: what it asks for, what it waits on, what it returns.

The spec's workflow is copied once, into the run's builder, with the spec's values set;
everything after (the request key, the prompt sent, each retry) reads that copy.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._inventory import needs_of
from ._journal import request_hash
from ._lanes import arrival
from ._retry import with_retries
from ._urls import view_url
from ._watch import FrameCallback, ProgressCallback
from .errors import DispatchError, WorkflowError
from .job import JobHandle, JobSpec
from .result import DispatchResult, OutputFile, Timings
from .templates import Template
from .workflow import WorkflowBuilder

if TYPE_CHECKING:
    from ._lanes import Lane
    from ._peer import PeerClient
    from ._peer_http import Download

__all__ = ["JobRun"]


class JobRun:
    """A job being run: its checked workflow, and what it waits on now (for a timeout)."""

    def __init__(
        self,
        spec: JobSpec,
        on_progress: ProgressCallback | None = None,
        handle: JobHandle | None = None,
        on_frame: FrameCallback | None = None,
        *,
        job_id: str | None = None,
    ):
        self.spec = spec
        self.arrival = arrival()
        """Its place in the order of arrival: it takes a slot in that order."""
        self.job_id = job_id or f"j{uuid.uuid4().hex[:16]}"
        """Its name in a shared queue and in the service's records."""
        self.lanes: Sequence[Lane] = ()
        """The servers it may run on, once its route is resolved."""
        self.on_start: Callable[[str, str], Awaitable[None]] | None = None
        """Awaited with (server, prompt id) before the prompt is sent: a shared queue
        records where it goes, so that another process can attach to it."""
        self.on_progress = on_progress
        self.on_frame = on_frame
        """Told each frame of the job's prompt, for a relay (see `FrameCallback`)."""
        self.handle = handle
        self.builder = _checked_builder(spec)
        self.queued = time.time()
        self.server: str | None = None
        self.prompt_id: str | None = None
        self.queued_on: Sequence[Lane] = ()
        self.last_error: DispatchError | None = None
        """The failure of an earlier try, if this job is trying again."""
        self.needs = needs_of(self.builder.view())
        self.reason = ""
        """Why the server was chosen, for the result."""
        self.executed: float | None = None
        """When the peer said the prompt was over (set by the runner)."""
        self._waiting_for = "a free slot"

    @property
    def waiting_for(self) -> str:
        text = self._waiting_for
        if self.queued_on:  # counted only when asked: counting on every job is quadratic
            text += f" ({max(lane.waiting for lane in self.queued_on)} jobs ahead)"
        if self.last_error is not None:
            text += f"; before that: {self.last_error}"
        return text

    @waiting_for.setter
    def waiting_for(self, text: str) -> None:
        self._waiting_for = text
        self.queued_on = ()

    @functools.cached_property
    def request_key(self) -> str:
        """The name of this request (journal, cache): route, workflow, images, output node."""
        images = [(u.node_id, u.input, _identity(u.source)) for u in self.builder.image_uploads]
        extra = [images, self.spec.output_node]
        return request_hash(self.spec.route, dict(self.builder.view()), extra)

    def started(self, server: str, prompt_id: str) -> None:
        self.server, self.prompt_id = server, prompt_id
        if self.handle is not None:
            self.handle.started(server, prompt_id)

    async def prompt_for(self, peer: PeerClient, subfolder: str) -> dict[str, Any]:
        """The workflow with its images uploaded to `peer` and pointed at."""
        names = {}
        for upload in self.builder.image_uploads:
            data = await _read_source(upload.source)
            answer = await peer.upload_image(data, upload.filename, subfolder=subfolder)
            names[upload.key] = "/".join(p for p in (answer["subfolder"], answer["name"]) if p)
        return self.builder.with_uploaded(names)

    def result(self, peer: PeerClient, prompt_id: str, entry: Mapping[str, Any]) -> DispatchResult:
        """The DispatchResult of a finished history entry (or of the frames' outputs)."""
        outputs = entry.get("outputs")
        if not isinstance(outputs, Mapping):
            outputs = {}
        if self.spec.output_node is not None:
            node_id = self.builder.resolve(self.spec.output_node)
            outputs = {node_id: outputs.get(node_id, {})}

        files: list[OutputFile] = []
        text: list[str] = []
        for node_id, output in outputs.items():
            for key, items in output.items() if isinstance(output, Mapping) else ():
                for item in items if isinstance(items, list) else ():
                    if isinstance(item, Mapping) and isinstance(item.get("filename"), str):
                        files.append(_output_file(peer, str(node_id), item))
                    elif key == "text" and isinstance(item, str):
                        text.append(item)
        started, now = _started_at(entry), time.time()
        timings = Timings(self.queued, started=started, finished=now, executed=self.executed)
        return DispatchResult(
            server=peer.name,
            prompt_id=prompt_id,
            files=tuple(files),
            text=tuple(text),
            outputs=dict(outputs),
            timings=timings,
            reason=self.reason,
        )


def _checked_builder(spec: JobSpec) -> WorkflowBuilder:
    """The job's workflow with its values set, checked before anything is sent.

    A WorkflowBuilder given without values is used as it is (the caller's own copy).
    """
    if spec.template is not None:
        builder = spec.template.builder(spec.values)
    elif isinstance(spec.workflow, WorkflowBuilder):
        builder = spec.workflow.copy() if spec.values else spec.workflow
        builder = Template("workflow", builder.view()).apply(builder, spec.values)
    else:
        assert spec.workflow is not None  # a JobSpec holds one of the two
        builder = Template("workflow", spec.workflow).builder(spec.values)
    builder.validate()
    if spec.output_node is not None:
        builder.resolve(spec.output_node)  # a wrong name fails now, not after the run
    return builder


async def _read_source(source: Any) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, (str, os.PathLike)):
        try:
            return await asyncio.to_thread(Path(source).read_bytes)
        except OSError as error:
            raise WorkflowError(f"cannot read image {str(source)!r}: {error.strerror}") from None
    return bytes(await source.read())


def _identity(source: Any) -> str:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    return str(getattr(source, "url", None) or source)


def _output_file(peer: PeerClient, node_id: str, item: Mapping[str, Any]) -> OutputFile:
    """One output as the peer's history names it; read and opened through that peer only."""

    async def read(file: OutputFile) -> bytes:
        return await with_retries(lambda: peer.view(file.filename, file.subfolder, file.type))

    def open_(file: OutputFile) -> AbstractAsyncContextManager[Download]:
        return peer.open_view(file.filename, file.subfolder, file.type)

    filename = str(item["filename"])
    subfolder = str(item.get("subfolder") or "")
    kind = str(item.get("type") or "output")
    output = {"filename": filename, "subfolder": subfolder, "type": kind}
    return OutputFile(
        filename=filename,
        subfolder=subfolder,
        type=kind,
        url=view_url(peer.url, output),
        server=peer.name,
        node_id=node_id,
        _reader=read,
        _opener=open_,
    )


def _started_at(entry: Mapping[str, Any]) -> float | None:
    status = entry.get("status")
    for message in (status.get("messages") if isinstance(status, Mapping) else None) or ():
        if isinstance(message, list) and len(message) == 2 and message[0] == "execution_start":
            stamp = message[1].get("timestamp") if isinstance(message[1], Mapping) else None
            if isinstance(stamp, (int, float)):
                return stamp / 1000
    return None
