"""Response builders with Ollama's exact content types and framing (1.3, 1.4)."""

from __future__ import annotations

from aiohttp import web

from router.emulator.gojson import go_dumps
from router.wire import JSON, JSON_UTF8, SSE, dumps

SSE_DONE = b"data: [DONE]\n\n"


def native_json(value: object, status: int = 200) -> web.Response:
    """Native non-streamed JSON: no trailing newline, charset=utf-8."""
    return web.Response(status=status, body=dumps(value), headers={"Content-Type": JSON_UTF8})


def plain_json(value: object, status: int = 200) -> web.Response:
    """`application/json` without charset, no trailing newline (pull with stream:false)."""
    return web.Response(status=status, body=dumps(value), headers={"Content-Type": JSON})


def openai_json(value: object) -> web.Response:
    """OpenAI non-streamed JSON: a trailing newline, no charset."""
    return web.Response(body=dumps(value) + b"\n", headers={"Content-Type": JSON})


def ndjson_line(value: object) -> bytes:
    return dumps(value) + b"\n"


def sse_event(value: object) -> bytes:
    return b"data: " + dumps(value) + b"\n\n"


def sse_named(event: str, data: bytes) -> bytes:
    """One `event:` + `data:` record (the Responses and Anthropic streams)."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def encoded_json(value: object) -> web.Response:
    """A compatibility layer's body written by json.Encoder: Go's escaping, a trailing newline."""
    return web.Response(body=go_dumps(value) + b"\n", headers={"Content-Type": JSON})


async def event_stream_once(request: web.Request, data: bytes, headers: dict[str, str]) -> web.StreamResponse:
    """A whole event stream known up front (a load-only reply), as a chunked SSE response."""
    response = web.StreamResponse(headers={**headers, "Content-Type": SSE})
    await response.prepare(request)
    await response.write(data)
    await response.write_eof()
    return response
