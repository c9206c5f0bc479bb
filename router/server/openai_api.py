"""OpenAI's API: chat, completions, embeddings and Responses forwarded by
model; models from the catalog; the image routes Ollama removed answered as such."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from router import wire
from router.catalog import Model
from router.http.errors import NotFoundRoute
from router.server.context import allowed, find_model, forward_by_model, runtime_of, services


async def forward(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses."""
    return await forward_by_model(request)


async def removed(request: web.Request) -> web.StreamResponse:
    """/v1/images/*: Ollama served image generation and edits from 0.14.3 and removed both in 0.32.6."""
    raise NotFoundRoute(f"{request.path} was removed from Ollama in 0.32.6: no container serves image generation")


def _model_entry(model: Model, model_id: str, created: int, alias_of: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": model_id, "object": "model", "created": created, "owned_by": model.owned_by}
    if model.context_length is not None:
        entry["context_length"] = model.context_length
    entry["capabilities"] = list(model.capabilities)
    if alias_of is not None:
        entry["alias_of"] = alias_of
    elif model.aliases:
        entry["aliases"] = list(model.aliases)
    if model.description:
        entry["description"] = model.description
    return entry


def _json(value: Any) -> web.Response:
    return web.Response(body=orjson.dumps(value) + b"\n", headers={"Content-Type": wire.JSON})


async def list_models(request: web.Request) -> web.Response:
    """Every catalog model and alias the caller may use."""
    created = int(services(request).started)
    data = []
    for model in runtime_of(request).catalog.models.values():
        if not allowed(request, model):
            continue
        data.append(_model_entry(model, model.tag, created))
        data.extend(_model_entry(model, alias, created, alias_of=model.tag) for alias in model.aliases)
    return _json({"object": "list", "data": data})


async def retrieve_model(request: web.Request) -> web.Response:
    model_id = request.match_info["model"]
    model = find_model(request, model_id)
    alias_of = model.tag if model_id.strip().lower() in {a.lower() for a in model.aliases} else None
    return _json(_model_entry(model, model_id, int(services(request).started), alias_of=alias_of))


def add_routes(app: web.Application) -> None:
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"):
        app.router.add_post(path, forward)
    app.router.add_route("*", "/v1/images/{operation:.*}", removed)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", retrieve_model)
