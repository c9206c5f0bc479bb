"""Idleness upstream, against raw upstreams that send exactly what a test says:
keep-alive connections left idle are closed on a timer, and an answer whose
container goes quiet ends after `stream_idle_timeout` (the router's client
waiting, never a slow client's reading, is what counts)."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from router.upstream.http1 import UpstreamPool
from tests.server.raw_upstream import Exchange, RawUpstream, answer, ended
from tests.server.support import router_before
from tests.server.test_upstream_protocol import ollama_like

PATH = "/api/generate"


def ndjson(text: str, done: bool) -> bytes:
    return orjson.dumps({"model": "m:1b", "created_at": "2025-01-01T00:00:00Z", "response": text, "done": done}) + b"\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"


async def test_an_idle_keep_alive_connection_is_closed_on_a_timer_without_the_pool_being_used_again() -> None:
    async def echo(exchange: Exchange) -> None:
        exchange.write(answer(exchange.request_id.encode()))

    async with RawUpstream(echo) as upstream:
        pool = UpstreamPool(upstream.url, connect_timeout=5, idle_timeout=0.3)
        try:
            for request_id in ("r1", "r2"):  # within the idle time: the same connection
                response = await pool.post(PATH, b"{}", request_id, timeout=5)
                assert await response.read() == request_id.encode()
                response.release()
            assert len(upstream.connections) == 1
            assert await ended(upstream.connections[0], timeout=10)  # closed by the pool's own timer
            response = await pool.post(PATH, b"{}", "r3", timeout=5)  # a new connection, no retry needed
            assert await response.read() == b"r3"
            response.release()
            assert len(upstream.connections) == 2 and len(upstream.exchanges) == 3
        finally:
            pool.close()


async def test_a_connection_in_use_outlives_the_idle_timer_of_the_pool() -> None:
    release = asyncio.Event()

    async def script(exchange: Exchange) -> None:
        if exchange.request_id == "slow":
            await release.wait()
        exchange.write(answer(exchange.request_id.encode()))

    async with RawUpstream(script) as upstream:
        pool = UpstreamPool(upstream.url, connect_timeout=5, idle_timeout=0.2)
        try:
            first = await pool.post(PATH, b"{}", "quick", timeout=5)
            await first.read()
            first.release()  # idle: the timer is armed
            slow = asyncio.create_task(pool.post(PATH, b"{}", "slow", timeout=10))  # takes it back from the pool
            assert not await ended(upstream.connections[0], timeout=0.6)  # three idle times: kept, it is busy
            release.set()
            response = await slow
            assert await response.read() == b"slow"
            response.release()
            assert len(upstream.connections) == 1
            assert await ended(upstream.connections[0], timeout=10)  # idle again: closed
        finally:
            pool.close()


async def test_a_container_silent_mid_answer_ends_the_read_and_the_connection() -> None:
    async def script(exchange: Exchange) -> None:
        await exchange.body()
        exchange.write(STREAM_HEAD + chunk(b"first\n"))
        await exchange.reader.read()  # then nothing, the connection open (a frozen process), until the client closes it

    async with RawUpstream(script) as upstream:
        pool = UpstreamPool(upstream.url, connect_timeout=5)
        try:
            response = await pool.post(PATH, b"{}", "r1", timeout=5)
            response.limit_idle(0.3)
            received = []
            with pytest.raises(TimeoutError, match=r"no bytes from the container for 0\.3s"):
                async for data in response.content.iter_any():
                    received.append(data)
            assert received == [b"first\n"]
            response.release()
            assert await ended(upstream.connections[0])  # never reused: it may still send the rest
        finally:
            pool.close()


async def test_through_the_router_a_stream_gone_quiet_ends_with_an_error_line_and_frees_the_container() -> None:
    quiet = asyncio.Event()

    async def generate(exchange: Exchange) -> None:
        await exchange.body()
        if quiet.is_set():
            exchange.write(answer(ndjson("fine", True)))
            return
        quiet.set()
        exchange.write(STREAM_HEAD + chunk(ndjson("Hello", False)))
        await asyncio.Event().wait()

    async with RawUpstream(ollama_like(generate)) as upstream, router_before(upstream.url, stream_idle_timeout=0.5) as url:
        async with aiohttp.ClientSession() as session:
            body = {"model": "m:1b", "prompt": "hi"}
            async with session.post(url + PATH, json=body) as response:
                assert response.status == 200
                lines = (await asyncio.wait_for(response.content.read(), 10)).splitlines()
            assert orjson.loads(lines[0])["response"] == "Hello"
            assert orjson.loads(lines[-1]) == {"error": "no bytes from the container for 0.5s"}
            assert b'"done":true' not in b"".join(lines)
            async with session.get(url + "/router/status") as status:
                container = (await status.json())["containers"][0]
            assert container["in_flight"] == 0 and container["failures"] == 1
            async with session.post(url + PATH, json={**body, "stream": False}) as again:
                assert again.status == 200 and (await again.json())["response"] == "fine"


async def test_through_the_router_a_slow_client_is_not_an_idle_container() -> None:
    """The client stops reading for longer than stream_idle_timeout, several times:
    the router waits on the client, not on the container, and the answer arrives whole."""
    line = ndjson("x" * 65_000, False)
    lines = 400  # 26 MB: more than the socket buffers between router and client hold

    async def generate(exchange: Exchange) -> None:
        await exchange.body()
        exchange.write(STREAM_HEAD)
        for _ in range(lines):
            exchange.write(chunk(line))
            await exchange.drain()
        exchange.write(chunk(ndjson("", True)) + b"0\r\n\r\n")
        await exchange.drain()

    async with RawUpstream(ollama_like(generate)) as upstream, router_before(upstream.url, stream_idle_timeout=0.3) as url:
        async with aiohttp.ClientSession() as session:
            async with session.post(url + PATH, json={"model": "m:1b", "prompt": "hi"}) as response:
                received = bytearray()
                for _ in range(3):
                    received += await response.content.readexactly(2 * 1024 * 1024)
                    await asyncio.sleep(1.0)  # the client reads nothing for over three idle timeouts
                received += await response.content.read()
        ends = received.rstrip().rsplit(b"\n", 1)[-1]
        assert orjson.loads(ends)["done"] is True
        assert len(received) == lines * len(line) + len(ndjson("", True))


@pytest.mark.parametrize("api", ["ollama", "openai"])
async def test_through_the_router_a_stream_that_goes_quiet_mid_line_ends_with_an_error_on_a_line_of_its_own(api: str) -> None:
    half = b'{"model":"m:1b","created_at":"2025-01-01T00:00:00Z","response":"Hel' if api == "ollama" else b'data: {"id":"c'
    content_type = "application/x-ndjson" if api == "ollama" else "text/event-stream"

    async def generate(exchange: Exchange) -> None:
        await exchange.body()
        head = STREAM_HEAD.replace(b"application/x-ndjson", content_type.encode())
        exchange.write(head + chunk(half))
        await exchange.reader.read()

    path = PATH if api == "ollama" else "/v1/chat/completions"
    body = {"model": "m:1b", "prompt": "hi"} if api == "ollama" else {"model": "m:1b", "messages": [], "stream": True}
    async with RawUpstream(ollama_like(generate)) as upstream, router_before(upstream.url, stream_idle_timeout=0.3) as url:
        async with aiohttp.ClientSession() as session, session.post(url + path, json=body) as response:
            received = await asyncio.wait_for(response.content.read(), 10)
    if api == "ollama":
        assert received.split(b"\n") == [half, b'{"error":"no bytes from the container for 0.3s"}', b""]
    else:
        events = received.split(b"\n\n")
        assert events[0] == half and events[-1] == b""
        assert orjson.loads(events[1].removeprefix(b"data: "))["error"]["message"] == "no bytes from the container for 0.3s"
