"""The fleet: every container's state, and the only code that changes it.

Health probes, keep-warm and the request path's own outcomes (passive health)
call the transition methods below; each logs itself, publishes an event and
wakes or fails what waits on it. See `router.fleet.state` for the phases.

Outlier ejection works on what real requests see, not on probes: a container
whose generations fail `failure_threshold` times in a row is ejected for
`base_ejection_time`, doubled for each ejection in a row (capped at
`max_ejection_time`), whatever its probes say; when the time is up it takes
one request at a time (probation) until one succeeds. A failure that could be
the request's own (an HTTP 500, no first token in time) never ejects the last
container that could serve one of its models.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import structlog

from router.catalog import Catalog, Container, Model
from router.events import EventHub
from router.fleet.state import ROUTABLE, ContainerState, Ejection, LoadedModel, Phase
from router.limits import ContainerGone, Limits
from router.upstream.client import ContainerClient
from router.versions import parse_version

log = structlog.get_logger("router.fleet")

LOAD_SAMPLES = 8  # recent load times kept per container


class FailureKind(enum.Enum):
    REFUSED = "refused"  # nothing listens: down at once
    CONTAINER = "container"  # the container's fault (reset, cut stream, 502/504): counts toward ejection
    AMBIGUOUS = "ambiguous"  # could be the request's fault (HTTP 500, slow first token): never ejects a model's last container


@dataclass(frozen=True, slots=True)
class FleetPolicy:
    """The settings the fleet acts on; a reload may change them."""

    max_queue: int = 32
    failure_threshold: int = 3
    base_ejection_time: float = 5.0
    max_ejection_time: float = 300.0
    connect_timeout: float = 2.0
    keep_warm: bool = True


@dataclass(slots=True)
class Reconciled:
    added: list[ContainerState] = field(default_factory=list)
    draining: list[ContainerState] = field(default_factory=list)


class Fleet:
    def __init__(self, catalog: Catalog, policy: FleetPolicy, *, limits: Limits, events: EventHub) -> None:
        self.catalog = catalog
        self.policy = policy
        self.limits = limits
        self.events = events
        self.containers: dict[str, ContainerState] = {}
        self.draining: set[ContainerState] = set()
        self.ready = False  # the start-up preload round finished
        self.preload_errors: dict[str, str] = {}
        for container in catalog.containers.values():
            self.containers[container.name] = self._new_state(container, policy)

    def _new_state(self, container: Container, policy: FleetPolicy, *, added: bool = False) -> ContainerState:
        """`added` by a reload: its models are preloaded before it takes traffic."""
        slots = self.limits.container_slots(container.name, container.num_parallel, policy.max_queue)
        client = ContainerClient(container.url, connect_timeout=policy.connect_timeout)
        return ContainerState(container=container, slots=slots, client=client, warm_first=added and policy.keep_warm)

    # reads -----------------------------------------------------------------------

    def states_for(self, model: Model) -> list[ContainerState]:
        containers = self.containers
        return [containers[name] for name in model.containers if name in containers]

    def all_states(self) -> Iterable[ContainerState]:
        yield from self.containers.values()
        yield from self.draining

    def available(self, state: ContainerState, now: float | None = None) -> bool:
        """May take a request now; an ejection whose time is up ends here (into probation)."""
        phase = state.phase
        if phase is Phase.EJECTED:
            ejection = state.ejection
            if ejection is not None and (time.time() if now is None else now) >= ejection.until:
                self._enter(state, Phase.PROBATION, "ejection time is up: one request at a time until one succeeds")
                return state.in_flight == 0
            return False
        if phase is Phase.DRAINING:  # only the catalogs that had it still name it: serve them as before
            phase = state.drained_from or phase
        if phase is Phase.PROBATION:
            return state.in_flight == 0
        return phase in ROUTABLE

    def takes_waiters(self, state: ContainerState) -> bool:
        """A request may wait in its queue: it is up (or was, when a reload removed it)."""
        return state.phase is Phase.UP or (state.phase is Phase.DRAINING and state.drained_from is Phase.UP)

    def model_ready(self, model: Model) -> list[str]:
        """Containers of `model` that take requests and hold it loaded (per their last /api/ps;
        without keep-warm, nothing loads models ahead of requests: being up is enough)."""
        warm = self.policy.keep_warm and not model.is_cloud  # a cloud model is never loaded locally
        return [s.name for s in self.states_for(model) if s.routable and (s.has_loaded(model) or not warm)]

    def servable(self, model: Model) -> bool:
        """A request for `model` can be served now without a cold load: by its own containers, else a fallback's."""
        if self.model_ready(model):
            return True
        return any(
            self.model_ready(target) for tag in model.fallback if (target := self.catalog.resolve(tag)) is not None
        )

    def is_ready(self) -> bool:
        return self.ready and all(self.servable(m) for m in self.catalog.models.values())

    # transitions -------------------------------------------------------------------

    def _enter(self, state: ContainerState, phase: Phase, reason: str | None = None, **fields: object) -> None:
        previous = state.phase
        if previous is phase:
            return
        state.phase = phase
        if phase is Phase.DOWN:
            state.down_since = time.time()
        elif previous is Phase.DOWN:
            state.down_since = None
        if phase not in ROUTABLE and phase not in (Phase.WARMING, Phase.DRAINING):  # a draining one serves its queue
            state.slots.fail_waiters(ContainerGone(state.name))
        kind = f"container_{phase.value}"
        level = log.warning if phase in (Phase.DOWN, Phase.EJECTED) else log.info
        level(kind, container=state.name, previous=previous.value, reason=reason, **fields)
        self.events.publish(kind, container=state.name, previous=previous.value, reason=reason, **fields)

    def probe_passed(
        self, state: ContainerState, *, version: str | None, loaded: dict[str, LoadedModel], tags: list[dict[str, object]]
    ) -> None:
        state.last_probe = time.time()
        if version != state.version:
            state.version = version
            state.version_key = parse_version(version)
        state.tags = tags
        self.update_loaded(state, loaded)
        phase = state.phase
        if phase in (Phase.UNKNOWN, Phase.DOWN):
            state.consecutive_failures = 0
            state.last_error = None
            ejection = state.ejection
            if ejection is None:
                self._enter(state, Phase.WARMING if state.warm_first else Phase.UP, version=version)
            elif ejection.until > time.time():
                # answering probes again says nothing of its generations: the ejection still holds
                self._enter(state, Phase.EJECTED, ejection.reason, until=ejection.until)
            else:
                self._enter(state, Phase.PROBATION, "answers probes again after an ejection that no request ended")
        elif phase is Phase.EJECTED:
            self.available(state)  # the ejection may be over: status and metrics show it without waiting for a request

    def probe_failed(self, state: ContainerState, reason: str) -> None:
        state.last_probe = time.time()
        state.last_error = reason
        state.consecutive_failures += 1
        if state.phase is not Phase.DRAINING:
            self._enter(state, Phase.DOWN, reason)

    def warmed(self, state: ContainerState) -> None:
        """Its models were preloaded (a container a reload added): it takes requests now."""
        state.warm_first = False
        if state.phase is Phase.WARMING:
            self._enter(state, Phase.UP, "its models are preloaded")

    def request_succeeded(self, state: ContainerState) -> None:
        state.consecutive_failures = 0
        state.served += 1
        if state.phase is Phase.PROBATION:
            self._end_ejection(state, "served a request after its ejection")
        elif state.ejections and state.last_ejection_end is not None and time.time() - state.last_ejection_end > self.policy.max_ejection_time:
            state.ejections = 0  # a quiet spell: the next ejection is short again

    def _end_ejection(self, state: ContainerState, reason: str) -> None:
        state.last_ejection_end = time.time()
        state.ejection = None
        self._enter(state, Phase.UP, reason)

    def request_failed(self, state: ContainerState, reason: str, kind: FailureKind) -> None:
        state.failures += 1
        state.consecutive_failures += 1
        state.last_error = reason
        log.warning("container_request_failed", container=state.name, reason=reason, kind=kind.value,
                    consecutive=state.consecutive_failures)
        if state.phase is Phase.DRAINING:
            if kind is FailureKind.REFUSED:  # gone for good: the old catalogs' requests stop trying it
                state.drained_from = Phase.DOWN
                state.slots.fail_waiters(ContainerGone(state.name))
            return
        if kind is FailureKind.REFUSED:
            self._enter(state, Phase.DOWN, reason)
            state.wakeup.set()  # probe now: it comes back on the first good probe
            return
        if state.phase is Phase.EJECTED:
            return  # a request that began before the ejection failed late: out already, not ejected twice
        if state.phase is Phase.PROBATION or state.consecutive_failures >= self.policy.failure_threshold:
            if kind is FailureKind.AMBIGUOUS and self._last_for_a_model(state):
                log.warning("ejection_skipped", container=state.name, reason=reason,
                            why="the last container that can serve one of its models, and the failure may be the request's")
                return
            self.eject(state, reason)

    def eject(self, state: ContainerState, reason: str) -> None:
        state.ejections += 1
        state.ejected_total += 1
        seconds = min(self.policy.base_ejection_time * 2 ** (state.ejections - 1), self.policy.max_ejection_time)
        state.ejection = Ejection(reason, time.time() + seconds, state.ejections)
        state.consecutive_failures = 0
        if state.phase in (Phase.DOWN, Phase.EJECTED):
            # no phase change (down stays down until a probe passes, then serves the ejection out),
            # but an ejection is always logged and published
            log.warning("container_ejected", container=state.name, previous=state.phase.value, reason=reason,
                        seconds=seconds, ejections=state.ejections)
            self.events.publish("container_ejected", container=state.name, previous=state.phase.value, reason=reason,
                                seconds=seconds, ejections=state.ejections)
        else:
            self._enter(state, Phase.EJECTED, reason, seconds=seconds, ejections=state.ejections)

    def _last_for_a_model(self, state: ContainerState) -> bool:
        return any(
            not any(s is not state and s.routable for s in self.states_for(model)) for model in self.catalog.models_on(state.name)
        )

    def deep_check_failed(self, state: ContainerState, reason: str) -> None:
        """A real short generation failed while probes pass: out, as an ejection."""
        self.eject(state, reason)

    def deep_check_passed(self, state: ContainerState) -> None:
        if state.phase in (Phase.EJECTED, Phase.PROBATION):
            self._end_ejection(state, "a deep check passed")

    def update_loaded(self, state: ContainerState, loaded: dict[str, LoadedModel]) -> None:
        """What the container's /api/ps says it holds now."""
        state.loaded = loaded

    def model_loaded(self, state: ContainerState, loaded: LoadedModel, load_seconds: float | None = None) -> None:
        """A keep-warm ping loaded a model (known at once, not only from the next /api/ps)."""
        state.loaded[loaded.key] = loaded
        if load_seconds is not None:
            state.load_seconds = [*state.load_seconds[-(LOAD_SAMPLES - 1):], load_seconds]

    # reload ------------------------------------------------------------------------------

    def stage(self, catalog: Catalog, policy: FleetPolicy) -> list[ContainerState]:
        """States for the containers `catalog` adds, or whose definition it changes: outside
        the fleet (nothing routes to them) until `apply`, so the caller can probe them and
        preload their models while the current catalog keeps serving."""
        staged = []
        for name, container in catalog.containers.items():
            state = self.containers.get(name)
            if state is None or state.container != container:
                staged.append(self._new_state(container, policy, added=True))
        return staged

    def apply(self, catalog: Catalog, policy: FleetPolicy, staged: Iterable[ContainerState] = ()) -> Reconciled:
        """Reshape the fleet for a new catalog: kept containers keep their state; a
        container whose definition changed is removed and added again (as its state
        from `stage` when there is one)."""
        result = Reconciled()
        ready = {state.name: state for state in staged}
        self.policy = policy
        current = self.containers
        self.catalog = catalog
        self.containers = {}
        for name, container in catalog.containers.items():
            state = current.pop(name, None)
            if state is not None and state.container == container:
                self.containers[name] = state
                state.slots.resize(container.num_parallel, policy.max_queue)
                continue
            if state is not None:
                current[name] = state  # changed: drains below, as a removed one
            fresh = ready.get(name)
            if fresh is None or fresh.container != container:
                fresh = self._new_state(container, policy, added=True)
            self.containers[name] = fresh
            result.added.append(fresh)
            self.events.publish("container_added", container=name, url=container.url)
        for state in current.values():
            self.drain(state)
            result.draining.append(state)
        return result

    def drain(self, state: ContainerState) -> None:
        state.drained_from = state.phase
        self._enter(state, Phase.DRAINING, "removed from the catalog")
        self.draining.add(state)

    def drained(self, keep: Collection[ContainerState] = ()) -> list[ContainerState]:
        """Draining containers with nothing left in flight, now forgotten (their clients are
        the caller's to close); `keep`: those a request may still pick (its catalog had them)."""
        done = [s for s in self.draining if s.in_flight == 0 and s.slots.queued == 0 and s not in keep]
        for state in done:
            self.draining.discard(state)
            log.info("container_removed", container=state.name)
            self.events.publish("container_removed", container=state.name)
        return done
