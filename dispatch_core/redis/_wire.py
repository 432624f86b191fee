"""What crosses the queue: a job as every process can run it, its result, its error, and
the record the panels show.

A job crosses as its checked workflow (values already set), its images as bytes (read
once by the submitter: a path or another job's output is the submitter's to read), and
its request key, so that the process that runs it journals it under the same name.
Results cross as the peer's history outputs, never image bytes: whoever holds the result
reads the files from the peer that made them.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from .. import errors
from .._job import JobRun, _read_source
from ..errors import DispatchError
from ..job import JobSpec, JobState
from ..result import DispatchResult
from ..workflow import WorkflowBuilder

__all__ = [
    "KEEP_SECONDS",
    "PROMPT_SLOT",
    "SERVER_SLOT",
    "data_of",
    "error_from",
    "error_to",
    "record_of",
    "run_from",
    "spec_of",
    "text",
]

KEEP_SECONDS = 7 * 86400
"""How long an ended job is kept, for GET /dispatch/jobs/{id} from any process."""
SERVER_SLOT = "{{server}}"
PROMPT_SLOT = "{{prompt_id}}"
"""Stand-ins in a job's running record, made when it is queued: the script that takes it
fills in its server and prompt id (see `_scripts.TAKE`)."""


async def spec_of(run: JobRun) -> str:
    """The job as JSON, its images read into it."""
    spec = run.spec
    uploads = [
        {
            "node": u.node_id,
            "input": u.input,
            "filename": u.filename,
            "data": base64.b64encode(await _read_source(u.source)).decode(),
        }
        for u in run.builder.image_uploads
    ]
    return json.dumps(
        {
            "id": run.job_id,
            "route": spec.route,
            "server": spec.server,
            "label": spec.label,
            "output_node": spec.output_node,
            "timeout": spec.timeout,
            "workflow": dict(run.builder.view()),
            "uploads": uploads,
            "request_key": run.request_key,
            "queued_at": run.queued,
        }
    )


def data_of(run: JobRun) -> dict[str, Any]:
    """What the records of a job need, from its own JobRun (submitted in this process)."""
    spec = run.spec
    return {
        "id": run.job_id,
        "route": spec.route,
        "label": spec.label,
        "queued_at": run.queued,
        "timeout": spec.timeout,
        "request_key": run.request_key,
    }


def run_from(text: str | bytes) -> tuple[JobRun, dict[str, Any]]:
    """The JobRun of a job read from the queue, and its JSON."""
    data = json.loads(text)
    builder = WorkflowBuilder(data["workflow"])
    for upload in data["uploads"]:
        image = base64.b64decode(upload["data"])
        builder.set_image(upload["node"], image, input=upload["input"], filename=upload["filename"])
    spec = JobSpec(data["route"], builder, server=data["server"], output_node=data["output_node"])
    run = JobRun(spec, job_id=data["id"])
    run.queued = float(data["queued_at"])
    run.__dict__["request_key"] = data["request_key"]  # the submitter's name for it
    return run, data


def text(value: Any) -> str:
    """A Redis answer as text (the client answers bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def record_of(
    data: dict[str, Any],
    state: JobState,
    *,
    server: str | None = None,
    prompt_id: str | None = None,
    result: DispatchResult | None = None,
    error: str | None = None,
) -> str:
    """The job's record as the service's `JobRecord.from_dict` reads it."""
    terminal = state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)
    finished = time.time() if terminal else None
    return json.dumps(
        {
            "id": data["id"],
            "label": data.get("label", "workflow"),
            "route": data["route"],
            "server": result.server if result is not None else server,
            "state": str(state),
            "queued_at": data["queued_at"],
            "finished_at": finished,
            "duration": None if finished is None else finished - data["queued_at"],
            "prompt_id": result.prompt_id if result is not None else prompt_id,
            "error": error,
            "files": [f.to_dict() for f in result.files] if result is not None else [],
        }
    )


def result_to(result: DispatchResult) -> str:
    return json.dumps(
        {
            "server": result.server,
            "prompt_id": result.prompt_id,
            "outputs": result.outputs,
            "reason": result.reason,
        }
    )


def error_to(error: BaseException) -> str:
    """An error as its class name and fields, to be raised again by the submitter."""
    if not isinstance(error, Exception):
        return json.dumps({"type": "CancelledError", "message": "cancelled"})
    found: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, DispatchError):
        found |= {"message": error.message, "server": error.server, "prompt_id": error.prompt_id}
    return json.dumps(found)


def error_from(found: str | bytes | dict[str, Any]) -> BaseException:
    """The error a job ended with, as near its own class as its fields allow (from its
    JSON, or that JSON read already)."""
    data = found if isinstance(found, dict) else json.loads(found)
    kind = getattr(errors, str(data.get("type")), None)
    message, server, prompt_id = data.get("message", ""), data.get("server"), data.get("prompt_id")
    if data.get("type") == "CancelledError":
        return errors.DispatchError("cancelled", server=server, prompt_id=prompt_id)
    if isinstance(kind, type) and issubclass(kind, DispatchError):
        try:
            return kind(message, server=server, prompt_id=prompt_id)
        except TypeError:
            pass  # an error whose fields are more than these: its text says it all
    return errors.DispatchError(message, server=server, prompt_id=prompt_id)
