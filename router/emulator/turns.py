"""One chat turn for the compatibility layers that convert to /api/chat
(Responses, Anthropic Messages, transcriptions; docs/ollama-wire-2026.md
§3.1, §4.3, §5): native messages and tools in, a Job out, answered exactly
as /api/chat would answer the same conversation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from router.emulator.answers import plan_answer, thinks
from router.emulator.engine import Job
from router.emulator.faults import Fault
from router.emulator.state import Emulator
from router.emulator.store import ModelInfo
from router.emulator.text import prompt_token_count
from router.emulator.tools import plan_tool_calls
from router.emulator.window import chat_fit, resolve_shift


@dataclass(slots=True)
class Turn:
    """A converted request: what /api/chat receives."""

    messages: list[dict[str, Any]]  # {"role", "content", ...}; content always a string
    tools: list[dict[str, Any]] = field(default_factory=list)  # native function tools
    think: object = None  # None = the model's default
    options: dict[str, Any] = field(default_factory=dict)  # native options (seed, stop, ...)
    limit: int | None = None  # num_predict
    fmt: object = None  # native `format`


def prompt_key(messages: list[dict[str, Any]]) -> str:
    """The seed of the answer: the same conversation gets the same answer on every API."""
    return "\x1e".join(f"{m.get('role', '')}\x1f{m.get('content', '')}" for m in messages)


def turn_job(emulator: Emulator, info: ModelInfo, turn: Turn, fault: Fault | None) -> Job:
    """The Job that answers `turn` (no keep_alive: compatibility requests carry none)."""
    texts = [str(m.get("content", "")) for m in turn.messages]
    calls = plan_tool_calls(turn.tools, turn.messages) if turn.tools else None
    tokens, thinking, reason = plan_answer(
        emulator, info, prompt_key(turn.messages), turn.options, turn.limit,
        think=thinks(info, turn.think), answer=calls is None, fmt=turn.fmt,
    )
    return Job(
        info, None, prompt_token_count(texts, messages=len(texts)), tokens, reason, fault,
        thinking=thinking, tool_calls=calls,
        fit=chat_fit(
            [(str(m.get("role", "")), text) for m, text in zip(turn.messages, texts, strict=True)],
            resolve_shift(None, info), emulator.config,
        ),
    )
