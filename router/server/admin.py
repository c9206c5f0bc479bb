"""Probes for orchestrators (`/healthz`, `/readyz`) and the fleet's state (`/router/status`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from router import wire
from router.fleet.state import ContainerState
from router.server.context import services


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), headers={"Content-Type": wire.JSON})


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat()


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    fleet = services(request).fleet
    unserved = [m.tag for m in fleet.catalog.models.values() if not fleet.model_ready(m)]
    if fleet.is_ready():
        return _json({"ready": True})
    reasons = []
    if not fleet.ready:
        reasons.append("preloading models")
    if unserved:
        reasons.append("no reachable container for: " + ", ".join(unserved))
    return _json({"ready": False, "reasons": reasons, "models_without_container": unserved}, status=503)


def container_status(state: ContainerState) -> dict[str, Any]:
    c = state.container
    return {
        "name": state.name,
        "url": state.url,
        "managed": c.managed,
        "gpus": list(c.gpus),
        "state": state.state,
        "version": state.version,
        "last_probe": _iso(state.last_probe),
        "consecutive_failures": state.consecutive_failures,
        "last_error": state.last_error,
        "down_since": _iso(state.down_since),
        "in_flight": state.in_flight,
        "limit": state.limit,
        "queued": len(state.waiters),
        "served": state.served,
        "failures": state.failures,
        "loaded": [{"model": m.name, "expires_at": _iso(m.expires_at), "size_vram": m.size_vram} for m in state.loaded.values()],
    }


async def status(request: web.Request) -> web.Response:
    svc = services(request)
    fleet = svc.fleet
    models = []
    for model in fleet.catalog.models.values():
        states = fleet.states_for(model)
        models.append({
            "model": model.tag,
            "aliases": list(model.aliases),
            "fallback": list(model.fallback),
            "containers": [s.name for s in states],
            "ready": [s.name for s in states if s.state == "up" and s.has_loaded(model)],
            "up": [s.name for s in states if s.state == "up"],
        })
    return _json({
        "ready": fleet.is_ready(),
        "uptime_seconds": round(time.time() - svc.started, 1),
        "containers": [container_status(s) for s in fleet.containers.values()],
        "models": models,
        "counters": {
            "fallbacks": svc.proxy.fallbacks,
            "stream_failures": svc.proxy.stream_failures,
            "keepwarm_pings": svc.keepwarm.pings,
        },
        "preload_errors": dict(fleet.preload_errors),
    })


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/router/status", status)
