"""`ollama-router keys` (placeholder until the access-control issue lands)."""

from typing import Any

from router.notlanded import register_placeholder


def register(subparsers: Any) -> None:
    register_placeholder(subparsers, "keys", "manage API keys", "the access-control issue")
