"""What the console's tests share: catalogs, keys made with `keys add`, load."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from router.catalog import Catalog
from router.server.app import create_app
from router.server.runner import RunningApp, start_app
from router.settings import RouterSettings
from tests.access.support import make_keys, parse_metrics
from tests.harness import RouterFleet, catalog_yaml, router_fleet

LLAMA = "llama3.2:3b"
QWEN = "qwen2.5:7b"
# llama on two containers, falling back to qwen on a third
CATALOG = catalog_yaml(
    "a", "b", "q",
    models={
        LLAMA: "containers: [a, b], aliases: [gpt-4o-mini], fallback: [qwen2.5:7b]",
        QWEN: "containers: [q], aliases: [gpt-4o]",
    },
)
DEMO_CATALOG = (Path(__file__).parents[2] / "catalog" / "demo.yaml").read_text()
# fast enough for tests: probes, snapshots and heartbeats well under a second
FAST = {"health_interval": 0.5, "probe_timeout": 1.0, "snapshot_interval": 0.2}

# name -> `keys add` arguments after the name
KEY_SPECS: dict[str, list[str]] = {
    "ops": ["--admin"],
    "team": ["--models", "gpt-4o-mini"],  # llama3.2:3b only (on a and b)
    "qwen-team": ["--models", QWEN, "--rate-limit", "1", "--burst", "1"],
}


@dataclass
class KeyedFleet:
    fleet: RouterFleet
    file: Path
    keys: dict[str, str]

    def bearer(self, name: str) -> str:
        return f"Authorization: Bearer {self.keys[name]}"


def make_keys_file(directory: Path) -> tuple[Path, dict[str, str]]:
    """A keys file with KEY_SPECS, made by `ollama-router keys add`."""
    file = directory / "keys.yaml"
    return file, make_keys(file, KEY_SPECS)


@contextlib.asynccontextmanager
async def keyed_fleet(directory: Path, catalog: str = CATALOG, **kwargs: Any) -> AsyncIterator[KeyedFleet]:
    file, keys = make_keys_file(directory)
    settings = {**FAST, "api_keys_file": str(file), **kwargs.pop("settings", {})}
    async with router_fleet(catalog, settings=settings, **kwargs) as fleet:
        yield KeyedFleet(fleet, file, keys)


async def chat(
    fleet: RouterFleet, model: str, *, stream: bool = True, headers: dict[str, str] | None = None, text: str = "hello",
) -> int:
    """One Ollama chat through the router, read to its end; its status."""
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    async with fleet.session.post(fleet.url + "/api/chat", json=body, headers=headers) as response:
        await response.read()
        return response.status


async def metrics(fleet: RouterFleet, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with fleet.session.get(fleet.url + "/metrics", headers=headers) as response:
        assert response.status == 200
        return parse_metrics(await response.text())


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(
        value for (sample, sample_labels), value in samples.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


class Load:
    """Chats in the background (`concurrency` at a time per model) until stopped, each one a
    conversation of its own, as many users' are (one conversation stays on its container)."""

    def __init__(self, fleet: RouterFleet, models: list[str], concurrency: int = 2) -> None:
        self.fleet = fleet
        self.sent = 0
        self.statuses: list[int] = []
        self._tasks = [asyncio.create_task(self._loop(model)) for model in models for _ in range(concurrency)]

    async def _loop(self, model: str) -> None:
        while True:
            self.sent += 1
            try:
                self.statuses.append(await chat(self.fleet, model, text=f"hello {self.sent}"))
            except aiohttp.ClientError:  # a connection the router cut (a stream that broke): the load goes on
                self.statuses.append(0)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def wait_for(predicate: Any, timeout: float = 15.0, every: float = 0.05) -> None:
    """Until `await predicate()` is true; TimeoutError after `timeout`."""
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(every)


def session_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}



async def start_router(catalog: Catalog, port: int = 0, **settings: Any) -> RunningApp:
    """Another router for the same (emulated) containers, which the test stops and starts itself."""
    router_settings = RouterSettings.load(catalog.router, **{**FAST, "port": port, **settings})
    return await start_app(create_app(catalog, router_settings), "127.0.0.1", port)
