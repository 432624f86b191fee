"""Job records on disk, so that a job once accepted is answered for across a restart.

Each change of a record is written before the change is announced: a job acknowledged
with its id (`POST /dispatch/run` answers 202) is in this table. When the process starts
again, a job the table holds as queued or running did not end under the process that
accepted it: it is reported failed as *lost*, with its id, server and prompt id, never a
silent 404. SQLite in WAL mode; one small write per state change, on the caller's thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["JobTable", "lost_message"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    terminal INTEGER NOT NULL,
    queued_at REAL NOT NULL,
    data TEXT NOT NULL
)
"""


class JobTable:
    """The records of one folder; `close()` when done."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def put(self, data: dict[str, Any], *, terminal: bool) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)",
            (data["id"], int(terminal), data["queued_at"], json.dumps(data)),
        )

    def remove(self, job_ids: list[str]) -> None:
        self._db.executemany("DELETE FROM records WHERE id = ?", [(i,) for i in job_ids])

    def load(self, keep: int) -> Iterator[dict[str, Any]]:
        """Every unfinished record and the newest `keep` finished ones, oldest first."""
        rows = self._db.execute(
            "SELECT data FROM records WHERE terminal = 0 UNION ALL "
            "SELECT data FROM (SELECT data, queued_at FROM records WHERE terminal = 1 "
            "ORDER BY queued_at DESC LIMIT ?)",
            (keep,),
        ).fetchall()
        found = []
        for (text,) in rows:
            try:
                data = json.loads(text)
            except ValueError:
                continue  # a record this version cannot read is skipped, not fatal
            if isinstance(data, dict) and isinstance(data.get("id"), str):
                found.append(data)
        return iter(sorted(found, key=lambda d: float(d.get("queued_at") or 0)))

    def prune(self, keep: int) -> None:
        """Drop finished records beyond the newest `keep`."""
        self._db.execute(
            "DELETE FROM records WHERE terminal = 1 AND id NOT IN "
            "(SELECT id FROM records WHERE terminal = 1 ORDER BY queued_at DESC LIMIT ?)",
            (keep,),
        )


def lost_message(data: dict[str, Any]) -> str:
    """What a job that did not end before the restart is reported as."""
    where = []
    if data.get("server"):
        where.append(f"on {data['server']}")
    if data.get("prompt_id"):
        where.append(f"as prompt {data['prompt_id']}")
    place = f" ({' '.join(where)})" if where else ""
    return (
        f"lost: the dispatcher stopped while this job was {data.get('state', 'queued')}{place}. "
        "Run it again: a repeated request attaches to its prompt if the server still has it"
    )
