"""keep_alive and other durations in the forms Ollama accepts (docs/ollama-wire.md §7.1).

Two grammars exist upstream and both are needed:
- a request's `keep_alive` (and the catalog's, which is sent as one): a number
  is seconds, a string must be a Go duration (only "0" may lack a unit);
- `OLLAMA_KEEP_ALIVE`: a Go duration, else integer seconds.
Negative values mean "forever", represented here as `math.inf`.
"""

from __future__ import annotations

import math
import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_DURATION = re.compile(r"^([-+]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)$")
_GO_COMPONENT = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
FOREVER = math.inf


class InvalidDuration(ValueError):
    """Carries Ollama's own error text as its message."""


def parse_go_duration(text: str) -> float:
    """Go's time.ParseDuration, returning seconds (negative kept as-is)."""
    if text in ("0", "+0", "-0"):
        return 0.0
    match = _GO_DURATION.match(text)
    if not match:
        if re.match(r"^[-+]?(\d+\.?\d*|\.\d+)$", text):
            raise InvalidDuration(f'time: missing unit in duration "{text}"')
        raise InvalidDuration(f'time: invalid duration "{text}"')
    sign = -1.0 if match.group(1) == "-" else 1.0
    total = sum(float(num) * _UNITS[unit] for num, unit in _GO_COMPONENT.findall(match.group(2)))
    return sign * total


def go_type_name(value: object) -> str:
    """The Go type of a decoded interface{} value, as `%T` prints it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return "<nil>"


def _unsupported(value: object) -> InvalidDuration:
    """A value that is neither a number nor a string (other than a JSON kind: its Python type)."""
    name = go_type_name(value) if isinstance(value, (bool, list, dict)) else type(value).__name__
    return InvalidDuration(f"Unsupported type: '{name}'")


def parse_keep_alive(value: object) -> float:
    """A request/catalog keep_alive to seconds; `FOREVER` when negative.

    Raises InvalidDuration with the message Ollama would answer with (400).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _unsupported(value)
    seconds = parse_go_duration(value.strip()) if isinstance(value, str) else float(value)
    if seconds < 0:
        return FOREVER
    return seconds


def parse_env_keep_alive(text: str, default: float = 300.0) -> float:
    """OLLAMA_KEEP_ALIVE: Go duration, else integer seconds, else the default."""
    text = text.strip().strip("\"'")
    try:
        seconds = parse_go_duration(text)
    except InvalidDuration:
        try:
            seconds = float(int(text))
        except ValueError:
            return default
    return FOREVER if seconds < 0 else seconds


def parse_interval(value: object) -> float:
    """Router settings such as `5s`, `60s` or a bare number of seconds."""
    if isinstance(value, bool):
        raise _unsupported(value)
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = parse_go_duration(text)
    else:
        raise _unsupported(value)
    if seconds < 0:
        raise InvalidDuration(f"negative duration {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds to a duration string both grammars accept (forever is `-1m`)."""
    if seconds == FOREVER:
        return "-1m"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"
