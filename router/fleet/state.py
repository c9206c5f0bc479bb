"""Runtime state of the fleet: one `ContainerState` per catalog container.

Written by the health and keep-warm tasks and by the request path's own
outcomes (passive health); read by the balancer. Plain slotted dataclasses:
this is read on every request.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from router.catalog import Catalog, Container, Model

UP = "up"
DOWN = "down"
UNKNOWN = "unknown"


class ContainerGone(Exception):
    """The container went down while a request waited in its queue."""


@dataclass(slots=True)
class LoadedModel:
    """One entry of a container's `/api/ps`."""

    name: str
    key: str
    expires_at: float | None  # epoch seconds; None when unparsable
    size_vram: int = 0
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class ContainerState:
    container: Container
    limit: int
    max_queue: int
    session: aiohttp.ClientSession | None = None
    state: str = UNKNOWN
    consecutive_failures: int = 0
    last_probe: float | None = None  # epoch seconds
    last_error: str | None = None
    version: str | None = None
    loaded: dict[str, LoadedModel] = field(default_factory=dict)  # by model key
    tags: list[dict[str, Any]] = field(default_factory=list)  # last /api/tags entries
    in_flight: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    served: int = 0
    failures: int = 0
    down_since: float | None = None
    generation_failed: str | None = None  # a failed deep check: down until one passes, whatever probes say
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)  # probe now (passive failure)

    @property
    def name(self) -> str:
        return self.container.name

    @property
    def url(self) -> str:
        return self.container.url

    @property
    def routable(self) -> bool:
        """Requests may be sent here: not known to be down."""
        return self.state != DOWN

    @property
    def queue_full(self) -> bool:
        return len(self.waiters) >= self.max_queue

    def try_acquire(self) -> bool:
        if self.in_flight < self.limit and not self.waiters:
            self.in_flight += 1
            return True
        return False

    async def wait_for_slot(self, timeout: float) -> None:
        """Queue FIFO for a slot; the slot is handed over by `release`."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout if timeout > 0 else None):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release()  # we were handed a slot but will not use it
            else:
                try:
                    self.waiters.remove(waiter)
                except ValueError:
                    pass
            raise

    def release(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the waiter: in_flight unchanged
                return
        self.in_flight -= 1

    def wake_all(self, exc: BaseException) -> None:
        """Fail every queued request (the container went down)."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)

    def has_loaded(self, model: Model) -> bool:
        return model.key in self.loaded

    # passive and active health ------------------------------------------------

    def mark_up(self) -> bool:
        """Returns True when this changed the state."""
        changed = self.state != UP
        self.state = UP
        self.consecutive_failures = 0
        self.down_since = None
        self.last_error = None
        return changed

    def mark_down(self, reason: str) -> bool:
        changed = self.state != DOWN
        self.state = DOWN
        self.last_error = reason
        if changed:
            self.down_since = time.time()
        return changed


@dataclass(slots=True)
class Fleet:
    """All container states, by name, for one catalog."""

    catalog: Catalog
    containers: dict[str, ContainerState]
    failure_threshold: int = 3
    ready: bool = False  # preload round finished
    preload_errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_catalog(cls, catalog: Catalog, *, max_queue: int, failure_threshold: int) -> Fleet:
        states = {
            name: ContainerState(container=c, limit=c.num_parallel, max_queue=max_queue)
            for name, c in catalog.containers.items()
        }
        return cls(catalog=catalog, containers=states, failure_threshold=failure_threshold)

    def states_for(self, model: Model) -> list[ContainerState]:
        return [self.containers[name] for name in model.containers]

    def report_success(self, state: ContainerState) -> None:
        state.consecutive_failures = 0
        state.served += 1

    def report_failure(self, state: ContainerState, reason: str, *, fatal: bool = False) -> None:
        """A real request failed on this container (passive health).

        `fatal` (connection refused) marks it down at once; other failures
        after `failure_threshold` in a row.
        """
        state.failures += 1
        state.consecutive_failures += 1
        state.last_error = reason
        if (fatal or state.consecutive_failures >= self.failure_threshold) and state.mark_down(reason):
            state.wake_all(ContainerGone(state.name))
            state.wakeup.set()

    def model_ready(self, model: Model) -> list[str]:
        return [s.name for s in self.states_for(model) if s.state == UP]

    def is_ready(self) -> bool:
        return self.ready and all(self.model_ready(m) for m in self.catalog.models.values())
