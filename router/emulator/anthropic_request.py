"""A /v1/messages request checked and converted to a chat turn the way
Ollama's Anthropic layer does it (docs/ollama-wire-2026.md §4.2, §4.3).

Every problem is an ApiError(400) with Ollama's text, found in Ollama's
order: the Go decoder, then model, max_tokens and messages, then the
content blocks message by message, then the tools.
"""

from __future__ import annotations

import base64
import binascii
import string
from dataclasses import dataclass
from typing import Any

from router.emulator.compat import ChatRequest
from router.emulator.decode import BOOL, INT, STRING, check_struct, go_kind
from router.emulator.errors import ApiError
from router.emulator.gojson import go_any, go_dumps
from router.emulator.turns import Turn

NUMBER = ((int, float), "float64")
REQUEST_TYPES = {
    "model": STRING, "max_tokens": INT, "messages": ((list,), "[]anthropic.MessageParam"), "stream": BOOL,
    "temperature": NUMBER, "top_p": NUMBER, "top_k": INT, "stop_sequences": ((list,), "[]string"),
    "tools": ((list,), "[]anthropic.Tool"), "tool_choice": ((dict,), "anthropic.ToolChoice"),
    "thinking": ((dict,), "anthropic.ThinkingConfig"), "metadata": ((dict,), "anthropic.Metadata"),
    "output_config": ((dict,), "anthropic.OutputConfig"),
}
TOOL_TYPES = {"type": STRING, "name": STRING, "description": STRING, "max_uses": INT}
NESTED_TYPES = (
    ("thinking", "ThinkingConfig", {"type": STRING, "budget_tokens": INT}),
    ("output_config", "OutputConfig", {"effort": STRING}),
    ("tool_choice", "ToolChoice", {"type": STRING, "name": STRING, "disable_parallel_tool_use": BOOL}),
    ("metadata", "Metadata", {"user_id": STRING}),
)
BLOCK_TYPES = {"type": STRING, "text": STRING, "id": STRING, "name": STRING, "tool_use_id": STRING,
               "thinking": STRING, "signature": STRING, "is_error": BOOL}
MESSAGE_PEEK = 'struct { Role string "json:\\"role\\""; Content json.RawMessage "json:\\"content\\"" }'
EFFORT_LEVELS = ("high", "medium", "low", "max")
_BASE64_ALPHABET = frozenset(string.ascii_letters + string.digits + "+/")


@dataclass(slots=True)
class MessagesRequest(ChatRequest):
    estimated_input_tokens: int = 0  # what message_start reports (§4.5)


def _field_error(value: object, struct: str, field: str, go_type: str) -> ApiError:
    return ApiError(400, f"json: cannot unmarshal {go_kind(value)} into Go struct field {struct}.{field} of type {go_type}")


def _blocks(message: object) -> tuple[str, list[dict[str, Any]]]:
    """(role, content blocks) of one message, a string content being one text block."""
    if not isinstance(message, dict):
        raise ApiError(400, f"json: cannot unmarshal {go_kind(message)} into Go value of type {MESSAGE_PEEK}")
    role = message.get("role")
    if role is not None and not isinstance(role, str):
        raise _field_error(role, "", "role", "string")
    if "content" not in message:
        raise ApiError(400, "unexpected end of JSON input")
    content = message["content"]
    if content is None or isinstance(content, str):
        return role or "", [{"type": "text", "text": content or ""}]
    if not isinstance(content, list):
        raise ApiError(400, f"json: cannot unmarshal {go_kind(content)} into Go value of type []anthropic.ContentBlock")
    for block in content:
        if not isinstance(block, dict):
            raise ApiError(400, f"json: cannot unmarshal {go_kind(block)} into Go value of type anthropic.ContentBlock")
        check_struct(block, "ContentBlock", "", BLOCK_TYPES)
        if block.get("input") is not None and not isinstance(block["input"], dict):
            raise ApiError(400, f"json: cannot unmarshal {go_kind(block['input'])} into Go value of type map[string]interface {{}}")
    return role or "", content


