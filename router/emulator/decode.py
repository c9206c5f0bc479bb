"""Request bodies decoded the way Go's encoding/json reports problems (1.2).

Only the fields the emulator reads are type-checked; like Go, unknown
fields are ignored and JSON null means "not set".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from router.emulator.errors import ApiError

# field -> (accepted Python types, Go type name used in the message)
FieldTypes = Mapping[str, tuple[tuple[type, ...], str]]

STRING = ((str,), "string")
BOOL = ((bool,), "bool")
OBJECT = ((dict,), "map[string]interface {}")
INT = ((int,), "int")


def go_kind(value: object) -> str:
    """The JSON kind Go names in `cannot unmarshal <kind>`."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _quote_char(char: str) -> str:
    if char == "'":
        return "'\\''"
    if char == '"':
        return "'\"'"
    if char.isprintable():
        return f"'{char}'"
    return "'" + json.dumps(char)[1:-1] + "'"


def _enclosing(text: str, pos: int) -> str:
    """'{' or '[' : the innermost open container at pos (strings skipped)."""
    stack: list[str] = []
    in_string = escaped = False
    for char in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append(char)
        elif char in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def go_syntax_error(raw: bytes) -> str:
    """Best-effort Go encoding/json syntax error text for an invalid body."""
    text = raw.decode("utf-8", errors="replace")
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        pos = exc.pos
        if pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
            return "unexpected EOF"
        char = _quote_char(text[pos])
        if exc.msg.startswith("Expecting value"):
            return f"invalid character {char} looking for beginning of value"
        if exc.msg.startswith("Expecting property name"):
            return f"invalid character {char} looking for beginning of object key string"
        if exc.msg.startswith("Expecting ':'"):
            return f"invalid character {char} after object key"
        if exc.msg.startswith("Expecting ','"):
            if _enclosing(text, pos) == "[":
                return f"invalid character {char} after array element"
            return f"invalid character {char} after object key:value pair"
        if exc.msg.startswith("Extra data"):
            return f"invalid character {char} after top-level value"
        if exc.msg.startswith("Invalid control character"):
            return f"invalid character {char} in string literal"
        return f"invalid character {char} looking for beginning of value"
    except RecursionError:
        return "exceeded max depth"
    # orjson refused what json accepts (NaN, lone surrogates...): Go refuses them too.
    return "invalid character 'N' looking for beginning of value"


def check_struct(data: dict[str, Any], struct: str, path: str, types: FieldTypes, *, where: str = "") -> None:
    """Go's decoder on a nested struct: the first known field of the wrong JSON
    type fails, named `<struct>.<path><field>` as Go names nested fields."""
    for name, (accepted, go_type) in types.items():
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted):
            raise ApiError(
                400,
                f"{where}json: cannot unmarshal {go_kind(value)} into Go struct field {struct}.{path}{name} of type {go_type}",
            )


async def read_json(request: web.Request, struct: str, types: FieldTypes, package: str = "api") -> dict:
    """The decoded body as a dict, or ApiError 400 with Go's message."""
    raw = await request.read()
    if not raw:
        raise ApiError(400, "missing request body")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, go_syntax_error(raw)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ApiError(400, f"json: cannot unmarshal {go_kind(data)} into Go value of type {package}.{struct}")
    for name, value in data.items():  # bodies carry few fields: walk them, not the spec
        spec = types.get(name)
        if spec is None or value is None:
            continue
        accepted, go_type = spec
        if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted):
            raise ApiError(
                400,
                f"json: cannot unmarshal {go_kind(value)} into Go struct field {struct}.{name} of type {go_type}",
            )
    return data


async def bind_json(request: web.Request, struct: str, types: FieldTypes, package: str) -> dict[str, Any]:
    """gin's ShouldBindJSON in a compatibility middleware: as read_json, except
    that an empty body is the decoder's bare `EOF`."""
    if not await request.read():
        raise ApiError(400, "EOF")
    return await read_json(request, struct, types, package)
