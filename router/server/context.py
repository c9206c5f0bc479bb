"""The router's runtime services, shared by the handlers of both APIs."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from router.catalog import Catalog, Model
from router.fleet.balancer import Balancer
from router.fleet.health import HealthMonitor
from router.fleet.keepwarm import KeepWarm
from router.fleet.state import Fleet
from router.server.errors import BadRequest, MissingModel, ModelNotFound
from router.server.proxy import Proxy, Record
from router.settings import RouterSettings


@dataclass(slots=True)
class Services:
    settings: RouterSettings
    catalog: Catalog
    fleet: Fleet
    balancer: Balancer
    proxy: Proxy
    health: HealthMonitor
    keepwarm: KeepWarm
    started: float = field(default_factory=time.time)
    extras: dict[str, Any] = field(default_factory=dict)
    # how handlers read a request body (access control installs a bounded reader)
    read_body: Callable[[web.Request], Awaitable[bytes]] = web.Request.read
    # called once per request after its answer: (record, status, content type)
    observers: list[Callable[[Record, int, str], None]] = field(default_factory=list)
    _resolved: dict[str, Model | None] = field(default_factory=dict)

    def resolve(self, name: str) -> Model | None:
        """`catalog.resolve`, computed once per spelling (every request resolves its
        model name; the catalog never changes; bounded, since names come from clients)."""
        if len(self._resolved) >= 4096:
            self._resolved.clear()
        try:
            return self._resolved[name]
        except KeyError:
            model = self._resolved[name] = self.catalog.resolve(name)
            return model


SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
RECORD: web.RequestKey[Record] = web.RequestKey("record", Record)
# Set by access control: may the caller use this model? (absent: everyone may)
MODEL_ALLOWED: web.RequestKey[Callable[[Model], bool]] = web.RequestKey("model_allowed")


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def record_of(request: web.Request) -> Record:
    return request[RECORD]


async def read_json(request: web.Request) -> tuple[bytes, dict[str, Any]]:
    """The body once: raw bytes to forward as they are, and the parsed object."""
    body = await services(request).read_body(request)
    if not body:
        raise BadRequest("missing request body")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON in request body: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequest("request body must be a JSON object")
    return body, payload


def requested_model(request: web.Request, payload: dict[str, Any], fields: tuple[str, ...] = ("model",)) -> tuple[str, Model]:
    """The model the request names, resolved through the catalog (tags and aliases).

    Returns the field that held the name and the model; raises 400 or 404.
    """
    for name_field in fields:
        name = payload.get(name_field)
        if name is not None and name != "":
            break
    else:
        raise MissingModel()
    if not isinstance(name, str):
        raise BadRequest(f"'{name_field}' must be a string")
    record = record_of(request)
    record.model = name
    model = services(request).resolve(name)
    if model is None or not allowed(request, model):
        raise ModelNotFound(name)
    return name_field, model


def allowed(request: web.Request, model: Model) -> bool:
    """Whether the caller may use this model (API-key allowlists; open without keys)."""
    check = request.get(MODEL_ALLOWED)
    return True if check is None else bool(check(model))
