"""`ollama-router emulate` (placeholder until the emulator issue lands)."""

from typing import Any

from router.notlanded import register_placeholder


def register(subparsers: Any) -> None:
    register_placeholder(subparsers, "emulate", "run one emulated Ollama server", "the emulator issue")
