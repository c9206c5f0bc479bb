"""A /v1/responses request read and converted to a chat turn the way
Ollama's Responses layer does it (docs/ollama-wire-2026.md §3.1, §3.2).

Every problem is an ApiError(400) carrying Ollama's text: the Go decoder's
for a wrong JSON type, `input[i]: ...` for a bad input item, the converter's
own for what it does not support (files, image URLs, bad arguments).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from router.emulator.compat import ChatRequest
from router.emulator.decode import BOOL, INT, OBJECT, STRING, check_struct, go_kind, go_syntax_error
from router.emulator.errors import ApiError
from router.emulator.turns import Turn
from router.emulator.validation import think_from_effort

NUMBER = ((int, float), "float64")
REQUEST_TYPES = {
    "model": STRING, "background": BOOL, "include": ((list,), "[]string"), "instructions": STRING,
    "max_output_tokens": INT, "reasoning": ((dict,), "openai.ResponsesReasoning"), "temperature": NUMBER,
    "text": ((dict,), "openai.ResponsesText"), "top_p": NUMBER, "truncation": STRING,
    "tools": ((list,), "[]openai.ResponsesTool"), "stream": BOOL,
}
REASONING_TYPES = {"effort": STRING, "generate_summary": STRING, "summary": STRING}
TEXT_TYPES = {"format": ((dict,), "openai.ResponsesTextFormat")}
ITEM_TYPES = {"type": STRING, "role": STRING}
PART_TYPES = {
    "input_text": ("ResponsesTextContent", {"text": STRING}),
    "output_text": ("ResponsesOutputTextContent", {"text": STRING}),
    "input_image": ("ResponsesImageContent", {"detail": STRING, "file_id": STRING, "image_url": STRING}),
    "input_file": ("ResponsesFileContent", {"file_data": STRING, "file_id": STRING, "file_url": STRING, "filename": STRING}),
}
TOOL_TYPES = {"type": STRING, "name": STRING, "description": STRING, "strict": BOOL,
              "parameters": OBJECT, "tools": ((list,), "[]openai.ResponsesTool")}
# What Go prints for the anonymous struct an input item's type is peeked into.
ITEM_PEEK = 'struct { Type string "json:\\"type\\""; Role string "json:\\"role\\"" }'
CONTENT_PEEK = 'struct { Type string "json:\\"type\\"" }'
IMAGE_PREFIXES = tuple(f"data:image/{kind};base64," for kind in ("jpeg", "jpg", "png", "webp"))
WEB_SEARCH = "web_search"


def _type_error(value: object, struct: str, field: str, go_type: str) -> ApiError:
    return ApiError(400, f"json: cannot unmarshal {go_kind(value)} into Go struct field {struct}.{field} of type {go_type}")


def _decode_image(url: str) -> None:
    """An input_image's URL must be inline base64 data (§3.2)."""
    if url.startswith(("http://", "https://")):
        raise ApiError(400, "image URLs are not currently supported, please use base64 encoded data instead")
    if url.startswith("data:;base64,"):
        data = url[len("data:;base64,") :]
    else:
        prefix = next((p for p in IMAGE_PREFIXES if url.startswith(p)), None)
        if prefix is None:
            raise ApiError(400, "invalid image input")
        data = url[len(prefix) :]
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid image input") from None


def _content_parts(parts: list[Any], where: str) -> list[dict[str, Any]]:
    """Content parts decoded (type checked) without converting them yet."""
    decoded = []
    for index, part in enumerate(parts):
        if not isinstance(part, dict):
            raise ApiError(400, f"{where}[{index}]: json: cannot unmarshal {go_kind(part)} into Go value of type {CONTENT_PEEK}")
        kind = part.get("type")
        if kind not in PART_TYPES:
            shown = kind if isinstance(kind, str) else ""
            raise ApiError(400, f"{where}[{index}]: unknown content type: {shown}")
        struct, types = PART_TYPES[kind]
        check_struct(part, struct, "", types, where=f"{where}[{index}]: ")
        decoded.append(part)
    return decoded


def _convert_parts(parts: list[dict[str, Any]]) -> str:
    """Text parts concatenated with no separator; images checked, files refused."""
    text = ""
    for part in parts:
        kind = part["type"]
        if kind in ("input_text", "output_text"):
            value = part.get("text")
            text += value if isinstance(value, str) else ""
        elif kind == "input_image":
            url = part.get("image_url")
            if isinstance(url, str) and url:
                _decode_image(url)
        else:
            raise ApiError(400, "file inputs are not currently supported")
    return text


