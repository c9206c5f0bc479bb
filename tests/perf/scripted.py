"""A scripted Ollama stand-in for the fast-path tests: fixed bytes, chosen chunking.

It answers the probes and keep-warm pings the router sends, and serves each
inference path with bytes the test fixes in advance, written in the chunks the
test chooses (lines split mid-way, a multi-byte character split across
writes), plus headers a proxy must keep or drop. It records what it received.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from router import wire
from router.server.runner import RunningApp, start_app

MODEL = "llama3.2:3b"
PS = b'{"models":[{"name":"llama3.2:3b","model":"llama3.2:3b","expires_at":"2099-01-01T00:00:00Z","size_vram":1}]}'
TAGS = b'{"models":[{"name":"llama3.2:3b","model":"llama3.2:3b"}]}'

# NDJSON as /api/chat streams it; the chunks below split it at awkward places.
NDJSON_LINES = [
    b'{"model":"llama3.2:3b","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":"Caf\xc3\xa9"},"done":false}\n',
    b'{"model":"llama3.2:3b","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":" \xe2\x98\x95 au lait"},"done":false}\n',
    b'{"model":"llama3.2:3b","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","eval_count":3,"eval_duration":1000}\n',
]
SSE_EVENTS = [
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"llama3.2:3b","choices":[{"index":0,"delta":{"role":"assistant","content":"Caf\xc3\xa9"},"finish_reason":null}]}\n\n',
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"llama3.2:3b","choices":[{"index":0,"delta":{"content":" \xe2\x98\x95"},"finish_reason":"stop"}]}\n\n',
    b"data: [DONE]\n\n",
]


def split_awkwardly(lines: list[bytes]) -> list[bytes]:
    """The same bytes in chunks that cut lines, and a UTF-8 character, in two."""
    data = b"".join(lines)
    cuts = sorted({7, data.index(b"\xc3") + 1, data.index(b"\xe2") + 2, len(lines[0]) + 5, len(data) - 3})
    chunks, start = [], 0
    for cut in [*cuts, len(data)]:
        chunks.append(data[start:cut])
        start = cut
    return [c for c in chunks if c]


@dataclass
class Scripted:
    """What the scripted server received, and where it listens."""

    running: RunningApp | None = None
    received: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self.running is not None
        return self.running.url


def big_json(size: int) -> bytes:
    """A non-streamed JSON answer of about `size` bytes (several read buffers)."""
    return b'{"model":"llama3.2:3b","embeddings":[[' + b",".join(b"0.125" for _ in range(size // 6)) + b"]]}"


BIG = big_json(1_500_000)


async def _streamed(request: web.Request, content_type: str, chunks: list[bytes]) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        "Content-Type": content_type,
        "Keep-Alive": "timeout=5",  # hop-by-hop: must not reach the client
        "X-Upstream-Note": "kept",  # end-to-end: must
    })
    await response.prepare(request)
    for chunk in chunks:
        await response.write(chunk)
        await asyncio.sleep(0.005)  # separate TCP segments, so the router sees the cuts
    await response.write_eof()
    return response


async def start_scripted() -> Scripted:
    scripted = Scripted()

    def remember(request: web.Request, body: bytes) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        scripted.received.append({"path": request.path, "headers": CIMultiDict(request.headers), "body": body, "peer": peer})

    async def root(request: web.Request) -> web.Response:
        return web.Response(body=wire.OLLAMA_RUNNING, content_type="text/plain")

    def fixed(body: bytes) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body, content_type="application/json")
        return handler

    async def generate(request: web.Request) -> web.Response:  # keep-warm pings
        remember(request, await request.read())
        return web.json_response({"model": MODEL, "response": "", "done": True, "done_reason": "load"})

    async def chat(request: web.Request) -> web.StreamResponse:
        remember(request, await request.read())
        return await _streamed(request, wire.NDJSON, split_awkwardly(NDJSON_LINES))

    async def openai_chat(request: web.Request) -> web.StreamResponse:
        remember(request, await request.read())
        return await _streamed(request, "text/event-stream", split_awkwardly(SSE_EVENTS))

    async def embeddings(request: web.Request) -> web.Response:
        remember(request, await request.read())
        return web.Response(body=BIG, content_type="application/json", headers={"X-Upstream-Note": "kept"})

    app = web.Application()
    app.router.add_get("/", root)
    app.router.add_get("/api/version", fixed(b'{"version":"0.33.0"}'))
    app.router.add_get("/api/ps", fixed(PS))
    app.router.add_get("/api/tags", fixed(TAGS))
    app.router.add_post("/api/generate", generate)
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/v1/chat/completions", openai_chat)
    app.router.add_post("/v1/embeddings", embeddings)
    scripted.running = await start_app(app, "127.0.0.1", 0)
    return scripted
