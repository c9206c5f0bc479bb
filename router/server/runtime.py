"""The one construction site: (catalog, settings, keys) → the router's runtime.

Two layers with different lifetimes:

- `Runtime`: what one catalog means (models, aliases, fallback chains, the
  settings it gives, its containers' states). Immutable; a reload builds the
  next one the same way and swaps it in. Each request takes the current one
  at its start and keeps it to its end, so a request that started under the
  old catalog finishes under it (its retries included).
- `Services`: what lives as long as the process: the fleet (container
  states survive a reload when their definition did not change), health and
  keep-warm tasks, limits, metrics and the last-minute window, the event
  hub, the keys.

Nothing is attached to either after it is built.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from router.access.auth import KeyRing
from router.access.origin import OriginPolicy
from router.catalog import Catalog, Model
from router.events import EventHub
from router.fleet.balancer import Balancer
from router.fleet.fleet import Fleet, FleetPolicy
from router.fleet.health import HealthMonitor
from router.fleet.keepwarm import KeepWarm
from router.fleet.plan import fallback_chain
from router.fleet.routing import Policies
from router.fleet.state import ContainerState
from router.http.body import BodyReader
from router.limits import Limits
from router.limits.local import LocalLimits
from router.limits.redis import RedisLimits
from router.logs import AccessLog, StructlogAccessLine
from router.server.metrics import RouterMetrics
from router.server.proxy import Proxy
from router.server.window import Window
from router.settings import RouterSettings
from router.wire import is_loopback

RESOLVED_CACHE = 4096  # spellings of model names remembered; only names that resolve are kept


@dataclass(frozen=True, slots=True)
class CatalogInfo:
    path: str
    sha256: str
    loaded_at: float  # epoch seconds


class Pins:
    """How many requests hold a runtime now (the edge middleware counts them): a container
    a reload removed stays while a request of a catalog that had it may still pick it."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


@dataclass(frozen=True, slots=True, eq=False)
class Runtime:
    catalog: Catalog
    settings: RouterSettings
    info: CatalogInfo
    containers: Mapping[str, ContainerState]  # this catalog's containers, as the fleet held them when it was built
    chains: Mapping[str, tuple[Model, ...]]  # by model key: the model, then its fallbacks
    keyed: frozenset[str]  # model keys whose chain places requests by conversation (affinity): key them
    body_reader: BodyReader
    origins: OriginPolicy
    pins: Pins = field(default_factory=Pins)
    _resolved: dict[str, Model] = field(default_factory=dict)

    def resolve(self, name: str) -> Model | None:
        """`catalog.resolve`, remembered per spelling. Only names that resolve are kept,
        so clients sending made-up names cannot grow it."""
        model = self._resolved.get(name)
        if model is None:
            model = self.catalog.resolve(name)
            if model is not None and len(self._resolved) < RESOLVED_CACHE:
                self._resolved[name] = model
        return model

    def states_for(self, model: Model) -> list[ContainerState]:
        containers = self.containers
        return [containers[name] for name in model.containers if name in containers]


def fleet_policy(settings: RouterSettings) -> FleetPolicy:
    return FleetPolicy(
        max_queue=settings.max_queue,
        failure_threshold=settings.failure_threshold,
        base_ejection_time=settings.base_ejection_time,
        max_ejection_time=settings.max_ejection_time,
        connect_timeout=settings.connect_timeout,
        keep_warm=settings.keep_warm,
    )


def catalog_digest(text: str | None, catalog: Catalog) -> str:
    source = text if text is not None else repr(catalog)
    return hashlib.sha256(source.encode()).hexdigest()


def build_runtime(catalog: Catalog, settings: RouterSettings, fleet: Fleet, *, source_text: str | None = None) -> Runtime:
    chains = {model.key: fallback_chain(model, catalog.resolve) for model in catalog.models.values()}
    return Runtime(
        catalog=catalog,
        settings=settings,
        info=CatalogInfo(catalog.path, catalog_digest(source_text, catalog), time.time()),
        containers=dict(fleet.containers),
        chains=chains,
        keyed=frozenset(key for key, chain in chains.items() if any(m.keyed for m in chain)),
        body_reader=BodyReader(settings.max_body_bytes, settings.body_timeout, settings.log_bodies),
        origins=OriginPolicy(settings.allowed_origins, check_host=is_loopback(settings.host)),
    )


