"""What the router's tests share: one catalog, clients, raw HTTP and stats helpers."""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import ollama
import openai
import orjson

from router.catalog import parse_catalog
from router.server.app import create_app
from router.server.runner import start_app
from router.settings import RouterSettings
from tests.harness import RouterFleet

# Two containers for llama (a is the primary), one each for qwen and the embedder.
CATALOG = """
version: 1
defaults:
  keep_alive: 1h
containers:
  a: {gpus: [0], port: 1}
  b: {gpus: [1], port: 2}
  q: {gpus: [2], port: 3}
  e: {gpus: [3], port: 4, num_parallel: 1}
models:
  llama3.2:3b:
    containers: [a, b]
    aliases: [gpt-4o-mini]
    context_length: 131072
    capabilities: [completion, tools]
    owned_by: meta
    description: a small llama
  qwen2.5:7b:
    containers: [q]
    aliases: [gpt-4o]
    context_length: 32768
  nomic-embed-text:
    containers: [e]
    aliases: [text-embedding-3-small]
    capabilities: [embedding]
"""
LLAMA = "llama3.2:3b"
QWEN = "qwen2.5:7b"
EMBED = "nomic-embed-text:latest"
TAGS = (LLAMA, QWEN, EMBED)
CONTAINERS_OF = {LLAMA: {"a", "b"}, QWEN: {"q"}, EMBED: {"e"}}
OLDEST_VERSION = "0.9.2"  # lower than 0.33.0 as versions, higher as strings
MESSAGES = [{"role": "user", "content": "Say hello"}]


@dataclass(slots=True)
class Reply:
    status: int
    headers: Any  # CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


async def http(
    fleet: RouterFleet,
    method: str,
    path: str,
    *,
    json: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One raw request to the router, its whole body read."""
    body = orjson.dumps(json) if json is not None else data
    async with fleet.session.request(method, fleet.url + path, data=body, headers=headers) as response:
        return Reply(response.status, response.headers, await response.read())


@dataclass(slots=True)
class Arrival:
    at: float  # seconds since the request was sent
    data: bytes


async def chunks(fleet: RouterFleet, path: str, json: Any) -> tuple[aiohttp.ClientResponse, list[Arrival]]:
    """A streamed request: every piece of body as it arrived, with its arrival time."""
    started = time.perf_counter()
    arrivals = []
    async with fleet.session.post(fleet.url + path, data=orjson.dumps(json)) as response:
        async for data in response.content.iter_any():
            arrivals.append(Arrival(time.perf_counter() - started, data))
    return response, arrivals


def openai_client(fleet: RouterFleet) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fleet.url + "/v1", api_key="unused", max_retries=0)


def ollama_client(fleet: RouterFleet) -> ollama.AsyncClient:
    return ollama.AsyncClient(host=fleet.url)


async def requests_by_container(fleet: RouterFleet) -> dict[str, int]:
    stats = await asyncio.gather(*(b.stats() for b in fleet.backends.values()))
    return {name: s["requests"] for name, s in zip(fleet.backends, stats, strict=False)}


async def served_by(fleet: RouterFleet, action: Callable[[], Awaitable[Any]]) -> tuple[Any, dict[str, int]]:
    """Run `action`; return its result and how many model requests each container saw meanwhile."""
    before = await requests_by_container(fleet)
    result = await action()
    after = await requests_by_container(fleet)
    return result, {name: after[name] - before[name] for name in after if after[name] != before[name]}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> bool:
    """Poll `check` until it holds or `timeout` passes; returns the last result."""
    deadline = time.perf_counter() + timeout
    while True:
        if await check():
            return True
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def router_before(upstream_url: str, **settings: Any) -> AsyncIterator[str]:
    """The router (keep-warm off, plus `settings`) in front of one stand-in container at
    `upstream_url` serving model `m:1b`; yields the router's URL."""
    yaml = f"""
    version: 1
    containers:
      x: {{url: "{upstream_url}"}}
    models:
      m:1b: {{containers: [x]}}
    """
    catalog = parse_catalog(textwrap.dedent(yaml), "standin.yaml").catalog
    router_settings = RouterSettings.load(catalog.router, **{"port": 0, "keep_warm": False, **settings})
    router = await start_app(create_app(catalog, router_settings), "127.0.0.1", 0)
    try:
        yield router.url
    finally:
        await router.close()
