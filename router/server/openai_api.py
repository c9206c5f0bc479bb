"""OpenAI's API: completions and embeddings forwarded by model; models from the catalog."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from router import wire
from router.catalog import Model
from router.server.context import MODEL_ALLOWED, allowed, read_json, record_of, requested_model, services
from router.server.errors import ModelNotFound


async def forward_by_model(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions, /v1/completions, /v1/embeddings."""
    body, payload = await read_json(request)
    _, model = requested_model(request, payload)
    return await services(request).proxy.forward(
        request, record_of(request), request.path, payload, body, model, allowed=request.get(MODEL_ALLOWED)
    )


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
    svc = services(request)
    created = int(svc.started)
    data = []
    for model in svc.catalog.models.values():
        if not allowed(request, model):
            continue
        data.append(_model_entry(model, model.tag, created))
        data.extend(_model_entry(model, alias, created, alias_of=model.tag) for alias in model.aliases)
    return _json({"object": "list", "data": data})


async def retrieve_model(request: web.Request) -> web.Response:
    model_id = request.match_info["model"]
    record_of(request).model = model_id
    svc = services(request)
    model = svc.catalog.resolve(model_id)
    if model is None or not allowed(request, model):
        raise ModelNotFound(model_id)
    alias_of = model.tag if model_id.strip().lower() in {a.lower() for a in model.aliases} else None
    return _json(_model_entry(model, model_id, int(svc.started), alias_of=alias_of))


def add_routes(app: web.Application) -> None:
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        app.router.add_post(path, forward_by_model)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", retrieve_model)
