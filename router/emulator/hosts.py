"""The Host-header check upstream applies on a loopback bind (docs/ollama-wire.md §8.1): the shared rule."""

from router.origins import HostRule as HostCheck

__all__ = ["HostCheck"]
