"""The queue's steps (its Lua scripts) sent on connections of their own, pipelined.

Every job runs a script or two (ENQUEUE, then FINISH, which takes the next job). Through
redis-py's client each one takes a connection from its pool, runs inside its retry and
its timeouts, tells its observers and gives the connection back: measured, about three
times the CPU of the round trip itself, on the same cores that run the peers. A `Link` is
one connection, opened by the client's own pool (so with the same address, password, TLS
and database), whose replies hiredis reads straight from the socket: the calls made in
one turn of the loop go out in one write, and each caller is handed its own reply, in
order. At most `most` calls are on their way at once: the calls of a burst past that
wait here until those on their way are answered, then the next `most` go out together
(the first jobs of a burst of thousands are queued, and taken, while the others wait).

A call cut off with its connection (Redis restarted) is sent again on a new one, a few
times: every script is safe to run again (see `_scripts`). Each connection loads the
link's scripts as it opens, before any call goes on it (a burst of calls refused by a
Redis new or restarted would each load them again); a script that Redis forgot all the
same (`SCRIPT FLUSH`) is loaded again and run. A call without a reply for `timeout` seconds fails
with every call on its way, and the connection is opened again for the next.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from typing import Any

import hiredis
import redis
from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError, DataError, NoScriptError, ResponseError, TimeoutError

__all__ = ["Link", "LinkedScript"]

RETRIES = 3
"""Times a call cut off with its connection is sent again (as redis-py's `Retry` did)."""

Call = tuple[bytes, "asyncio.Future[Any]"]


def pack(args: tuple[Any, ...]) -> bytes:
    """A command as Redis reads it (RESP): text, bytes and numbers, as redis-py packs
    them, without its encoder's checks for memoryviews and other encodings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, int | float) and not isinstance(arg, bool):
            data = repr(arg).encode()
        else:
            raise DataError(f"a Redis argument cannot be {type(arg).__name__}: {arg!r}")
        out += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(out)


def _error(text: str) -> ResponseError:
    """A Redis error reply as redis-py raises it (a script Redis forgot: `NoScriptError`)."""
    return NoScriptError(text) if text.startswith("NOSCRIPT") else ResponseError(text)


class _Replies(asyncio.Protocol):
    """The connection's bytes read by hiredis; each reply to the oldest call on its way."""

    def __init__(self, link: Link, stream: asyncio.BaseProtocol):
        self.link = link
        self.stream = stream
        """redis-py's own protocol for the socket, told when it closes (its connection
        waits for that to say it closed)."""
        self.reader = hiredis.Reader(replyError=_error)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self.link.replied(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.lost(self, exc)
        self.stream.connection_lost(exc)


class Link:
    """One pipelined connection for the queue's scripts (see the module's docstring)."""

    def __init__(
        self, pool: ConnectionPool, *, gather: bool = True, most: int = 100, timeout: float = 10.0
    ):
        self.pool = pool
        self.gather = gather
        """Whether the calls made in one turn of the loop wait for its end, to go out in
        one write; else each goes at once (a job's end: its server waits for the next)."""
        self.most = most
        self.timeout = timeout
        self.round_trips = 0
        """Writes sent, each with every call made at once: for the round trips per job."""
        self.scripts: list[str] = []
        """The Lua scripts run on this link, loaded by each connection as it opens."""
        self._connection: AbstractConnection | None = None
        self._transport: asyncio.WriteTransport | None = None
        self._replies: _Replies | None = None
        self._opening: asyncio.Future[None] | None = None
        self._on_way: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._waiting: collections.deque[Call] = collections.deque()
        self._out: list[bytes] = []
        self._progress = 0.0
        self._watch: asyncio.TimerHandle | None = None
        self._closed = False

    async def call(self, *args: Any) -> Any:
        """One command's reply, sent again on a new connection if it was cut off."""
        packed = pack(args)
        for attempt in range(RETRIES + 1):
            try:
                await self._open()
                return await self._send(packed)
            except (ConnectionError, TimeoutError, OSError):
                if attempt == RETRIES or self._closed:
                    raise
                await asyncio.sleep(min(0.05 * 2**attempt, 0.5))

    async def close(self) -> None:
        """Every call on its way fails, and none is sent from now on."""
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
            await asyncio.gather(self._opening, return_exceptions=True)
        self._lose(ConnectionError("the link to Redis was closed"))
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect(nowait=True)

    # -- the connection -------------------------------------------------------------------

    async def _open(self) -> None:
        """Connected, by the first caller; the callers meanwhile all wait for that one
        connection, and go on together once it is open (their calls in one write)."""
        if self._transport is not None:
            return
        if self._closed:
            raise ConnectionError("the link to Redis is closed")
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._connect())
            self._opening.add_done_callback(self._opened)
        await asyncio.shield(self._opening)

    def _opened(self, opening: asyncio.Future[None]) -> None:
        self._opening = None
        if not opening.cancelled():
            opening.exception()  # each caller waiting is raised it; retrieved here

    async def _connect(self) -> None:
        """A connection opened as the client opens one; its replies read here from now."""
        if self._connection is not None:  # the one lost before
            await self._connection.disconnect(nowait=True)
            self._connection = None
        connection = self.pool.make_connection()
        try:
            await connection.connect()
            await self._load(connection)
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
        writer = getattr(connection, "_writer", None)  # redis-py's stream, as it set it up
        if writer is None:  # redis-py 5 to 8 keep it there; a later one may not
            await connection.disconnect(nowait=True)
            raise ConnectionError(f"redis-py {redis.__version__} left no stream to read from")
        transport = writer.transport
        self._replies = _Replies(self, transport.get_protocol())
        transport.set_protocol(self._replies)
        self._connection, self._transport = connection, transport

    async def _load(self, connection: AbstractConnection) -> None:
        """The link's scripts loaded, in one write, on a connection just opened."""
        if not self.scripts:
            return
        loads = b"".join(pack(("SCRIPT", "LOAD", script)) for script in self.scripts)
        await connection.send_packed_command(loads, check_health=False)
        for _ in self.scripts:
            await connection.read_response()
        self.round_trips += 1

    def lost(self, replies: _Replies, exc: Exception | None) -> None:
        """The connection closed: every call on it fails (and its callers send it again)."""
        if replies is self._replies:
            self._lose(ConnectionError(f"the connection to Redis was lost: {exc or 'closed'}"))

    def _lose(self, error: Exception) -> None:
        self._transport = self._replies = None
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        calls = [f for f in self._on_way] + [f for _, f in self._waiting]
        self._on_way.clear()
        self._waiting.clear()
        self._out = []
        for future in calls:
            if not future.done():
                future.set_exception(error)

    # -- calls and replies ----------------------------------------------------------------

    def _send(self, packed: bytes) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        if len(self._on_way) >= self.most:
            self._waiting.append((packed, future))
        else:
            self._write(packed, future)
        return future

    def _write(self, packed: bytes, future: asyncio.Future[Any]) -> None:
        """Written now, or at the end of this turn of the loop with the calls made
        meanwhile (see `gather`)."""
        if not self._on_way:  # the wait for a reply starts now, not at the last one
            self._progress = asyncio.get_running_loop().time()
        self._on_way.append(future)
        self._out.append(packed)
        if not self.gather:
            self._flush()
        elif len(self._out) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        if not self._out or self._transport is None:
            return
        self._transport.writelines(self._out)
        self._out = []
        self.round_trips += 1
        if self._watch is None:
            self._watch = asyncio.get_running_loop().call_later(self.timeout, self._overdue)

    def replied(self, reply: Any) -> None:
        future = self._on_way.popleft()
        self._progress = asyncio.get_running_loop().time()
        if not future.done():  # its caller may have given up meanwhile
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
        if not self._on_way:  # the next `most` of a burst go out together
            while self._waiting and len(self._on_way) < self.most:
                packed, waiter = self._waiting.popleft()
                if not waiter.done():  # its caller gave up before it went: it never goes
                    self._write(packed, waiter)

    def _overdue(self) -> None:
        """No reply for `timeout` seconds to a call on its way: the connection is dead."""
        self._watch = None
        if not self._on_way or self._transport is None:
            return
        loop = asyncio.get_running_loop()
        left = self._progress + self.timeout - loop.time()
        if left > 0:
            self._watch = loop.call_later(left, self._overdue)
            return
        transport = self._transport
        self._lose(TimeoutError(f"no reply from Redis within {self.timeout:g} s"))
        transport.abort()


class LinkedScript:
    """A Lua script run with EVALSHA on a link, loaded again if Redis forgot it; called
    as redis-py's `AsyncScript` is."""

    def __init__(self, link: Link, script: str):
        self.link = link
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()
        link.scripts.append(script)

    async def __call__(self, *, args: list[Any]) -> Any:
        try:
            return await self.link.call("EVALSHA", self.sha, 0, *args)
        except NoScriptError:  # a Redis new or restarted
            await self.link.call("SCRIPT", "LOAD", self.script)
            return await self.link.call("EVALSHA", self.sha, 0, *args)
