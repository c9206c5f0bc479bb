"""Which Ollama release introduced what (docs/ollama-wire-2026.md §1).

An emulator started with `--version X` serves only what Ollama X served:
a newer endpoint answers gin's plain 404, as the older server would.
"""

from __future__ import annotations

from router.emulator.config import EmulatorConfig

Version = tuple[int, int, int]

# Endpoints newer than the oldest release the emulator speaks (§1).
ENDPOINT_SINCE: dict[str, Version] = {
    "/v1/responses": (0, 13, 3),
    "/v1/messages": (0, 14, 0),
    "/api/status": (0, 16, 2),
    "/v1/audio/transcriptions": (0, 20, 0),
}
# Names ending :cloud / -cloud are sent to ollama.com instead of looked up (§6.1).
CLOUD_NAMES_SINCE: Version = (0, 17, 6)
# OLLAMA_NO_CLOUD and server.json's disable_ollama_cloud exist from here (§6.3).
NO_CLOUD_SINCE: Version = (0, 16, 2)
# The default num_ctx follows the GPU memory from here; 4096 before (§7.1).
VRAM_CONTEXT_SINCE: Version = (0, 15, 5)
# A differing context shift reloads the runner from here (§7.2).
SHIFT_RELOAD_SINCE: Version = (0, 30, 0)
# The over-long prompt is refused (shift off) instead of always truncated (§7.3).
PROMPT_REFUSAL_SINCE: Version = (0, 30, 9)
# The embedding refusal has its current wording from here (§7.4).
EMBED_REFUSAL_SINCE: Version = (0, 30, 0)
# Anthropic `output_config.effort` maps to a think level from here (§4.3).
ANTHROPIC_EFFORT_SINCE: Version = (0, 23, 4)


def serves(config: EmulatorConfig, path: str) -> bool:
    """Whether the emulated release has this route at all."""
    since = ENDPOINT_SINCE.get(path)
    return since is None or config.version_info >= since


def at_least(config: EmulatorConfig, since: Version) -> bool:
    return config.version_info >= since
