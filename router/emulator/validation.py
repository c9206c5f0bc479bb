"""Request validation and model lookup shared by the native and OpenAI handlers (4.6, 7.1, 9)."""

from __future__ import annotations

from typing import Any

from router.catalog.durations import InvalidDuration, parse_keep_alive
from router.catalog.names import InvalidModelName, ModelName, display_name, parse_model_name
from router.emulator.errors import ApiError
from router.emulator.state import Emulator
from router.emulator.store import ModelInfo, ModelStore

_FLOAT_OPTIONS = frozenset(
    ["temperature", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty", "frequency_penalty"]
)
_INT_OPTIONS = frozenset(
    ["num_keep", "seed", "num_predict", "top_k", "repeat_last_n", "num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread", "draft_num_predict"]
)
_BOOL_OPTIONS = frozenset({"use_mmap"})
THINK_LEVELS = ("high", "medium", "low", "max")
# OpenAI reasoning effort -> native think (docs/ollama-wire-2026.md §3.1); "" means unset.
REASONING_EFFORTS: dict[str, object] = {
    "": None, "none": False, "minimal": "low", "low": "low", "medium": "medium", "high": "high",
    "max": "max", "xhigh": "max", "ultra": "max",
}

def keep_alive_of(body: dict[str, Any]) -> float | None:
    """The request's keep_alive in seconds (inf = forever), None when not set."""
    value = body.get("keep_alive")
    if value is None:
        return None
    try:
        return parse_keep_alive(value)
    except InvalidDuration as exc:
        raise ApiError(400, str(exc)) from None


def check_options(options: object) -> dict[str, Any]:
    """Known options of the wrong JSON type fail with 500, as upstream does while scheduling."""
    if not isinstance(options, dict):
        return {}
    for key, value in options.items():
        if value is None:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key in _FLOAT_OPTIONS and not number:
            raise ApiError(500, f'option "{key}" must be of type float32')
        if key in _INT_OPTIONS and not number:
            raise ApiError(500, f'option "{key}" must be of type integer')
        if key in _BOOL_OPTIONS and not isinstance(value, bool):
            raise ApiError(500, f'option "{key}" must be of type boolean')
        if key == "stop" and not (isinstance(value, list) and all(isinstance(s, str) for s in value)):
            raise ApiError(500, f'option "{key}" must be of an array of strings')
    return options


def check_think(info: ModelInfo, raw_name: str, think: object) -> None:
    if think is None or think is False:
        return
    if isinstance(think, str) and think not in THINK_LEVELS:
        raise ApiError(
            400, f'invalid think value: "{think}" (must be "high", "medium", "low", "max", true, or false)'
        )
    if not isinstance(think, (bool, str)):
        raise ApiError(400, f"invalid think value: {think!r}")
    if not info.thinking:
        raise ApiError(400, f'"{raw_name}" does not support thinking')


def think_from_effort(effort: object) -> object:
    """`reasoning_effort` / `reasoning.effort` as a think value (None = the model's default)."""
    if effort is None:
        return None
    if isinstance(effort, str) and effort in REASONING_EFFORTS:
        return REASONING_EFFORTS[effort]
    raise ApiError(
        400,
        f'invalid reasoning value: "{effort}" '
        '(must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max", or "none")',
    )


def check_top_logprobs(body: dict[str, Any]) -> None:
    value = body.get("top_logprobs")
    if value is not None and isinstance(value, (int, float)) and not 0 <= value <= 20:
        raise ApiError(400, "top_logprobs must be between 0 and 20")


def resolve(store: ModelStore, raw: str, not_found: str) -> ModelInfo:
    """The installed model, or 400 invalid name / 404 with `not_found.format(name)`."""
    try:
        info = store.resolve(raw)
    except InvalidModelName:
        raise ApiError(400, "invalid model name") from None
    if info is None:
        raise ApiError(404, not_found.format(raw))
    return info


def resolve_named(store: ModelStore, raw: str) -> tuple[ModelName, ModelInfo | None]:
    """`raw` parsed and looked up (None when not installed); an invalid name is a 400."""
    try:
        return parse_model_name(raw), store.resolve(raw)
    except InvalidModelName:
        raise ApiError(400, "invalid model name") from None


def chat_model(emulator: Emulator, body: dict[str, Any], not_found: str) -> tuple[str, ModelInfo]:
    """A chat request's model as asked for and its lookup: required, installed, not an embedding model."""
    model = body.get("model") or ""
    if not model:
        raise ApiError(400, "model is required")
    info = lookup(emulator, model, not_found)
    if info.embedding:
        raise ApiError(400, f'"{model}" does not support chat')
    return model, info


def lookup(emulator: Emulator, raw: str, not_found: str) -> ModelInfo:
    """note_model + resolve with one lookup (the hot path does both)."""
    try:
        info = emulator.store.resolve(raw)
    except InvalidModelName:
        raise ApiError(400, "invalid model name") from None
    if info is None:
        emulator.stats.note_model(display_name(raw))
        raise ApiError(404, not_found.format(raw))
    emulator.stats.note_model(info.display)
    return info


def note_model(emulator: Emulator, raw: str) -> None:
    """Count the request against its model (valid names only)."""
    try:
        info = emulator.store.resolve(raw)
    except InvalidModelName:
        return
    if info is not None:
        emulator.stats.note_model(info.display)
        return
    emulator.stats.note_model(display_name(raw))


def num_predict(options: dict[str, Any]) -> int | None:
    value = options.get("num_predict")
    if isinstance(value, (int, float)) and value > 0:
        return int(value)
    return None
