"""Helpers shared by the fleet tests: raw HTTP calls that keep status, headers and timing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from tests.harness import RouterFleet, catalog_yaml

TWO_CONTAINERS = catalog_yaml("a", "b", models={"llama3.2:3b": "containers: [a, b]"})
# llama on a, which falls back to qwen on b
FALLBACK = catalog_yaml(
    "a", "b", models={"llama3.2:3b": "containers: [a], fallback: [qwen2.5:7b]", "qwen2.5:7b": "containers: [b]"}
)
MODEL = "llama3.2:3b"
FAST = {"health_interval": 0.3, "probe_timeout": 1.0}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def container(self) -> str | None:
        return self.headers.get("X-Router-Container")


def chat_body(api: str, *, stream: bool = False, model: str = MODEL, **extra: Any) -> tuple[str, dict[str, Any]]:
    """Path and JSON body of a one-message chat in `api` ("openai" or "ollama")."""
    messages = [{"role": "user", "content": "hello"}]
    if api == "openai":
        return "/v1/chat/completions", {"model": model, "messages": messages, "stream": stream, **extra}
    return "/api/chat", {"model": model, "messages": messages, "stream": stream, **extra}


async def post(
    fleet: RouterFleet,
    path: str,
    body: dict[str, Any],
    *,
    session: aiohttp.ClientSession | None = None,
    timeout: float = 30.0,
) -> Reply:
    started = time.perf_counter()
    async with (session or fleet.session).post(
        fleet.url + path, json=body, timeout=aiohttp.ClientTimeout(total=timeout)
    ) as response:
        data = await response.read()
        return Reply(response.status, dict(response.headers), data, time.perf_counter() - started)


async def chat(fleet: RouterFleet, api: str = "openai", *, stream: bool = False, **extra: Any) -> Reply:
    path, body = chat_body(api, stream=stream, **extra)
    return await post(fleet, path, body)


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, every: float = 0.05
) -> float:
    """Seconds until `predicate()` held; TimeoutError after `timeout`."""
    started = time.perf_counter()
    while not await predicate():
        if time.perf_counter() - started > timeout:
            raise TimeoutError("condition never held")
        await asyncio.sleep(every)
    return time.perf_counter() - started


async def container_status(fleet: RouterFleet, name: str) -> dict[str, Any]:
    return next(c for c in (await fleet.status())["containers"] if c["name"] == name)


async def ps_models(fleet: RouterFleet, name: str) -> dict[str, dict[str, Any]]:
    """The emulator's own `/api/ps`, by model name."""
    listing = await fleet.backends[name].request("GET", "/api/ps")
    return {m["model"]: m for m in listing["models"]}


def first_choice(fleet: RouterFleet, model: str = MODEL) -> str:
    """The container the balancer would pick next for `model`."""
    services = fleet.services
    target = services.runtime.catalog.resolve(model)
    assert target is not None
    return services.balancer.candidates(target)[0].name


async def wait_ready_state(fleet: RouterFleet, ready: bool, timeout: float = 10.0) -> dict[str, object]:
    """Until `/readyz` answers `ready`; its body."""
    answer: dict[str, object] = {}

    async def readyz_says() -> bool:
        nonlocal answer
        async with fleet.session.get(fleet.url + "/readyz") as response:
            answer = await response.json()
            return (response.status == 200) is ready and answer["ready"] is ready

    await wait_until(readyz_says, timeout=timeout)
    return answer


async def unload_behind_the_routers_back(fleet: RouterFleet, name: str, model: str = MODEL) -> None:
    """`ollama stop`, through /api/chat (so that a fault armed on /api/generate spares it)."""
    await fleet.backends[name].request("POST", "/api/chat", json={"model": model, "messages": [], "keep_alive": 0})
