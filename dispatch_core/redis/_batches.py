"""A step many callers take at once, sent to Redis together.

A burst of submissions (a batch of jobs, `run_parallel`, a client queueing a hundred
prompts) queues each job with its own ENQUEUE. Sent one by one, each is a round trip and
a reply read by a task of its own, in the same loop that drives the peers. `Batched`
sends one script's calls as they come while none is on its way, and gathers those made
meanwhile into the next pipeline: one write, one round trip, each caller handed its own
answer (or its own error). A call made alone goes alone, one loop turn later than it would
have; a call made during a burst waits at most for the pipeline before it.

Each script is safe to run again (see `_scripts`), so a pipeline that the client sends
again after a cut connection does no harm; calls that Redis refuses because it restarted
and forgot the script are sent again once it is loaded.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import NoScriptError

__all__ = ["Batched"]

MOST = 100
"""Calls a pipeline carries at most: the first jobs of a burst of thousands are queued,
and taken, while the others are still on their way."""

Call = tuple[list[Any], "asyncio.Future[Any]"]


class Batched:
    """One script's calls, pipelined: those made while a pipeline is on its way go in
    the next."""

    def __init__(self, client: Any, script: Any):
        self.client = client
        """The counted client (see `_coordination._Counted`): a pipeline is one trip."""
        self.script = script
        self._gathering: list[Call] = []
        self._sender: asyncio.Task[None] | None = None

    async def __call__(self, args: list[Any]) -> Any:
        """The script's answer to `args`, sent with the calls made at the same time."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._gathering.append((args, future))
        if self._sender is None:  # it starts next turn: the calls of this turn go with it
            self._sender = asyncio.create_task(self._send_gathered(), name="redis-batch")
        return await future

    async def close(self) -> None:
        """Stop the pipeline on its way; its callers and those gathered are cancelled."""
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
        for _, future in self._gathering:
            future.cancel()
        self._gathering = []

    async def _send_gathered(self) -> None:
        try:
            while self._gathering:
                calls = [(args, f) for args, f in self._gathering[:MOST] if not f.done()]
                del self._gathering[:MOST]  # calls made from here on go in a next pipeline
                if calls:
                    await self._send(calls)
        finally:
            self._sender = None

    async def _send(self, calls: list[Call]) -> None:
        try:
            answers = await self._answers([args for args, _ in calls])
        except asyncio.CancelledError:
            for _, future in calls:
                future.cancel()
            raise
        except Exception as error:  # Redis unreachable: every caller hears it
            answers = [error] * len(calls)
        for (_, future), answer in zip(calls, answers, strict=True):
            if future.done():
                continue  # its caller gave up meanwhile
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)

    async def _answers(self, calls: list[list[Any]], *, loaded: bool = False) -> list[Any]:
        if len(calls) == 1:
            return [await self.script(args=calls[0])]
        async with self.client.pipeline(transaction=False) as pipe:
            for args in calls:
                pipe.evalsha(self.script.sha, 0, *args)
            answers = list(await pipe.execute(raise_on_error=False))
        self.client.round_trips += 1
        again = [i for i, a in enumerate(answers) if isinstance(a, NoScriptError)]
        if again and not loaded:  # a Redis new or restarted: the script loads, once
            await self.client.script_load(self.script.script)
            sent = await self._answers([calls[i] for i in again], loaded=True)
            for i, answer in zip(again, sent, strict=True):
                answers[i] = answer
        return answers
