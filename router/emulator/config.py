"""The emulator's settings, shared by the server, the scheduler and the CLI."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from router.catalog.durations import parse_env_keep_alive, parse_keep_alive

# The newest stable release (docs/ollama-wire-2026.md §1): what an emulator is unless told.
DEFAULT_VERSION = "0.32.15"
# The OpenAI chat stream dialect changed in this release (docs/ollama-wire.md §10.1).
CURRENT_STREAM_DIALECT_SINCE = (0, 32, 6)
# /api/tags capabilities and details.context_length appeared here (13).
CAPABILITIES_SINCE = (0, 30, 0)
# /api/chat unknown-model message changed here (9.2).
NEW_CHAT_NOT_FOUND_SINCE = (0, 12, 0)


def version_tuple(version: str) -> tuple[int, int, int]:
    """`0.32.6-rc1` -> (0, 32, 6); anything unparsable counts as a dev build (0.0.0)."""
    core = version.strip().lstrip("v").split("-", 1)[0].split("+", 1)[0]
    parts = core.split(".")
    try:
        numbers = [int(p) for p in parts[:3]]
    except ValueError:
        return (0, 0, 0)
    while len(numbers) < 3:
        numbers.append(0)
    return (numbers[0], numbers[1], numbers[2])


@dataclass(slots=True)
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 11434
    models: list[str] = field(default_factory=list)
    embedding_models: list[str] = field(default_factory=list)
    load_time: float = 0.0
    tokens_per_second: float = 0.0  # 0 = as fast as possible (no sleeps at all)
    num_parallel: int = 1
    max_queue: int = 512
    max_loaded_models: int = 3
    keep_alive: str | float = "5m"
    version: str = DEFAULT_VERSION
    allow_pull: bool = True
    response_tokens: int = 24
    # OLLAMA_CONTEXT_LENGTH: the num_ctx of loads that do not ask; 0 = from the VRAM tier (§7.1)
    context_length: int = 0
    vram_gib: float = 0.0  # total GPU memory the emulated server reports; 0 = a CPU-only box
    pull_time: float = 1.0  # seconds of simulated download for a model not yet installed
    # DNS-rebinding protection of 8.1; only active when bound to loopback.
    check_host: bool = True
    origins: list[str] = field(default_factory=list)  # OLLAMA_ORIGINS, besides the built-in ones
    audio_models: list[str] = field(default_factory=list)  # installed models with the audio capability
    no_cloud: bool = False  # ~/.ollama/server.json disable_ollama_cloud (§6.3)
    no_cloud_env: bool = False  # OLLAMA_NO_CLOUD (§6.3)

    @property
    def default_keep_alive(self) -> float:
        """Seconds (math.inf = forever), read the way OLLAMA_KEEP_ALIVE is."""
        if isinstance(self.keep_alive, str):
            return parse_env_keep_alive(self.keep_alive)
        return parse_keep_alive(self.keep_alive)

    @property
    def version_info(self) -> tuple[int, int, int]:
        return version_tuple(self.version)

    @property
    def legacy_chat_stream(self) -> bool:
        return self.version_info < CURRENT_STREAM_DIALECT_SINCE

    @property
    def max_loaded(self) -> int:
        return self.max_loaded_models if self.max_loaded_models > 0 else 3

    @property
    def slots_per_model(self) -> int:
        return max(1, self.num_parallel)


FOREVER_SECONDS = 292 * 365.25 * 86400  # Go's maximum time.Duration, as /api/ps shows it
assert not math.isinf(FOREVER_SECONDS)
