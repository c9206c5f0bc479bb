"""Installed models: names, metadata, lookup (docs/ollama-wire.md §2, §6.3, §6.5).

Metadata is derived deterministically from the name so that two emulators
given the same model report the same digest, size and details.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field

from router.catalog.names import InvalidModelName, ModelName, parse_model_name

EMBEDDING_DIMENSIONS = 768
GENERATIVE_EMBEDDING_LENGTH = 3072
_PARAMS_RE = re.compile(r"(\d+(?:\.\d+)?)([bm])\b", re.IGNORECASE)
_FAMILY_RE = re.compile(r"[a-z]+")
_THINKING_HINTS = ("deepseek-r1", "qwen3", "gpt-oss", "think")
# Library models built on the deepseek2 architecture (no context shift, docs/ollama-wire-2026.md §7.2).
_DEEPSEEK2_PREFIXES = ("deepseek-v2", "deepseek-v3", "deepseek-coder-v2")
# What the models were trained for: the cap on any num_ctx (§7.1).
TRAINED_CONTEXT = 131072
EMBEDDING_TRAINED_CONTEXT = 8192


def is_embedding_name(name: ModelName) -> bool:
    return "embed" in name.model.lower()


@dataclass(slots=True)
class ModelInfo:
    name: ModelName
    embedding: bool
    modified_at: float  # Unix seconds
    context_length: int  # trained context, the cap on num_ctx
    audio: bool = False  # accepts audio input (/v1/audio/transcriptions)
    # computed once: both are read several times per request on the hot path
    key: str = field(init=False)
    display: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = self.name.key
        self.display = self.name.display

    @property
    def digest(self) -> str:
        return hashlib.sha256(("manifest:" + self.key).encode()).hexdigest()

    @property
    def blob_digest(self) -> str:
        return hashlib.sha256(("model:" + self.key).encode()).hexdigest()

    @property
    def parameter_size(self) -> str:
        match = _PARAMS_RE.search(self.name.tag) or _PARAMS_RE.search(self.name.model)
        if match:
            return f"{match.group(1)}{match.group(2).upper()}"
        return "137M" if self.embedding else "3.2B"

    @property
    def parameter_count(self) -> int:
        text = self.parameter_size
        scale = 1e9 if text.endswith("B") else 1e6
        return int(float(text[:-1]) * scale)

    @property
    def size(self) -> int:
        """Bytes on disk: about 4.5 bits per parameter (Q4_K_M), plus a stable jitter."""
        jitter = int(self.digest[:6], 16)
        return int(self.parameter_count * 0.5625) + jitter

    @property
    def family(self) -> str:
        if self.embedding:
            return "nomic-bert"
        if self.name.model.lower().startswith(_DEEPSEEK2_PREFIXES):
            return "deepseek2"
        match = _FAMILY_RE.match(self.name.model.lower())
        return match.group(0) if match else "llama"

    @property
    def capabilities(self) -> list[str]:
        if self.embedding:
            return ["embedding"]
        caps = ["completion", "tools"]
        if any(hint in self.name.model.lower() for hint in _THINKING_HINTS):
            caps.append("thinking")
        if self.audio:
            caps.append("audio")
        return caps

    @property
    def thinking(self) -> bool:
        return "thinking" in self.capabilities

    @property
    def embedding_length(self) -> int:
        return EMBEDDING_DIMENSIONS if self.embedding else GENERATIVE_EMBEDDING_LENGTH

    def details(self, *, with_lengths: bool) -> dict[str, object]:
        details: dict[str, object] = {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": "F16" if self.embedding else "Q4_K_M",
        }
        if with_lengths:
            details["context_length"] = self.context_length
            details["embedding_length"] = self.embedding_length
        return details


class ModelStore:
    """The set of installed models, looked up the way Ollama does (case-insensitive, defaulted)."""

    def __init__(self) -> None:
        self._models: dict[str, ModelInfo] = {}
        # raw request string -> model: the hot path skips re-parsing known names
        self._resolved: dict[str, ModelInfo | None] = {}

    def describe(
        self, raw: str, *, embedding: bool = False, audio: bool = False, modified_at: float | None = None
    ) -> ModelInfo:
        """Metadata for a name without installing it (what a pull would fetch)."""
        name = parse_model_name(raw)
        embedding = embedding or is_embedding_name(name)
        return ModelInfo(
            name=name,
            embedding=embedding,
            modified_at=time.time() if modified_at is None else modified_at,
            context_length=EMBEDDING_TRAINED_CONTEXT if embedding else TRAINED_CONTEXT,
            audio=audio and not embedding,
        )

    def install(
        self, raw: str, *, embedding: bool = False, audio: bool = False, modified_at: float | None = None
    ) -> ModelInfo:
        info = self.describe(raw, embedding=embedding, audio=audio, modified_at=modified_at)
        self._models[info.key] = info
        self._resolved.clear()
        return info

    def remove(self, info: ModelInfo) -> None:
        self._models.pop(info.key, None)
        self._resolved.clear()

    def resolve(self, raw: str) -> ModelInfo | None:
        """The installed model a request string names, None if not installed.

        Raises InvalidModelName for strings outside the grammar.
        """
        try:
            return self._resolved[raw]
        except KeyError:
            pass
        info = self._models.get(parse_model_name(raw).key)
        if len(self._resolved) < 10_000:
            self._resolved[raw] = info
        return info

    def listing(self) -> list[ModelInfo]:
        """Newest first, as /api/tags sorts."""
        return sorted(self._models.values(), key=lambda m: m.modified_at, reverse=True)

    def __len__(self) -> int:
        return len(self._models)


__all__ = ["InvalidModelName", "ModelInfo", "ModelStore"]
