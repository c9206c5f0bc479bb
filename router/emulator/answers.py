"""What a model answers: seeded reasoning, text or JSON, cut by stop and num_predict."""

from __future__ import annotations

from typing import Any

from router.emulator.state import Emulator
from router.emulator.store import ModelInfo
from router.emulator.text import answer_tokens, apply_stop, structured_tokens, thinking_tokens


def thinks(info: ModelInfo, think: object) -> bool:
    """Thinking-capable models think unless told not to (think false / effort none)."""
    return info.thinking and think is not False


def conversation_key(turns: list[tuple[Any, str]]) -> str:
    """The seed of a conversation's answer: its roles and contents in order, so
    the same conversation gets the same answer on every API."""
    return "\x1e".join(f"{role}\x1f{content}" for role, content in turns)


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
