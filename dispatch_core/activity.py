"""Recent jobs, newest first, for the panel's job list and the `/dispatch/jobs` routes."""

from __future__ import annotations

import collections
import dataclasses
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import DispatchError
from .result import DispatchResult, OutputFile

__all__ = ["Activity", "JobRecord"]

JobListener = Callable[["JobRecord"], None]


@dataclass
class JobRecord:
    """One job as the panel shows it."""

    id: str
    label: str
    """The template's name, or "workflow" for a workflow sent as is."""
    route: str
    server: str | None = None
    state: str = "queued"
    """queued → running → done | failed | cancelled"""
    queued_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    prompt_id: str | None = None
    error: str | None = None
    files: tuple[OutputFile, ...] = ()

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.queued_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "route": self.route,
            "server": self.server,
            "state": self.state,
            "queued_at": self.queued_at,
            "finished_at": self.finished_at,
            "duration": self.duration,
            "prompt_id": self.prompt_id,
            "error": self.error,
            "files": [
                f.to_dict() | {"index": i, "download": f"/dispatch/jobs/{self.id}/files/{i}"}
                for i, f in enumerate(self.files)
            ],
        }


class Activity:
    """The last `keep` jobs; every change is passed to the listener (the panel's event)."""

    def __init__(self, keep: int = 200, listener: JobListener | None = None):
        self._records: collections.OrderedDict[str, JobRecord] = collections.OrderedDict()
        self._keep = keep
        self._ids = itertools.count(1)
        self.listener = listener

    def start(self, label: str, route: str, server: str | None = None) -> JobRecord:
        record = JobRecord(id=f"j{next(self._ids)}-{int(time.time())}", label=label, route=route)
        record.server = server
        self._records[record.id] = record
        while len(self._records) > self._keep:
            self._records.popitem(last=False)
        self._changed(record)
        return record

    def running(self, record: JobRecord, server: str, prompt_id: str) -> None:
        if record.state == "queued" or record.prompt_id != prompt_id:
            record.state, record.server, record.prompt_id = "running", server, prompt_id
            self._changed(record)

    def finished(self, record: JobRecord, result: DispatchResult) -> None:
        record.state, record.server, record.prompt_id = "done", result.server, result.prompt_id
        record.files = tuple(dataclasses.replace(f, _data=None) for f in result.files)
        record.finished_at = time.time()
        self._changed(record)

    def failed(self, record: JobRecord, error: BaseException) -> None:
        cancelled = not isinstance(error, Exception)  # CancelledError, KeyboardInterrupt
        record.state = "cancelled" if cancelled else "failed"
        record.error = "cancelled" if cancelled else str(error)
        if isinstance(error, DispatchError):
            record.server = error.server or record.server
            record.prompt_id = error.prompt_id or record.prompt_id
        record.finished_at = time.time()
        self._changed(record)

    def get(self, job_id: str) -> JobRecord | None:
        return self._records.get(job_id)

    def recent(self, limit: int = 50) -> list[JobRecord]:
        return list(reversed(self._records.values()))[:limit]

    def _changed(self, record: JobRecord) -> None:
        if self.listener is not None:
            self.listener(record)
