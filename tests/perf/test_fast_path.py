"""The fast path passes bytes through: what the container sent is what the client gets.

Against a scripted upstream (fixed bytes in awkward chunks) the router's body
must be byte-identical; against the emulator, the router's answer must equal
the emulator's own answer to the same seeded request, but for the fields that
change per request (ids, timestamps, durations). Headers: the content type and
end-to-end headers kept, hop-by-hop ones dropped, the router's own added.
No timings are asserted here: speed lives in scripts/bench.py.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from router.catalog import parse_catalog
from router.server.app import create_app
from router.server.runner import start_app
from router.settings import RouterSettings
from tests.harness import ONE_CONTAINER, RouterFleet, router_fleet
from tests.perf.scripted import BIG, MODEL, NDJSON_LINES, SSE_EVENTS, Scripted, split_awkwardly, start_scripted

HOP_BY_HOP = ("Keep-Alive", "Proxy-Connection", "Trailer", "Upgrade")
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Why is the sky blue?"}]}


class Routed:
    def __init__(self, scripted: Scripted, router_url: str, session: aiohttp.ClientSession) -> None:
        self.scripted = scripted
        self.url = router_url
        self.session = session

    async def post(self, path: str, body: dict[str, Any], **headers: str) -> tuple[aiohttp.ClientResponse, bytes, list[bytes]]:
        chunks: list[bytes] = []
        async with self.session.post(self.url + path, json=body, headers=headers) as response:
            async for chunk in response.content.iter_any():
                chunks.append(chunk)
        return response, b"".join(chunks), chunks


@pytest_asyncio.fixture
async def routed() -> AsyncIterator[Routed]:
    scripted = await start_scripted()
    catalog_yaml = f"""
        version: 1
        containers:
          s: {{url: '{scripted.url}'}}
        models:
          {MODEL}: {{containers: [s]}}
    """
    catalog = parse_catalog(textwrap.dedent(catalog_yaml), "perf-catalog.yaml").catalog
    settings = RouterSettings.load(catalog.router, port=0, pull_missing=False)
    router = await start_app(create_app(catalog, settings), "127.0.0.1", 0)
    session = aiohttp.ClientSession(auto_decompress=False)
    try:
        await _until_ready(session, router.url)
        yield Routed(scripted, router.url, session)
    finally:
        await session.close()
        await router.close()
        assert scripted.running is not None
        await scripted.running.close()


async def _until_ready(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(200):
        async with session.get(url + "/readyz") as response:
            await response.read()
            if response.status == 200:
                return
        await asyncio.sleep(0.025)
    raise TimeoutError("router never became ready")


def test_scripted_chunks_cut_lines_and_characters() -> None:
    chunks = split_awkwardly(NDJSON_LINES)
    assert b"".join(chunks) == b"".join(NDJSON_LINES)
    assert any(not chunk.endswith(b"\n") for chunk in chunks)
    assert any(_cuts_a_character(chunk) for chunk in chunks)


def _cuts_a_character(chunk: bytes) -> bool:
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


async def test_ndjson_stream_bytes_identical(routed: Routed) -> None:
    response, body, _ = await routed.post("/api/chat", CHAT)
    assert response.status == 200
    assert body == b"".join(NDJSON_LINES)
    assert response.headers["Content-Type"] == "application/x-ndjson"


async def test_sse_stream_bytes_identical(routed: Routed) -> None:
    response, body, _ = await routed.post("/v1/chat/completions", {**CHAT, "stream": True})
    assert response.status == 200
    assert body == b"".join(SSE_EVENTS)
    assert response.headers["Content-Type"] == "text/event-stream"


async def test_large_non_streamed_answer_identical_with_its_length(routed: Routed) -> None:
    # Bigger than the upstream client's high-water mark: reading pauses and resumes.
    response, body, _ = await routed.post("/v1/embeddings", {"model": MODEL, "input": "x"})
    assert response.status == 200
    assert body == BIG
    assert response.headers["Content-Length"] == str(len(BIG))
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Upstream-Note"] == "kept"


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
async def test_headers_kept_dropped_and_added(routed: Routed, path: str) -> None:
    response, _, _ = await routed.post(path, CHAT)
    headers = response.headers
    assert headers["X-Upstream-Note"] == "kept"
    for name in HOP_BY_HOP:
        assert name not in headers, name
    assert headers.get("Connection", "").lower() != "close"
    assert headers["X-Router-Container"] == "s"
    assert headers["X-Router-Model"] == MODEL
    assert len(headers["X-Request-Id"]) == 24
    assert headers.getall("Content-Type") == [headers["Content-Type"]]  # one, not the upstream's and a default


async def test_request_id_reaches_the_container_and_comes_back(routed: Routed) -> None:
    response, _, _ = await routed.post("/api/chat", CHAT, **{"X-Request-Id": "client-chosen-42"})
    assert response.headers["X-Request-Id"] == "client-chosen-42"
    upstream = [r for r in routed.scripted.received if r["path"] == "/api/chat"][-1]
    assert upstream["headers"]["X-Request-Id"] == "client-chosen-42"
    assert upstream["headers"]["Content-Type"] == "application/json"


async def test_request_body_forwarded_as_sent(routed: Routed) -> None:
    raw = b'{"model":  "llama3.2:3b", "messages": [{"role":"user","content":"caf\\u00e9 \xe2\x98\x95"}], "extra": 1.50}'
    async with routed.session.post(routed.url + "/api/chat", data=raw, headers={"Content-Type": "application/json"}) as response:
        await response.read()
    assert [r for r in routed.scripted.received if r["path"] == "/api/chat"][-1]["body"] == raw  # not re-encoded: spacing, escapes, 1.50 kept


async def test_generated_request_ids_differ(routed: Routed) -> None:
    ids = set()
    for _ in range(5):
        response, _, _ = await routed.post("/api/chat", CHAT)
        ids.add(response.headers["X-Request-Id"])
    assert len(ids) == 5


async def test_keep_alive_connections_reused_across_requests(routed: Routed) -> None:
    # One request after another: each reaches the container on the connection the one before used.
    paths = ("/api/chat", "/v1/chat/completions", "/v1/embeddings", "/api/chat")
    for path in paths:
        body = {"model": MODEL, "input": "x"} if path == "/v1/embeddings" else CHAT
        response, _, _ = await routed.post(path, body)
        assert response.status == 200
    forwarded = [r for r in routed.scripted.received if r["path"] in paths]  # not the keep-warm pings (their own client)
    assert len(forwarded) == len(paths)
    assert len({r["peer"] for r in forwarded}) == 1, [r["peer"] for r in forwarded]


# --- against the emulator: the router's answer equals the emulator's own -------------

VOLATILE = {"created_at", "created", "id", "total_duration", "load_duration", "prompt_eval_duration", "eval_duration", "system_fingerprint",
            # the second of two equal requests finds its prompt in the emulator's slot cache
            "prompt_eval_count", "prompt_tokens", "total_tokens"}
def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _events(body: bytes, content_type: str) -> list[Any]:
    if content_type.startswith("text/event-stream"):
        assert body.endswith(b"data: [DONE]\n\n")
        parts = [p for p in body.split(b"\n\n") if p]
        return [p if p == b"data: [DONE]" else _stable(orjson.loads(p.removeprefix(b"data: "))) for p in parts]
    if content_type.startswith("application/x-ndjson"):
        return [_stable(orjson.loads(line)) for line in body.splitlines()]
    return [_stable(orjson.loads(body))]


@pytest_asyncio.fixture
async def emulated() -> AsyncIterator[RouterFleet]:
    async with router_fleet(ONE_CONTAINER, emulator={"tokens_per_second": 200}) as running:
        yield running


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", {**CHAT, "options": {"seed": 7}}),
        ("/api/generate", {"model": MODEL, "prompt": "Why is the sky blue?", "options": {"seed": 7}}),
        ("/v1/chat/completions", {**CHAT, "seed": 7, "stream": True}),
        ("/v1/chat/completions", {**CHAT, "seed": 7}),
        ("/api/chat", {**CHAT, "stream": False, "options": {"seed": 7}}),
    ],
)
async def test_router_answer_equals_the_emulators(emulated: RouterFleet, path: str, body: dict[str, Any]) -> None:
    answers = []
    for base in (emulated.backends["a"].url, emulated.url):
        async with emulated.session.post(base + path, json=body) as response:
            assert response.status == 200
            answers.append((response.headers["Content-Type"], await response.read()))
    (direct_type, direct), (routed_type, routed) = answers
    assert routed_type == direct_type
    assert _events(routed, routed_type) == _events(direct, direct_type)
    streamed = body.get("stream", path.startswith("/api/"))  # Ollama's API streams unless told not to
    assert (len(_events(routed, routed_type)) > 2) == streamed


async def test_large_request_body_forwarded_as_sent(routed: Routed) -> None:
    # Above the upstream client's copy threshold: head and body go out as two buffers.
    content = "x" * 300_000
    raw = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": content}]})
    async with routed.session.post(routed.url + "/api/chat", data=raw, headers={"Content-Type": "application/json"}) as response:
        assert response.status == 200
        await response.read()
    assert [r for r in routed.scripted.received if r["path"] == "/api/chat"][-1]["body"] == raw
