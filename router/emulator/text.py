"""Deterministic model output: seeded answers, generate's context, embeddings.

Same request -> same text: the answer is seeded by the model, the prompt and
the `seed` option. Nothing here sleeps; pacing belongs to the engine.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import zlib
from array import array
from functools import lru_cache

from router.emulator.tokens import VOCABULARY_SIZE

_WORDS = ["the", "sky", "is", "blue", "because", "sunlight", "scatters", "off", "small", "molecules", "in", "the", "air", "and", "shorter", "wavelengths", "bounce", "around", "more", "than", "longer", "ones", "so", "we", "see", "blue", "light", "coming", "from", "every", "direction", "during", "the", "day", "while", "sunsets", "look", "red", "as", "light", "travels", "through", "more", "atmosphere", "models", "answer", "questions", "by", "predicting", "one", "token", "after", "another", "from", "patterns", "learned", "in", "training", "data", "with", "attention", "over", "the", "context", "window"]


def _seed(*parts: object) -> int:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@lru_cache(maxsize=4096)
def answer_tokens(model_key: str, prompt: str, seed: object, count: int) -> tuple[str, ...]:
    """`count` tokens of seeded prose: `("The", " sky", ..., ".")`.

    Cached: benchmarks and keep-warm traffic repeat the same prompts.
    """
    if count <= 0:
        return ()
    rng = random.Random(_seed(model_key, prompt, seed))
    words = rng.choices(_WORDS, k=count - 1) if count > 1 else []
    tokens = [" " + w for w in words]
    if tokens:
        tokens[0] = words[0].capitalize()
    tokens.append(".")
    return tuple(tokens)


def thinking_tokens(model_key: str, prompt: str, seed: object, count: int) -> tuple[str, ...]:
    """Seeded reasoning text, distinct from the answer to the same prompt."""
    return answer_tokens(model_key, "\x1dthinking\x1d" + prompt, seed, count)


def context_ids(prompt: str, tokens: tuple[str, ...], prompt_count: int) -> list[int]:
    """Token ids for generate's `context`: prompt_count ids, then one per answer token."""
    base = zlib.crc32(prompt.encode())
    ids = [(base + i * 7919) % VOCABULARY_SIZE for i in range(prompt_count)]
    ids.extend(zlib.crc32(t.encode()) % VOCABULARY_SIZE for t in tokens)
    return ids


def raw_vector(model_key: str, text: str, dimensions: int) -> list[float]:
    """A deterministic pseudo-random vector with components in [-1, 1)."""
    data = hashlib.shake_256(f"{model_key}\x1f{text}".encode()).digest(dimensions * 2)
    values = array("H", data)
    return [v / 32768.0 - 1.0 for v in values]


def unit_vector(model_key: str, text: str, dimensions: int, cut: int | None = None) -> list[float]:
    """L2-normalised embedding; `cut` truncates first, then re-normalises (6.1)."""
    vector = raw_vector(model_key, text, dimensions)
    if cut is not None and 0 < cut < dimensions:
        vector = vector[:cut]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def apply_stop(tokens: tuple[str, ...], stops: list[str]) -> tuple[str, ...]:
    """Cut the answer before the first stop sequence (the stop text is not emitted)."""
    text = "".join(tokens)
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    if cut < 0:
        return tokens
    kept: list[str] = []
    length = 0
    for token in tokens:
        if length + len(token) > cut:
            remainder = token[: cut - length]
            if remainder:
                kept.append(remainder)
            break
        kept.append(token)
        length += len(token)
    return tuple(kept)


_JSON_PIECE_RE = re.compile(r'\s*(?:"(?:[^"\\]|\\.)*"|[^\s"]+)')
_SCHEMA_PLACEHOLDERS: dict[str, object] = {"integer": 1, "number": 1.5, "boolean": True, "array": [], "null": None}


def _from_schema(schema: dict[str, object], text: str) -> object:
    """A value that satisfies the simple JSON schemas clients send for structured output."""
    kind = schema.get("type")
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {"response": text}
        return {
            name: _from_schema(spec if isinstance(spec, dict) else {}, text) for name, spec in properties.items()
        }
    if kind == "array":
        items = schema.get("items")
        return [_from_schema(items, text)] if isinstance(items, dict) else []
    if isinstance(kind, str) and kind in _SCHEMA_PLACEHOLDERS:
        return _SCHEMA_PLACEHOLDERS[kind]
    return text


def structured_tokens(answer: tuple[str, ...], fmt: object) -> tuple[str, ...]:
    """The answer as JSON (format "json" or a JSON schema), split into token-sized pieces."""
    text = "".join(answer)
    value = _from_schema(fmt, text) if isinstance(fmt, dict) else {"response": text}
    return tuple(_JSON_PIECE_RE.findall(json.dumps(value)))
