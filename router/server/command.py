"""`ollama-router serve` (placeholder until the router issue lands)."""

from typing import Any

from router.notlanded import register_placeholder


def register(subparsers: Any) -> None:
    register_placeholder(subparsers, "serve", "run the router in front of the catalog's containers", "the router issue")