def _message_parts(item: dict[str, Any], where: str) -> list[dict[str, Any]]:
    if "content" not in item:
        return []
    content = item["content"]
    if content is None or isinstance(content, str):
        return [{"type": "input_text", "text": content or ""}]
    if isinstance(content, list):
        return _content_parts(content, f"{where}content")
    raise ApiError(
        400,
        f"{where}content must be a string or array: json: cannot unmarshal {go_kind(content)} into Go value of type []json.RawMessage",
    )


def _output_text(item: dict[str, Any], where: str) -> str | list[dict[str, Any]]:
    output = item.get("output")
    if output is None or isinstance(output, str):
        return output or ""
    if isinstance(output, list):
        return _content_parts(output, f"{where}output")
    raise ApiError(
        400,
        f"{where}output must be a string or array: json: cannot unmarshal {go_kind(output)} into Go value of type []json.RawMessage",
    )


def _decode_items(items: list[Any]) -> list[tuple[str, dict[str, Any], Any]]:
    """Step one, as Go's UnmarshalJSON: (kind, item, decoded content) per item, or `input[i]: ...`."""
    decoded: list[tuple[str, dict[str, Any], Any]] = []
    for index, item in enumerate(items):
        where = f"input[{index}]: "
        if not isinstance(item, dict):
            raise ApiError(400, f"{where}json: cannot unmarshal {go_kind(item)} into Go value of type {ITEM_PEEK}")
        check_struct(item, "", "", ITEM_TYPES, where=where)
        kind = item.get("type") if isinstance(item.get("type"), str) else ""
        if not kind and isinstance(item.get("role"), str) and item["role"]:
            kind = "message"
        if kind == "message":
            decoded.append((kind, item, _message_parts(item, where)))
        elif kind == "function_call_output":
            decoded.append((kind, item, _output_text(item, where)))
        elif kind in ("function_call", "reasoning", "web_search_call"):
            decoded.append((kind, item, None))
        elif not kind:
            raise ApiError(400, f"{where}input item missing required 'type' field")
        else:
            raise ApiError(400, f'{where}unknown input item type: "{kind}"')
    return decoded


