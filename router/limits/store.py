"""The connection to Redis behind `RedisLimits`: batched script calls, the
grants listener, and losing and finding Redis again.

Calls: every operation queued during one turn of the event loop goes out as
one EVALSHA of the limits script (`router.limits.lua`), pipelined on one
connection: a batch is written without waiting for the previous answer, and
answers come back in order. At concurrency 16 one round trip carries many
requests' operations. Operations whose answer nobody waits for (releases,
renewals) wait up to `SEND_DELAY` for the next batch instead of making one of
their own: at concurrency 1 a request's release rides with the next
request's acquisition, one write and one answer per request instead of two,
and another process's waiter hears of the freed slot at most that much
later. One connection also keeps the order of operations: a lease's renewal
can never overtake its release.

Grants: a second connection blocks on BLPOP of this process's grants list
(`{NS}:grants:PROCESS`), where a releasing process's script pushes
"ticket container" when it hands a slot to one of this process's waiters.
Why a blocking pop and not pub/sub or keyspace notifications: a pushed grant
stays in the list until this process pops it, even across a reconnect (a
published message sent while the subscriber reconnects is lost, and with it
the slot until its lease ran out); the grant is addressed to the one process
that waits, so no other process wakes for it; and it needs no server
configuration (keyspace notifications are off by default and often disabled
on managed Redis). One blocked connection per process, whatever the number
of containers and waiters.

Loss: a connection error, or a batch unanswered for `CALL_TIMEOUT`, marks the
store lost at once (every pending call fails with `StoreDown`), closes both
connections and tries again every `RECONNECT_INTERVAL`. The owner hears of
each transition once (`lost`, `found`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import structlog
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from router.limits.lua import HEARTBEAT, SCRIPT

log = structlog.get_logger("router.limits")

CONNECT_TIMEOUT = 1.0
CALL_TIMEOUT = 1.0  # a batch unanswered this long: Redis counts as lost (a hung server, a dead network)
RECONNECT_INTERVAL = 0.5
SEND_DELAY = 0.002  # the longest an unanswered operation (a release) waits for company
FAREWELL_TIMEOUT = 1.0

Arg = str | int | float
Op = tuple[Arg, ...]


class StoreDown(Exception):
    """Redis is unreachable (or was lost while the call waited)."""


class StoreEvents(Protocol):
    """What the store tells its owner."""

    def granted(self, ticket: str, container: str) -> None: ...

    def lost(self, error: str) -> None: ...

    def found(self) -> None: ...

    def renewals(self) -> list[Op]:
        """Operations to run every renewal period (leases held, waiters' containers to sweep)."""


def redacted(url: str) -> str:
    """The URL without its user and password."""
    parts = urlsplit(url)
    host = parts.hostname
    if host is None:  # unix:///path/to/socket
        return f"{parts.scheme}://{parts.path}"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc, query="", fragment="").geturl()


@dataclass(slots=True, eq=False)
class _Batch:
    argv: list[Arg]
    futures: list[asyncio.Future[int] | None]
    undo: list[Op | None]
    sent: float = 0.0


