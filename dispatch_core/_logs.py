"""How the shell commands log: for people (the default) or one JSON object a line.

    configure("json")      # {"time": "...", "level": "INFO", "logger": "...", "message": "...",
                           #  "job": "j…", "route": "gen", "server": "a", "prompt_id": "…"}

Fields of an event ride on the log record as `extra={"dispatch": {...}}` (see
`service._job_log`): the human format shows them in its message, the JSON format as keys
of their own, so that a log collector can filter on a job id without parsing sentences.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

__all__ = ["FORMATS", "JsonFormatter", "configure"]

FORMATS = ("human", "json")
_HUMAN = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_RESERVED = {"time", "level", "logger", "message", "exception"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line; an event's fields (`record.dispatch`) as keys of its own."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "dispatch", None)
        if isinstance(fields, dict):
            line |= {k: v for k, v in fields.items() if k not in _RESERVED}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def _iso(created: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{whole}.{int(created % 1 * 1000):03d}Z"


def configure(
    log_format: str = "human", *, level: int = logging.INFO, stream: TextIO | None = None
) -> logging.Handler:
    """Send the `dispatch_core` loggers to `stream` (stderr) in `log_format`; the handler
    it installed, replacing one installed before (a second call does not double lines)."""
    if log_format not in FORMATS:
        raise ValueError(f"log format is one of {', '.join(FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(_HUMAN))
    handler.set_name("dispatch_core")
    logger = logging.getLogger("dispatch_core")
    for old in [h for h in logger.handlers if h.get_name() == "dispatch_core"]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler
