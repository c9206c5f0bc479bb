"""A lean keep-alive HTTP/1.1 client for the proxy's one kind of request.

The hot path sends one POST per request to a container and streams the answer
back. aiohttp's ClientSession does that with a generic request pipeline
(URL handling, header merging, payload registry, tracing, timers) that cost
about a quarter of the router's CPU per request under py-spy. This client
does only what the proxy needs: a pool of keep-alive connections per
container, the request written in one `write`, the answer parsed by llhttp
(httptools) with its body handed over as it arrives.

Its response duck-types the parts of `aiohttp.ClientResponse` the proxy uses
(`status`, `headers`, `content_length`, `content.iter_any()`, `read()`,
`release()`, `close()`), and its failures are aiohttp's exception types, so the
proxy's retry and stream-failure handling read the same either way. Health
probes, keep-warm and the merged listings keep using aiohttp.

One answer per request, never another's: informational answers (1xx) are
skipped, a 101 fails the attempt, and a connection that receives a byte it
did not ask for (idle in the pool, or after its answer ended) is closed. What
no HTTP/1.1 client can tell apart remains: bytes sent after the next request
went out on the connection read as that request's answer.
"""

from __future__ import annotations

import asyncio
import select
import ssl
from collections.abc import AsyncIterable, AsyncIterator

import aiohttp
import httptools
from multidict import CIMultiDict
from yarl import URL

HIGH_WATER = 256 * 1024  # buffered body bytes at which reading from the container pauses
JSON_TYPE = b"application/json"
MAX_IDLE = 256  # idle keep-alive connections kept per container
BIG_BODY = 64 * 1024  # request bodies above this are written without being copied into the head
IDLE_TIMEOUT = 60.0  # seconds an idle connection is kept (aiohttp's keepalive_timeout in the session)
# An answer's head, 1xx answers before it included. Ollama's heads are a few
# hundred bytes in under ten headers. For comparison: aiohttp's client takes
# 128 headers of up to 8,190 bytes each, Apache 100 fields (LimitRequestField),
# Node 16 KiB in all, nginx an upstream head of 4-8 KiB (proxy_buffer_size).
# 100 headers and 64 KiB keep any real answer well inside and a hostile one small.
MAX_HEADERS = 100
MAX_HEAD_BYTES = 64 * 1024

# Never passed from a container's answer to the client: hop-by-hop (RFC 9110
# 7.6.1), plus what the router's own response sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "date",
        "server",
    }
)


class ConnectFailed(aiohttp.ClientConnectionError):
    """Cannot open a connection to the container (refused, unreachable, timed out)."""

    def __init__(self, os_error: OSError | TimeoutError) -> None:
        super().__init__(str(os_error))
        self.os_error = os_error


class InvalidAnswer(aiohttp.ClientPayloadError):
    """The container's answer breaks HTTP or the limits above: the attempt fails
    like any bad upstream answer, and its connection is closed."""


