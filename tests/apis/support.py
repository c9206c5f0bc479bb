"""What the API tests share: a keyed fleet's catalog, SDK clients with keys, and
the normalisation that lets two answers to the same request be compared byte for byte."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai

from tests.access.support import make_keys, parse_metrics, sample
from tests.harness import RouterFleet

# llama on two containers (both child processes, to be SIGKILLed), falling back to qwen.
CATALOG = """
version: 1
containers:
  a: {gpus: [0], port: 1}
  b: {gpus: [1], port: 2}
  q: {gpus: [2], port: 3}
models:
  llama3.2:3b:
    containers: [a, b]
    aliases: [claude-3-5-haiku-latest, gpt-4.1-mini]
    fallback: [qwen2.5:7b]
    capabilities: [completion, tools]
  qwen2.5:7b:
    containers: [q]
    aliases: [claude-sonnet-4-5]
"""
LLAMA = "llama3.2:3b"
QWEN = "qwen2.5:7b"
HAIKU = "claude-3-5-haiku-latest"  # an alias of llama
SONNET = "claude-sonnet-4-5"  # an alias of qwen
MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]
KEY_SPECS = {"dev": [], "team": ["--models", HAIKU], "meter": [], "admin": ["--admin"]}
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def make_keys_file(directory: Path) -> tuple[Path, dict[str, str]]:
    """A keys file with KEY_SPECS, made by `ollama-router keys add`."""
    file = directory / "keys.yaml"
    return file, make_keys(file, KEY_SPECS)


@dataclass
class Apis:
    fleet: RouterFleet
    keys: dict[str, str]

    @property
    def url(self) -> str:
        return self.fleet.url

    def anthropic(self, who: str = "dev", **kwargs: Any) -> anthropic.AsyncAnthropic:
        """The SDK as Claude Code configures it: the key in x-api-key, anthropic-version sent."""
        return anthropic.AsyncAnthropic(base_url=self.url, api_key=self.keys.get(who, who), max_retries=0, **kwargs)

    def openai(self, who: str = "dev", **kwargs: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=self.keys.get(who, who), max_retries=0, **kwargs)

    def auth(self, who: str = "dev") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    async def metric(self, name: str, **labels: str) -> float:
        async with self.fleet.session.get(self.url + "/metrics", headers=self.auth("admin")) as response:
            assert response.status == 200
            return sample(parse_metrics(await response.text()), name, **labels)

    async def requests_seen(self) -> dict[str, int]:
        """Model requests each container has received so far (its emulator's count)."""
        stats = await asyncio.gather(*(backend.stats() for backend in self.fleet.backends.values()))
        return {name: s["requests"] for name, s in zip(self.fleet.backends, stats, strict=True)}


# What differs between two answers to one request: ids drawn at random, clocks, and
# the estimate and counts that depend on the prompt's wording only through the model name.
VARYING = [
    (re.compile(rb'"(id|item_id|response_id)":"(resp|msg|rs|fc|call|toolu)_[^"]*"'), rb'"\1":"<id>"'),
    (re.compile(rb'"(created_at|completed_at|created)":\d+'), rb'"\1":0'),
    (re.compile(rb'(call|fc)_[A-Za-z0-9_]+'), rb"\1_<id>"),
    # the second of two equal prompts finds the first's in the container's prompt cache: fewer
    # prompt tokens evaluated (Ollama counts only what it evaluated), so fewer input tokens reported
    (re.compile(rb'"(input_tokens|total_tokens)":\d+'), rb'"\1":0'),
]


def normalised(body: bytes) -> bytes:
    for pattern, replacement in VARYING:
        body = pattern.sub(replacement, body)
    return body


def sse_events(body: bytes) -> list[tuple[str, bytes]]:
    """(event name, data) of every record of an SSE body with `event:` lines, checking the framing."""
    assert body.endswith(b"\n\n"), body[-200:]
    events = []
    for record in body[:-2].split(b"\n\n"):
        event, data = record.split(b"\n")
        assert event.startswith(b"event: ") and data.startswith(b"data: "), record
        events.append((event[7:].decode(), data[6:]))
    return events
