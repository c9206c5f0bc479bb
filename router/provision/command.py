"""`ollama-router up/down/status/compose` (placeholders until the provisioning issue lands)."""

from typing import Any

from router.notlanded import register_placeholder


def register(subparsers: Any) -> None:
    register_placeholder(subparsers, "up", "create or reconcile the catalog's Docker containers, pull and load models", "the provisioning issue")
    register_placeholder(subparsers, "down", "remove the catalog's Docker containers", "the provisioning issue")
    register_placeholder(subparsers, "status", "show the catalog's containers, GPUs, health and loaded models", "the provisioning issue")
    register_placeholder(subparsers, "compose", "write a Docker Compose file for the catalog", "the provisioning issue")
