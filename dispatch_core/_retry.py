"""Which failures are worth another try, and how long to wait before it: decided here only.

A job is safe to try again because every step is idempotent: uploads of the same bytes
reuse the same name, a prompt carries the id we minted (asked for before resubmitting),
and history and file reads change nothing. The caller's own errors (`node_errors`,
`execution_error`) are never retried: they would fail the same way.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .errors import BadResponse, DispatchError, PeerUnreachable, PromptLost

T = TypeVar("T")

_TRANSIENT_STATUS = {502, 503, 504}
_BASE_DELAY = 0.1
_MAX_DELAY = 5.0


def is_transient(error: BaseException) -> bool:
    """A broken connection, a gateway error, or a peer that lost the prompt."""
    if isinstance(error, (PeerUnreachable, PromptLost)):
        return True
    return isinstance(error, BadResponse) and error.status in _TRANSIENT_STATUS


def counts_against_server(error: DispatchError) -> bool:
    """Failures that say the server itself is unwell (a lost prompt only says it restarted)."""
    return is_transient(error) and not isinstance(error, PromptLost)


def backoff(attempt: int, *, rng: random.Random | None = None) -> float:
    """Exponential with full jitter between half and one and a half of the step."""
    step = min(_MAX_DELAY, _BASE_DELAY * 2**attempt)
    return step * (rng or random).uniform(0.5, 1.5)


async def with_retries(call: Callable[[], Awaitable[T]], *, attempts: int = 5) -> T:
    """Run an idempotent call again after transient failures, backing off in between."""
    for attempt in range(attempts - 1):
        try:
            return await call()
        except DispatchError as error:
            if not is_transient(error):
                raise
        await asyncio.sleep(backoff(attempt))
    return await call()
