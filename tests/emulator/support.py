"""Measuring the emulator's slot prompt cache from a client's side (router/emulator/README.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.emulators import EmulatorHandle


def words(tag: str, count: int) -> str:
    """`count` distinct words (one token each) that no other tag shares."""
    return " ".join(f"{tag}{index}" for index in range(count))


@dataclass
class Measured:
    reply: Any
    processed: int  # the emulator's prompt_tokens_processed moved by this much
    reused: int  # and prompt_tokens_reused by this much


def measured(emu: EmulatorHandle, send: Any) -> Measured:
    before = emu.stats()
    reply = send()
    after = emu.stats()
    return Measured(
        reply,
        after["prompt_tokens_processed"] - before["prompt_tokens_processed"],
        after["prompt_tokens_reused"] - before["prompt_tokens_reused"],
    )


def kept(previous: Measured) -> int:
    """What a slot holds after a turn: its whole prompt and the answer it generated."""
    return previous.processed + previous.reused + previous.reply.eval_count
