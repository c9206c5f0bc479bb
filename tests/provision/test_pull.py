"""Pulling missing models and preloading them, against emulated Ollama servers."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from router.catalog.loader import parse_catalog
from router.catalog.model import Catalog
from router.provision.preload import preload
from router.provision.pull import PullEvent, pull_missing


def catalog_for(urls: dict[str, str], models: dict[str, list[str]]) -> Catalog:
    lines = ["version: 1", "containers:"]
    lines += [f"  {name}: {{url: '{url}'}}" for name, url in urls.items()]
    lines += ["models:"] + [f"  {tag}: {{containers: [{', '.join(names)}]}}" for tag, names in models.items()]
    return parse_catalog("\n".join(lines), "test.yaml").catalog


def names(url: str, path: str) -> set[str]:
    with urllib.request.urlopen(url + path, timeout=5) as response:
        return {m["name"] for m in json.loads(response.read())["models"]}


async def test_only_missing_models_are_pulled_with_progress(emulator: Any) -> None:
    a = emulator(models=["llama3.2"], embedding_models=[], pull_time=0.3)
    b = emulator(models=[], embedding_models=[], pull_time=0.3)
    catalog = catalog_for({"a": a.url, "b": b.url}, {"llama3.2": ["a", "b"], "qwen2.5:7b": ["b"]})
    events: list[PullEvent] = []
    results = await pull_missing(catalog, on_progress=events.append)
    assert sorted((r.container, r.model, r.ok) for r in results) == [("b", "llama3.2:latest", True), ("b", "qwen2.5:7b", True)]
    assert names(b.url, "/api/tags") == {"llama3.2:latest", "qwen2.5:7b"}
    qwen = [e for e in events if e.model == "qwen2.5:7b"]
    assert qwen[-1].done and qwen[-1].total > 0 and qwen[-1].completed == qwen[-1].total
    completed = [e.completed for e in qwen if e.total]
    assert completed == sorted(completed) and len(set(completed)) > 2  # a moving bar, not one jump
    assert await pull_missing(catalog, on_progress=events.append) == []  # nothing missing now


async def test_failures_are_results_not_exceptions(emulator: Any) -> None:
    refusing = emulator(models=[], embedding_models=[], allow_pull=False)
    catalog = catalog_for({"refusing": refusing.url, "gone": "http://127.0.0.1:9"}, {"llama3.2": ["refusing", "gone"]})
    results = {r.container: r for r in await pull_missing(catalog)}  # default: progress to the log, no rich
    assert not results["refusing"].ok and "file does not exist" in results["refusing"].error
    assert not results["gone"].ok and "cannot list models at http://127.0.0.1:9" in results["gone"].error


async def test_preload_loads_generative_and_embedding_models(emulator: Any) -> None:
    server = emulator(models=["llama3.2"], embedding_models=["nomic-embed-text"])
    catalog = catalog_for({"a": server.url}, {"llama3.2": ["a"], "nomic-embed-text": ["a"]})
    results = await preload(catalog)
    assert all(r.ok for r in results), results
    assert names(server.url, "/api/ps") == {"llama3.2:latest", "nomic-embed-text:latest"}


async def test_pull_at_start_pulls_without_a_progress_display(emulator: Any) -> None:
    from router.provision.pull import pull_at_start

    server = emulator(models=[], embedding_models=[], pull_time=0.2)
    catalog = catalog_for({"a": server.url}, {"llama3.2": ["a"]})
    results = await pull_at_start(catalog)
    assert [(r.model, r.ok) for r in results] == [("llama3.2:latest", True)]
    assert names(server.url, "/api/tags") == {"llama3.2:latest"}


async def test_a_router_with_the_pull_hook_is_not_ready_until_its_models_are_pulled(emulator: Any) -> None:
    import asyncio

    import aiohttp

    from router.provision.pull import pull_before_preload
    from router.server.app import create_app
    from router.server.runner import start_app
    from router.settings import RouterSettings

    server = emulator(models=[], embedding_models=[], pull_time=1.0)
    catalog = catalog_for({"a": server.url}, {"llama3.2": ["a"]})
    app = create_app(catalog, RouterSettings.load(catalog.router, port=0), before_preload=[pull_before_preload])
    running = await start_app(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(running.url + "/readyz") as response:
                assert response.status == 503  # still pulling
            for _ in range(100):
                async with session.get(running.url + "/readyz") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.1)
            assert response.status == 200
    finally:
        await running.close()
    assert names(server.url, "/api/tags") == {"llama3.2:latest"}
    assert names(server.url, "/api/ps") == {"llama3.2:latest"}
