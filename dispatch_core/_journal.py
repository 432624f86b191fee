"""A journal of submitted jobs, so that the same request issued again is not computed again.

ComfyUI keeps finished prompts in its history, and our prompt ids are ours: knowing which
request went to which server as which prompt lets a repeated request (after the local
ComfyUI restarted, or a node ran again) attach to the prompt already running or finished
there. SQLite in one file; entries older than `keep_days` are pruned when it opens.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

__all__ = ["Journal", "JournalEntry", "Journals", "request_hash"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    request_hash TEXT PRIMARY KEY,
    server TEXT NOT NULL,
    prompt_id TEXT NOT NULL,
    created REAL NOT NULL
)
"""


@dataclass(frozen=True)
class JournalEntry:
    """Where a request was sent: the server and the prompt id it runs under there."""

    request_hash: str
    server: str
    prompt_id: str
    created: float


def request_hash(workflow_type: str, prompt: Mapping[str, Any], extra: Any = None) -> str:
    """The identity of a request: its route, its workflow and anything else that shapes it."""
    canonical = json.dumps([workflow_type, prompt, extra], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Journals(Protocol):
    """What the runner asks of a journal: this SQLite one, or a shared queue's."""

    async def find(self, request_hash: str) -> JournalEntry | None: ...

    async def record(self, request_hash: str, server: str, prompt_id: str) -> None: ...

    async def forget(self, request_hash: str) -> None: ...


class Journal:
    """Use as `async with Journal(path)`; pass it to `Dispatcher(config, journal=...)`."""

    def __init__(self, path: str | os.PathLike[str], *, keep_days: float = 7.0):
        self.path = Path(path).expanduser()
        self.keep_days = keep_days
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Journal:
        await self._call(self._open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._db is not None:
            await self._call(self._db.close)
            self._db = None

    async def find(self, request_hash: str) -> JournalEntry | None:
        row = await self._call(
            lambda: (
                self._conn()
                .execute(
                    "SELECT request_hash, server, prompt_id, created FROM jobs"
                    " WHERE request_hash = ?",
                    (request_hash,),
                )
                .fetchone()
            )
        )
        return None if row is None else JournalEntry(*row)

    async def record(self, request_hash: str, server: str, prompt_id: str) -> None:
        def write() -> None:
            with self._conn():
                self._conn().execute(
                    "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?)",
                    (request_hash, server, prompt_id, time.time()),
                )

        await self._call(write)

    async def forget(self, request_hash: str) -> None:
        def delete() -> None:
            with self._conn():
                self._conn().execute("DELETE FROM jobs WHERE request_hash = ?", (request_hash,))

        await self._call(delete)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(_SCHEMA)
        with db:
            db.execute(
                "DELETE FROM jobs WHERE created < ?", (time.time() - self.keep_days * 86400,)
            )
        self._db = db

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the journal is not open: use `async with Journal(path)`")
        return self._db

    async def _call(self, work: Callable[[], T]) -> T:
        """SQLite blocks: run it off the event loop, one call at a time."""
        async with self._lock:
            return await asyncio.to_thread(work)
