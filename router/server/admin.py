"""Probes for orchestrators (`/healthz`, `/readyz`), the fleet's state
(`/router/status`) and catalog reloads (`POST /router/reload`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from router import wire
from router.fleet.routing import OUTCOMES
from router.fleet.state import ContainerState, Phase
from router.server.context import runtime_of, services
from router.server.reload import RELOADER

RECENT_EVENTS = 50


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), headers={"Content-Type": wire.JSON})


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat()


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready once the start-up preload finished and every model can be served
    without a cold load: by one of its own containers, or else a fallback's."""
    fleet = services(request).fleet
    if fleet.is_ready():
        return _json({"ready": True})
    unserved = [m.tag for m in fleet.catalog.models.values() if not fleet.servable(m)]
    reasons = []
    if not fleet.ready:
        reasons.append("preloading models")
    if unserved:
        reasons.append("no container holds these loaded (nor one of their fallbacks): " + ", ".join(unserved))
    return _json({"ready": False, "reasons": reasons, "models_without_container": unserved}, status=503)


def container_status(state: ContainerState) -> dict[str, Any]:
    c = state.container
    ejection = state.ejection
    return {
        "name": state.name,
        "url": state.url,
        "managed": c.managed,
        "gpus": list(c.gpus),
        "state": state.phase.value,
        "version": state.version,
        "last_probe": iso(state.last_probe),
        "consecutive_failures": state.consecutive_failures,
        "last_error": state.last_error,
        "down_since": iso(state.down_since),
        "ejected": state.phase is Phase.EJECTED,
        "ejected_until": iso(ejection.until) if ejection is not None and state.phase is Phase.EJECTED else None,
        "ejection_reason": ejection.reason if ejection is not None and state.phase in (Phase.EJECTED, Phase.PROBATION) else None,
        "ejections": state.ejected_total,
        "in_flight": state.in_flight,
        "limit": state.slots.limit,
        "queued": state.slots.queued,
        "served": state.served,
        "failures": state.failures,
        "loaded": [
            {"model": m.name, "expires_at": iso(m.expires_at), "size_vram": m.size_vram, "context_length": m.context_length}
            for m in state.loaded.values()
        ],
    }


async def status(request: web.Request) -> web.Response:
    svc = services(request)
    runtime = runtime_of(request)
    fleet = svc.fleet
    reloader = request.app[RELOADER]
    affinity = svc.balancer.policies.affinity
    models = []
    for model in runtime.catalog.models.values():
        states = runtime.states_for(model)
        counts = affinity.counts.get(model.key)
        models.append({
            "model": model.tag,
            "aliases": list(model.aliases),
            "fallback": list(model.fallback),
            "context_length": model.context_length,
            "capabilities": list(model.capabilities),
            "containers": [s.name for s in states],
            "ready": fleet.model_ready(model),
            "up": [s.name for s in states if s.routable],
            "routing": model.routing.value,
            "affinity": counts.as_dict() if counts is not None else dict.fromkeys(OUTCOMES, 0),
        })
    info = runtime.info
    return _json({
        "ready": fleet.is_ready(),
        "uptime_seconds": round(time.time() - svc.started, 1),
        "catalog": {
            "path": info.path,
            "sha256": info.sha256,
            "loaded_at": iso(info.loaded_at),
            "last_reload_error": reloader.last_error if reloader is not None else None,
            "last_reload_attempt": iso(reloader.last_attempt) if reloader is not None else None,
        },
        "containers": [container_status(s) for s in fleet.all_states()],
        "models": models,
        "counters": {
            "fallbacks": svc.metrics.fallbacks_total,
            "stream_failures": svc.proxy.stream_failures,
            "keepwarm_pings": svc.keepwarm.pings,
            "affinity_keys": len(affinity.homes),
        },
        "preload_errors": dict(fleet.preload_errors),
        "keys_reload_error": svc.keys.last_error if svc.keys is not None else None,
    })


async def reload(request: web.Request) -> web.Response:
    reloader = request.app[RELOADER]
    if reloader is None:
        return _json({"result": "refused", "error": "this router was started without a catalog file to reload"}, status=409)
    outcome = await reloader.reload("api")
    if outcome.result == "reloaded":
        reloader.tell_siblings()
    return _json(outcome.as_dict(), status=422 if outcome.result == "refused" else 200)


async def metrics(request: web.Request) -> web.Response:
    return services(request).metrics.render()


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/router/status", status)
    app.router.add_post("/router/reload", reload)
    app.router.add_get("/metrics", metrics)