def _base64_error(data: str) -> str | None:
    """Go's StdEncoding complaint about `data`, None when it decodes."""
    try:
        base64.b64decode(data, validate=True)
        return None
    except (binascii.Error, ValueError):
        pass
    bad = next((i for i, ch in enumerate(data) if ch not in _BASE64_ALPHABET and ch != "="), None)
    if bad is None:
        padding = data.find("=")
        bad = padding if padding >= 0 and padding < len(data) - 2 else len(data) - len(data) % 4
    return f"illegal base64 data at input byte {bad}"


def _check_image(source: object) -> None:
    if not isinstance(source, dict):
        raise ApiError(400, "invalid image source")
    kind = source.get("type") if isinstance(source.get("type"), str) else ""
    if kind != "base64":
        raise ApiError(400, f"invalid image source type: {kind}. Only base64 images are supported.")
    data = source.get("data")
    problem = _base64_error(data if isinstance(data, str) else "")
    if problem is not None:
        raise ApiError(400, f"invalid base64 image data: {problem}")


def _tool_result_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    text = ""
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            text += block["text"]
        elif block.get("type") == "image":
            if not isinstance(block.get("source"), dict):
                raise ApiError(400, "invalid tool_result image source")
            _check_image(block["source"])
    return text


def _convert(role: str, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One Anthropic message as native messages: tool results become `tool`
    messages (before the user's text), tool_use blocks the assistant's calls."""
    role = role.lower()
    text, thinking, images = "", "", 0
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            text += block.get("text") or ""
        elif kind == "image":
            _check_image(block.get("source"))
            images += 1
        elif kind in ("tool_use", "server_tool_use"):
            if kind == "tool_use" and not block.get("id"):
                raise ApiError(400, "tool_use block missing required 'id' field")
            if kind == "tool_use" and not block.get("name"):
                raise ApiError(400, "tool_use block missing required 'name' field")
            calls.append({"id": block.get("id") or "", "function": {"name": block.get("name") or "", "arguments": block.get("input") or {}}})
        elif kind in ("tool_result", "web_search_tool_result"):
            content = _tool_result_text(block.get("content")) if kind == "tool_result" else ""
            results.append({"role": "tool", "content": content, "tool_call_id": block.get("tool_use_id") or ""})
        elif kind == "thinking":
            thinking = block.get("thinking") or ""
        # any other block type (document, redacted_thinking, ...) is dropped
    messages = results if role == "user" else []
    if text or images or calls or thinking:
        message: dict[str, Any] = {"role": role, "content": text}
        if calls:
            message["tool_calls"] = calls
        if thinking:
            message["thinking"] = thinking
        messages.append(message)
    if role != "user":
        messages.extend(results)
    return messages


def _system(system: object) -> str:
    """A string, or text blocks concatenated with no separator."""
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "".join(
            block["text"] for block in system
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
        )
    return ""


def _function_tool(tool: dict[str, Any]) -> dict[str, Any]:
    name = tool.get("name") or ""
    schema = tool.get("input_schema")
    if schema is not None:
        if not isinstance(schema, dict):
            raise ApiError(
                400,
                f'invalid input_schema for tool "{name}": json: cannot unmarshal {go_kind(schema)} '
                "into Go value of type api.ToolFunctionParameters",
            )
        for key, go_type, accepted in (("type", "string", str), ("required", "[]string", list), ("properties", "map", dict)):
            value = schema.get(key)
            if value is not None and not isinstance(value, accepted):
                raise ApiError(
                    400,
                    f'invalid input_schema for tool "{name}": json: cannot unmarshal {go_kind(value)} '
                    f"into Go struct field ToolFunctionParameters.{key} of type {go_type}",
                )
    return {"type": "function", "function": {"name": name, "description": tool.get("description") or "", "parameters": schema or {}}}


def _is_server_search(tool: object) -> bool:
    return isinstance(tool, dict) and isinstance(tool.get("type"), str) and tool["type"].startswith("web_search")


def _think(body: dict[str, Any], efforts: bool) -> object:
    """thinking.type enabled/disabled, else output_config.effort (§4.3)."""
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled":
        return True
    if thinking.get("type") == "disabled":
        return False
    effort = (body.get("output_config") or {}).get("effort")
    if efforts and isinstance(effort, str):
        level = effort.strip().lower()
        level = "high" if level == "xhigh" else level
        if level in EFFORT_LEVELS:
            return level
    return None


def _block_size(block: dict[str, Any]) -> int:
    """What the token estimate counts of one content block (§4.5)."""
    size = len(block.get("text", "").encode()) if isinstance(block.get("text"), str) else 0
    size += len(block["thinking"].encode()) if isinstance(block.get("thinking"), str) else 0
    if block.get("type") in ("tool_use", "tool_result"):
        shown = {key: block[key] for key in ("type", "text", "id", "name", "input", "tool_use_id", "content", "is_error", "thinking")
                 if block.get(key) not in (None, "", False)}
        if "content" in shown:
            shown["content"] = go_any(shown["content"])
        size += len(go_dumps(shown))
    return size


def estimate_input_tokens(body: dict[str, Any], messages: list[tuple[str, list[dict[str, Any]]]]) -> int:
    """len/4 of system, roles, content and tools, at least 1 when there is any."""
    total = 0
    system = body.get("system")
    if isinstance(system, str):
        total += len(system.encode())
    elif isinstance(system, list):
        total += sum(_block_size(block) for block in system if isinstance(block, dict))
    elif system is not None:
        total += len(go_dumps(go_any(system)))
    for role, blocks in messages:
        total += len(role.encode()) + sum(_block_size(block) for block in blocks)
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            schema = tool.get("input_schema")
            total += len(str(tool.get("name") or "").encode()) + len(str(tool.get("description") or "").encode())
            total += len(go_dumps(schema)) if schema is not None else 0
    tokens = total // 4
    if tokens == 0 and (messages or system is not None):
        tokens = 1
    return tokens


def parse_request(body: dict[str, Any], *, efforts: bool) -> MessagesRequest:
    """Validate and convert one decoded body (top-level field types already checked)."""
    raw_messages = body.get("messages") or []
    decoded = [_blocks(message) for message in raw_messages]
    for field, struct, types in NESTED_TYPES:
        check_struct(body.get(field) or {}, struct, f"{field}.", types)
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict):
            raise _field_error(tool, "MessagesRequest", "tools", "anthropic.Tool")
        check_struct(tool, "Tool", "tools.", TOOL_TYPES)
    stops = body.get("stop_sequences") or []
    if any(not isinstance(stop, str) for stop in stops):
        raise _field_error(next(s for s in stops if not isinstance(s, str)), "MessagesRequest", "stop_sequences", "string")
    model = body.get("model") or ""
    if not model:
        raise ApiError(400, "model is required")
    max_tokens = body.get("max_tokens") or 0
    if max_tokens <= 0:
        raise ApiError(400, "max_tokens is required and must be positive")
    if not raw_messages:
        raise ApiError(400, "messages is required")
    messages: list[dict[str, Any]] = []
    system = _system(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for role, blocks in decoded:
        messages.extend(_convert(role, blocks))
    declared = [tool for tool in body.get("tools") or [] if isinstance(tool, dict)]
    has_web_search = any(_is_server_search(tool) for tool in declared)
    tools = [
        _function_tool(tool) for tool in declared
        if not _is_server_search(tool) and not (has_web_search and tool.get("name") == "web_search")
    ]
    options: dict[str, Any] = {"num_predict": max_tokens}
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None:
            options[key] = body[key]
    if stops:
        options["stop"] = stops
    return MessagesRequest(
        body=body,
        model=model,
        stream=body.get("stream") is True,
        turn=Turn(messages=messages, tools=tools, think=_think(body, efforts), options=options, limit=max_tokens),
        has_web_search=has_web_search,
        estimated_input_tokens=estimate_input_tokens(body, decoded),
    )
