"""`ollama-router demo` (placeholder until the router issue lands)."""

from typing import Any

from router.notlanded import register_placeholder


def register(subparsers: Any) -> None:
    register_placeholder(subparsers, "demo", "emulated backends plus the router for a catalog, no GPU or Docker needed", "the router issue")
