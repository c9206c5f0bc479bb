"""POST /v1/audio/transcriptions: routed by the form's model field, the upload
passed on as it arrives (never held whole), and every form Ollama could read
differently refused."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import orjson
import pytest
import pytest_asyncio

from tests.harness import RouterFleet, curl, router_fleet
from tests.server.raw_upstream import Exchange, RawUpstream, answer, ollama_like
from tests.server.support import router_before

pytestmark = pytest.mark.asyncio(loop_scope="module")

CATALOG = """
version: 1
containers:
  w1: {gpus: [0], port: 1}
  w2: {gpus: [1], port: 2}
models:
  gemma3n:e4b: {containers: [w1, w2], aliases: [whisper-1], capabilities: [completion, audio]}
"""
MODEL = "gemma3n:e4b"
MAX_BODY = 4 * 1024 * 1024
PATH = "/v1/audio/transcriptions"
AUDIO = os.urandom(3 * 1024 * 1024)  # several reads and writes on every hop


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet() -> AsyncIterator[RouterFleet]:
    audio = {"models": [], "audio_models": [MODEL]}
    async with router_fleet(CATALOG, per_container={"w1": audio, "w2": audio}, settings={"max_body_bytes": MAX_BODY}) as running:
        yield running


async def transcribed(fleet: RouterFleet) -> int:
    """Transcriptions the containers began: requests whose whole form they read (an
    unfinished upload counts as a request, never as one naming the model)."""
    stats = await asyncio.gather(*(backend.stats() for backend in fleet.backends.values()))
    return sum(s["by_model"].get(MODEL, 0) for s in stats)


def client(fleet: RouterFleet) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fleet.url + "/v1", api_key="unused", max_retries=0)


async def test_the_sdk_transcribes_through_an_alias(fleet: RouterFleet) -> None:
    raw = await client(fleet).audio.transcriptions.with_raw_response.create(model="whisper-1", file=("a.wav", AUDIO))
    transcript = raw.parse()
    assert transcript.text.strip()
    assert raw.headers["X-Router-Model"] == MODEL and raw.headers["X-Router-Container"] in {"w1", "w2"}
    # the container transcribes the same bytes to the same words: the upload arrived whole
    direct = openai.AsyncOpenAI(base_url=fleet.backends["w2"].url + "/v1", api_key="unused", max_retries=0)
    assert (await direct.audio.transcriptions.create(model=MODEL, file=("a.wav", AUDIO))).text == transcript.text
    other = await client(fleet).audio.transcriptions.create(model="whisper-1", file=("a.wav", AUDIO[:-1]))
    assert other.text != transcript.text


async def test_curl_upload_and_text_format(fleet: RouterFleet, tmp_path: Path) -> None:
    audio = tmp_path / "speech.wav"
    audio.write_bytes(AUDIO)  # over 1 MiB: curl asks for 100 Continue first
    status, headers, body = await curl(fleet.url + PATH, "-F", "model=whisper-1", "-F", "response_format=text", "-F", f"file=@{audio}")
    assert status == 200 and body.strip() and not body.startswith(b"{")
    assert headers["x-router-model"] == MODEL


def form(*parts: tuple[str, bytes, dict[str, str]]) -> tuple[bytes, str]:
    """A multipart body from (Content-Disposition, content, other headers), and its Content-Type."""
    boundary = "b0undary"
    body = b""
    for disposition, content, headers in parts:
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        body += head.encode() + b"\r\n" + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


MODEL_PART = ('form-data; name="model"', b"whisper-1", {})
FILE_PART = ('form-data; name="file"; filename="a.wav"', b"RIFF" + AUDIO[:200_000], {"Content-Type": "audio/wav"})
REFUSED = {
    "two model parts": [MODEL_PART, FILE_PART, ('form-data; name="model"', b"llama3.2", {})],
    "a model part in another case": [('form-data; name="Model"', b"llama3.2", {}), MODEL_PART, FILE_PART],
    "a file part named model": [('form-data; name="model"; filename="model.txt"', b"whisper-1", {}), FILE_PART],
    "an encoded model part": [('form-data; name="model"', b"d2hpc3Blci0x", {"Content-Transfer-Encoding": "base64"}), FILE_PART],
    "an RFC 2231 model name": [("form-data; name*=UTF-8''model", b"whisper-1", {}), FILE_PART],
}


@pytest.mark.parametrize("case", list(REFUSED))
async def test_forms_ollama_could_read_differently_are_refused(fleet: RouterFleet, case: str) -> None:
    body, content_type = form(*REFUSED[case])
    before = await transcribed(fleet)
    async with fleet.session.post(fleet.url + PATH, data=body, headers={"Content-Type": content_type}) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "ambiguous_model_field"
    assert await transcribed(fleet) == before


@pytest.mark.parametrize(
    ("query", "parts", "content_type", "message"),
    [
        ("?model=whisper-1", [MODEL_PART, FILE_PART], None, "query string"),
        ("", [FILE_PART], None, "model is required"),
        ("", [('form-data; name="model"', b"", {}), FILE_PART], None, "model is required"),
        ("", [('form-data; name="model"', b"\xff\xfe", {}), FILE_PART], None, "UTF-8"),
        ("", [MODEL_PART, FILE_PART], "application/json", "multipart/form-data"),
        ("", [('form-data; name="model"', b"m" * 3000, {}), FILE_PART], None, "bytes long"),
    ],
)
async def test_bad_forms_get_a_clear_400(fleet: RouterFleet, query: str, parts: list[tuple[str, bytes, dict[str, str]]],
                                         content_type: str | None, message: str) -> None:
    body, form_type = form(*parts)
    async with fleet.session.post(fleet.url + PATH + query, data=body, headers={"Content-Type": content_type or form_type}) as response:
        assert response.status == 400
        assert message in (await response.json())["error"]["message"]


async def test_an_upload_over_the_limit_is_413_before_its_body_is_read(fleet: RouterFleet) -> None:
    host, port = fleet.url.split("//")[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {10 * 1024**3}\r\n\r\n".encode()
        )
        await writer.drain()  # headers only: not one byte of the 10 GiB body is sent
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 413 ")


def endless_upload(sent: list[int], model: bytes = b"whisper-1") -> AsyncIterator[bytes]:
    """A chunked upload (no Content-Length) of a model field and a file that does not end."""

    async def pieces() -> AsyncIterator[bytes]:
        start, _ = form(('form-data; name="model"', model, {}))
        yield start.rsplit(b"--b0undary--", 1)[0] + b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        while sent[0] < 64 * MAX_BODY:
            sent[0] += 64 * 1024
            yield bytes(64 * 1024)

    return pieces()


async def test_a_chunked_upload_over_the_limit_is_413(fleet: RouterFleet) -> None:
    before = await transcribed(fleet)
    sent = [0]
    async with aiohttp.ClientSession() as session, session.post(
        fleet.url + PATH, data=endless_upload(sent), headers={"Content-Type": "multipart/form-data; boundary=b0undary"}
    ) as response:
        assert response.status == 413
        assert "too large" in (await response.json())["error"]["message"]
        assert sent[0] < 64 * MAX_BODY  # answered while the client was still sending
    assert await transcribed(fleet) == before  # the unfinished upload was never transcribed


async def test_a_chunked_upload_is_forwarded_only_up_to_the_limit() -> None:
    """Without a Content-Length the router counts what it forwards and stops at the limit:
    a stand-in container gets at most that much before the router drops the request."""
    received = [0]
    dropped = asyncio.Event()

    async def transcribe(exchange: Exchange) -> None:
        while data := await exchange.reader.read(64 * 1024):
            received[0] += len(data)
        dropped.set()
        exchange.body_read = True
        exchange.close()

    limit = 1024 * 1024
    async with RawUpstream(ollama_like(transcribe, version="0.32.15")) as upstream, router_before(upstream.url, max_body_bytes=limit) as url:
        async with aiohttp.ClientSession() as session, session.post(
            url + PATH, data=endless_upload([0], b"m:1b"), headers={"Content-Type": "multipart/form-data; boundary=b0undary"}
        ) as response:
            assert response.status == 413
        await asyncio.wait_for(dropped.wait(), 10)
    assert upstream.exchanges[-1].headers["transfer-encoding"] == "chunked"
    assert 0 < received[0] <= limit + 4096  # the body and its chunk framing, never more than the limit


async def test_the_upload_reaches_the_container_while_the_client_still_sends_it() -> None:
    """A stand-in container sees the start of the body before the client has sent the rest:
    the router streams the upload; it does not collect it first."""
    started = asyncio.Event()
    received: list[tuple[dict[str, str], bytes]] = []

    async def transcribe(exchange: Exchange) -> None:
        first = await exchange.reader.readexactly(1000)
        started.set()
        rest = await exchange.reader.readexactly(exchange.length - 1000)
        exchange.body_read = True
        received.append((exchange.headers, first + rest))
        exchange.write(answer(orjson.dumps({"text": f"{exchange.length} bytes"})))

    name = "registry.ollama.ai/library/m:1b"  # another spelling of the model: the router sends its tag
    body, content_type = form(('form-data; name="model"', name.encode(), {}), FILE_PART)
    split = body.index(b"RIFF") + 150_000  # the router stays at most two 64 KiB reads behind the client
    async with RawUpstream(ollama_like(transcribe, version="0.32.15")) as upstream, router_before(upstream.url) as url:
        host, port = url.split("//")[1].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        writer.write(body[:split])
        await writer.drain()
        await asyncio.wait_for(started.wait(), 10)  # the container has the start; the client has not sent the rest
        writer.write(body[split:])
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.close()
    assert head.startswith(b"HTTP/1.1 200 ")
    headers, forwarded = received[0]
    assert forwarded == body.replace(name.encode(), b"m:1b", 1)  # the model's tag, every other byte as sent
    assert int(headers["content-length"]) == len(forwarded)
    assert headers["content-type"] == content_type