class UpstreamResponse:
    """The status and headers of a container's answer, and its body as it arrives."""

    __slots__ = (
        "_chunks", "_conn", "_error", "_idle", "_idle_timer", "_size", "_waiter", "_waiting_since", "complete",
        "content_length", "headers", "keep_alive", "status",
    )

    def __init__(self, conn: UpstreamConnection, status: int, headers: CIMultiDict[str], keep_alive: bool) -> None:
        self._conn = conn
        self._chunks: list[bytes] = []
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._idle = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._waiting_since = 0.0
        self.complete = False
        self.status = status
        self.headers = headers
        self.keep_alive = keep_alive
        length = headers.get("Content-Length")
        self.content_length = int(length) if length is not None and length.isdigit() else None

    # what the proxy reads ---------------------------------------------------

    @property
    def content(self) -> UpstreamResponse:
        return self

    def iter_any(self) -> AsyncIterator[bytes]:
        return self

    def __aiter__(self) -> UpstreamResponse:
        return self

    async def __anext__(self) -> bytes:
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self.complete:
                raise StopAsyncIteration
            loop = self._conn.loop
            self._waiter = loop.create_future()
            if self._idle_timer is not None:
                self._waiting_since = loop.time()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if self._size >= HIGH_WATER:
            self._conn.resume()
        self._size = 0
        return data

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self])

    def limit_idle(self, seconds: float) -> None:
        """Fail the body with TimeoutError (and drop the connection) once the reader has
        waited `seconds` for a byte. Time the reader spends elsewhere (writing to a slow
        client) does not count. One timer per `seconds`, not one per chunk: a stream
        sends thousands of chunks, and re-arming a timer for each costs more than the rest
        of the chunk's way through the router."""
        self._idle = seconds
        if self._idle_timer is None and not self.complete:
            self._waiting_since = self._conn.loop.time()
            self._idle_timer = self._conn.loop.call_at(self._waiting_since + seconds, self._check_idle)

    def _check_idle(self) -> None:
        self._idle_timer = None
        if self.complete or self._error is not None:
            return
        loop = self._conn.loop
        now = loop.time()
        if self._waiter is None:  # not waiting for the container now
            due = now + self._idle
        else:
            due = self._waiting_since + self._idle
            if now >= due:
                self._fail(TimeoutError(f"no bytes from the container for {self._idle:g}s"))
                self._conn.close()
                return
        self._idle_timer = loop.call_at(due, self._check_idle)

    def release(self) -> None:
        """Back to the pool when the answer ended cleanly, else the connection closes."""
        self._stop_idle_timer()
        self._conn.pool.release(self._conn, reusable=self.complete and self.keep_alive and self._error is None)

    def close(self) -> None:
        """Drop the connection (a client left: the container stops generating)."""
        self._stop_idle_timer()
        self._conn.close()

    def _stop_idle_timer(self) -> None:
        timer = self._idle_timer
        if timer is not None:
            self._idle_timer = None
            timer.cancel()

    # fed by the connection ----------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size >= HIGH_WATER:
            self._conn.pause()
        self._wake()

    def _finish(self) -> None:
        self.complete = True
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if not self.complete and self._error is None:
            self._error = exc
            self._wake()


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to a container; one request at a time."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.response: UpstreamResponse | None = None
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._headers: list[tuple[str, str]] = []
        self._paused = False
        # From writing a request until its final answer's head is complete;
        # outside it, a new message is one nobody asked for.
        self._awaiting_answer = False
        self._head_read = 0  # bytes read while awaiting the answer
        self._header_bytes = 0  # names and values of the answer's headers, 1xx included
        self._poller: select.poll | None = None
        self._drained: asyncio.Future[None] | None = None  # set while the transport's write buffer is full

    async def request(self, data: bytes | list[bytes], deadline: float | None) -> UpstreamResponse:
        """Send a whole request; the answer once its headers arrived, or TimeoutError
        at `deadline` (loop time). A timer handle, not `asyncio.timeout`: this runs
        on every request and the handle is a fraction of the cost.

        ServerDisconnectedError only when the connection ended before any byte
        of the answer arrived: the one case a stale keep-alive connection can
        be told from a container that failed on the request."""
        if self.closed or self.transport is None:
            raise aiohttp.ServerDisconnectedError()
        self.response = None
        self._awaiting_answer = True
        self._head_read = self._header_bytes = 0
        waiter: asyncio.Future[UpstreamResponse] = self.loop.create_future()
        self._waiter = waiter
        timer = self.loop.call_at(deadline, self._expire) if deadline is not None else None
        if isinstance(data, list):
            self.transport.writelines(data)
        else:
            self.transport.write(data)
        try:
            return await waiter
        except BaseException:
            self.close()  # timed out, cancelled or a bad answer mid-request: the connection is in an unknown state
            raise
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def upload(
        self, head: bytes, rest: AsyncIterable[bytes], chunked: bool, timeout: float | None
    ) -> UpstreamResponse:
        """Send a request whose body is still arriving: `head` (the request head and the
        body's beginning), then each piece of `rest` as it comes, at the pace the
        container reads it; the answer once its headers arrived, or TimeoutError
        `timeout` seconds after the body was sent. A container that answers or fails
        before the body ended stops the sending."""
        if self.closed or self.transport is None:
            raise aiohttp.ServerDisconnectedError()
        transport = self.transport
        self.response = None
        self._awaiting_answer = True
        self._head_read = self._header_bytes = 0
        waiter: asyncio.Future[UpstreamResponse] = self.loop.create_future()
        self._waiter = waiter
        timer = None
        sent_all = False
        try:
            transport.write(head)
            async for piece in rest:
                if waiter.done():
                    break
                if piece:
                    transport.write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
                    await self._drain(waiter)
            else:
                sent_all = not waiter.done()
                if chunked and sent_all:
                    transport.write(b"0\r\n\r\n")
            if timeout is not None:
                timer = self.loop.call_later(timeout, self._expire)
            response = await waiter
            if not sent_all:
                response.keep_alive = False  # what is left of the request would be read as the next one
            return response
        except BaseException:
            self.close()  # the request is unfinished or its answer unread: the connection is of no further use
            raise
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def _drain(self, waiter: asyncio.Future[UpstreamResponse]) -> None:
        """Until the transport's write buffer is below its high-water mark, or the answer (or a failure) came."""
        drained = self._drained
        if drained is not None:
            await asyncio.wait((drained, waiter), return_when=asyncio.FIRST_COMPLETED)

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = self.loop.create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _expire(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())

    def pause(self) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    @property
    def paused(self) -> bool:
        return self._paused

    def has_unread_bytes(self) -> bool:
        """Whether the kernel holds bytes (or the end of the connection) that the
        event loop has not read yet: on an idle connection, nothing it asked for.
        One poll(2) with no wait, as urllib3 checks a pooled connection before reuse."""
        poller = self._poller
        return poller is not None and bool(poller.poll(0))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        self.pool.forget(self)

    # asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._poller = select.poll()
            self._poller.register(sock.fileno(), select.POLLIN)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_answer:
            self._head_received(data)
            return
        # The body, the hot path: nothing is counted here. Bytes after the
        # answer's end, or on an idle connection, start a message that
        # on_message_begin refuses.
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._parse_failed(exc)

    def _head_received(self, data: bytes) -> None:
        self._head_read += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._parse_failed(exc)
            return
        if self._awaiting_answer and self._head_read > MAX_HEAD_BYTES:  # every byte so far was head
            self._fail(InvalidAnswer(f"the container's answer head exceeds {MAX_HEAD_BYTES} bytes"))

    def _parse_failed(self, exc: httptools.HttpParserError) -> None:
        cause = exc.__context__  # what a callback raised, when one did
        self._fail(cause if isinstance(cause, InvalidAnswer) else InvalidAnswer(f"invalid HTTP from the container: {exc}"))

    def _fail(self, exc: Exception) -> None:
        self._broken(exc)
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.resume_writing()
        response = self.response
        if response is None:
            failure: Exception = (
                aiohttp.ServerDisconnectedError() if self._head_read == 0
                else aiohttp.ClientPayloadError("the container closed the connection mid-answer")
            )
        else:
            failure = aiohttp.ClientPayloadError("the container closed the connection mid-answer")
            if not response.complete and _delimited_by_close(response):
                response.keep_alive = False
                response._finish()
        self._broken(failure)
        self.pool.forget(self)

    def _broken(self, exc: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        elif self.response is not None:
            self.response._fail(exc)

    # httptools callbacks (what they raise, feed_data raises as the context of an HttpParserError)

    def on_message_begin(self) -> None:
        if not self._awaiting_answer:
            raise InvalidAnswer("the container sent an answer nobody asked for")
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        self._header_bytes += len(name) + len(value)
        if len(headers) >= MAX_HEADERS or self._header_bytes > MAX_HEAD_BYTES:
            raise InvalidAnswer(f"the container's answer has over {MAX_HEADERS} headers or {MAX_HEAD_BYTES} bytes of them")
        headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        if status < 200:
            if status == 101:
                raise InvalidAnswer("the container switched protocols (101) on a POST")
            return  # informational (100 Continue, 103 Early Hints): the answer follows
        self._awaiting_answer = False
        response = self.response = UpstreamResponse(self, status, CIMultiDict(self._headers), parser.should_keep_alive())
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response._feed(body)

    def on_message_complete(self) -> None:
        if self.response is not None:  # None: an informational answer ended
            self.response._finish()


def end_to_end_headers(headers: CIMultiDict[str]) -> list[tuple[str, str]]:
    """The headers of a container's answer that reach the client: neither
    hop-by-hop nor named in its `Connection` header (RFC 9110 7.6.1)."""
    dropped = HOP_BY_HOP
    named = headers.getall("Connection", None)
    if named:
        dropped = dropped | {token.strip().lower() for value in named for token in value.split(",")}
    return [(name, value) for name, value in headers.items() if name.lower() not in dropped]


def _delimited_by_close(response: UpstreamResponse) -> bool:
    """An answer with neither Content-Length nor chunked encoding ends when the connection does."""
    return response.content_length is None and "chunked" not in response.headers.get("Transfer-Encoding", "").lower()


class UpstreamPool:
    """Keep-alive connections to one container (`url`: http or https)."""

    def __init__(self, url: str, *, connect_timeout: float, idle_timeout: float = IDLE_TIMEOUT) -> None:
        parsed = URL(url)
        self.loop = asyncio.get_running_loop()
        self.host = parsed.host or "127.0.0.1"
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if parsed.scheme == "https" else None
        self.base_path = parsed.raw_path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self._host_header = parsed.raw_authority.encode("ascii")
        self._heads: dict[str, bytes] = {}
        self._idle: list[UpstreamConnection] = []  # oldest first: released at the end, reused from the end
        self._all: set[UpstreamConnection] = set()
        self._sweeper: asyncio.TimerHandle | None = None  # closes connections idle too long

    def _head(self, path: str, content_type: bytes = JSON_TYPE) -> bytes:
        head = self._heads.get(path) if content_type is JSON_TYPE else None
        if head is None:
            raw_path = self.base_path + URL.build(path=path).raw_path
            head = (
                b"POST " + raw_path.encode("ascii") + b" HTTP/1.1\r\nHost: " + self._host_header
                + b"\r\nAccept: */*\r\nContent-Type: " + content_type + b"\r\n"
            )
            if content_type is JSON_TYPE:
                self._heads[path] = head
        return head

    async def post(self, path: str, body: bytes, request_id: str, timeout: float | None = None) -> UpstreamResponse:
        """POST `body` (JSON) to `path`; the answer once its headers arrived.

        `timeout`: seconds to the answer's headers, connecting included (TimeoutError).
        Sent twice only when a connection from the pool turns out closed before
        any byte of its answer: the container had dropped it while idle. A fresh
        connection's failure is never retried: the container may have crashed
        on this very request, and a second copy could crash it again.
        """
        deadline = self.loop.time() + timeout if timeout else None
        head = b"".join((
            self._head(path), b"X-Request-Id: ", request_id.encode(), b"\r\nContent-Length: ",
            str(len(body)).encode(), b"\r\n\r\n",
        ))
        data = head + body if len(body) <= BIG_BODY else [head, body]  # one write; no copy of a big body
        conn = self._take_idle()
        if conn is not None:
            try:
                return await conn.request(data, deadline)
            except aiohttp.ServerDisconnectedError:
                pass  # stale keep-alive: once more, on a new connection
        if deadline is None:
            conn = await self._connect()
        else:
            async with asyncio.timeout_at(deadline):
                conn = await self._connect()
        return await conn.request(data, deadline)

    async def post_upload(
        self,
        path: str,
        content_type: str,
        body: bytes,
        rest: AsyncIterable[bytes],
        length: int | None,
        request_id: str,
        timeout: float | None = None,
    ) -> UpstreamResponse:
        """POST a body that is still arriving from the client: `body`, then `rest`;
        `length` is the whole body's (else it is sent chunked). Always on a new
        connection: a stale keep-alive one could fail after part of `rest` was
        read, which cannot be read again. `timeout`: seconds from connecting to the
        answer's headers, the time to send the body left out."""
        if not content_type.isascii() or any(c in content_type for c in "\r\n"):
            raise ValueError("content type with a line break or a non-ASCII character")
        framing = b"Content-Length: %d\r\n" % length if length is not None else b"Transfer-Encoding: chunked\r\n"
        head = b"".join((self._head(path, content_type.encode()), b"X-Request-Id: ", request_id.encode(), b"\r\n", framing, b"\r\n"))
        if length is None and body:
            body = b"%x\r\n%b\r\n" % (len(body), body)
        started = self.loop.time()
        if timeout is None:
            conn = await self._connect()
        else:
            async with asyncio.timeout(timeout):
                conn = await self._connect()
        remaining = None if timeout is None else max(0.0, timeout - (self.loop.time() - started))
        return await conn.upload(head + body, rest, length is None, remaining)

    def _take_idle(self) -> UpstreamConnection | None:
        idle = self._idle
        now = self.loop.time()
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if now - conn.idle_since > self.idle_timeout or conn.has_unread_bytes():
                conn.close()
                continue
            return conn
        return None

    async def _connect(self) -> UpstreamConnection:
        try:
            async with asyncio.timeout(self.connect_timeout or None):
                _, conn = await self.loop.create_connection(
                    lambda: UpstreamConnection(self), self.host, self.port, ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
        except (OSError, TimeoutError) as exc:
            raise ConnectFailed(exc) from None
        self._all.add(conn)
        return conn

    def release(self, conn: UpstreamConnection, *, reusable: bool) -> None:
        # A paused connection (an answer left unread past the high-water mark)
        # has not read what followed its answer: never reused.
        if reusable and not conn.closed and not conn.paused and len(self._idle) < MAX_IDLE:
            conn.response = None
            conn.idle_since = self.loop.time()
            self._idle.append(conn)
            if self._sweeper is None:
                self._sweeper = self.loop.call_at(conn.idle_since + self.idle_timeout, self._sweep)
        else:
            conn.close()

    def _sweep(self) -> None:
        """Close the connections idle for `idle_timeout`; wake again when the next one will be.
        One timer per pool, armed only while connections sit idle."""
        self._sweeper = None
        cutoff = self.loop.time() - self.idle_timeout
        kept = []
        for conn in self._idle:
            if conn.idle_since <= cutoff:
                conn.close()
            elif not conn.closed:  # (closed by the container meanwhile: forgotten)
                kept.append(conn)
        self._idle = kept
        if kept:
            self._sweeper = self.loop.call_at(kept[0].idle_since + self.idle_timeout, self._sweep)

    def forget(self, conn: UpstreamConnection) -> None:
        self._all.discard(conn)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._all):
            conn.close()
        self._idle.clear()


__all__ = ["HOP_BY_HOP", "ConnectFailed", "InvalidAnswer", "UpstreamPool", "UpstreamResponse", "end_to_end_headers"]
