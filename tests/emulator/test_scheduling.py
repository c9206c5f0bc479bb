"""Parallelism, queueing, first-byte timing and client disconnects (1.5, 7.4)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from datetime import UTC, datetime

import aiohttp
import pytest

from router.wire import BUSY_MESSAGE
from tests.emulator.conftest import raw

PROMPT = {"model": "llama3.2", "prompt": "hi"}


def stamp(created_at: str) -> int:
    """An Ollama `created_at` (RFC 3339, nanoseconds with trailing zeros trimmed) as nanoseconds."""
    whole, _, fraction = created_at.removesuffix("Z").partition(".")
    seconds = int(datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp())
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0") or 0)


async def token_times(session: aiohttp.ClientSession, url: str, body: dict) -> tuple[int, int]:
    """When the emulator made the first and the last token of a native stream, by its own clock
    (each line's `created_at`): no client-side timing, whatever the machine's load."""
    async with session.post(url + "/api/generate", json=body) as response:
        assert response.status == 200
        tokens = [json.loads(line) for line in (await response.read()).splitlines()]
    made = [stamp(line["created_at"]) for line in tokens if not line["done"]]
    return made[0], made[-1]


async def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_one_slot_serves_requests_one_after_another(emulator):
    emu = emulator(tokens_per_second=100, response_tokens=10)
    async with aiohttp.ClientSession() as session:
        first, second = await asyncio.gather(token_times(session, emu.url, PROMPT), token_times(session, emu.url, PROMPT))
    earlier, later = sorted([first, second])
    assert later[0] > earlier[1]  # the waiting one got no token before the other's last


async def test_parallel_slots_overlap(emulator):
    emu = emulator(tokens_per_second=100, response_tokens=10, num_parallel=2)
    async with aiohttp.ClientSession() as session:
        first, second = await asyncio.gather(token_times(session, emu.url, PROMPT), token_times(session, emu.url, PROMPT))
    earlier, later = sorted([first, second])
    assert later[0] < earlier[1]


async def test_embedding_models_run_one_at_a_time(emulator):
    emu = emulator(tokens_per_second=100, response_tokens=10, num_parallel=4)
    body = {"model": "nomic-embed-text", "input": " ".join(["word"] * 80)}  # 0.08 s of prompt eval each
    async with aiohttp.ClientSession() as session:
        await session.post(emu.url + "/api/embed", json={"model": "nomic-embed-text"})  # load

        async def embed() -> dict:
            async with session.post(emu.url + "/api/embed", json=body) as response:
                return await response.json()

        replies = await asyncio.gather(*(embed() for _ in range(3)))
    durations = sorted(r["total_duration"] for r in replies)
    assert durations[-1] >= 0.2e9  # the last one waited for the other two (in parallel: ~0.08 s)


async def test_waiting_on_a_loaded_model_is_unbounded(emulator):
    emu = emulator(max_queue=1, tokens_per_second=500, response_tokens=5)
    raw(emu.url, "POST", "/api/generate", {"model": "llama3.2"})  # loaded
    async with aiohttp.ClientSession() as session:

        async def one() -> int:
            async with session.post(emu.url + "/api/generate", json={**PROMPT, "stream": False}) as response:
                return response.status

        statuses = await asyncio.gather(*(one() for _ in range(8)))
    assert statuses == [200] * 8


async def test_full_scheduler_queue_is_503_in_both_shapes(emulator):
    emu = emulator(max_queue=1, load_time=2.0)
    async with aiohttp.ClientSession() as session:
        loading = asyncio.create_task(session.post(emu.url + "/api/generate", json={**PROMPT, "stream": False}))
        await wait_for(lambda: emu.stats()["in_flight"] == 1)
        queued = asyncio.create_task(session.post(emu.url + "/api/chat", json={"model": "qwen2.5:7b"}))
        await wait_for(lambda: emu.stats()["in_flight"] == 2)
        assert emu.stats()["loads"] == 0  # still loading: the queue behind the load is full
        async with session.post(emu.url + "/api/generate", json={"model": "qwen2.5:7b", "prompt": "x"}) as native:
            assert native.status == 503
            assert await native.read() == b'{"error":"server busy, please try again.  maximum pending requests exceeded"}'
            assert native.headers["Content-Type"] == "application/json; charset=utf-8"
        async with session.post(
            emu.url + "/v1/chat/completions",
            json={"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "x"}]},
        ) as openai:
            assert openai.status == 503
            assert await openai.json() == {
                "error": {"message": BUSY_MESSAGE, "type": "api_error", "param": None, "code": None}
            }
        for task in (loading, queued):
            response = await task
            assert response.status == 200
            response.release()


def test_headers_wait_for_the_first_token(emulator):
    emu = emulator(load_time=1.0)
    sock = socket.create_connection(("127.0.0.1", emu.port))
    body = b'{"model":"llama3.2","prompt":"hi"}'
    sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    deadline = time.monotonic() + 5
    while emu.stats()["in_flight"] == 0:  # until it arrived
        assert time.monotonic() < deadline
        time.sleep(0.01)
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(1)  # nothing at all while the model loads...
    assert emu.stats()["loads"] == 0  # ...and it still was loading after that look
    sock.setblocking(True)
    sock.settimeout(5)
    assert sock.recv(12) == b"HTTP/1.1 200"
    sock.close()


async def test_disconnect_drops_a_queued_request(emulator):
    emu = emulator(tokens_per_second=50, response_tokens=15)
    raw(emu.url, "POST", "/api/generate", {"model": "llama3.2"})
    async with aiohttp.ClientSession() as session:
        running = asyncio.create_task(token_times(session, emu.url, PROMPT))
        await wait_for(lambda: emu.stats()["in_flight"] == 1)
        queued = asyncio.create_task(session.post(emu.url + "/api/generate", json=PROMPT))
        await wait_for(lambda: emu.stats()["in_flight"] == 2)
        assert not running.done()
        queued.cancel()  # the client gives up while waiting for the slot
        await running
    await wait_for(lambda: emu.stats()["in_flight"] == 0)
    stats = emu.stats()
    assert stats["cancelled"] == 1 and stats["requests"] == 3


async def test_disconnect_stops_generation(emulator):
    emu = emulator(tokens_per_second=20, response_tokens=40)
    async with aiohttp.ClientSession() as session, session.post(emu.url + "/api/generate", json=PROMPT) as response:
        await response.content.readline()
        response.close()  # leave after the first token
    await wait_for(lambda: emu.stats()["cancelled"] == 1)
    assert emu.stats()["in_flight"] == 0


async def test_disconnect_during_load_aborts_it(emulator):
    emu = emulator(load_time=1.0)
    async with aiohttp.ClientSession() as session:
        request = asyncio.create_task(session.post(emu.url + "/api/generate", json=PROMPT))
        await wait_for(lambda: emu.stats()["in_flight"] == 1)  # arrived: loading
        request.cancel()
    await wait_for(lambda: emu.stats()["cancelled"] == 1)
    assert emu.stats()["loads"] == 0 and raw(emu.url, "GET", "/api/ps").json()["models"] == []
    assert raw(emu.url, "POST", "/api/generate", {**PROMPT, "stream": False}).status == 200
    assert emu.stats()["loads"] == 1


async def test_eviction_waits_for_a_busy_model(emulator):
    emu = emulator(max_loaded_models=1, tokens_per_second=50, response_tokens=10)
    async with aiohttp.ClientSession() as session:
        busy = asyncio.create_task(token_times(session, emu.url, PROMPT))
        await wait_for(lambda: emu.stats()["in_flight"] == 1)
        other = await token_times(session, emu.url, {"model": "qwen2.5:7b", "prompt": "x"})
        first = await busy
    assert other[0] > first[1]  # qwen made no token before llama's last: llama was evicted only then
    assert emu.stats()["unloads"] == 1
