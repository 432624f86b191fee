"""Jobs, newest first, for the panel's job list and the `/dispatch/jobs` routes.

Unfinished jobs are always kept; of finished ones, the newest `keep`. With a `JobTable`,
every record is on disk before its change is announced, and survives a restart. With a
shared queue (`shared`), the records live there: the process that runs a job writes and
announces each change, and every process takes it in through `apply`.
"""

from __future__ import annotations

import collections
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import DispatchError
from ..job import TERMINAL_STATES, JobState
from ..result import DispatchResult, OutputFile
from ._job_table import JobTable, lost_message

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
    state: JobState = JobState.QUEUED
    queued_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    prompt_id: str | None = None
    error: str | None = None
    files: tuple[OutputFile, ...] = ()
    timings: dict[str, float | None] | None = None
    """The result's instants (queued, started, executed, finished), once done."""
    key: str | None = None
    """The name of the API key that asked for it, on the standalone gateway."""
    webhook: dict[str, Any] | None = None
    """Where its outcome is sent, and how that went: url, state, status, attempts."""

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.queued_at

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        """A record as `to_dict` wrote it (read back from the job table)."""

        def text(key: str) -> str | None:
            return str(data[key]) if data.get(key) is not None else None

        def number(key: str) -> float | None:
            value = data.get(key)
            return float(value) if isinstance(value, (int, float)) else None

        return cls(
            id=str(data["id"]),
            label=text("label") or "",
            route=text("route") or "",
            server=text("server"),
            state=_state(text("state")),
            queued_at=number("queued_at") or 0.0,
            finished_at=number("finished_at"),
            prompt_id=text("prompt_id"),
            error=text("error"),
            files=tuple(_output_file(f) for f in data.get("files") or () if isinstance(f, dict)),
            timings=_mapping(data.get("timings")),
            key=text("key"),
            webhook=_mapping(data.get("webhook")),
        )

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
            "timings": self.timings,
            "key": self.key,
            "webhook": self.webhook,
        }


def _state(text: str | None) -> JobState:
    try:
        return JobState(text or "")
    except ValueError:
        return JobState.FAILED  # a state this version does not know has ended, unseen


def _mapping(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else None


def _output_file(data: dict[str, Any]) -> OutputFile:
    def text(key: str) -> str:
        return str(data.get(key) or "")

    return OutputFile(
        filename=text("filename"),
        subfolder=text("subfolder"),
        type=text("type"),
        url=text("url"),
        server=text("server"),
        node_id=text("node_id"),
    )


class Activity:
    """Unfinished jobs and the last `keep` finished ones; every change is written to the
    table (when there is one), then passed to the listener (the panel's event)."""

    def __init__(
        self,
        keep: int = 200,
        listener: JobListener | None = None,
        table: JobTable | None = None,
        *,
        shared: bool = False,
    ):
        self._records: collections.OrderedDict[str, JobRecord] = collections.OrderedDict()
        self.shared = shared
        """The records are a shared queue's: changes here are not written nor announced
        (the queue does both), only kept for this process's answers."""
        self._keep = keep
        self._table = table
        self.listener = listener
        if table is not None:
            self._restore(table)

    def _restore(self, table: JobTable) -> None:
        """Read the table; a job it holds unfinished did not end under this process."""
        for data in table.load(self._keep):
            record = JobRecord.from_dict(data)
            if not record.terminal:
                record.state, record.error = JobState.FAILED, lost_message(data)
                record.finished_at = record.finished_at or time.time()
                table.put(record.to_dict(), terminal=True)
            self._records[record.id] = record

    def start(
        self,
        label: str,
        route: str,
        server: str | None = None,
        *,
        key: str | None = None,
        webhook: dict[str, Any] | None = None,
        job_id: str | None = None,
    ) -> JobRecord:
        job_id = job_id or f"j{uuid.uuid4().hex[:16]}"
        if job_id in self._records:  # a shared queue told of it first
            return self._records[job_id]
        record = JobRecord(id=job_id, label=label, route=route)
        record.server, record.key, record.webhook = server, key, webhook
        self._records[record.id] = record
        self._changed(record)
        self._evict()
        return record

    def _evict(self) -> None:
        """Finished records beyond `keep` go, oldest first; unfinished ones never do."""
        finished = [key for key, record in self._records.items() if record.terminal]
        gone = finished[: max(0, len(finished) - self._keep)]
        for key in gone:
            del self._records[key]
        if gone and self._table is not None:
            self._table.remove(gone)

    def apply(self, data: dict[str, Any]) -> None:
        """A record as the shared queue has it now, from any process; announced here. An
        ended record is never taken back to queued or running (events may cross)."""
        record = JobRecord.from_dict(data)
        known = self._records.get(record.id)
        if known is not None and known.terminal and not record.terminal:
            return
        if known is not None:
            record.queued_at = known.queued_at
        self._records[record.id] = record
        if self.listener is not None:
            self.listener(record)
        self._evict()

    def running(self, record: JobRecord, server: str, prompt_id: str) -> None:
        if record.terminal:
            return
        if record.state == JobState.QUEUED or record.prompt_id != prompt_id:
            record.state, record.server, record.prompt_id = JobState.RUNNING, server, prompt_id
            self._changed(record)

    def finished(self, record: JobRecord, result: DispatchResult) -> None:
        record = self._records.get(record.id, record)  # the shared one, if it came first
        record.state = JobState.DONE
        record.server, record.prompt_id = result.server, result.prompt_id
        record.files = result.without_data().files
        # a cached result's instants are those of the run it repeats: not this job's
        record.timings = None if result.cached else result.to_dict()["timings"]
        record.finished_at = time.time()
        self._changed(record)

    def failed(self, record: JobRecord, error: BaseException) -> None:
        record = self._records.get(record.id, record)
        cancelled = not isinstance(error, Exception)  # CancelledError, KeyboardInterrupt
        record.state = JobState.CANCELLED if cancelled else JobState.FAILED
        record.error = "cancelled" if cancelled else str(error)
        if isinstance(error, DispatchError):
            record.server = error.server or record.server
            record.prompt_id = error.prompt_id or record.prompt_id
        record.finished_at = time.time()
        self._changed(record)

    def update(self, record: JobRecord) -> None:
        """Write and announce a change made to a record in place (its webhook's progress);
        a record already evicted stays gone."""
        if self._records.get(record.id) is record:
            self._changed(record)

    def get(self, job_id: str) -> JobRecord | None:
        return self._records.get(job_id)

    def recent(self, limit: int = 50) -> list[JobRecord]:
        return list(reversed(self._records.values()))[:limit]

    def close(self) -> None:
        if self._table is not None:
            self._table.close()
            self._table = None

    def _changed(self, record: JobRecord) -> None:
        if self.shared:
            return
        if self._table is not None:
            self._table.put(record.to_dict(), terminal=record.terminal)
        if self.listener is not None:
            self.listener(record)
