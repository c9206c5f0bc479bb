"""Anthropic's Messages API: messages forwarded by model, token counts
estimated by the router.

`POST /v1/messages/count_tokens` (Claude Code calls it before long requests)
is not served by `ollama serve`; only Ollama's desktop gateway answers it,
with a rough estimate: a quarter of the byte length of the system prompt,
each message's role and content, and each tool's name, description and
schema (docs/ollama-wire-2026.md §8). The router gives the same estimate, so
it is exactly as good as Ollama's, and no better: an estimate, not the
model's tokenizer. The same numbers are what Ollama reports as
`message_start.usage.input_tokens` before the real count arrives.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from router import wire
from router.http.body import model_name
from router.http.errors import BadRequest
from router.server.context import find_model, forward_by_model, read_json

COUNTED_AS_JSON = frozenset({"tool_use", "tool_result"})  # blocks Ollama's estimate counts as their whole JSON
# Go's encoder writes these as six-byte escapes (\u003c ...): bytes each adds to the JSON's length.
GO_ESCAPE_EXTRA = ((b"<", 5), (b">", 5), (b"&", 5), ("\u2028".encode(), 3), ("\u2029".encode(), 3))


async def messages(request: web.Request) -> web.StreamResponse:
    """POST /v1/messages."""
    return await forward_by_model(request)


async def count_tokens(request: web.Request) -> web.Response:
    """POST /v1/messages/count_tokens: `{"input_tokens": N}`, Ollama's len/4 estimate."""
    body, payload = await read_json(request)
    _, name = model_name(payload, body)
    find_model(request, name)  # the catalog's model, within the caller's allowlist, or 404
    return web.Response(
        body=orjson.dumps({"input_tokens": estimate_input_tokens(payload)}) + b"\n",
        headers={"Content-Type": wire.JSON},
    )


def estimate_input_tokens(payload: dict[str, Any]) -> int:
    """A quarter of the bytes of system, messages and tools; at least 1 when there is any."""
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: a non-empty array of messages is required")
    system = payload.get("system")
    tools = payload.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise BadRequest("tools: must be an array")
    total = _content_size(system, "system")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(f"messages.{index}: a message is an object with a string 'role'")
        total += len(message["role"].encode()) + _content_size(message.get("content"), f"messages.{index}.content")
    for index, tool in enumerate(tools or ()):
        if not isinstance(tool, dict):
            raise BadRequest(f"tools.{index}: a tool is an object")
        schema = tool.get("input_schema")
        total += len(_text(tool.get("name"))) + len(_text(tool.get("description")))
        total += len(orjson.dumps(schema)) if schema is not None else 0  # Ollama keeps the client's bytes
    tokens = total // 4
    return max(tokens, 1)  # at least 1 when there is any message


def _content_size(content: object, where: str) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content.encode())
    if isinstance(content, list):
        return sum(_block_size(block) for block in content if isinstance(block, dict))
    raise BadRequest(f"{where}: must be a string or an array of content blocks")


def _block_size(block: dict[str, Any]) -> int:
    """Text and thinking by their bytes; tool use and results also as their whole JSON."""
    size = len(_text(block.get("text"))) + len(_text(block.get("thinking")))
    if block.get("type") in COUNTED_AS_JSON:
        size += _go_json_length(_as_ollama_block(block))
    return size


def _as_ollama_block(block: dict[str, Any]) -> dict[str, Any]:
    """The block as Ollama holds it (its ContentBlock struct): its fields in that order,
    the empty ones its encoder leaves out left out."""
    shown: dict[str, Any] = {"type": block.get("type")}
    if isinstance(block.get("text"), str):
        shown["text"] = block["text"]
    for key in ("id", "name"):
        if block.get(key):
            shown[key] = block[key]
    if block.get("input") is not None:
        shown["input"] = block["input"]
    if block.get("tool_use_id"):
        shown["tool_use_id"] = block["tool_use_id"]
    if block.get("content") is not None:
        shown["content"] = block["content"]
    if block.get("is_error") is True:
        shown["is_error"] = True
    if isinstance(block.get("thinking"), str):
        shown["thinking"] = block["thinking"]
    if block.get("signature"):
        shown["signature"] = block["signature"]
    return shown


def _go_json_length(value: object) -> int:
    data = orjson.dumps(value)
    return len(data) + sum(data.count(raw) * extra for raw, extra in GO_ESCAPE_EXTRA)


def _text(value: object) -> bytes:
    return value.encode() if isinstance(value, str) else b""


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
