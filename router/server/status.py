"""The fleet's state as one document: what `/router/status` answers and what
the console's snapshots carry, built by the same code so the two always agree."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

from router.fleet.routing import OUTCOMES
from router.fleet.state import ContainerState, Phase
from router.limits import LimitsHealth
from router.server.reload import Reloader
from router.server.runtime import Runtime, Services


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat()


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
        "max_queue": state.slots.max_queue,
        "served": state.served,
        "failures": state.failures,
        "loaded": [
            {"model": m.name, "expires_at": iso(m.expires_at), "size_vram": m.size_vram, "context_length": m.context_length}
            for m in state.loaded.values()
        ],
    }


def limits_status(health: LimitsHealth) -> dict[str, Any]:
    """Where the limits are held and, with Redis, the connection's state."""
    if health.store == "local":
        return {"store": "local"}
    return {
        "store": health.store,
        "target": health.target,
        "connected": health.shared,
        "in_force": "shared" if health.shared else ("local fallback" if health.fallback else "none (503)"),
        "failure_mode": health.failure_mode,
        "since": iso(health.since),
        "losses": health.losses,
        "last_error": health.last_error,
    }


def status_document(svc: Services, runtime: Runtime, reloader: Reloader | None) -> dict[str, Any]:
    fleet = svc.fleet
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
    return {
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
        "limits": limits_status(svc.limits.health()),
        "preload_errors": dict(fleet.preload_errors),
        "keys_reload_error": svc.keys.last_error if svc.keys is not None else None,
    }


class Snapshots:
    """The console's snapshot: the status document, the server's clock and the
    last minute's figures. Built at most once per `max_age` seconds however many
    consoles are watching (each then sees its own part of it: `router.server.scope`)."""

    def __init__(self, svc: Services, reloader: Reloader | None) -> None:
        self.svc = svc
        self.reloader = reloader
        self._built = -math.inf
        self._document: dict[str, Any] = {}

    def current(self, max_age: float) -> dict[str, Any]:
        now = time.monotonic()
        if now - self._built >= max_age:
            svc = self.svc
            document = status_document(svc, svc.runtime, self.reloader)
            document["now"] = time.time()
            document["settings"] = {"health_interval": svc.runtime.settings.health_interval}
            document["window"] = svc.window.figures()
            self._document, self._built = document, now
        return self._document
