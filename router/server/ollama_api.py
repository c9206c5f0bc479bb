"""Ollama's own API: inference forwarded by model, listings merged over the fleet."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from router import wire
from router.catalog import Model
from router.catalog.names import model_key
from router.fleet.health import loaded_models
from router.fleet.state import ContainerState
from router.server.context import allowed, forward_by_model, runtime_of, services

LISTING_TIMEOUT = 1.5
FALLBACK_VERSION = "0.0.0"


async def forward(request: web.Request) -> web.StreamResponse:
    """POST /api/chat, /api/generate, /api/embed, /api/embeddings."""
    return await forward_by_model(request)


async def show(request: web.Request) -> web.StreamResponse:
    """POST /api/show names its model in `model` or, older, `name` (Ollama prefers `model`)."""
    return await forward_by_model(request, ("model", "name"))


async def root(request: web.Request) -> web.Response:
    return web.Response(body=wire.OLLAMA_RUNNING, headers={"Content-Type": wire.TEXT_UTF8})


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), headers={"Content-Type": wire.JSON_UTF8})


async def version(request: web.Request) -> web.Response:
    """The lowest version in the fleet: the features every container has."""
    states = sorted(
        (s for s in runtime_of(request).containers.values() if s.version),
        key=lambda s: (s.version_key is None, s.version_key or ()),  # source builds (no release number) last
    )
    return _json({"version": states[0].version if states else FALLBACK_VERSION})


async def _fetch(state: ContainerState, path: str) -> dict[str, Any] | None:
    if not state.routable:
        return None
    try:
        async with asyncio.timeout(LISTING_TIMEOUT):
            async with state.client.http().get(state.url + path) as response:
                if response.status != 200:
                    return None
                value = orjson.loads(await response.read())
                return value if isinstance(value, dict) else None
    except (aiohttp.ClientError, OSError, TimeoutError, orjson.JSONDecodeError):
        return None


async def _fleet_listing(request: web.Request, path: str) -> dict[str, dict[str, Any]]:
    """Fresh `path` from every reachable container, falling back to the last probe."""
    fleet = services(request).fleet
    states = list(runtime_of(request).containers.values())
    results = await asyncio.gather(*(_fetch(s, path) for s in states))
    by_container: dict[str, dict[str, Any]] = {}
    for state, result in zip(states, results, strict=True):
        if result is not None:
            by_container[state.name] = result
            if path == "/api/ps":
                fleet.update_loaded(state, loaded_models(result))
        elif path == "/api/tags" and state.tags:
            by_container[state.name] = {"models": state.tags}
        elif path == "/api/ps" and state.loaded:
            by_container[state.name] = {"models": [m.raw for m in state.loaded.values()]}
    return by_container


async def status(request: web.Request) -> web.Response:
    """GET /api/status for the fleet: whether a client can reach cloud models through the router.

    Cloud names are forwarded only when the catalog lists them, so a catalog without
    cloud models is cloud-disabled by the router's own configuration (`source`
    "config"). Otherwise cloud is enabled when a container of those models that
    answers says it is enabled; when all say disabled, `source` is theirs
    ("env", "config", or "both" when they differ)."""
    runtime = runtime_of(request)
    cloud_models = [m for m in runtime.catalog.models.values() if m.is_cloud]
    if not cloud_models:
        return _json({"cloud": {"disabled": True, "source": "config"}})
    names = {name for model in cloud_models for name in model.containers}
    states = [s for name, s in runtime.containers.items() if name in names]
    answers = [a for a in await asyncio.gather(*(_fetch(s, "/api/status") for s in states)) if a is not None]
    clouds = [c for a in answers if isinstance(c := a.get("cloud"), dict)]
    if any(c.get("disabled") is False for c in clouds):
        return _json({"cloud": {"disabled": False, "source": "none"}})
    sources = {c.get("source") for c in clouds} - {"none", None}
    source = sources.pop() if len(sources) == 1 else ("both" if sources else "none")
    return _json({"cloud": {"disabled": True, "source": source}})


def _visible_models(request: web.Request) -> list[Model]:
    return [m for m in runtime_of(request).catalog.models.values() if allowed(request, m)]


def _entry_for(model: Model, listings: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The first container's entry for this model, renamed to the catalog's tag."""
    candidates = []
    for name in model.containers:
        for entry in (listings.get(name) or {}).get("models") or []:
            if isinstance(entry, dict) and model_key(str(entry.get("model") or entry.get("name") or "")) == model.key:
                candidates.append(entry)
    if not candidates:
        return None
    best = max(candidates, key=lambda e: str(e.get("expires_at", "")))
    return {**best, "name": model.tag, "model": model.tag}


async def tags(request: web.Request) -> web.Response:
    """One entry per catalog model, in Ollama's shape."""
    listings = await _fleet_listing(request, "/api/tags")
    entries = []
    for model in _visible_models(request):
        entry = _entry_for(model, listings)
        if entry is None:
            entry = {
                "name": model.tag,
                "model": model.tag,
                "modified_at": "1970-01-01T00:00:00Z",
                "size": 0,
                "digest": "",
                "details": {"parent_model": "", "format": "gguf", "family": "", "families": None,
                            "parameter_size": "", "quantization_level": ""},
            }
        entry.setdefault("capabilities", list(model.capabilities))
        entries.append(entry)
    entries.sort(key=lambda e: str(e.get("modified_at", "")), reverse=True)
    return _json({"models": entries})


async def ps(request: web.Request) -> web.Response:
    """Loaded models over the fleet, one entry per model (the latest expiry)."""
    listings = await _fleet_listing(request, "/api/ps")
    entries = [e for m in _visible_models(request) if (e := _entry_for(m, listings)) is not None]
    entries.sort(key=lambda e: str(e.get("expires_at", "")), reverse=True)
    return _json({"models": entries})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", root)  # and HEAD: clients probe liveness with it (docs/ollama-wire.md §3)
    for path in ("/api/chat", "/api/generate", "/api/embed", "/api/embeddings"):
        app.router.add_post(path, forward)
    app.router.add_post("/api/show", show)
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/tags", tags)
    app.router.add_get("/api/ps", ps)
    app.router.add_get("/api/status", status)
