"""The router's own HTTP/1.1 client (router/upstream/http1.py) against raw
upstreams that write exact bytes: how answers are framed however they are
split, what is never read as an answer, the limits on a head, and when a
request is sent a second time. The last tests go through the real router."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import select
from collections.abc import AsyncIterator

import aiohttp
import ollama
import orjson
import pytest

from router.upstream.http1 import (
    HIGH_WATER,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    InvalidAnswer,
    UpstreamPool,
    UpstreamResponse,
    end_to_end_headers,
)
from tests.server.raw_upstream import Exchange, RawUpstream, Script, answer, chunked, ended, ollama_like
from tests.server.support import eventually, router_before

PATH = "/api/generate"
READ_SIZE = 256 * 1024  # the most an asyncio transport reads at once
INFORMATIONAL = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </hint.css>; rel=preload\r\n\r\n"


@contextlib.asynccontextmanager
async def serving(script: Script) -> AsyncIterator[tuple[RawUpstream, UpstreamPool]]:
    async with RawUpstream(script) as upstream:
        pool = UpstreamPool(upstream.url, connect_timeout=5)
        try:
            yield upstream, pool
        finally:
            pool.close()


async def ask(pool: UpstreamPool, request_id: str, body: bytes = b"{}") -> tuple[UpstreamResponse, bytes]:
    """One request, its whole answer read and its connection handed back."""
    response = await pool.post(PATH, body, request_id, timeout=10)
    try:
        return response, await response.read()
    finally:
        response.release()


async def echo(exchange: Exchange) -> None:
    """The answer names the request it answers."""
    exchange.write(answer(exchange.request_id.encode()))


# --- framing: however the bytes are split, an answer ends where it says ---------------


@pytest.mark.parametrize("byte_by_byte", [True, False], ids=["byte by byte", "one write"])
async def test_informational_answers_are_skipped_for_the_final_one(byte_by_byte: bool) -> None:
    async def script(exchange: Exchange) -> None:
        data = INFORMATIONAL + chunked(b'{"response":"%s"}\n' % exchange.request_id.encode(), b'{"done":true}\n')
        if not byte_by_byte:
            exchange.write(data)
            return
        for i in range(len(data)):
            exchange.write(data[i : i + 1])
            await exchange.drain()
            await asyncio.sleep(0)  # the client's loop reads before the next byte goes out

    async with serving(script) as (upstream, pool):
        for request_id in ("r1", "r2"):
            response, body = await ask(pool, request_id)
            assert response.status == 200
            assert "Link" not in response.headers  # the 103's header is not the answer's
            assert body == b'{"response":"%s"}\n{"done":true}\n' % request_id.encode()
        assert len(upstream.connections) == 1  # each answer ended exactly where it should: the connection served again


async def test_bytes_read_with_an_answer_never_reach_the_next_request() -> None:
    async def script(exchange: Exchange) -> None:
        if exchange.connection.number == 1:
            exchange.write(answer(b"first") + answer(b"nobody asked for this"))  # one write, one read
        else:
            await echo(exchange)

    async with serving(script) as (upstream, pool):
        assert (await ask(pool, "r1"))[1] == b"first"
        assert (await ask(pool, "r2"))[1] == b"r2"
        assert await ended(upstream.connections[0])  # closed by the client, never reused
        assert [e.connection.number for e in upstream.exchanges] == [1, 2]


@pytest.mark.parametrize(("framing", "reused"), [("content-length", True), ("chunked", True), ("until close", False)])
async def test_bodies_of_every_framing_are_read_whole(framing: str, reused: bool) -> None:
    async def script(exchange: Exchange) -> None:
        body = b'{"response":"%s"}' % exchange.request_id.encode()
        if framing == "content-length":
            exchange.write(answer(body))
        elif framing == "chunked":
            exchange.write(chunked(body[:5], body[5:]))
        else:
            exchange.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)
            await exchange.drain()
            exchange.close()

    async with serving(script) as (upstream, pool):
        for request_id in ("r1", "r2"):
            response, body = await ask(pool, request_id)
            assert (response.status, body) == (200, b'{"response":"%s"}' % request_id.encode())
        assert len(upstream.connections) == (1 if reused else 2)


async def test_a_slow_reader_holds_the_container_back_then_gets_every_byte() -> None:
    blocked = False  # the server waits for the client to take bytes
    finish = asyncio.Event()
    sent = hashlib.sha256()

    async def script(exchange: Exchange) -> None:
        nonlocal blocked
        if exchange.request_id != "slow":
            return await echo(exchange)
        exchange.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n")
        block = 0
        while not finish.is_set():
            data = bytes([block % 251]) * 65536
            exchange.write(b"%x\r\n%s\r\n" % (len(data), data))
            sent.update(data)
            block += 1
            blocked = True
            await exchange.drain()
            blocked = False
        exchange.write(b"0\r\n\r\n")

    async with serving(script) as (upstream, pool):
        response = await pool.post(PATH, b"{}", "slow", timeout=10)
        connection = response._conn

        async def held_back() -> bool:
            return connection.paused and blocked

        assert await eventually(held_back, timeout=20)
        assert HIGH_WATER <= response._size < HIGH_WATER + READ_SIZE  # what the client holds stays bounded
        finish.set()
        received = hashlib.sha256()
        async for chunk in response.content.iter_any():
            received.update(chunk)
        response.release()
        assert received.hexdigest() == sent.hexdigest()
        assert (await ask(pool, "next"))[1] == b"next"
        assert len(upstream.connections) == 1


async def test_an_answer_that_arrives_before_the_request_is_written() -> None:
    big = b'{"prompt":"' + b"x" * (16 * 1024 * 1024) + b'"}'  # more than the kernel's buffers hold
    client_has_answer = asyncio.Event()
    bodies: list[bytes] = []

    async def script(exchange: Exchange) -> None:
        if exchange.request_id == "early":
            exchange.write(answer(b"early"))  # before reading the body, as a server refusing it would
            await client_has_answer.wait()
            bodies.append(await exchange.body())
        else:
            await echo(exchange)

    async with serving(script) as (upstream, pool):
        response = await pool.post(PATH, big, "early", timeout=10)
        assert response._conn.transport is not None and response._conn.transport.get_write_buffer_size() > 0
        assert await response.read() == b"early"
        response.release()
        client_has_answer.set()
        assert (await ask(pool, "after"))[1] == b"after"
        assert bodies == [big]  # the request went out whole, after its answer
        assert len(upstream.connections) == 1


# --- what is never read as an answer ----------------------------------------------------


async def test_switching_protocols_fails_the_attempt() -> None:
    async def script(exchange: Exchange) -> None:
        exchange.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" + answer(b"smuggled"))

    async with serving(script) as (upstream, pool):
        with pytest.raises(InvalidAnswer, match="101"):
            await pool.post(PATH, b"{}", "r1", timeout=10)
        assert await ended(upstream.connections[0])


async def test_an_answer_sent_to_an_idle_connection_is_never_read() -> None:
    idle = asyncio.Event()

    async def script(exchange: Exchange) -> None:
        await echo(exchange)
        if exchange.request_id == "r1":
            await idle.wait()
            exchange.write(answer(b"nobody asked for this"))

    async with serving(script) as (upstream, pool):
        assert (await ask(pool, "r1"))[1] == b"r1"
        idle.set()
        assert await ended(upstream.connections[0])  # the client closed it on the first unsolicited byte
        assert (await ask(pool, "r2"))[1] == b"r2"
        assert len(upstream.connections) == 2


async def test_bytes_waiting_unread_on_an_idle_connection_keep_it_from_reuse() -> None:
    """The unsolicited answer is in the client's kernel buffer, but its event loop has
    not run since: the next request must not go out on that connection."""
    async with serving(echo) as (upstream, pool):
        assert (await ask(pool, "r1"))[1] == b"r1"
        [idle] = pool._idle
        assert idle.transport is not None
        upstream.connections[0].writer.write(answer(b"nobody asked for this"))  # sent at once, on loopback
        readable, _, _ = select.select([idle.transport.get_extra_info("socket").fileno()], [], [], 5)
        assert readable  # arrived, and the loop has not read it (no await since)
        assert (await ask(pool, "r2"))[1] == b"r2"
        assert len(upstream.connections) == 2


# --- limits on a head -----------------------------------------------------------------------

BIG_VALUE = "v" * 8000
OVERSIZED = {
    "too many headers": answer(b"{}", headers=[(f"X-Header-{i}", "v") for i in range(MAX_HEADERS)]),
    "too many header bytes": answer(b"{}", headers=[(f"X-Big-{i}", BIG_VALUE) for i in range(MAX_HEAD_BYTES // len(BIG_VALUE) + 1)]),
    "a header line that never ends": b"HTTP/1.1 200 OK\r\nX-Endless: " + b"a" * (MAX_HEAD_BYTES + 1),
    "informational answers without end": b"HTTP/1.1 100 Continue\r\n\r\n" * (MAX_HEAD_BYTES // 25 + 1),
}


@pytest.mark.parametrize("head", list(OVERSIZED.values()), ids=list(OVERSIZED))
async def test_an_oversized_head_fails_the_attempt(head: bytes) -> None:
    async def script(exchange: Exchange) -> None:
        exchange.write(head)  # and the connection stays open: only the limit can end the wait

    async with serving(script) as (upstream, pool):
        with pytest.raises(InvalidAnswer):
            await pool.post(PATH, b"{}", "r1", timeout=30)
        assert await ended(upstream.connections[0])


async def test_a_head_within_the_limits_is_read() -> None:
    value = "v" * ((MAX_HEAD_BYTES - 2000) // (MAX_HEADERS - 2))
    headers = [(f"X-H{i:02}", value) for i in range(MAX_HEADERS - 2)]  # with Content-Type and Content-Length: the limit

    async def script(exchange: Exchange) -> None:
        exchange.write(INFORMATIONAL + answer(b"fits", headers=headers))

    async with serving(script) as (_, pool):
        response, body = await ask(pool, "r1")
        assert (len(response.headers), body) == (MAX_HEADERS, b"fits")


async def test_headers_named_by_connection_are_not_passed_on() -> None:
    hop = [("Connection", "keep-alive, X-Hop-A"), ("connection", "X-HOP-B"), ("X-Hop-A", "1"), ("x-hop-b", "2"), ("Keep-Alive", "timeout=5"), ("X-Kept", "3")]

    async def script(exchange: Exchange) -> None:
        exchange.write(answer(b"{}", headers=hop))

    async with serving(script) as (_, pool):
        response, _ = await ask(pool, "r1")
        assert end_to_end_headers(response.headers) == [("Content-Type", "application/json"), ("X-Kept", "3")]


# --- sent twice only for a stale keep-alive connection ---------------------------------------


async def test_a_reused_connection_the_container_dropped_is_retried_once_on_a_new_one() -> None:
    async def script(exchange: Exchange) -> None:
        if exchange.connection.number == 1 and exchange.request_id == "r2":
            await exchange.body()
            exchange.close()  # as a keep-alive timeout racing the request would
        else:
            await echo(exchange)

    async with serving(script) as (upstream, pool):
        assert (await ask(pool, "r1"))[1] == b"r1"
        assert (await ask(pool, "r2"))[1] == b"r2"
        assert [(e.connection.number, e.request_id) for e in upstream.exchanges] == [(1, "r1"), (1, "r2"), (2, "r2")]


async def test_a_fresh_connection_the_container_dropped_is_not_retried() -> None:
    async def script(exchange: Exchange) -> None:
        await exchange.body()
        exchange.close()  # as a container that crashed on the request would

    async with serving(script) as (upstream, pool):
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await pool.post(PATH, b"{}", "r1", timeout=10)
        assert [e.request_id for e in upstream.exchanges] == ["r1"]


async def test_a_reused_connection_dropped_after_its_answer_began_is_not_retried() -> None:
    async def script(exchange: Exchange) -> None:
        if exchange.request_id == "r2":
            exchange.write(b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nContent-Le")
            await exchange.drain()
            exchange.close()
        else:
            await echo(exchange)

    async with serving(script) as (upstream, pool):
        assert (await ask(pool, "r1"))[1] == b"r1"
        with pytest.raises(aiohttp.ClientPayloadError):
            await pool.post(PATH, b"{}", "r2", timeout=10)
        assert [e.request_id for e in upstream.exchanges] == ["r1", "r2"]


# --- through the router -------------------------------------------------------------------

def generated(text: str) -> bytes:
    return orjson.dumps({"model": "m:1b", "created_at": "2025-01-01T00:00:00Z", "response": text, "done": True})


def posts(upstream: RawUpstream) -> list[Exchange]:
    return [e for e in upstream.exchanges if e.method == "POST"]


async def test_through_the_router_no_client_gets_an_answer_meant_for_nobody() -> None:
    async def generate(exchange: Exchange) -> None:
        prompt = orjson.loads(await exchange.body())["prompt"]
        exchange.write(INFORMATIONAL + answer(generated(prompt)))
        await exchange.drain()
        exchange.write(answer(generated("stale: nobody asked for this")))

    async with RawUpstream(ollama_like(generate)) as upstream, router_before(upstream.url) as url:
        client = ollama.AsyncClient(host=url)
        prompts = [f"prompt {i}" for i in range(5)]
        answers = [(await client.generate(model="m:1b", prompt=prompt, stream=False)).response for prompt in prompts]
        assert answers == prompts
        assert len(posts(upstream)) == len(prompts)  # none sent twice
        for exchange in posts(upstream):
            assert await ended(exchange.connection)  # the router dropped every connection that spoke out of turn


async def test_through_the_router_a_request_that_crashed_its_container_is_sent_once() -> None:
    async def generate(exchange: Exchange) -> None:
        await exchange.body()
        exchange.close()

    async with RawUpstream(ollama_like(generate)) as upstream, router_before(upstream.url) as url:
        async with aiohttp.ClientSession() as session:
            async with session.post(url + PATH, json={"model": "m:1b", "prompt": "crash", "stream": False}) as response:
                status, error = response.status, await response.json()
        assert status == 503 and "error" in error
        assert len(posts(upstream)) == 1


async def test_through_the_router_headers_named_by_connection_stay_behind() -> None:
    async def generate(exchange: Exchange) -> None:
        await exchange.body()
        exchange.write(answer(generated("hi"), headers=[("Connection", "X-Hop"), ("X-Hop", "secret"), ("X-Kept", "yes")]))

    async with RawUpstream(ollama_like(generate)) as upstream, router_before(upstream.url) as url:
        async with aiohttp.ClientSession() as session:
            async with session.post(url + PATH, json={"model": "m:1b", "prompt": "hi", "stream": False}) as response:
                assert response.status == 200
                assert response.headers["X-Kept"] == "yes"
                assert "X-Hop" not in response.headers
        assert len(posts(upstream)) == 1