class RedisStore:
    def __init__(self, url: str, namespace: str, process: str, lease: float, events: StoreEvents) -> None:
        self.target = redacted(url)
        self.namespace = "{" + namespace + "}:"
        self.lease = lease
        self.events = events
        self.up = False
        self.since: float | None = None
        self.losses = 0
        self.last_error: str | None = None
        # the URL's options; connections are made and kept here, not pooled
        self._pool = ConnectionPool.from_url(
            url, socket_timeout=None, socket_connect_timeout=CONNECT_TIMEOUT, retry=Retry(NoBackoff(), 0)
        )
        self._sha = hashlib.sha1(SCRIPT.encode()).hexdigest()
        self._prefix: tuple[Arg, ...] = (self.namespace.rstrip(":"), self.namespace, process, round(lease * 1000))
        self._grants = f"{self.namespace}grants:{process}"
        self._conn: AbstractConnection | None = None
        self._listener: AbstractConnection | None = None
        self._argv: list[Arg] = []
        self._futures: list[asyncio.Future[int] | None] = []
        self._undo: list[Op | None] = []
        self._inflight: deque[_Batch] = deque()
        self._wake = asyncio.Event()
        self._delayed: asyncio.TimerHandle | None = None  # wakes the sender for unanswered operations
        self._watchdog: asyncio.TimerHandle | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reconnecting: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()  # connections being dropped after a loss
        self._closed = False

    # calls ------------------------------------------------------------------------------

    def call(self, op: Op, undo: Op | None = None) -> asyncio.Future[int]:
        """Run `op` in the next batch; its answer. `undo` runs when the answer was 1
        but nobody awaits it any more (the request was cancelled meanwhile)."""
        if not self.up:
            raise StoreDown(self.last_error or "not connected")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue(op, future, undo)
        return future

    def send(self, op: Op) -> None:
        """Run `op` in the next batch, answer unread; dropped while Redis is lost
        (what it would give back expires with its lease)."""
        if self.up:
            self._queue(op, None, None)

    def _queue(self, op: Op, future: asyncio.Future[int] | None, undo: Op | None) -> None:
        self._argv.extend(op)
        self._futures.append(future)
        self._undo.append(undo)
        if future is not None:
            self._wake.set()
        elif self._delayed is None and not self._wake.is_set():
            self._delayed = asyncio.get_running_loop().call_later(SEND_DELAY, self._wake.set)

    async def _sender(self, conn: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        wake = self._wake
        while True:
            await wake.wait()
            wake.clear()
            if self._delayed is not None:
                self._delayed.cancel()
                self._delayed = None
            if not self._futures:
                continue
            batch = _Batch(self._argv, self._futures, self._undo, loop.time())
            self._argv, self._futures, self._undo = [], [], []
            self._inflight.append(batch)
            if self._watchdog is None:
                self._watchdog = loop.call_at(batch.sent + CALL_TIMEOUT, self._check_overdue)
            try:
                await conn.send_packed_command(self._command("EVALSHA", self._sha, batch.argv), check_health=False)
            except (RedisError, OSError) as exc:
                self._lose(exc)
                return

    async def _reader(self, conn: AbstractConnection) -> None:
        inflight = self._inflight
        while True:
            try:
                try:
                    reply = await conn.read_response()
                except NoScriptError:
                    # Redis forgot the script (SCRIPT FLUSH, a failover): the batch goes again with its text
                    batch = inflight.popleft()
                    inflight.append(batch)
                    await conn.send_packed_command(self._command("EVAL", SCRIPT, batch.argv), check_health=False)
                    continue
            except (RedisError, OSError) as exc:
                self._lose(exc)
                return
            self._answer(inflight.popleft(), reply)

    def _command(self, command: str, script: str, argv: list[Arg]) -> bytes:
        """The RESP bytes of `command script 1 anchor header... argv...` (packed here: a batch
        has hundreds of arguments, all str, int or float)."""
        args = (command, script, 1, *self._prefix, *argv)
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg.encode() if isinstance(arg, str) else repr(arg).encode()
            parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
        return b"".join(parts)

    def _answer(self, batch: _Batch, reply: bytes) -> None:
        for future, undo, answer in zip(batch.futures, batch.undo, reply.split(), strict=True):
            if future is None:
                continue
            result = int(answer)
            if not future.done():
                future.set_result(result)
            elif undo is not None and result == 1:
                self.send(undo)

    def _check_overdue(self) -> None:
        self._watchdog = None
        if not self._inflight or not self.up:
            return
        loop = asyncio.get_running_loop()
        due = self._inflight[0].sent + CALL_TIMEOUT
        if loop.time() >= due:
            self._lose(TimeoutError(f"no answer within {CALL_TIMEOUT:g}s"))
        else:
            self._watchdog = loop.call_at(due, self._check_overdue)

    # grants ------------------------------------------------------------------------------

    async def _listen(self, conn: AbstractConnection) -> None:
        while True:
            try:
                await conn.send_command("BLPOP", self._grants, 0, check_health=False)
                reply = await conn.read_response()
            except (RedisError, OSError) as exc:
                self._lose(exc)
                return
            if reply:
                ticket, _, container = reply[1].decode().partition(" ")
                self.events.granted(ticket, container)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            for op in self.events.renewals():
                self.send(op)

    # connection state ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect now, or keep trying in the background (the owner serves meanwhile)."""
        if not await self._connect():
            self.since = time.time()
            self.losses += 1
            self.events.lost(self.last_error or "not connected")
            self._reconnecting = asyncio.create_task(self._reconnect(), name="limits-reconnect")

    async def _connect(self) -> bool:
        conn, listener = self._new_connection(), self._new_connection()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT + CALL_TIMEOUT):
                await conn.connect()  # type: ignore[no-untyped-call]
                await listener.connect()  # type: ignore[no-untyped-call]
                await conn.send_command("SCRIPT", "LOAD", SCRIPT, check_health=False)
                await conn.read_response()
                # alive before the first ticket can be queued
                await conn.send_command("EVALSHA", self._sha, 1, *self._prefix, HEARTBEAT, check_health=False)
                await conn.read_response()
        except (RedisError, OSError, TimeoutError) as exc:
            self.last_error = _describe(exc)
            await _close(conn, listener)
            return False
        self._conn, self._listener = conn, listener
        self.up = True
        self.since = time.time()
        self._tasks = [
            asyncio.create_task(self._reader(conn), name="limits-reader"),
            asyncio.create_task(self._sender(conn), name="limits-sender"),
            asyncio.create_task(self._listen(listener), name="limits-grants"),
            asyncio.create_task(self._renew(), name="limits-renew"),
        ]
        return True

    def _new_connection(self) -> AbstractConnection:
        connection: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        return connection

    def _lose(self, exc: BaseException) -> None:
        if not self.up:
            return
        self.up = False
        self.since = time.time()
        self.losses += 1
        self.last_error = _describe(exc)
        self._stop_timers()
        lost = StoreDown(self.last_error)
        pending = [*self._inflight, _Batch(self._argv, self._futures, self._undo)]
        self._inflight.clear()
        self._argv, self._futures, self._undo = [], [], []
        for batch in pending:
            for future in batch.futures:
                if future is not None and not future.done():
                    future.set_exception(lost)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._tasks = []
        conns = [c for c in (self._conn, self._listener) if c is not None]
        self._conn = self._listener = None
        closing = asyncio.get_running_loop().create_task(_close(*conns))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        self.events.lost(self.last_error)
        if not self._closed:
            self._reconnecting = asyncio.create_task(self._reconnect(), name="limits-reconnect")

    def _stop_timers(self) -> None:
        for timer in (self._watchdog, self._delayed):
            if timer is not None:
                timer.cancel()
        self._watchdog = self._delayed = None

    async def _reconnect(self) -> None:
        while not self._closed:
            await asyncio.sleep(RECONNECT_INTERVAL)
            if await self._connect():
                self._reconnecting = None
                self.events.found()
                return

    async def close(self, farewell: list[Op]) -> None:
        """Run `farewell` (what this process gives back) when connected, then disconnect."""
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self.up and farewell:
            futures = [self.call(op) for op in farewell]
            try:
                async with asyncio.timeout(FAREWELL_TIMEOUT):
                    await asyncio.gather(*futures)
            except (StoreDown, TimeoutError):
                pass
        self.up = False
        self._stop_timers()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await _close(*(c for c in (self._conn, self._listener) if c is not None))
        self._conn = self._listener = None


async def _close(*conns: AbstractConnection) -> None:
    for conn in conns:
        try:
            await conn.disconnect(nowait=True)
        except (RedisError, OSError):
            pass


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"


__all__ = ["Op", "RedisStore", "StoreDown", "StoreEvents", "redacted"]
