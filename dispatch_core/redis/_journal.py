"""The journal every process shares: which request went to which server as which prompt.

The same three calls as the SQLite `Journal` (find, record, forget), on keys that expire
after `keep_days`: a request repeated through any process attaches to its prompt. With
Redis away, `find` fails the new job (QueueUnreachable); a record or a forget that cannot
be written is dropped: the prompt is on its peer already, and a repeat runs again.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from .._journal import JournalEntry
from ._wire import text

if TYPE_CHECKING:
    from ._coordination import RedisCoordination

__all__ = ["RedisJournal"]


class RedisJournal:
    """Journal entries in Redis, under `journal:{request hash}`."""

    def __init__(self, coordination: RedisCoordination, *, keep_days: float = 7.0):
        self.coordination = coordination
        self.keep_days = keep_days

    async def find(self, request_hash: str) -> JournalEntry | None:
        client = self.coordination.client
        try:
            found = None if client is None else await client.get(self._key(request_hash))
        except (RedisError, OSError) as error:
            raise self.coordination.unreachable(error) from None
        if not found:
            return None
        server, prompt_id, created = text(found).split("\n")
        return JournalEntry(request_hash, server, prompt_id, float(created))

    async def record(self, request_hash: str, server: str, prompt_id: str) -> None:
        client = self.coordination.client
        if client is not None:
            value = f"{server}\n{prompt_id}\n{time.time()}"
            with contextlib.suppress(RedisError, OSError):
                await client.set(self._key(request_hash), value, ex=int(self.keep_days * 86400))

    async def forget(self, request_hash: str) -> None:
        client = self.coordination.client
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.delete(self._key(request_hash))

    def _key(self, request_hash: str) -> str:
        return self.coordination.key("journal", request_hash)
