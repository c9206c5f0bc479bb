"""ollama-router: one address in front of a fleet of GPU-pinned Ollama containers."""

__version__ = "0.1.0"
