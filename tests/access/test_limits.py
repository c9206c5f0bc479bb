"""Limits: bodies over max_body_bytes (413), slow clients (headers, bodies), wrong JSON types (400),
and logs that hold neither keys nor prompt text (unless log_bodies)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import ollama
import openai
import orjson
import pytest
import pytest_asyncio
import structlog

from tests.access.support import CATALOG, LLAMA, MAX_BODY, MESSAGES, Keyed
from tests.harness import RouterFleet, router_fleet

pytestmark = pytest.mark.asyncio(loop_scope="module")

SLOW = 0.4  # header and body timeouts of the `impatient` router
CUT_DEADLINE = 30 * SLOW  # what a test waits at most for the router to cut a connection (however busy the machine)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def impatient() -> AsyncIterator[RouterFleet]:
    """No keys, short timeouts, bodies logged."""
    settings = {"header_timeout": SLOW, "body_timeout": SLOW, "log_bodies": True}
    async with router_fleet(CATALOG, settings=settings) as fleet:
        yield fleet


def huge_messages() -> list[dict[str, str]]:
    return [{"role": "user", "content": "x" * (MAX_BODY + 1)}]


async def test_body_over_the_limit_is_413_through_both_clients(keyed: Keyed) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await keyed.openai("other").chat.completions.create(model=LLAMA, messages=huge_messages())
    assert caught.value.status_code == 413
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert str(MAX_BODY) in caught.value.message
    with pytest.raises(ollama.ResponseError) as native:
        await keyed.ollama("other").chat(model=LLAMA, messages=huge_messages())
    assert native.value.status_code == 413 and "too large" in native.value.error


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
async def test_chunked_body_over_the_limit_is_413(keyed: Keyed, path: str) -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY // 1024 + 2):
            yield b" " * 1024

    async with keyed.fleet.session.post(keyed.url + path, data=body(), headers=keyed.auth("other")) as response:
        assert response.status == 413
        error = (await response.json())["error"]
        assert "too large" in (error["message"] if path.startswith("/v1") else error)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", b'{"model": 5, "messages": []}'),
        ("/v1/embeddings", b'{"model": ["a"], "input": "hi"}'),
        ("/v1/completions", b"[1, 2]"),
        ("/api/generate", b'{"model": {"a": 1}}'),
        ("/api/chat", b'"just a string"'),
        ("/api/show", b'{"name": true}'),
    ],
)
async def test_wrong_json_types_are_400_in_the_apis_shape(keyed: Keyed, path: str, body: bytes) -> None:
    async with keyed.fleet.session.post(keyed.url + path, data=body, headers=keyed.auth("other")) as response:
        assert response.status == 400
        error = orjson.loads(await response.read())["error"]
        if path.startswith("/v1"):
            assert error["type"] == "invalid_request_error" and error["message"]
        else:
            assert isinstance(error, str) and error


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    async with asyncio.timeout(seconds):
        return await reader.read()


async def test_slow_headers_are_cut_off(impatient: RouterFleet) -> None:
    port = int(impatient.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n")
    deadline = time.monotonic() + CUT_DEADLINE
    first = True
    while not reader.at_eof():  # one header byte every 50 ms: never a whole request
        assert time.monotonic() < deadline, "the router kept reading a request that never ends"
        try:
            writer.write(b"X-Slow: " if first else b"X")
            await writer.drain()
        except ConnectionError:
            break
        first = False
        await asyncio.sleep(0.05)
    assert await _closed_within(reader, CUT_DEADLINE) == b""
    writer.close()


async def test_a_silent_connection_is_closed(impatient: RouterFleet) -> None:
    port = int(impatient.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await _closed_within(reader, CUT_DEADLINE) == b""
    writer.close()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
async def test_a_slow_body_is_408_in_the_apis_shape(impatient: RouterFleet, path: str) -> None:
    port = int(impatient.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: 100\r\n\r\n".encode())
    writer.write(b'{"model": ')
    await writer.drain()
    async with asyncio.timeout(CUT_DEADLINE):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
        body = await reader.readexactly(length)
    assert head.startswith(b"HTTP/1.1 408"), head
    assert await _closed_within(reader, CUT_DEADLINE) == b""  # and the connection is closed
    writer.close()
    error = orjson.loads(body)["error"]
    if path.startswith("/v1"):
        assert error["code"] == "request_timeout"
    else:
        assert "not received within" in error


async def test_logs_hold_neither_keys_nor_prompts(keyed: Keyed) -> None:
    prompt = "the-secret-prompt-text-7d1f"
    with structlog.testing.capture_logs() as logs:
        await keyed.openai("other").chat.completions.create(model=LLAMA, messages=[{"role": "user", "content": prompt}])
        await keyed.ollama("other").generate(model=LLAMA, prompt=prompt)
        with pytest.raises(openai.AuthenticationError):
            await keyed.openai("olr-a-wrong-key-1234").models.list()
        async with keyed.fleet.session.post(keyed.url + "/api/chat", data=b'{"model": 1, "x": "' + prompt.encode() + b'"',
                                            headers=keyed.auth("other")) as response:
            assert response.status == 400
    text = repr(logs)
    assert [e for e in logs if e["event"] == "request"], "the access log was not captured"
    assert prompt not in text
    assert "olr-a-wrong-key-1234" not in text
    assert all(key not in text for key in keyed.keys.values())
    assert any(e.get("key") == "other" for e in logs if e["event"] == "request")  # the key's name is logged


async def test_log_bodies_logs_the_request_body(impatient: RouterFleet) -> None:
    prompt = "a-prompt-to-log-92c4"
    with structlog.testing.capture_logs() as logs:
        async with impatient.session.post(impatient.url + "/api/generate", json={"model": LLAMA, "prompt": prompt, "stream": False}) as response:
            assert response.status == 200
    bodies = [e for e in logs if e["event"] == "request_body"]
    assert len(bodies) == 1 and prompt in bodies[0]["body"]


async def test_the_open_router_needs_no_key(impatient: RouterFleet) -> None:
    client = openai.AsyncOpenAI(base_url=impatient.url + "/v1", api_key="anything", max_retries=0)
    assert (await client.chat.completions.create(model=LLAMA, messages=MESSAGES)).choices
    async with impatient.session.get(impatient.url + "/metrics") as response:
        assert response.status == 200
