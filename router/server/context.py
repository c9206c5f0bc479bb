"""What a handler reads from its request: the services, the runtime the
request started under, its record, its caller; and the common path of every
endpoint that names a model (read the body, find the model, forward)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from router.access.auth import CALLER
from router.access.keys import ApiKey
from router.catalog import Model
from router.catalog.names import MAX_NAME_CHARS, is_cloud_name
from router.http.apis import api_for
from router.http.body import json_object, model_name, refuse_ambiguous
from router.http.errors import AmbiguousField, CloudModelRefused, ModelNameTooLong, ModelNotFound
from router.http.record import Record, cut
from router.server.context_window import PINNED_PATHS, RUNNER_FIELDS, pinned
from router.server.proxy import Call, Upload
from router.server.runtime import Runtime, Services
from router.versions import REQUIRED

SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
RUNTIME: web.RequestKey[Runtime] = web.RequestKey("runtime", Runtime)
RECORD: web.RequestKey[Record] = web.RequestKey("record", Record)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def runtime_of(request: web.Request) -> Runtime:
    return request[RUNTIME]


def record_of(request: web.Request) -> Record:
    return request[RECORD]


def caller_of(request: web.Request) -> ApiKey | None:
    return request.get(CALLER)


def allowed(request: web.Request, model: Model) -> bool:
    """Whether the caller may use this model (API-key allowlists; open without keys)."""
    caller = request.get(CALLER)
    return caller is None or caller.allows(model)


async def read_json(request: web.Request) -> tuple[bytes, dict[str, Any]]:
    """The body once: raw bytes to forward as they are, and the parsed object."""
    body = await runtime_of(request).body_reader.read(request, record_of(request))
    return body, json_object(body)


def find_model(request: web.Request, name: str) -> Model:
    """The catalog model `name` means for this caller; 404 (the same answer as a model
    that does not exist) when it is unknown or outside the caller's allowlist."""
    if len(name) > MAX_NAME_CHARS:
        raise ModelNameTooLong(f"the model name is {len(name)} characters long; model names have at most {MAX_NAME_CHARS}")
    record = record_of(request)
    record.name_model(name)
    model = runtime_of(request).resolve(name)
    if model is None and is_cloud_name(name):
        raise CloudModelRefused(cut(name))  # never sent on: a container would pass it to ollama.com
    if model is None or not allowed(request, model):
        raise ModelNotFound(cut(name))
    record.model_tag = model.tag
    return model


async def forward_by_model(request: web.Request, fields: tuple[str, ...] = ("model",)) -> web.StreamResponse:
    """Read the body, find the model it names (in `fields`, first non-empty), forward it."""
    body, payload = await read_json(request)
    name_field, name = model_name(payload, body, fields)
    return await forward_call(request, name, payload=payload, body=body, model_field=name_field)


async def forward_call(
    request: web.Request,
    name: str,
    *,
    payload: dict[str, Any] | None = None,
    body: bytes = b"",
    model_field: str = "model",
    upload: Upload | None = None,
) -> web.StreamResponse:
    """Forward a request for model `name`: a JSON body, or an upload still arriving."""
    model = find_model(request, name)
    runtime = runtime_of(request)
    chain = runtime.chains[model.key]
    pins = request.path in PINNED_PATHS and any(pinned(m) for m in chain)
    if pins and payload is not None:
        refuse_ambiguous(payload, body, RUNNER_FIELDS, AmbiguousField)  # Go would merge `Options` into `options`
    api = api_for(request.path)
    path = request.path
    call = Call(
        request=request,
        record=record_of(request),
        api=api,
        path=path,
        payload=payload if payload is not None else {},
        body=body,
        model=model,
        chain=chain,
        containers=runtime.containers,
        settings=runtime.settings,
        caller=caller_of(request),
        model_field=model_field,
        needs=REQUIRED.get(request.path),
        pins=pins,
        upload=upload,
        # an upload (a form, not JSON) names no conversation
        conversation=api.conversation_key(path, payload) if payload is not None and model.key in runtime.keyed else None,
    )
    return await services(request).proxy.forward(call)
