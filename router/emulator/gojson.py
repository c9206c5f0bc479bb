"""JSON bytes as Go's encoding/json writes them (docs/ollama-wire-2026.md §2).

The compatibility layers of Ollama marshal two kinds of values: structs,
whose keys keep declaration order (build the dict in that order), and
`map[string]any`, whose keys come out sorted (`sort_keys=True`, or
`go_map` for one sorted value inside a struct). Either way Go escapes
`<`, `>`, `&`, U+2028 and U+2029, and prints a float64 with no
fractional part as an integer (`1`, never `1.0`).
"""

from __future__ import annotations

from typing import Any

import orjson

# orjson writes these characters raw; inside JSON they can only occur in
# strings, so a byte replacement is exactly Go's escaping.
_HTML_ESCAPES = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)
_LARGEST_PLAIN_FLOAT = 1e21  # from here on Go switches to exponent notation


def go_dumps(value: object, *, sort_keys: bool = False) -> bytes:
    """`json.Marshal(value)`: compact, HTML-escaped, no trailing newline."""
    data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    for raw, escaped in _HTML_ESCAPES:
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def go_number(value: object) -> object:
    """A JSON number decoded into float64 and marshalled again."""
    if isinstance(value, float) and value.is_integer() and abs(value) < _LARGEST_PLAIN_FLOAT:
        return int(value)
    return value


def go_any(value: Any) -> Any:
    """A value decoded into `any` and marshalled again: numbers as float64,
    keys of every nested object sorted."""
    if isinstance(value, dict):
        return {key: go_any(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [go_any(item) for item in value]
    return go_number(value)


def raw_json(value: object) -> orjson.Fragment:
    """A `json.RawMessage` echoed back: the client's value, compacted, key order kept."""
    return orjson.Fragment(orjson.dumps(value))