def _string(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    return value if isinstance(value, str) else ""


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Step two, FromResponsesRequest: the conversation as native chat messages."""
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    raw_input = body.get("input")
    if isinstance(raw_input, str):
        if raw_input:
            messages.append({"role": "user", "content": raw_input})
        return messages
    if raw_input is None:
        return messages
    if not isinstance(raw_input, list):
        raise ApiError(
            400,
            f"input must be a string or array: json: cannot unmarshal {go_kind(raw_input)} into Go value of type []json.RawMessage",
        )
    items = _decode_items(raw_input)
    pending_thinking = ""
    for index, (kind, item, content) in enumerate(items):
        if kind == "reasoning":
            pending_thinking = _string(item, "encrypted_content")
        elif kind == "message":
            message: dict[str, Any] = {"role": _string(item, "role"), "content": _convert_parts(content)}
            if message["role"] == "assistant" and pending_thinking:
                message["thinking"], pending_thinking = pending_thinking, ""
            if not _merged_into_call(messages, message, items, index):
                messages.append(message)
        elif kind == "function_call":
            pending_thinking = _add_call(messages, item, pending_thinking)
        elif kind == "function_call_output":
            text = content if isinstance(content, str) else _convert_parts(content)
            messages.append({"role": "tool", "content": text, "tool_call_id": _string(item, "call_id")})
    if pending_thinking:
        messages.append({"role": "assistant", "content": "", "thinking": pending_thinking})
    return messages


def _merged_into_call(
    messages: list[dict[str, Any]], message: dict[str, Any], items: list[tuple[str, dict[str, Any], Any]], index: int
) -> bool:
    """An assistant message replayed between a call and its output joins the call's message."""
    if message["role"] != "assistant" or index + 1 >= len(items) or not messages:
        return False
    next_kind, next_item, _ = items[index + 1]
    output_call = _string(next_item, "call_id") if next_kind == "function_call_output" else ""
    last = messages[-1]
    if not output_call or last.get("role") != "assistant":
        return False
    if not any(call.get("id") == output_call for call in last.get("tool_calls", [])):
        return False
    if last["content"] and message["content"]:
        last["content"] += "\n"
    last["content"] += message["content"]
    if message.get("thinking"):
        last["thinking"] = message["thinking"]
    return True


def _add_call(messages: list[dict[str, Any]], item: dict[str, Any], pending_thinking: str) -> str:
    """A function_call item joins the preceding assistant message (or starts one)."""
    arguments_text = _string(item, "arguments")
    arguments: object = {}
    if arguments_text:
        try:
            arguments = orjson.loads(arguments_text)
        except orjson.JSONDecodeError:
            reason = go_syntax_error(arguments_text.encode())
            raise ApiError(400, f"failed to parse function call arguments: {reason}") from None
        if not isinstance(arguments, dict):
            raise ApiError(
                400,
                f"failed to parse function call arguments: json: cannot unmarshal {go_kind(arguments)} "
                "into Go value of type api.ToolCallFunctionArguments",
            )
    call = {"id": _string(item, "call_id"), "function": {"name": _string(item, "name"), "arguments": arguments}}
    if messages and messages[-1].get("role") == "assistant":
        last = messages[-1]
        last.setdefault("tool_calls", []).append(call)
    else:
        last = {"role": "assistant", "content": "", "tool_calls": [call]}
        messages.append(last)
    if pending_thinking:
        last["thinking"] = pending_thinking
    return ""


def _function_tools(tools: list[Any]) -> list[dict[str, Any]]:
    """Declared tools as native function tools; namespaces expanded to `ns.member`."""
    native: list[dict[str, Any]] = []
    for tool in tools:
        if not isinstance(tool, dict):
            raise ApiError(400, f"json: cannot unmarshal {go_kind(tool)} into Go value of type openai.ResponsesTool")
        check_struct(tool, "ResponsesTool", "tools.", TOOL_TYPES)
        kind, name = tool.get("type"), _string(tool, "name")
        if kind == WEB_SEARCH:
            continue  # the built-in search: answered by ollama.com, which the emulator cannot reach
        if kind == "namespace":
            members = _function_tools(tool.get("tools") or [])
            for member in members:
                function = member["function"]
                if name and not function["name"].startswith(name + "."):
                    function["name"] = f"{name}.{function['name']}"
            native.extend(members)
            continue
        native.append({
            "type": kind if isinstance(kind, str) else "",
            "function": {
                "name": name,
                "description": _string(tool, "description"),
                "parameters": tool.get("parameters") if isinstance(tool.get("parameters"), dict) else {},
            },
        })
    return native


def parse_request(body: dict[str, Any]) -> ChatRequest:
    """Validate and convert one decoded body (top-level field types already checked)."""
    reasoning = body.get("reasoning") or {}
    check_struct(reasoning, "ResponsesReasoning", "reasoning.", REASONING_TYPES)
    check_struct(body.get("text") or {}, "ResponsesText", "text.", TEXT_TYPES)
    include = body.get("include") or []
    if any(not isinstance(entry, str) for entry in include):
        bad = next(entry for entry in include if not isinstance(entry, str))
        raise _type_error(bad, "ResponsesRequest", "include", "string")
    messages = _messages(body)
    options: dict[str, Any] = {"temperature": body["temperature"] if body.get("temperature") is not None else 1.0}
    if body.get("top_p") is not None:
        options["top_p"] = body["top_p"]
    limit = body.get("max_output_tokens")
    if limit is not None:
        options["num_predict"] = limit
    think = think_from_effort(reasoning.get("effort") or "")
    declared = body.get("tools") or []
    tools = [tool for tool in _function_tools(declared) if tool["type"] == "function"]
    has_web_search = any(isinstance(tool, dict) and tool.get("type") == WEB_SEARCH for tool in declared)
    if has_web_search:
        tools = [tool for tool in tools if tool["function"]["name"] != WEB_SEARCH]
    text = body.get("text") or {}
    fmt = text.get("format") if isinstance(text.get("format"), dict) else None
    schema = fmt.get("schema") if fmt is not None and fmt.get("type") == "json_schema" else None
    return ChatRequest(
        body=body,
        model=body.get("model") or "",
        stream=body.get("stream") is True,
        turn=Turn(
            messages=messages, tools=tools, think=think, options=options,
            limit=limit if isinstance(limit, int) and limit > 0 else None, fmt=schema,
        ),
        has_web_search=has_web_search,
    )
