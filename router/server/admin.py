"""Probes for orchestrators (`/healthz`, `/readyz`), the fleet's state
(`/router/status`) and catalog reloads (`POST /router/reload`)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from router import wire
from router.server.context import runtime_of, services
from router.server.reload import RELOADER
from router.server.status import status_document


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), headers={"Content-Type": wire.JSON})


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready once the start-up preload finished and every model can be served
    without a cold load: by one of its own containers, or else a fallback's."""
    svc = services(request)
    fleet = svc.fleet
    limits = svc.limits.health()
    if fleet.is_ready() and not limits.unavailable:
        return _json({"ready": True})
    unserved = [m.tag for m in fleet.catalog.models.values() if not fleet.servable(m)]
    reasons = []
    if not fleet.ready:
        reasons.append("preloading models")
    if limits.unavailable:
        reasons.append(f"the shared limits store ({limits.target}) is unreachable and the router fails closed")
    if unserved:
        reasons.append("no container holds these loaded (nor one of their fallbacks): " + ", ".join(unserved))
    return _json({"ready": False, "reasons": reasons, "models_without_container": unserved}, status=503)


async def status(request: web.Request) -> web.Response:
    return _json(status_document(services(request), runtime_of(request), request.app[RELOADER]))


async def reload(request: web.Request) -> web.Response:
    reloader = request.app[RELOADER]
    if reloader is None:
        return _json({"result": "refused", "error": "this router was started without a catalog file to reload"}, status=409)
    outcome = await reloader.reload("api")
    reloader.tell_siblings()  # refused too: every worker then says the same (status, log), whatever it serves
    return _json(outcome.as_dict(), status=422 if outcome.result == "refused" else 200)


async def metrics(request: web.Request) -> web.Response:
    return services(request).metrics.render()


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/router/status", status)
    app.router.add_post("/router/reload", reload)
    app.router.add_get("/metrics", metrics)