class RuntimeHolder:
    """The current runtime, swapped whole by a reload; and the ones it replaced that
    requests still hold."""

    __slots__ = ("current", "retired")

    def __init__(self, runtime: Runtime) -> None:
        self.current = runtime
        self.retired: list[Runtime] = []

    def swap(self, runtime: Runtime) -> None:
        self.retired.append(self.current)
        self.current = runtime

    def pinned_states(self) -> set[ContainerState]:
        """The containers of the replaced runtimes that requests still hold (a request only
        ever takes the current one: a retired runtime nobody holds is let go)."""
        self.retired = [runtime for runtime in self.retired if runtime.pins.count]
        return {state for runtime in self.retired for state in runtime.containers.values()}


@dataclass(slots=True, eq=False)
class Services:
    holder: RuntimeHolder
    fleet: Fleet
    balancer: Balancer
    health: HealthMonitor
    keepwarm: KeepWarm
    proxy: Proxy
    limits: Limits
    metrics: RouterMetrics
    window: Window  # the last minute, for the console
    events: EventHub
    keys: KeyRing | None
    access_log: AccessLog
    started: float = field(default_factory=time.time)

    @property
    def runtime(self) -> Runtime:
        return self.holder.current


def keepwarm_margin(settings: RouterSettings) -> float:
    return max(3 * settings.health_interval, 30.0)


def limits_for(settings: RouterSettings, *, processes: int = 1) -> Limits:
    """Redis-held limits when `redis_url` is set, else this process's own. `processes`:
    the workers of one `serve` (each takes its share while Redis is lost)."""
    if settings.redis_url is None:
        return LocalLimits()
    return RedisLimits(
        settings.redis_url,
        namespace=settings.redis_prefix,
        lease=settings.redis_lease,
        failure=settings.redis_failure,
        share=processes,
    )


def build_services(
    catalog: Catalog,
    settings: RouterSettings,
    *,
    source_text: str | None = None,
    limits: Limits | None = None,
    access_log: AccessLog | None = None,
) -> Services:
    """Everything the router runs on, for `catalog` and `settings`.

    Raises KeysFileError when the configured keys file cannot be used."""
    events = EventHub()
    limits = limits if limits is not None else limits_for(settings, processes=settings.workers)
    keys = KeyRing(settings.api_keys_file, catalog) if settings.api_keys_file else None
    fleet = Fleet(catalog, fleet_policy(settings), limits=limits, events=events)
    keepwarm = KeepWarm(
        fleet, events, margin=keepwarm_margin(settings), load_timeout=settings.load_timeout,
        check_timeout=settings.ttft_timeout, enabled=settings.keep_warm,
    )
    health = HealthMonitor(fleet, interval=settings.health_interval, probe_timeout=settings.probe_timeout, on_probe=keepwarm.after_probe)
    balancer = Balancer(fleet, Policies(affinity_max_keys=settings.affinity_max_keys, affinity_max_queue=settings.affinity_max_queue))
    window = Window()
    metrics = RouterMetrics(
        fleet, events=events, window=window, cold_load_threshold=settings.cold_load_threshold, limits=limits,
        policies=balancer.policies,
    )
    proxy = Proxy(fleet, balancer, limits, events)
    holder = RuntimeHolder(build_runtime(catalog, settings, fleet, source_text=source_text))
    return Services(
        holder=holder,
        fleet=fleet,
        balancer=balancer,
        health=health,
        keepwarm=keepwarm,
        proxy=proxy,
        limits=limits,
        metrics=metrics,
        window=window,
        events=events,
        keys=keys,
        access_log=access_log if access_log is not None else StructlogAccessLine(),
    )
