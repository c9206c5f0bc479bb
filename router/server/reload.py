"""Reloading the catalog while requests flow.

A reload reads and validates the file exactly as `validate` does; a bad one is
refused (`file:line: what is wrong`, in the log and in the answer) and the
router keeps the catalog it has. A good one reshapes the fleet: containers
whose definition did not change keep their state; a new one is probed and its
models preloaded before it takes traffic; a removed one (or one whose URL or
limits changed: removed, then added) takes no new requests and is dropped
once what it has in flight has ended. Then the next `Runtime` is swapped in;
requests that started under the old one finish under it.

Settings that can change at run time change with it; the ones that cannot
(host, port, workers, …) are reported as needing a restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from pydantic import ValidationError

from router.access.keys import KeysFileError, KeyStore
from router.catalog import Catalog, CatalogError, parse_catalog
from router.fleet.state import ContainerState, Phase
from router.server.runtime import Services, build_runtime, catalog_digest, fleet_policy, keepwarm_margin
from router.server.workers import share_capacity
from router.settings import RouterSettings

log = structlog.get_logger("router.reload")


@dataclass(frozen=True, slots=True)
class CatalogSource:
    """Where the catalog comes from, and what the command line said (it wins over the file)."""

    path: str
    flags: Mapping[str, Any] = field(default_factory=dict)
    workers: int = 1  # the parts each container's num_parallel is divided into (workers without Redis)
    supervised: bool = False  # a `serve --workers` worker: the supervisor passes reloads to its siblings


@dataclass(slots=True)
class ReloadOutcome:
    result: str  # reloaded, unchanged or refused
    trigger: str
    error: str | None = None
    sha256: str | None = None
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    not_answering: list[str] = field(default_factory=list)  # added, but down: preloaded once they answer
    restart_needed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in {
            "result": self.result, "trigger": self.trigger, "error": self.error, "catalog_sha256": self.sha256,
            "added": self.added, "removed": self.removed, "not_answering": self.not_answering,
            "restart_needed": self.restart_needed,
        }.items() if v not in (None, [])}


class Reloader:
    def __init__(self, services: Services, source: CatalogSource) -> None:
        self.services = services
        self.source = source
        self.last_error: str | None = None
        self.last_attempt: float | None = None
        self._lock = asyncio.Lock()

    async def reload(self, trigger: str) -> ReloadOutcome:
        async with self._lock:  # one at a time: a SIGHUP during an API reload waits its turn
            self.last_attempt = time.time()
            try:
                outcome = await self._reload(trigger)
            except (CatalogError, KeysFileError, ValidationError, OSError) as exc:
                outcome = ReloadOutcome("refused", trigger, error=_describe(exc))
            if outcome.result == "refused":
                self.last_error = outcome.error
                log.error("catalog_reload_refused", trigger=trigger, error=outcome.error)
                self.services.events.publish("catalog_reload_refused", trigger=trigger, error=outcome.error)
            else:
                self.last_error = None
                log.info("catalog_" + outcome.result, **{k: v for k, v in outcome.as_dict().items() if k != "result"})
                if outcome.result == "reloaded":
                    self.services.events.publish("catalog_reloaded", **{k: v for k, v in outcome.as_dict().items() if k != "result"})
            return outcome

    def _read(self) -> tuple[str, Catalog, RouterSettings, KeyStore | None]:
        """The file as `validate` reads it, the settings it gives (the command line's win)
        and the keys checked against it; raises what makes it unusable."""
        text = Path(self.source.path).read_text(encoding="utf-8")
        catalog = share_capacity(parse_catalog(text, self.source.path).catalog, self.source.workers)
        settings = RouterSettings.load(catalog.router, **self.source.flags)
        keys = self.services.keys.check(catalog) if self.services.keys is not None else None
        return text, catalog, settings, keys

    async def _reload(self, trigger: str) -> ReloadOutcome:
        services = self.services
        current = services.runtime
        text, catalog, settings, keys = self._read()
        restart_needed = current.settings.restart_needed(settings)
        # what cannot change until a restart keeps its running value (and is reported at each reload)
        settings = settings.model_copy(update={name: getattr(current.settings, name) for name in restart_needed})
        digest = catalog_digest(text, catalog)
        if digest == current.info.sha256 and settings == current.settings:
            self._install(keys)
            return ReloadOutcome("unchanged", trigger, sha256=current.info.sha256, restart_needed=restart_needed)
        policy = fleet_policy(settings)
        services.health.configure(interval=settings.health_interval, probe_timeout=settings.probe_timeout)
        services.keepwarm.configure(
            margin=keepwarm_margin(settings), load_timeout=settings.load_timeout, check_timeout=settings.ttft_timeout,
            enabled=settings.keep_warm,
        )
        services.metrics.configure(cold_load_threshold=settings.cold_load_threshold)
        services.balancer.policies.affinity.configure(max_keys=settings.affinity_max_keys, max_queue=settings.affinity_max_queue)
        # New and changed containers are probed and preloaded while the current catalog
        # keeps serving: the swap below is the first moment a request can reach them.
        staged = services.fleet.stage(catalog, policy)
        try:
            await self._warm(staged, catalog)
        except asyncio.CancelledError:  # the router stops mid-reload: what was staged goes with it
            for state in staged:
                services.keepwarm.forget(state)
                await state.client.close()
            raise
        reconciled = services.fleet.apply(catalog, policy, staged)
        for state in reconciled.draining:
            services.keepwarm.forget(state)
            services.health.forget(state)
        for state in reconciled.added:
            services.health.watch(state)
        services.holder.swap(build_runtime(catalog, settings, services.fleet, source_text=text))
        self._install(keys)
        return ReloadOutcome(
            "reloaded", trigger, sha256=digest,
            added=[s.name for s in reconciled.added], removed=[s.name for s in reconciled.draining],
            not_answering=[s.name for s in reconciled.added if s.phase is Phase.DOWN],
            restart_needed=restart_needed,
        )

    def _install(self, keys: KeyStore | None) -> None:
        """The keys file as this reload read it (checked against the catalog now in use)."""
        if keys is not None and self.services.keys is not None:
            self.services.keys.install(keys)

    async def _warm(self, staged: list[ContainerState], catalog: Catalog) -> None:
        """Probe the containers a reload adds; preload the models `catalog` places on those
        that answer. One that does not answer goes in as down, and is preloaded when it
        comes up (the health monitor's way)."""
        services = self.services
        await services.health.probe_all(staged)
        warming = [state for state in staged if state.phase is Phase.WARMING]
        if warming:
            await services.keepwarm.preload(warming, catalog)
            for state in warming:
                services.fleet.warmed(state)

    def tell_siblings(self) -> None:
        """Under `serve --workers`: the supervisor passes a SIGHUP on to every worker."""
        if self.source.supervised:
            os.kill(os.getppid(), signal.SIGHUP)


RELOADER: web.AppKey[Reloader | None] = web.AppKey("reloader")


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "invalid router settings: " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    if isinstance(exc, OSError):
        return f"cannot read the catalog: {exc.strerror or exc}"
    return str(exc)
