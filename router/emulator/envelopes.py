"""Error envelopes of the compatibility layers (docs/ollama-wire-2026.md §3.5, §4.6).

Where the error is written tells its framing: a compatibility middleware
rejecting the request aborts through gin (`application/json; charset=utf-8`,
no trailing newline); an error from the chat handler goes through the
layer's writer (`application/json`, a trailing newline, and on a streamed
request the SSE headers the middleware had already set).
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from router.emulator.gojson import go_dumps
from router.wire import JSON, JSON_UTF8, openai_error_type

STREAM_HEADERS = {"Cache-Control": "no-cache", "Connection": "keep-alive"}
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def random_hex_id(prefix: str) -> str:
    """`<prefix>_` and 24 hex digits, as Anthropic-layer ids are made."""
    return f"{prefix}_{secrets.token_hex(12)}"


def openai_error(message: str, status: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": openai_error_type(status), "param": None, "code": None}}


def anthropic_error(message: str, status: int) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": ANTHROPIC_ERROR_TYPES.get(status, "api_error"), "message": message},
        "request_id": random_hex_id("req"),
    }


def aborted(body: dict[str, Any], status: int) -> web.Response:
    """Rejected by the middleware, before the request reached the chat handler."""
    return web.Response(status=status, body=go_dumps(body), headers={"Content-Type": JSON_UTF8})


def written(body: dict[str, Any], status: int, *, streaming: bool) -> web.Response:
    """Failed in the chat handler, rewritten by the layer's writer."""
    headers = {**(STREAM_HEADERS if streaming else {}), "Content-Type": JSON}
    return web.Response(status=status, body=go_dumps(body) + b"\n", headers=headers)
