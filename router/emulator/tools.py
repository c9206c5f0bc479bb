"""Synthesised tool calls: a model given tools calls the first one (5.1, 10.1).

The rule keeps agent loops testable and deterministic in shape: when the
request offers tools and the last message is the user's, the answer is one
call of the first tool with placeholder values for its required parameters;
once a `tool` message answers it, the model replies with text.
"""

from __future__ import annotations

import random
import string
from typing import Any

from router.emulator.gojson import go_dumps

_PLACEHOLDERS: dict[str, object] = {
    "string": "emulated", "integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {},
}
_ID_ALPHABET = string.ascii_lowercase + string.digits


def call_id() -> str:
    """`call_` + 8 random [a-z0-9], as native responses carry since v0.12.10."""
    return "call_" + "".join(random.choices(_ID_ALPHABET, k=8))


def plan_tool_calls(tools: object, messages: list[Any]) -> list[dict[str, Any]] | None:
    """Native tool calls for this turn, or None when the model should answer in text."""
    if not isinstance(tools, list) or not tools or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    tool = tools[0]
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        return None
    parameters = function.get("parameters") if isinstance(function.get("parameters"), dict) else {}
    properties = parameters.get("properties") if isinstance(parameters.get("properties"), dict) else {}
    required = parameters.get("required") if isinstance(parameters.get("required"), list) else []
    arguments = {}
    for name in required:
        spec = properties.get(name) if isinstance(properties.get(name), dict) else {}
        kind = spec.get("type") if isinstance(spec.get("type"), str) else "string"
        enum = spec.get("enum")
        arguments[name] = enum[0] if isinstance(enum, list) and enum else _PLACEHOLDERS.get(kind, "emulated")
    return [{"id": call_id(), "function": {"index": 0, "name": function["name"], "arguments": arguments}}]


def call_arguments(call: dict[str, Any]) -> str:
    """A native call's arguments as the JSON string the OpenAI-style layers carry (Go's encoding)."""
    return go_dumps(call["function"]["arguments"]).decode()


def openai_tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The OpenAI form: `arguments` as a JSON string, `type` and `index` at the top."""
    return [
        {
            "id": call["id"],
            "index": call["function"]["index"],
            "type": "function",
            "function": {
                "name": call["function"]["name"],
                "arguments": call_arguments(call),
            },
        }
        for call in calls
    ]
