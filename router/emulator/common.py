"""Validation shared by the native and OpenAI handlers (ollama-api.md 4.6, 7.1, 9)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from router.catalog.durations import InvalidDuration, parse_keep_alive
from router.catalog.names import InvalidModelName, display_name
from router.emulator.errors import ApiError
from router.emulator.gate import Gate
from router.emulator.state import Emulator
from router.emulator.store import ModelInfo, ModelStore
from router.emulator.text import answer_tokens, apply_stop, structured_tokens, thinking_tokens

_FLOAT_OPTIONS = frozenset(
    "temperature top_p min_p typical_p repeat_penalty presence_penalty frequency_penalty".split()
)
_INT_OPTIONS = frozenset(
    "num_keep seed num_predict top_k repeat_last_n num_ctx num_batch num_gpu main_gpu "
    "num_thread draft_num_predict".split()
)
_BOOL_OPTIONS = frozenset({"use_mmap"})
THINK_LEVELS = ("high", "medium", "low", "max")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guarded(handler: Handler, gate: Gate) -> Handler:
    """CORS and the Host check (8.1, 8.2) as a handler wrapper (cheaper than a middleware)."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        early = gate.check(request)
        if early is not None:
            return early
        return await handler(request)

    return wrapper


def counted(emulator: Emulator, handler: Handler, gate: Gate) -> Handler:
    """Wrap a model endpoint so /_emulator/stats sees it (see stats.py for the rules),
    with the gate folded in to keep one wrapper on the hot path."""
    stats = emulator.stats

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        early = gate.check(request)
        if early is not None:
            return early
        stats.requests += 1
        stats.in_flight += 1
        try:
            return await handler(request)
        except asyncio.CancelledError:
            stats.cancelled += 1
            raise
        finally:
            stats.in_flight -= 1

    return wrapper


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


def thinks(info: ModelInfo, think: object) -> bool:
    """Thinking-capable models think unless told not to (think false / effort none)."""
    return info.thinking and think is not False


def plan_answer(
    emulator: Emulator,
    info: ModelInfo,
    prompt_key: str,
    options: dict[str, Any],
    limit: int | None,
    *,
    think: bool = False,
    answer: bool = True,
    fmt: object = None,
) -> tuple[tuple[str, ...], int, str]:
    """(tokens, how many of them are reasoning, done_reason).

    Seeded reasoning first (half an answer's length) when `think`, then the
    seeded answer cut at stop sequences (none when `answer` is False: a tool
    call replaces it), as JSON when a `format` asks for structured output;
    num_predict caps the whole.
    """
    seed = options.get("seed")
    count = emulator.config.response_tokens
    reasoning = thinking_tokens(info.key, prompt_key, seed, max(1, count // 2)) if think else ()
    tokens = answer_tokens(info.key, prompt_key, seed, count) if answer else ()
    if answer and fmt:
        tokens = structured_tokens(tokens, fmt)
    stops = options.get("stop")
    if stops:
        tokens = apply_stop(tokens, stops)
    if reasoning:
        tokens = reasoning + tokens
    if limit is not None and limit < len(tokens):
        return tokens[:limit], min(len(reasoning), limit), "length"
    return tokens, len(reasoning), "stop"
