"""A log line for each step of each job, from the events the panels get.

A job's end is logged at INFO (a failure at WARNING), its earlier steps (queued, running
on a server) at DEBUG: inside ComfyUI, whose console shows INFO, that is one line a job.

Each line carries the job's id, route, server, prompt id and API key as fields (see
`dispatch_core._logs`): `--log-format json` makes them keys a collector can filter on;
the human format reads `job j… done on 'a' (route 'gen', prompt …) in 1.2 s`.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

__all__ = ["JobLog"]

_log = logging.getLogger("dispatch_core.jobs")
_REMEMBER = 10_000
_FIELDS = ("route", "server", "prompt_id", "key", "state")


class JobLog:
    """An `Events` listener: one line per job state, one per webhook outcome."""

    def __init__(self) -> None:
        self._seen: collections.OrderedDict[str, tuple[Any, ...]] = collections.OrderedDict()

    def listen(self, event: str, data: dict[str, Any]) -> None:
        if event != "dispatch.job":
            return
        webhook = data.get("webhook") if isinstance(data.get("webhook"), dict) else None
        now = (data.get("state"), data.get("prompt_id"), (webhook or {}).get("state"))
        job_id = str(data.get("id"))
        before = self._seen.pop(job_id, (None, None, None))
        self._seen[job_id] = now
        while len(self._seen) > _REMEMBER:
            self._seen.popitem(last=False)
        fields = {"job": job_id} | {k: data.get(k) for k in _FIELDS}
        if now[:2] != before[:2]:
            self._job_line(data, fields)
        if webhook is not None and now[2] != before[2] and now[2] != "pending":
            self._webhook_line(webhook, fields)

    def _job_line(self, data: dict[str, Any], fields: dict[str, Any]) -> None:
        state = data.get("state")
        where = f" on {data['server']!r}" if data.get("server") else ""
        text = f"job {fields['job']} {state}{where} (route {data.get('route')!r}"
        text += f", prompt {data['prompt_id']})" if data.get("prompt_id") else ")"
        if data.get("key"):
            text += f" for key {data['key']!r}"
        if state == "failed":
            fields["error"] = data.get("error")
            _log.warning("%s: %s", text, data.get("error"), extra={"dispatch": fields})
            return
        if data.get("duration") is not None:
            fields["duration"] = round(float(data["duration"]), 3)
            text += f" in {fields['duration']:.1f} s"
        level = logging.INFO if state in ("done", "cancelled") else logging.DEBUG
        _log.log(level, "%s", text, extra={"dispatch": fields})

    def _webhook_line(self, webhook: dict[str, Any], fields: dict[str, Any]) -> None:
        fields = fields | {"webhook": webhook.get("state"), "attempts": webhook.get("attempts")}
        fields["webhook_status"] = webhook.get("status")
        text = f"job {fields['job']}: webhook {webhook.get('state')} after "
        text += f"{webhook.get('attempts')} attempts (last answer {webhook.get('status')})"
        levels = {"delivered": logging.INFO, "sending": logging.DEBUG}
        level = levels.get(str(webhook.get("state")), logging.WARNING)
        _log.log(level, "%s", text, extra={"dispatch": fields})
