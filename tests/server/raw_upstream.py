"""A raw asyncio HTTP/1.1 server on loopback that writes exactly the bytes a
test tells it to: the misbehaving container that a real HTTP server library
would never impersonate (1xx before the answer, answers nobody asked for,
oversized heads, a connection dropped mid-request).

    async def script(exchange: Exchange) -> None:
        exchange.write(answer(exchange.request_id.encode()))

    async with RawUpstream(script) as upstream:
        ... upstream.url, upstream.exchanges, upstream.connections ...

The script runs once per request read. A request's body the script left
unread is read before the next request on its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType


def answer(body: bytes, *, status: str = "200 OK", headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A whole keep-alive answer with a Content-Length."""
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json", *(f"{n}: {v}" for n, v in headers), f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def chunked(*chunks: bytes, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A whole answer with chunked transfer encoding."""
    head = ["HTTP/1.1 200 OK", "Content-Type: application/x-ndjson", *(f"{n}: {v}" for n, v in headers), "Transfer-Encoding: chunked"]
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Connection:
    number: int  # 1 for the first connection the server accepted
    writer: asyncio.StreamWriter
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # closed: by the client (EOF, reset) or the script


@dataclass
class Exchange:
    """One request as the server read it, and the way to answer it."""

    connection: Connection
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    reader: asyncio.StreamReader
    body_read: bool = False

    @property
    def request_id(self) -> str:
        return self.headers.get("x-request-id", "")

    @property
    def length(self) -> int:
        return int(self.headers.get("content-length", "0"))

    async def body(self) -> bytes:
        self.body_read = True
        return await self.reader.readexactly(self.length)

    def write(self, data: bytes) -> None:
        self.connection.writer.write(data)

    async def drain(self) -> None:
        await self.connection.writer.drain()

    def close(self) -> None:
        self.connection.writer.close()


Script = Callable[[Exchange], Awaitable[None]]


class RawUpstream:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections: list[Connection] = []
        self.exchanges: list[Exchange] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        for connection in self.connections:
            connection.writer.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        connection = Connection(len(self.connections) + 1, writer)
        self.connections.append(connection)
        try:
            while not writer.is_closing():
                head = await reader.readuntil(b"\r\n\r\n")
                exchange = _parse(connection, reader, head)
                self.exchanges.append(exchange)
                await self.script(exchange)
                if not exchange.body_read and not writer.is_closing():
                    await exchange.body()
            await reader.read()  # closed by the script: until the client closes too
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass  # stopped by __aexit__; not re-raised: asyncio's server logs a cancelled handler as an error
        finally:
            connection.ended.set()
            writer.close()
            self._handlers.discard(task)


def _parse(connection: Connection, reader: asyncio.StreamReader, head: bytes) -> Exchange:
    request_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    method, path, _ = request_line.split(" ", 2)
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Exchange(connection, method, path, headers, reader)


def ollama_like(generate: Script, version: str = "0.12.6") -> Script:
    """Enough of Ollama (of `version`) for the router's probes; `generate` answers every POST."""
    probes = {
        "/": b"Ollama is running",
        "/api/version": b'{"version":"%s"}' % version.encode(),
        "/api/ps": b'{"models":[]}',
        "/api/tags": b'{"models":[]}',
    }

    async def script(exchange: Exchange) -> None:
        if exchange.method == "GET":
            exchange.write(answer(probes.get(exchange.path, b"{}")))
        else:
            await generate(exchange)

    return script


async def ended(connection: Connection, timeout: float = 5.0) -> bool:
    """Whether the client closed `connection` within `timeout` seconds."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(connection.ended.wait(), timeout)
    return connection.ended.is_set()
